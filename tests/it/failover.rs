//! Failover, hedging, breakers, fault classes, all-down policies and bans, against
//! real microsocks proxies and in-process fault proxies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use proxypool::balancer::{BanReason, BreakerState, Outcome};
use proxypool::config::{ConfigBuilder, Transport};
use proxypool::strategy::{Limits, StrategyEngine};
use proxypool::{Balancer, ConnectError, Tunnel};
use proxypool::{Dialer, FaultClass, Target};
use proxypool_tests::assert_eventually;
use proxypool_tests::faults::{Fault, FaultProxy};
use proxypool_tests::servers::{RealProxy, microsocks};
use proxypool_tests::target::{GREETING, TargetServer};
use tokio::io::AsyncReadExt;

/// A balancer for `yaml`, with its health checks started on the current runtime.
pub fn balancer(yaml: &str) -> Balancer {
    static ENGINE: std::sync::OnceLock<StrategyEngine> = std::sync::OnceLock::new();
    let config = ConfigBuilder::new().yaml_str(yaml).build().unwrap();
    // A debug-built host needs a roomier strategy deadline than production's 1 ms.
    // One engine for every test: a debug build compiles a component in about a second.
    let engine = ENGINE.get_or_init(|| {
        StrategyEngine::try_new(Limits {
            deadline: Duration::from_millis(100),
            ..Limits::default()
        })
        .unwrap()
    });
    let b = Balancer::with_engine(config, Dialer::new(), engine.clone()).unwrap();
    b.start(&tokio::runtime::Handle::current());
    b
}

/// Connects and reads the target's greeting, so a returned tunnel is known to work.
pub async fn connect(
    b: &Balancer,
    exchange: Option<&str>,
    target: &Target,
) -> Result<Tunnel, ConnectError> {
    let mut c = b.connect(exchange, Transport::Http, target).await?;
    let mut greeting = [0u8; GREETING.len()];
    c.read_exact(&mut greeting).await.expect("greeting");
    assert_eq!(greeting, GREETING);
    Ok(c)
}

fn url(p: &RealProxy) -> String {
    format!("socks5://{}", p.addr)
}

/// Three microsocks, or `None` after a skip notice.
pub(crate) async fn three_microsocks() -> Option<[RealProxy; 3]> {
    Some([
        microsocks(None).await?,
        microsocks(None).await?,
        microsocks(None).await?,
    ])
}

fn member(b: &Balancer, route: &str, id: u32) -> proxypool::balancer::MemberStatus {
    proxypool::testing::pool(b, route).unwrap().0.status()[id as usize].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_proxies_fails_no_connection() {
    let Some([mut dead, b, c]) = three_microsocks().await else {
        return;
    };
    let target = TargetServer::start().await;
    let to: Target = target.addr().into();
    let bal = Arc::new(balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}', '{}', '{}'], \
         health_check: {{method: tcp, interval: 1, fast_interval_ms: 100, rise: 2, fall: 2}}}}}}}}",
        url(&dead),
        url(&b),
        url(&c)
    )));
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let through_dead = Arc::new(AtomicUsize::new(0));
    let dead_url = url(&dead);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (bal, stop, done, failed) =
                (bal.clone(), stop.clone(), done.clone(), failed.clone());
            let (through_dead, dead_url, to) = (through_dead.clone(), dead_url.clone(), to.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match bal.connect(Some("binance"), Transport::Http, &to).await {
                        Ok(mut c) => {
                            let via = c.via().map(|u| u.to_string());
                            let mut greeting = [0u8; GREETING.len()];
                            if let Err(e) = c.read_exact(&mut greeting).await {
                                // A tunnel already open when its proxy died is lost
                                // with it; that is not a failed connect.
                                assert_eq!(via, Some(dead_url.clone()), "{e}");
                            } else if via == Some(dead_url.clone()) {
                                through_dead.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(e) => {
                            eprintln!("connect failed: {e}");
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    assert_eventually!(done.load(Ordering::SeqCst) >= 100, "100 connects");
    dead.kill().await;
    let route = "default.http";
    // Probes confirm what the breaker saw at the first failure.
    assert_eventually!(!member(&bal, route, 0).healthy, "probes to mark it down");
    assert!(!member(&bal, route, 0).eligible);
    // Only picks already under way when it died went to the dead proxy (at most one
    // per task), plus at most one breaker trial; each moved on to another proxy.
    let failovers = bal.counters().failovers;
    assert!(failovers <= 9, "{failovers} failovers");
    let later = done.load(Ordering::SeqCst);
    assert_eventually!(
        done.load(Ordering::SeqCst) >= later + 300,
        "300 more connects"
    );
    assert_eq!(bal.counters().failovers, failovers, "no more picks of it");

    // Back after `rise` successful probes, and picked again.
    dead.restart().await;
    let before = through_dead.load(Ordering::SeqCst);
    assert_eventually!(
        member(&bal, route, 0).eligible,
        "the restarted proxy to be eligible"
    );
    assert_eventually!(
        through_dead.load(Ordering::SeqCst) > before,
        "a connect through it"
    );
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no client-visible failure"
    );
    assert!(
        !target
            .peer_ips()
            .iter()
            .any(|ip| ip.is_loopback() && ip.to_string() == "127.0.0.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_proxy_costs_one_hedge_delay_and_opens_its_breaker() {
    let Some(a) = microsocks(None).await else {
        return;
    };
    let Some(c) = microsocks(None).await else {
        return;
    };
    let hole = FaultProxy::start(Fault::Blackhole).await;
    let target = TargetServer::start().await;
    let to: Target = target.addr().into();
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}', '{}', '{}'], timeout_seconds: 30, \
         failover: {{hedge_min_ms: 20, hedge_max_ms: 300}}, health_check: {{enabled: false}}}}}}}}",
        url(&a),
        hole.url("socks5"),
        url(&c)
    ));
    for i in 0..9 {
        let conn = connect(&bal, None, &to).await.unwrap();
        // Against a 30 s timeout: nobody waited for the blackhole to time out.
        assert!(
            conn.handshake() < Duration::from_secs(3),
            "connect {i} took {:?}",
            conn.handshake()
        );
        assert_ne!(conn.via().unwrap().to_string(), hole.url("socks5"));
    }
    assert!(hole.accepted() >= 1, "the blackhole was picked");
    assert!(bal.counters().hedges_won >= 1);
    // The losing dial gets a short grace in the background, then counts as a fault.
    assert_eventually!(
        !matches!(
            member(&bal, "default.http", 1).breaker,
            BreakerState::Closed
        ),
        "the blackhole's breaker to open"
    );
    let status = member(&bal, "default.http", 1);
    assert!(status.reason.contains("after a hedge won"), "{status}");
}

/// The demo's "hedges 10 (won 322)": a failover after a loud failure was counted as
/// a won hedge.
#[tokio::test]
async fn a_failover_after_a_loud_failure_is_not_a_won_hedge() {
    let Some(good) = microsocks(None).await else {
        return;
    };
    let refuse = FaultProxy::start(Fault::Refuse).await;
    let target = TargetServer::start().await;
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}', '{}'], health_check: {{enabled: false}}}}}}}}",
        refuse.url("socks5"),
        url(&good)
    ));
    for _ in 0..4 {
        connect(&bal, None, &target.addr().into()).await.unwrap();
    }
    let c = bal.counters();
    assert!(c.failovers >= 1, "{c:?}");
    assert_eq!(c.hedges_won, 0, "{c:?}");
    assert!(c.hedges_won <= c.hedges);
}

#[tokio::test]
async fn a_refusing_destination_does_not_blame_the_proxy() {
    let proxy = FaultProxy::start(Fault::Socks5Reply(0x05)).await;
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}'], health_check: {{enabled: false}}}}}}}}",
        proxy.url("socks5")
    ));
    let err = connect(&bal, None, &"127.0.0.1:9".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.class(), FaultClass::Destination, "{err}");
    let status = member(&bal, "default.http", 0);
    assert!(status.eligible && status.healthy, "{status}");
    assert_eq!(status.breaker, BreakerState::Closed);
    assert_eq!(bal.counters().failovers, 0, "returned at once");
}

#[tokio::test]
async fn a_407_marks_the_proxy_misconfigured_and_the_connect_moves_on() {
    let Some(good) = microsocks(None).await else {
        return;
    };
    let rejecting = FaultProxy::start(Fault::HttpStatus(407)).await;
    let target = TargetServer::start().await;
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['http://user:hunter2@{}', '{}'], \
         health_check: {{enabled: false}}}}}}}}",
        rejecting.addr(),
        url(&good)
    ));
    let (logs, _guard) = proxypool_tests::capture_logs();
    for _ in 0..4 {
        let c = connect(&bal, None, &target.addr().into()).await.unwrap();
        assert_eq!(c.via().unwrap().to_string(), url(&good));
    }
    let status = member(&bal, "default.http", 0);
    assert!(status.misconfigured && !status.eligible, "{status}");
    assert!(status.healthy, "a config fault is not a health failure");
    assert_eq!(rejecting.accepted(), 1, "tried once, then out");
    let logs = logs.contents();
    assert!(logs.contains("misconfigured"), "{logs}");
    assert!(!logs.contains("hunter2") && !status.to_string().contains("hunter2"));
}

async fn mark_all_down(bal: &Balancer, route: &str) {
    let (pool, _) = proxypool::testing::pool(bal, route).unwrap();
    for id in 0..pool.members().len() as u32 {
        pool.set_healthy(id, false);
    }
}

#[tokio::test]
async fn panic_policy_tries_the_proxies_anyway() {
    let Some(a) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}'], when_all_down: panic, \
         health_check: {{enabled: false}}}}}}}}",
        url(&a)
    ));
    mark_all_down(&bal, "default.http").await;
    let c = connect(&bal, None, &target.addr().into()).await.unwrap();
    assert_eq!(c.via().unwrap().to_string(), url(&a));
    assert_eq!(bal.counters().all_down[0], 1);
    assert_eq!(
        target.peer_ips(),
        [a.egress],
        "through the proxy, never direct"
    );
}

#[tokio::test]
async fn fallback_default_policy_uses_the_default_route() {
    let Some(a) = microsocks(None).await else {
        return;
    };
    let Some(fallback) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: '{}'}}, exchanges: {{binance: {{http: {{pool: ['{}'], \
         when_all_down: fallback_default, health_check: {{enabled: false}}}}}}}}}}",
        url(&fallback),
        url(&a)
    ));
    mark_all_down(&bal, "exchanges.binance.http").await;
    let c = connect(&bal, Some("binance"), &target.addr().into())
        .await
        .unwrap();
    assert_eq!(c.via().unwrap().to_string(), url(&fallback));
    assert_eq!(target.peer_ips(), [fallback.egress], "never direct");
}

/// A big pool's "every proxy is out" names a few members and counts the rest, so that
/// one failing connect is one readable log line, not a page.
#[tokio::test]
async fn a_big_pool_all_down_names_eight_members_and_counts_the_rest() {
    let members: Vec<String> = (1..=20)
        .map(|i| format!("'socks5://127.0.0.{i}:9'"))
        .collect();
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: [{}], when_all_down: fail, \
         health_check: {{enabled: false}}}}}}}}",
        members.join(", ")
    ));
    mark_all_down(&bal, "default.http").await;
    let err = connect(&bal, None, &"127.0.0.1:9".parse().unwrap())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(text.matches("unhealthy").count(), 8, "{text}");
    assert!(text.ends_with("; and 12 more"), "{text}");
}

#[tokio::test]
async fn fail_policy_names_the_pool_and_why_each_proxy_is_out() {
    let Some(a) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://trader:s3cret@{}', \
         {{url: 'socks5://127.0.0.1:9', enabled: false}}], when_all_down: fail, \
         health_check: {{enabled: false}}}}}}}}",
        a.addr
    ));
    mark_all_down(&bal, "default.http").await;
    let err = connect(&bal, None, &target.addr().into())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConnectError::AllDown { .. }), "{text}");
    assert!(
        text.starts_with("default.http: every proxy is out (fail)"),
        "{text}"
    );
    assert!(
        text.contains("unhealthy") && text.contains("disabled"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        target.peer_ips().is_empty(),
        "no connection at all, direct or not"
    );
}

#[tokio::test]
async fn a_ban_for_one_exchange_leaves_the_proxy_serving_others() {
    let Some(a) = microsocks(None).await else {
        return;
    };
    let Some(b) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let to: Target = target.addr().into();
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}', '{}'], health_check: {{enabled: false}}}}}}}}",
        url(&a),
        url(&b)
    ));
    let first = connect(&bal, Some("binance"), &to).await.unwrap();
    let banned = first.via().unwrap().to_string();
    first.report(Outcome::Banned {
        retry_after: Some(Duration::from_secs(600)),
    });
    for _ in 0..6 {
        let c = connect(&bal, Some("binance"), &to).await.unwrap();
        assert_ne!(c.via().unwrap().to_string(), banned, "banned for binance");
    }
    let mut coinbase = Vec::new();
    for _ in 0..6 {
        coinbase.push(
            connect(&bal, Some("coinbase"), &to)
                .await
                .unwrap()
                .via()
                .unwrap()
                .to_string(),
        );
    }
    assert!(
        coinbase.contains(&banned),
        "still serves coinbase: {coinbase:?}"
    );
    let id = if banned == url(&a) { 0 } else { 1 };
    let status = member(&bal, "default.http", id);
    assert_eq!(status.bans, [("binance".to_owned(), BanReason::Banned)]);
    assert!(
        status.to_string().contains("banned for binance"),
        "{status}"
    );
}
