//! Property tests: credentials drawn from the whole RFC 3986 userinfo alphabet never
//! show on any surface, 10,000 cases each, with a fixed seed.
//!
//! The oracle is strict: no window of [`WINDOW`] characters of a user name or a
//! password (as written, YAML-escaped, or percent-decoded) may appear in the output,
//! so a cropped half of a password counts as a leak too.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{
    Config as RunConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner,
};
use proxypool::balancer::Outcome;
use proxypool::config::{ConfigBuilder, ProxyEntry, ProxyUrl, Transport};
use proxypool::metrics::Registry;
use proxypool::testing::DialContext;
use proxypool::testing::Pool;
use proxypool::{Dialer, Target};
use proxypool_tests::faults::{Fault, FaultProxy};

/// Cases per surface.
const CASES: u32 = 10_000;
/// The shortest part of a secret that counts as a leak.
const WINDOW: usize = 6;
const SEED: [u8; 32] = *b"proxypool redaction property v1!";

/// RFC 3986 userinfo: unreserved, sub-delims and `:` (the password's), plus `%XX`.
const UNRESERVED: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
const SUB_DELIMS: &str = "!$&'()*+,;=";

/// One user name and password, as written in a URL.
#[derive(Clone, Debug)]
struct Secret {
    user: String,
    pass: String,
}

impl Secret {
    fn userinfo(&self) -> String {
        format!("{}:{}", self.user, self.pass)
    }

    /// Every form a leak could take.
    fn forms(&self) -> Vec<String> {
        let mut out = Vec::new();
        for part in [&self.user, &self.pass] {
            out.push(part.clone());
            out.push(part.replace('\'', "''"));
            out.push(
                percent_encoding::percent_decode_str(part)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
        }
        out
    }

    /// Fails if any [`WINDOW`]-character piece of the secret shows in `text`.
    fn check(&self, surface: &str, text: &str) -> Result<(), TestCaseError> {
        for form in self.forms() {
            let chars: Vec<char> = form.chars().collect();
            for w in chars.windows(WINDOW.min(chars.len())) {
                let piece: String = w.iter().collect();
                if text.contains(&piece) {
                    return Err(TestCaseError::fail(format!(
                        "{surface} shows {piece:?} of {form:?}:\n{text}"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn token(with_colon: bool) -> impl Strategy<Value = String> {
    let mut singles: Vec<String> = UNRESERVED
        .chars()
        .chain(SUB_DELIMS.chars())
        .map(String::from)
        .collect();
    if with_colon {
        singles.push(":".into());
    }
    prop_oneof![
        8 => prop::sample::select(singles),
        1 => (0u8..=255).prop_map(|b| format!("%{b:02X}")),
    ]
}

fn part(with_colon: bool, len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(token(with_colon), len).prop_map(|t| t.concat())
}

fn secret() -> impl Strategy<Value = Secret> {
    (part(false, 8..20), part(true, 8..28)).prop_map(|(user, pass)| Secret { user, pass })
}

fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = RunConfig {
        cases: CASES,
        failure_persistence: None,
        ..RunConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
}

/// A long one-line pool of three proxies with `secret`, padded by `pad` characters.
fn pool_line(secret: &Secret, pad: usize) -> String {
    let ui = secret.userinfo().replace('\'', "''");
    format!(
        "    http: {{pool: ['socks5://{ui}@h1.example:1080', 'http://{ui}@[::1]:8080', \
         'socks5h://{ui}@h3:1'], strategy: round_robin, timeout_seconds: 30}}{}",
        " ".repeat(pad)
    )
}

/// What an error at `column` of the pool line can be: a character that breaks the
/// YAML or the URL there. `/ ? #` inside the userinfo would turn a user name into a
/// host name (a URL parser cannot tell), so they go elsewhere only.
fn corrupt(line: &str, column: usize, with: char) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    let column = column.min(chars.len());
    let with = if "/?#".contains(with) {
        let byte = chars[..column].iter().collect::<String>().len();
        let in_userinfo = line.match_indices("://").any(|(i, _)| {
            let start = i + 3;
            line[start..]
                .find('@')
                .is_some_and(|at| byte >= start && byte <= start + at)
        });
        if in_userinfo { ']' } else { with }
    } else {
        with
    };
    chars.insert(column, with);
    chars.into_iter().collect()
}

const BREAKERS: &[char] = &[
    ']', '}', '{', '[', ':', '\t', '&', '*', '!', '%', '@', '\'', '"', '\\', ',', '#', '|', '>',
    '/', '?', '\n', '\u{0}', '`',
];

#[test]
fn yaml_errors_at_every_column_of_long_lines_never_show_a_credential() {
    let case = (
        secret(),
        0usize..400,
        0usize..600,
        prop::sample::select(BREAKERS),
    );
    run("yaml", case, |(secret, pad, column, with)| {
        let line = corrupt(&pool_line(&secret, pad), column, with);
        let yaml = format!("proxy:\n  enabled: true\n  default:\n{line}\n");
        match ConfigBuilder::new().yaml_str(&yaml).build() {
            Err(e) => {
                secret.check("ConfigError Display", &e.to_string())?;
                secret.check("ConfigError Debug", &format!("{e:?}"))?;
            }
            Ok(config) => {
                secret.check("route table", &config.route_table())?;
                secret.check("Config Debug", &format!("{config:?}"))?;
            }
        }
        Ok(())
    });
}

#[test]
fn env_errors_at_every_column_never_show_a_credential() {
    let case = (secret(), 0usize..200, prop::sample::select(BREAKERS));
    run("env", case, |(secret, column, with)| {
        let json = format!(
            r#"{{"proxies":[{{"url":"socks5://{ui}@h1:1080"}},{{"url":"http://{ui}@h2:8080"}}],"strategy":"random"}}"#,
            ui = secret.userinfo().replace('"', "%22").replace('\\', "%5C")
        );
        let value = corrupt(&json, column, with);
        let b = ConfigBuilder::new().env_vars([
            ("CRYPTOFEED_PROXY_ENABLED".to_owned(), "true".to_owned()),
            ("CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL".to_owned(), value),
        ]);
        secret.check("ConfigBuilder Debug", &format!("{b:?}"))?;
        match b.build() {
            Err(e) => {
                secret.check("env error Display", &e.to_string())?;
                secret.check("env error Debug", &format!("{e:?}"))?;
            }
            Ok(config) => secret.check("route table", &config.route_table())?,
        }
        Ok(())
    });
}

#[test]
fn debug_of_every_public_type_never_shows_a_credential() {
    run("debug", secret(), |secret| {
        let ui = secret.userinfo();
        let urls = [
            format!("socks5://{ui}@h1:1080"),
            format!("http://{ui}@h2:8080"),
            format!("socks5://{ui}@h1:1080"),
        ];
        let entry = ProxyEntry::pool(urls.clone()).strategy("random");
        secret.check("ProxyEntry Debug", &format!("{entry:?}"))?;
        let single = ProxyEntry::url(urls[0].clone());
        secret.check("ProxyEntry Debug", &format!("{single:#?}"))?;
        let builder = ConfigBuilder::new()
            .enabled(true)
            .default_proxy(Transport::Http, entry)
            .default_proxy(Transport::Websocket, single)
            .yaml_str(&format!(
                "proxy: {{exchanges: {{binance: '{}'}}}}",
                urls[1].replace('\'', "''")
            ))
            .env_vars([(
                "CRYPTOFEED_PROXY_EXCHANGES__KRAKEN__HTTP__URL",
                urls[0].as_str(),
            )]);
        secret.check("ConfigBuilder Debug", &format!("{builder:?}"))?;
        let config = builder
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        secret.check("Config Debug", &format!("{config:#?}"))?;
        secret.check("route table", &config.route_table())?;
        for t in Transport::ALL {
            let route = config.route(Some("binance"), t);
            secret.check("Route Debug", &format!("{route:?}"))?;
        }
        let url = ProxyUrl::parse(&urls[0]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        secret.check(
            "ProxyUrl",
            &format!("{url} {url:?} {:?}", url.credentials()),
        )?;
        let pool = Pool::from_urls("default.http", urls.clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        secret.check("Pool Debug", &format!("{pool:?} {:?}", pool.spec()))?;
        let lease = pool.lease(1).expect("member 1");
        let trial = pool.begin_attempt(1).expect("closed breaker");
        secret.check("Lease and Trial Debug", &format!("{lease:?} {trial:?}"))?;
        let status = pool.status();
        secret.check("MemberStatus", &format!("{status:?}"))?;
        // The two identical members are told apart, without credentials.
        if status[0].label == status[2].label {
            return Err(TestCaseError::fail(format!("same label: {status:?}")));
        }
        Ok(())
    });
}

#[test]
fn logs_metrics_and_status_never_show_a_credential() {
    let (logs, _guard) = proxypool_tests::capture_logs();
    run("logs", secret(), |secret| {
        let ui = secret.userinfo();
        let pool = Pool::from_urls(
            "exchanges.binance.http",
            [
                format!("socks5://{ui}@h1:1080"),
                "socks5://h1:1080".to_owned(),
                format!("http://{ui}@h1:1080"),
            ],
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let now = tokio::time::Instant::now();
        pool.record_failure(0, now, "refused");
        pool.set_misconfigured(2, "407 from the proxy");
        pool.set_health(1, false, "tcp probe failed");
        pool.report(
            1,
            "binance",
            Outcome::Banned {
                retry_after: Some(Duration::from_secs(9)),
            },
            now,
        );
        let registry = Registry::new();
        registry.register(std::sync::Arc::new(pool.clone()));
        let metrics = registry.render();
        secret.check("metrics", &metrics)?;
        let labels: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("proxypool_proxy_up{"))
            .collect();
        if labels.len() != 3 {
            return Err(TestCaseError::fail(format!(
                "three distinct series: {metrics}"
            )));
        }
        let status: Vec<String> = pool.status().iter().map(|m| m.to_string()).collect();
        secret.check("status", &status.join("\n"))?;
        let out = logs.take();
        if !(out.contains("breaker open") && out.contains("misconfigured")) {
            return Err(TestCaseError::fail(format!("no transition logged: {out}")));
        }
        secret.check("log lines", &out)?;
        Ok(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_errors_and_their_logs_never_show_a_credential() {
    let refused = FaultProxy::start(Fault::Refuse).await;
    let auth = FaultProxy::start(Fault::Socks5AuthReject).await;
    let garbage = FaultProxy::start(Fault::HttpStatus(407)).await;
    let addrs = [refused.addr(), auth.addr(), garbage.addr()];
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let (logs, _guard) = proxypool_tests::capture_logs();
        let dialer = Dialer::new();
        let ctx = DialContext {
            exchange: Some("binance"),
            transport: Transport::Http,
        };
        let counter = std::sync::atomic::AtomicUsize::new(0);
        run("dial", secret(), |secret| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let scheme = if n % 3 == 2 { "http" } else { "socks5" };
            let url = ProxyUrl::parse(&format!(
                "{scheme}://{}@{}",
                secret.userinfo(),
                addrs[n % 3]
            ))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let e = rt
                .block_on(dialer.dial(
                    &url,
                    Duration::from_secs(5),
                    &Target::try_new("127.0.0.1", 9).unwrap(),
                    ctx,
                ))
                .err()
                .ok_or_else(|| TestCaseError::fail("a faulty proxy connected"))?;
            secret.check("DialError", &format!("{e} {e:?}"))?;
            let out = logs.take();
            if !out.contains("proxy: transport=http exchange=binance") {
                return Err(TestCaseError::fail(format!("no dial line logged: {out}")));
            }
            secret.check("dial log", &out)?;
            Ok(())
        });
    })
    .await
    .unwrap();
}

/// The `gateway:` section's secrets, the admin token and a listener's password,
/// with an error at any column of either line: neither shows in the error, nor in
/// what a rejected reload leaves in status.
#[test]
fn gateway_secrets_never_show_after_any_rejected_reload() {
    let case = (
        secret(),
        0usize..200,
        prop::sample::select(BREAKERS),
        any::<bool>(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _inside = rt.enter();
    let balancer = crate::failover::balancer("proxy: {enabled: false}");
    run("gateway yaml", case, |(secret, column, with, on_token)| {
        let token = secret.pass.replace('\'', "''");
        let password = secret.user.replace('\'', "''");
        let token_line = format!("  admin_token: '{token}x{token}'");
        let listen_line =
            format!("  listen: [{{addr: '127.0.0.1:1080', auth: {{password: '{password}'}}}}]");
        let (token_line, listen_line) = if on_token {
            (corrupt(&token_line, column, with), listen_line)
        } else {
            (token_line, corrupt(&listen_line, column, with))
        };
        let yaml = format!("proxy:\n  enabled: false\ngateway:\n{token_line}\n{listen_line}\n");
        if let Err(e) = ConfigBuilder::new().yaml_str(&yaml).build() {
            secret.check("ConfigError Display", &e.to_string())?;
            secret.check("ConfigError Debug", &format!("{e:?}"))?;
            balancer.reload_rejected(&e, e.problems().len());
            let status = proxypool::testing::status_json(&balancer, false);
            secret.check("status after a rejected reload", &status)?;
        }
        Ok(())
    });
}
