//! Both pool shapes, pool rules, and the shipped examples.

use std::path::PathBuf;
use std::time::Duration;

use proxypool::config::{
    BuiltinStrategy, Config, ConfigBuilder, PoolSpec, ProbeMethod, StrategyRef, Transport, Upstream,
};

fn pool(c: &Config, exchange: Option<&str>, t: Transport) -> PoolSpec {
    match c.route(exchange, t).upstream {
        Some(Upstream::Pool(p)) => (**p).clone(),
        other => panic!("expected a pool, got {other:?}"),
    }
}

fn yaml(text: &str) -> Config {
    ConfigBuilder::new()
        .yaml_str(text)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn seed_and_cryptofeed_pool_shapes_parse_to_the_same_model() {
    let seed = yaml(
        "proxy:
  enabled: true
  default:
    http:
      pool:
        - url: socks5://p1:1080
        - url: socks5://p2:1080
          weight: 2
        - url: socks5://p3:1080
          enabled: false
      strategy: least_connections
      health_check: {enabled: true, method: http, url: 'http://probe.local/', interval: 10}
",
    );
    let cryptofeed = yaml(
        "proxy:
  enabled: true
  default:
    http:
      pool:
        proxies:
          - {url: socks5://p1:1080}
          - {url: socks5://p2:1080, weight: 2.0}
          - {url: socks5://p3:1080, enabled: false}
        strategy: least_connections
        health_check: {method: http, url: 'http://probe.local/', interval_seconds: 10}
",
    );
    let a = pool(&seed, None, Transport::Http);
    assert_eq!(a, pool(&cryptofeed, None, Transport::Http));
    assert_eq!(a.members.len(), 3);
    assert_eq!(a.members[1].weight, 2.0);
    assert!(!a.members[2].enabled);
    assert_eq!(
        a.strategy,
        StrategyRef::Builtin(BuiltinStrategy::LeastConnections)
    );
    assert_eq!(a.health_check.interval, Duration::from_secs(10));
    assert_eq!(
        a.health_check.method,
        ProbeMethod::Http {
            url: "http://probe.local/".into()
        }
    );
}

#[test]
fn pool_defaults_are_round_robin_weight_1_and_greeting_health_checks() {
    let p = pool(
        &yaml("proxy: {enabled: true, default: {http: {pool: ['socks5://a:1', 'socks5://b:1']}}}"),
        None,
        Transport::Http,
    );
    assert_eq!(
        p.strategy,
        StrategyRef::Builtin(BuiltinStrategy::RoundRobin)
    );
    assert!(p.members.iter().all(|m| m.weight == 1.0 && m.enabled));
    let h = &p.health_check;
    assert!(h.enabled && h.method == ProbeMethod::Greeting);
    assert_eq!(
        (h.interval.as_secs(), h.timeout.as_secs(), h.retry_count),
        (30, 5, 3)
    );
    assert_eq!(p.timeout, Duration::from_secs(30));
}

#[test]
fn wasm_strategy_path_is_accepted() {
    let p = pool(
        &yaml(
            "proxy: {enabled: true, default: {http: {pool: ['socks5://a:1'], strategy: ./strategies/p2c.wasm}}}",
        ),
        None,
        Transport::Http,
    );
    assert_eq!(
        p.strategy,
        StrategyRef::Wasm("./strategies/p2c.wasm".into())
    );
}

#[test]
fn pool_rules_are_enforced_with_paths() {
    let err = ConfigBuilder::new()
        .yaml_str(
            "proxy:
  default:
    http: {pool: []}
    websocket:
      pool: {proxies: [{weight: 0.05}], strategy: fastest}
  exchanges:
    binance:
      http: {url: 'socks5://a:1', strategy: random}
      websocket:
        pool: ['socks5://a:1']
        strategy: random
        health_check: {method: tcp, interval: 2.5, retry_count: 11}
",
        )
        .build()
        .unwrap_err();
    let got: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "default.http.pool: a pool needs at least one proxy",
            "default.websocket.pool.strategy: unknown strategy \"fastest\" (expected round_robin, random, least_connections, or a path to a .wasm file)",
            "default.websocket.pool.proxies[0].url: a pool member needs a url",
            "default.websocket.pool.proxies[0].weight: must be between 0.1 and 10",
            "exchanges.binance.http.strategy: strategy applies only to a pool",
            "exchanges.binance.websocket.health_check.interval: must be a whole number",
            "exchanges.binance.websocket.health_check.retry_count: must be between 1 and 10",
        ]
    );
}

#[test]
fn exchanges_falling_back_share_the_default_pool() {
    let c =
        yaml("proxy: {enabled: true, default: {http: {pool: ['socks5://a:1', 'socks5://b:1']}}}");
    let (a, b) = (
        c.route(Some("binance"), Transport::Http).upstream.unwrap(),
        c.route(Some("coinbase"), Transport::Http).upstream.unwrap(),
    );
    assert!(
        std::ptr::eq(a, b),
        "both must resolve to the one default pool"
    );
}

#[test]
fn seed_basic_pool_example_loads_as_written() {
    let c = ConfigBuilder::new()
        .yaml_file(examples_dir().join("basic-pool.yaml"))
        .build()
        .unwrap();
    let p = pool(&c, Some("binance"), Transport::Http);
    assert_eq!(p.members.len(), 3);
    assert_eq!(p.health_check.interval, Duration::from_secs(30));
}

#[test]
fn seed_per_exchange_example_loads_as_written() {
    let c = ConfigBuilder::new()
        .yaml_file(examples_dir().join("per-exchange-pools.yaml"))
        .build()
        .unwrap();
    assert_eq!(
        pool(&c, Some("binance"), Transport::Http).strategy,
        StrategyRef::Builtin(BuiltinStrategy::LeastConnections)
    );
    assert_eq!(pool(&c, Some("coinbase"), Transport::Http).members.len(), 2);
    assert!(!c.route(Some("kraken"), Transport::Http).is_direct());
}

#[test]
fn every_example_loads() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            ConfigBuilder::new()
                .yaml_file(&path)
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "examples/*.yaml went missing");
}

#[test]
fn the_resilience_example_sets_every_knob() {
    use proxypool::config::{ProbeMethod, VerdictRef, WhenAllDown};
    let c = ConfigBuilder::new()
        .yaml_file(examples_dir().join("resilience.yaml"))
        .build()
        .unwrap();
    let p = pool(&c, Some("binance"), Transport::Http);
    let hc = &p.health_check;
    assert_eq!(
        hc.method,
        ProbeMethod::Handshake {
            target: "api.binance.com:443".into()
        }
    );
    assert_eq!(
        (hc.interval, hc.fast_interval, hc.timeout, hc.retry_count),
        (
            Duration::from_secs(10),
            Duration::from_millis(500),
            Duration::from_secs(3),
            2
        )
    );
    assert_eq!(hc.verdict, VerdictRef::Threshold);
    assert_eq!(
        (
            p.breaker.failures,
            p.breaker.cooldown,
            p.breaker.max_cooldown
        ),
        (2, Duration::from_millis(500), Duration::from_secs(30))
    );
    assert_eq!(p.failover.deadline, Some(Duration::from_secs(10)));
    assert_eq!(
        p.failover.hedge,
        Some((Duration::from_millis(100), Duration::from_millis(800)))
    );
    assert_eq!(p.when_all_down, WhenAllDown::FallbackDefault);
    assert_eq!(p.bans.rate_limited, Duration::from_secs(120));
    assert_eq!(p.bans.banned, Duration::from_secs(7200));
}

#[test]
fn resilience_keys_are_checked_with_paths() {
    let err = ConfigBuilder::new()
        .yaml_str(
            "proxy:
  default:
    http:
      pool: {proxies: ['socks5://a:1'], breaker: {failures: 0}, when_all_down: maybe}
      failover: {hedge_min_ms: 500, hedge_max_ms: 100}
    websocket:
      url: 'socks5://a:1'
      bans: {banned_seconds: 1}
",
        )
        .build()
        .unwrap_err();
    let got: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "default.http.pool.breaker.failures: must be between 1 and 100",
            "default.http.failover.hedge_max_ms: must not be below hedge_min_ms",
            "default.http.pool.when_all_down: unknown policy \"maybe\" (expected panic, fallback_default or fail)",
            "default.websocket.bans: bans applies only to a pool",
        ]
    );
}
