//! Real cryptofeed and ccxt, set up as the client table of docs/gateway.md says, against a
//! stand-in Binance: no request may reach the exchange except through its pools.
//!
//! Each test runs itself again inside a network and mount namespace of its own
//! (`proxypool_tests::exchange`), where the exchange's names point at the stand-in.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use proxypool_tests::exchange::{Seen, World, rerun_inside};
use proxypool_tests::servers::{RealProxy, microsocks};
use tokio::process::Command;

use crate::gateway::Gateway;

/// The proxy variables a client may read: cleared, so only a test's own apply.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "ws_proxy",
    "wss_proxy",
    "socks_proxy",
    "no_proxy",
];

/// The venv with cryptofeed and ccxt, or `None` after a skip notice (a failure
/// under CI).
fn feeds_python() -> Option<PathBuf> {
    crate::gateway::venv_python("py-feeds", "cryptofeed or ccxt")
}

fn inside<F: Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

/// Binance's REST pool (two proxies) and stream pool (one), and a default pool of one
/// more for anything else, each proxy resolving names itself.
struct Pools {
    rest: [RealProxy; 2],
    streams: RealProxy,
    _default: RealProxy,
    yaml: String,
}

impl Pools {
    async fn start() -> Pools {
        let mut started = Vec::new();
        for _ in 0..4 {
            started.push(microsocks(None).await.expect("microsocks"));
        }
        let url = |p: &RealProxy| format!("'socks5h://{}'", p.addr);
        let off = "health_check: {enabled: false}";
        let yaml = format!(
            "proxy:\n  enabled: true\n  default:\n    http: {{pool: [{d}], {off}}}\n    websocket: {{pool: [{d}], {off}}}\n  \
             exchanges:\n    binance:\n      http: {{pool: [{r0}, {r1}], {off}}}\n      websocket: {{pool: [{s}], {off}}}\n",
            d = url(&started[3]),
            r0 = url(&started[0]),
            r1 = url(&started[1]),
            s = url(&started[2]),
        );
        let mut it = started.into_iter();
        let (r0, r1, s, d) = (
            it.next().unwrap(),
            it.next().unwrap(),
            it.next().unwrap(),
            it.next().unwrap(),
        );
        Pools {
            rest: [r0, r1],
            streams: s,
            _default: d,
            yaml,
        }
    }

    /// Every request the stand-in saw came through Binance's pool for its transport:
    /// REST through a REST proxy, streams through the stream proxy; none direct.
    fn assert_carried(&self, seen: &[Seen], said: &str) {
        assert!(!seen.is_empty(), "the client reached nothing: {said}");
        let rest: Vec<IpAddr> = self.rest.iter().map(|p| p.egress).collect();
        for s in seen {
            let through = if s.what.starts_with("WS ") {
                vec![self.streams.egress]
            } else {
                rest.clone()
            };
            assert!(
                through.contains(&s.from),
                "{} came from {}, not through {through:?} (direct: 127.0.0.1)\nall: {seen:#?}\n{said}",
                s.what,
                s.from
            );
        }
    }
}

/// Inside the namespace: the Python clients' interpreter, the world, Binance's
/// pools and a gateway over them.
async fn set_up() -> (PathBuf, World, Pools, Gateway) {
    let python = feeds_python().expect("checked before the namespace");
    let world = World::enter(&python).await;
    let pools = Pools::start().await;
    let gw = Gateway::start(&pools.yaml).await;
    (python, world, pools, gw)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/exchange_clients.py")
}

/// A client process with no proxy setting from the outer environment, trusting the
/// world's CA.
fn client(program: &Path, world: &World) -> Command {
    let mut c = Command::new(program);
    for v in PROXY_VARS {
        c.env_remove(v).env_remove(v.to_ascii_uppercase());
    }
    for (k, v) in world.tls_env() {
        c.env(k, v);
    }
    c.kill_on_drop(true);
    c
}

/// Runs `c` to its end (the script gives up by itself after 40 s) and returns its
/// JSON line, after asserting it succeeded.
async fn finish(c: &mut Command) -> (serde_json::Value, String) {
    let out = c.output().await.expect("run the client");
    let said = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the client failed: {said}");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default()
        .to_string();
    let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {said}"));
    (v, said)
}

fn saw(seen: &[Seen], what: &str) -> bool {
    seen.iter().any(|s| s.what.starts_with(what))
}

/// cryptofeed 2.4.1 as docs/gateway.md sets it up: the Feed's `http_proxy` for its
/// aiohttp REST calls, `HTTPS_PROXY` for its start-up `exchangeInfo` (a bare
/// `requests.get()`), `wss_proxy` for its streams.
#[test]
fn cryptofeed_with_the_readmes_settings_sends_every_request_through_the_pools() {
    if feeds_python().is_none()
        || !rerun_inside(
            "real_clients::cryptofeed_with_the_readmes_settings_sends_every_request_through_the_pools",
        )
    {
        return;
    }
    inside(async {
        let (python, world, pools, gw) = set_up().await;
        let (v, said) = finish(
            client(&python, &world)
                .arg(script())
                .arg("cryptofeed")
                .env("FEED_HTTP_PROXY", format!("http://binance:x@{}", gw.addr))
                .env("HTTPS_PROXY", format!("http://{}", gw.addr))
                .env("wss_proxy", format!("socks5h://{}", gw.addr)),
        )
        .await;
        assert_eq!(v["trade"], "BTC-USDT 50000.50", "{said}");
        assert_eq!(v["book"], "BTC-USDT bids=1", "{said}");
        let seen = world.exchange.seen();
        pools.assert_carried(&seen, &said);
        for what in [
            "GET api.binance.com/api/v3/exchangeInfo",
            "GET api.binance.com/api/v3/depth",
            "WS stream.binance.com:9443/stream?streams=",
        ] {
            assert!(saw(&seen, what), "no {what}: {seen:#?}");
        }
    });
}

/// ccxt 4.5 with the configs of docs/gateway.md, one flavour after another through
/// one gateway: sync ccxt with `httpsProxy` (its `httpProxy` would carry `http://`
/// URLs only), async ccxt with `httpsProxy`, and ccxt.pro with `httpsProxy` for its
/// REST calls beside `wssProxy` for its streams.
#[test]
fn ccxt_sync_async_and_pro_with_the_documented_settings_send_every_request_through_the_pools() {
    if feeds_python().is_none()
        || !rerun_inside(
            "real_clients::ccxt_sync_async_and_pro_with_the_documented_settings_send_every_request_through_the_pools",
        )
    {
        return;
    }
    inside(async {
        let (python, world, pools, gw) = set_up().await;
        let proxy = format!("http://binance:x@{}", gw.addr);
        let rest = serde_json::json!({"httpsProxy": proxy});
        let pro = serde_json::json!({"httpsProxy": proxy, "wssProxy": proxy});
        for (flavour, config, what) in [
            ("ccxt-sync", &rest, "GET api.binance.com/api/v3/ticker/24hr"),
            (
                "ccxt-async",
                &rest,
                "GET api.binance.com/api/v3/ticker/24hr",
            ),
            ("ccxt-pro", &pro, "WS stream.binance.com:9443/ws"),
        ] {
            let before = world.exchange.seen().len();
            let (v, said) = finish(
                client(&python, &world)
                    .arg(script())
                    .arg(flavour)
                    .env("CCXT_CONFIG", config.to_string()),
            )
            .await;
            let said = format!("{flavour}: {said}");
            assert_eq!(v["markets"], 1, "{said}");
            let price = if flavour == "ccxt-pro" {
                &v["trade"]
            } else {
                &v["last"]
            };
            assert_eq!(*price, 50000.5, "{said}");
            let seen = world.exchange.seen().split_off(before);
            pools.assert_carried(&seen, &said);
            for what in ["GET api.binance.com/api/v3/exchangeInfo", what] {
                assert!(saw(&seen, what), "{flavour}: no {what}: {seen:#?}");
            }
        }
    });
}

/// `proxypool run -- python feed.py`: cryptofeed with no proxy setting of its own.
/// Its `requests` start-up call and its websockets streams read the environment
/// `run` sets, so every one of them goes through the pools. (Its aiohttp REST calls
/// do not read it: the book channel, which needs them, is left out here.)
#[test]
fn proxypool_run_carries_cryptofeed_with_no_setting_of_its_own() {
    if feeds_python().is_none()
        || !rerun_inside(
            "real_clients::proxypool_run_carries_cryptofeed_with_no_setting_of_its_own",
        )
    {
        return;
    }
    inside(async {
        let python = feeds_python().expect("checked before the namespace");
        let world = World::enter(&python).await;
        let pools = Pools::start().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pools.yaml");
        std::fs::write(&file, &pools.yaml).unwrap();
        let mut run = client(&proxypool_tests::proxypool_bin(), &world);
        run.arg("run")
            .arg("--config")
            .arg(&file)
            .arg("--")
            .arg(&python)
            .arg(script())
            .arg("cryptofeed")
            .env("FEED_CHANNELS", "trades")
            .env("PROXYPOOL_LOG", "warn");
        let (v, said) = finish(&mut run).await;
        assert_eq!(v["trade"], "BTC-USDT 50000.50", "{said}");
        let seen = world.exchange.seen();
        pools.assert_carried(&seen, &said);
        for what in [
            "GET api.binance.com/api/v3/exchangeInfo",
            "WS stream.binance.com:9443/stream?streams=",
        ] {
            assert!(saw(&seen, what), "no {what}: {seen:#?}");
        }
    });
}
