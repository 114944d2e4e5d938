//! `Balancer::reload` against real proxies: membership changes by identity, state
//! kept across edits, drains, all-or-nothing rejection, and a reload loop under load.

use std::time::Duration;

use proxypool::Balancer;
use proxypool::balancer::RouteChange;
use proxypool::balancer::{BreakerState, Outcome};
use proxypool::config::{Config, ConfigBuilder};
use proxypool_tests::servers::{microsocks, pool_yaml};
use proxypool_tests::target::TargetServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::failover::{balancer, connect};

fn config(yaml: &str) -> Config {
    ConfigBuilder::new().yaml_str(yaml).build().unwrap()
}

/// `yaml` (as `pool_yaml` gives it) with `exchanges: {EXCHANGES}` inside `proxy:`.
fn with_exchanges(yaml: &str, exchanges: &str) -> String {
    let open = yaml.strip_suffix('}').expect("a flow mapping");
    format!("{open}, exchanges: {{{exchanges}}}}}")
}

fn upstream_id(c: &proxypool::Tunnel) -> u32 {
    c.upstream()
        .unwrap()
        .rsplit_once('/')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

/// Adding a proxy gives it picks; removing one stops its picks, and its live tunnel
/// keeps carrying bytes both ways until the client closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_proxy_gets_picks_and_a_removed_one_drains_its_live_tunnel() {
    let (Some(a), Some(b)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start().await;
    let bal = balancer(&pool_yaml(&[&a], ""));
    let mut live = connect(&bal, None, &target.addr().into()).await.unwrap();
    assert_eq!(target.peer_ips(), [a.egress]);

    let report = bal.reload(config(&pool_yaml(&[&a, &b], ""))).unwrap();
    assert_eq!(
        report.pools,
        [RouteChange::Changed {
            route: "default.http".into(),
            kept: vec![format!("socks5://{}", a.addr)],
            added: vec![format!("socks5://{}", b.addr)],
            removed: vec![],
        }]
    );
    assert_eq!(bal.generation(), 2);
    let before = target.peer_ips().len();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&bal, None, &target.addr().into()).await.unwrap());
    }
    assert!(
        target.peer_ips()[before..].contains(&b.egress),
        "the added proxy gets picks: {:?}",
        target.peer_ips()
    );
    drop(held);

    let report = bal.reload(config(&pool_yaml(&[&b], ""))).unwrap();
    assert!(
        matches!(&report.pools[0], RouteChange::Changed { removed, .. } if removed.len() == 1),
        "{report}"
    );
    let before = target.peer_ips().len();
    for _ in 0..3 {
        drop(connect(&bal, None, &target.addr().into()).await.unwrap());
    }
    assert_eq!(
        target.peer_ips()[before..],
        [b.egress, b.egress, b.egress],
        "no pick reaches the removed proxy"
    );
    // The tunnel through the removed proxy still works both ways.
    live.write_all(b"still here\n").await.unwrap();
    let mut echoed = [0u8; 11];
    live.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"still here\n");
    assert_eq!(
        live.via().unwrap().to_string(),
        format!("socks5://{}", a.addr)
    );
    // Its series stay while the tunnel does, and go with it.
    let series = format!(
        "proxypool_proxy_active_leases{{pool=\"default.http\",proxy=\"socks5://{}\"}} 1",
        a.addr
    );
    assert!(bal.metrics().render().contains(&series), "{series}");
    drop(live);
    let gone = format!("proxy=\"socks5://{}\"", a.addr);
    assert!(!bal.metrics().render().contains(&gone), "{gone}");
}

/// An open breaker, a ban and a down verdict survive an edit of another route (the
/// pool is kept whole) and an edit of the pool itself (the members are matched by
/// identity, even after they move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_ban_and_health_survive_edits() {
    let Some([a, b, c]) = crate::failover::three_microsocks().await else {
        return;
    };
    let bal = balancer(&pool_yaml(&[&a, &b, &c], ""));
    let (pool, _) = proxypool::testing::pool(&bal, "default.http").unwrap();
    let now = tokio::time::Instant::now();
    for _ in 0..pool.spec().breaker.failures {
        pool.record_failure(0, now, "refused");
    }
    pool.report(
        1,
        "binance",
        Outcome::Banned {
            retry_after: Some(Duration::from_secs(600)),
        },
        now,
    );
    pool.set_healthy(2, false);
    let check = |bal: &Balancer, ids: [u32; 3], what: &str| {
        let (pool, _) = proxypool::testing::pool(bal, "default.http").unwrap();
        let s = pool.status();
        assert!(
            matches!(s[ids[0] as usize].breaker, BreakerState::Open { .. }),
            "{what}: breaker open: {s:?}"
        );
        assert_eq!(s[ids[1] as usize].bans.len(), 1, "{what}: ban kept");
        assert!(!s[ids[2] as usize].healthy, "{what}: still down");
    };
    // Another route changes: this pool is the same pool.
    let with_binance = with_exchanges(
        &pool_yaml(&[&a, &b, &c], ""),
        "binance: {http: {url: 'socks5://127.0.0.1:1'}}",
    );
    let report = bal.reload(config(&with_binance)).unwrap();
    assert!(
        matches!(&report.pools[..], [RouteChange::Kept { .. }]) && report.other_settings,
        "{report:?}"
    );
    check(&bal, [0, 1, 2], "another route edited");
    // The pool itself changes: new order, a new timeout.
    let report = bal
        .reload(config(&pool_yaml(&[&c, &a, &b], ", timeout_seconds: 20")))
        .unwrap();
    assert!(
        matches!(&report.pools[0], RouteChange::Changed { kept, .. } if kept.len() == 3),
        "{report}"
    );
    check(&bal, [1, 2, 0], "the pool edited and reordered");
}

/// round_robin → least_connections under live tunnels: the first picks after the
/// swap go by the true lease counts, tunnels opened before the reload included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_swap_by_reload_picks_by_the_live_counts() {
    let Some([a, b, c]) = crate::failover::three_microsocks().await else {
        return;
    };
    let target = TargetServer::start().await;
    let bal = balancer(&pool_yaml(&[&a, &b, &c], ""));
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(connect(&bal, None, &target.addr().into()).await.unwrap());
    }
    // Round robin gave two each; keep a: 2, b: 1, c: 0.
    held.retain(|t| upstream_id(t) != 2);
    let one_of_b = held.iter().position(|t| upstream_id(t) == 1).unwrap();
    held.remove(one_of_b);
    let report = bal
        .reload(config(&pool_yaml(
            &[&a, &b, &c],
            ", strategy: least_connections",
        )))
        .unwrap();
    assert!(!report.is_unchanged());
    let first = connect(&bal, None, &target.addr().into()).await.unwrap();
    assert_eq!(upstream_id(&first), 2, "c had no tunnel");
    let second = connect(&bal, None, &target.addr().into()).await.unwrap();
    assert_ne!(upstream_id(&second), 0, "a had the most");
}

/// A file whose strategy fails to load changes nothing: the error names the pool,
/// is logged once and counted, and the old routes keep serving. The same file again
/// reports "no change" and keeps the very same pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_strategy_rejects_the_whole_reload_and_the_same_file_is_no_change() {
    let (Some(a), Some(b)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start().await;
    let yaml = pool_yaml(&[&a], "");
    let bal = balancer(&yaml);
    let bad = with_exchanges(
        &yaml,
        &format!(
            "binance: {{http: {{pool: ['socks5://{}'], strategy: /nonexistent/x.wasm}}}}",
            b.addr
        ),
    );
    let (logs, _guard) = proxypool_tests::capture_logs();
    let e = bal.reload(config(&bad)).unwrap_err().to_string();
    assert!(e.contains("exchanges.binance.http"), "{e}");
    let logged = logs.take();
    assert_eq!(logged.matches("reload rejected").count(), 1, "{logged}");
    assert_eq!(bal.generation(), 1);
    assert!(proxypool::testing::pool(&bal, "exchanges.binance.http").is_none());
    assert!(!bal.last_reload().unwrap().ok);
    let metrics = bal.metrics().render();
    assert!(
        metrics.contains("proxypool_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );
    drop(connect(&bal, None, &target.addr().into()).await.unwrap());

    let (pool, selector) = proxypool::testing::pool(&bal, "default.http").unwrap();
    let version = pool.snapshot().version();
    let report = bal.reload(config(&yaml)).unwrap();
    assert!(report.is_unchanged());
    assert_eq!(report.to_string(), "no change");
    let (same_pool, same_selector) = proxypool::testing::pool(&bal, "default.http").unwrap();
    assert!(std::sync::Arc::ptr_eq(&selector, &same_selector));
    assert_eq!(same_pool.snapshot().version(), version);
    assert_eq!(same_pool.members()[0].picks(), 1, "its counts are the same");
    assert_eq!(bal.generation(), 1);
}

/// 100 reloads between two files while two tasks connect: no connect fails, and
/// afterwards the tasks, descriptors and metrics series are what they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_in_a_loop_under_load_fails_no_connect_and_leaks_nothing() {
    let Some([a, b, c]) = crate::failover::three_microsocks().await else {
        return;
    };
    let target = std::sync::Arc::new(TargetServer::start().await);
    let probes = ", health_check: {enabled: true, method: tcp, interval: 1}";
    let small = pool_yaml(&[&a, &b], "").replace(", health_check: {enabled: false}", probes);
    let big = pool_yaml(&[&a, &b, &c], "").replace(", health_check: {enabled: false}", probes);
    let bal = std::sync::Arc::new(balancer(&small));
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let series = |bal: &Balancer| bal.metrics().render().lines().count();
    // Settle: one connect, so every lazily made thing exists.
    drop(connect(&bal, None, &target.addr().into()).await.unwrap());
    let (fds0, tasks0, series0) = (fds(), tasks(), series(&bal));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (bal, target, stop) = (bal.clone(), target.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let c = connect(&bal, None, &target.addr().into()).await;
                    assert!(c.is_ok(), "connect {n} failed: {:?}", c.err());
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..100 {
        let next = if i % 2 == 0 { &big } else { &small };
        let bal = bal.clone();
        let next = config(next);
        let report = tokio::task::spawn_blocking(move || bal.reload(next))
            .await
            .unwrap()
            .unwrap();
        assert!(!report.is_unchanged(), "reload {i}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut connects = 0;
    for t in load {
        connects += t.await.unwrap();
    }
    assert!(connects > 0);
    assert_eq!(bal.generation(), 101);
    // Back on the first file: the same series; old checkers and tunnels wind down.
    assert_eq!(series(&bal), series0);
    proxypool_tests::assert_eventually!(
        tasks() <= tasks0 && fds() <= fds0,
        "tasks {} (were {tasks0}) and fds {} (were {fds0}) back",
        tasks(),
        fds()
    );
}

/// FR-4: `enabled: false` beside a list-shaped pool (or inside the mapping shape)
/// switches the pool off: the route takes its `url`. Switching it on again brings
/// the members back with what they had learned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_a_pool_off_uses_its_url_and_on_again_restores_its_members() {
    let (Some(a), Some(b)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start().await;
    let yaml = |enabled: &str| {
        format!(
            "proxy: {{enabled: true, exchanges: {{binance: {{http: {{url: 'socks5://{}', \
             pool: ['socks5://{}'], health_check: {{enabled: false}}{enabled}}}}}}}}}",
            b.addr, a.addr
        )
    };
    let bal = balancer(&yaml(""));
    let route = "exchanges.binance.http";
    let (pool, _) = proxypool::testing::pool(&bal, route).unwrap();
    let now = tokio::time::Instant::now();
    pool.report(
        0,
        "binance",
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(600)),
        },
        now,
    );
    pool.record_latency(0, Duration::from_millis(7));

    let report = bal.reload(config(&yaml(", enabled: false"))).unwrap();
    assert_eq!(
        report.pools,
        [RouteChange::SwitchedOff {
            route: route.into()
        }]
    );
    assert!(proxypool::testing::pool(&bal, route).is_none());
    let c = connect(&bal, Some("binance"), &target.addr().into())
        .await
        .unwrap();
    assert!(!c.pooled(), "a single proxy, not a pool");
    assert_eq!(target.peer_ips(), [b.egress], "through the route's url");

    let report = bal.reload(config(&yaml(""))).unwrap();
    assert_eq!(
        report.pools,
        [RouteChange::SwitchedOn {
            route: route.into()
        }]
    );
    let (pool, _) = proxypool::testing::pool(&bal, route).unwrap();
    assert_eq!(pool.status()[0].bans.len(), 1, "the ban came back");
    assert!(pool.members()[0].latency_us() > 0, "and the latency");
    // The mapping shape says the same; with no url the route goes direct.
    let off = config(&format!(
        "proxy: {{enabled: true, exchanges: {{binance: {{http: {{pool: {{enabled: false, proxies: ['socks5://{}']}}}}}}}}}}",
        a.addr
    ));
    assert!(
        off.route(Some("binance"), proxypool::config::Transport::Http)
            .is_direct()
    );
    assert_eq!(off.switched_off_pools().count(), 1);
}

/// FR-1: an exchange's pool with no eligible member sends its connects through the
/// default route, by default; the default route's own pool keeps `panic`, and so
/// does an exchange pool with no default to fall back to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_pool_all_down_falls_back_to_the_default_route() {
    use proxypool::config::{Transport, Upstream, WhenAllDown};
    let (Some(a), Some(d)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start().await;
    let yaml = crate::gateway::two_pools(&a, &d);
    let c = config(&yaml);
    let policy = |c: &Config, exchange| match c.route(exchange, Transport::Http).upstream {
        Some(Upstream::Pool(p)) => p.when_all_down,
        other => panic!("{other:?}"),
    };
    assert_eq!(policy(&c, Some("binance")), WhenAllDown::FallbackDefault);
    assert_eq!(policy(&c, None), WhenAllDown::Panic);
    let alone = config(&format!(
        "proxy: {{enabled: true, exchanges: {{binance: {{http: {{pool: ['socks5://{}']}}}}}}}}",
        a.addr
    ));
    assert_eq!(policy(&alone, Some("binance")), WhenAllDown::Panic);

    let bal = balancer(&yaml);
    proxypool::testing::pool(&bal, "exchanges.binance.http")
        .unwrap()
        .0
        .set_healthy(0, false);
    let c = connect(&bal, Some("binance"), &target.addr().into())
        .await
        .unwrap();
    assert_eq!(
        target.peer_ips(),
        [d.egress],
        "through the default route's pool"
    );
    assert_eq!(c.upstream().as_deref(), Some("default.http/0"));
}
