//! `user:secret@` never shows: one test per surface.

use std::time::Duration;

use proxypool::config::{ConfigBuilder, ProxyUrl, Transport};
use proxypool::testing::DialContext;
use proxypool::{Dialer, Target};
use proxypool_tests::faults::{Fault, FaultProxy};

const SECRET: &str = "hunter2secret";

fn assert_clean(surface: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "{surface} leaks the password: {text}"
    );
    assert!(
        !text.contains("trader:"),
        "{surface} leaks the userinfo: {text}"
    );
}

#[test]
fn config_error_messages_never_contain_the_password() {
    // Bad URLs with credentials, each breaking a different rule.
    let err = ConfigBuilder::new()
        .yaml_str(&format!(
            "proxy:
  default:
    http: 'ftp://trader:{SECRET}@h:1'
    websocket: 'socks5://trader:{SECRET}@:1'
  exchanges:
    binance: {{http: 'socks5://trader:{SECRET}@h:99999'}}
    kraken: {{http: 'trader:{SECRET}@h:1'}}
"
        ))
        .build()
        .unwrap_err();
    assert_eq!(err.problems().len(), 4, "{err}");
    assert_clean("ConfigError Display", &err.to_string());
    assert_clean("ConfigError Debug", &format!("{err:?}"));
}

#[test]
fn yaml_parse_error_snippet_is_redacted() {
    let err = ConfigBuilder::new()
        .yaml_str(&format!(
            "proxy:\n  default:\n    http: {{url: 'socks5://trader:{SECRET}@h:1', bogus: 1}}\n"
        ))
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bogus"), "{text}");
    assert_clean("YAML error", &text);
}

#[test]
fn env_error_is_redacted() {
    let err = ConfigBuilder::new()
        .env_vars([(
            "CRYPTOFEED_PROXY_DEFAULT__HTTP",
            format!(r#"{{"url": "socks5://trader:{SECRET}@h:1", "nope": 1"#),
        )])
        .build()
        .unwrap_err();
    assert_clean("env error", &err.to_string());
    let err = ConfigBuilder::new()
        .env_vars([(
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL",
            format!(r#"{{"proxies": "socks5://trader:{SECRET}@h:1"}}"#),
        )])
        .build()
        .unwrap_err();
    assert_clean("env type error", &err.to_string());
}

#[test]
fn debug_and_display_of_urls_and_config_are_redacted() {
    let url = ProxyUrl::parse(&format!("socks5://trader:{SECRET}@h:1")).unwrap();
    assert_eq!(url.to_string(), "socks5://***@h:1");
    assert_clean("ProxyUrl Debug", &format!("{url:?}"));
    assert_clean("Credentials Debug", &format!("{:?}", url.credentials()));
    let config = ConfigBuilder::new()
        .yaml_str(&format!(
            "proxy: {{enabled: true, default: {{http: {{pool: ['http://trader:{SECRET}@h:1']}}, websocket: 'socks5h://trader:{SECRET}@h:2'}}}}"
        ))
        .build()
        .unwrap();
    assert_clean("Config Debug", &format!("{config:?}"));
    assert_clean("Config pretty Debug", &format!("{config:#?}"));
}

#[tokio::test]
async fn dial_errors_are_redacted() {
    let dialer = Dialer::new();
    let ctx = DialContext {
        exchange: None,
        transport: Transport::Http,
    };
    for fault in [
        Fault::Refuse,
        Fault::Garbage,
        Fault::HttpStatus(407),
        Fault::HttpStatus(502),
    ] {
        let proxy = FaultProxy::start(fault).await;
        let url = ProxyUrl::parse(&format!("http://trader:{SECRET}@{}", proxy.addr())).unwrap();
        let e = dialer
            .dial(
                &url,
                Duration::from_secs(5),
                &Target::try_new("127.0.0.1", 9).unwrap(),
                ctx,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("***@"), "{e}");
        assert_clean("DialError Display", &e.to_string());
        assert_clean("DialError Debug", &format!("{e:?}"));
    }
}

#[tokio::test]
async fn log_lines_are_redacted() {
    let (logs, _guard) = proxypool_tests::capture_logs();
    let proxy = FaultProxy::start(Fault::Garbage).await;
    let url = ProxyUrl::parse(&format!("socks5://trader:{SECRET}@{}", proxy.addr())).unwrap();
    let ctx = DialContext {
        exchange: Some("binance"),
        transport: Transport::Websocket,
    };
    let _ = Dialer::new()
        .dial(
            &url,
            Duration::from_secs(5),
            &Target::try_new("127.0.0.1", 9).unwrap(),
            ctx,
        )
        .await;
    let out = logs.contents();
    assert!(out.contains("proxy: transport=websocket"), "{out}");
    assert_clean("log output", &out);
}

/// Status, metrics, transition logs and the all-down error of a pool whose proxies
/// carry credentials.
#[tokio::test]
async fn status_metrics_and_health_logs_are_redacted() {
    let (logs, _guard) = proxypool_tests::capture_logs();
    let bal = crate::failover::balancer(
        "proxy: {enabled: true, default: {http: {pool: ['socks5://trader:hunter2secret@127.0.0.1:9', \
         'http://trader:hunter2secret@127.0.0.1:9'], when_all_down: fail, \
         health_check: {method: tcp, interval: 1, fast_interval_ms: 100, timeout_seconds: 1, \
         retry_count: 1, rise: 1, fall: 1}}}}",
    );
    let (pool, _) = proxypool::testing::pool(&bal, "default.http").unwrap();
    proxypool_tests::assert_eventually!(
        pool.status().iter().all(|m| m.probed && !m.healthy),
        "both marked down by probes"
    );
    pool.report(
        0,
        "binance",
        proxypool::balancer::Outcome::GeoBlocked,
        tokio::time::Instant::now(),
    );
    let err = bal
        .connect(
            Some("binance"),
            proxypool::Transport::Http,
            &"127.0.0.1:1".parse().unwrap(),
        )
        .await
        .unwrap_err();
    assert_clean("all-down error", &err.to_string());
    let status: Vec<String> = bal
        .status()
        .iter()
        .flat_map(|(_, members)| members.iter().map(|m| format!("{m} {m:?}")))
        .collect();
    assert_clean("status", &status.join("\n"));
    let metrics = bal.metrics().render();
    assert!(
        metrics.contains("proxy=\"socks5://***@127.0.0.1:9\""),
        "{metrics}"
    );
    assert_clean("metrics", &metrics);
    let logs = logs.contents();
    assert!(logs.contains("health down"), "{logs}");
    assert_clean("health logs", &logs);
}
