//! The core under any mix of faults: cancelled connects give their breaker trials
//! back, and a randomized run ends with every healthy proxy in rotation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use proxypool::Target;
use proxypool::balancer::BreakerState;
use proxypool::testing::{Pool, splitmix64};
use proxypool::{Balancer, ConnectError, Transport, Tunnel};
use proxypool_tests::assert_eventually;
use proxypool_tests::faults::{Fault, FaultProxy};
use proxypool_tests::servers::microsocks;
use proxypool_tests::target::TargetServer;
use tokio::time::Instant;

use crate::failover::balancer;

const ROUTE: &str = "default.http";

/// Polls a connect `polls` times at most, then drops it: `None` if it was cancelled.
struct CancelAfter<F> {
    inner: Pin<Box<F>>,
    polls: usize,
}

impl<F: Future> Future for CancelAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            return Poll::Ready(None);
        }
        self.polls -= 1;
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Pending,
        }
    }
}

async fn connect_cancelled_after(
    b: &Balancer,
    to: &Target,
    polls: usize,
) -> Option<Result<Tunnel, ConnectError>> {
    let fut = b.connect(None, Transport::Http, to);
    let limited = CancelAfter {
        inner: Box::pin(fut),
        polls,
    };
    tokio::time::timeout(Duration::from_secs(30), limited)
        .await
        .expect("a connect or its cancellation within 30 s")
}

/// Opens and cools down every breaker, so that each member is half-open with its
/// trial free: the state a cancelled connect could leave stuck.
async fn half_open_all(pool: &Pool) {
    for id in 0..pool.members().len() as u32 {
        // A recovery closes the breaker and restarts its backoff at the 10 ms base.
        pool.set_health(id, false, "test");
        pool.set_health(id, true, "test");
        pool.record_failure(id, Instant::now(), "test");
    }
    assert_eventually!(
        {
            pool.poll(Instant::now());
            pool.members()
                .iter()
                .all(|m| m.breaker() == BreakerState::HalfOpen { trial: false })
        },
        "every breaker half-open"
    );
}

fn stuck(pool: &Pool) -> Vec<String> {
    pool.status()
        .into_iter()
        .filter(|m| m.breaker == (BreakerState::HalfOpen { trial: true }) || !m.eligible)
        .map(|m| m.to_string())
        .collect()
}

fn pool_yaml(urls: &[String]) -> String {
    format!(
        "proxy: {{enabled: true, default: {{http: {{pool: [{}], timeout_seconds: 5, \
         breaker: {{cooldown_ms: 10, max_cooldown_seconds: 1}}, \
         failover: {{hedge_min_ms: 20, hedge_max_ms: 50}}, health_check: {{enabled: false}}}}}}}}",
        urls.iter()
            .map(|u| format!("'{u}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_connect_at_every_await_point_gives_its_trials_back() {
    let Some(healthy) = microsocks(None).await else {
        return;
    };
    let hole = FaultProxy::start(Fault::Blackhole).await;
    let target = TargetServer::start().await;
    let to: Target = target.addr().into();
    // The blackhole first: a connect waits on it, hedges, and races the healthy one,
    // so its await points cover a pending dial, the hedge timer and two dials at once.
    let bal = balancer(&pool_yaml(&[
        hole.url("socks5"),
        format!("socks5://{}", healthy.addr),
    ]));
    let pool = proxypool::testing::pool(&bal, ROUTE).unwrap().0.clone();
    let mut polls = 0;
    loop {
        half_open_all(&pool).await;
        let outcome = connect_cancelled_after(&bal, &to, polls).await;
        let done = outcome.is_some();
        if let Some(r) = outcome {
            let c = r.expect("the healthy proxy connects");
            assert_eq!(
                c.via().unwrap().to_string(),
                format!("socks5://{}", healthy.addr)
            );
        }
        // Dropped attempts gave their trials back at once; a judged loser settles in
        // the background, so the blackhole may be open (it earned it) but not stuck.
        let healthy_member = &pool.status()[1];
        assert!(
            healthy_member.eligible,
            "after {polls} polls: {healthy_member}"
        );
        assert_eventually!(
            {
                pool.poll(Instant::now());
                stuck(&pool).is_empty()
            },
            "no trial stuck after {polls} polls: {:?}",
            stuck(&pool)
        );
        if done {
            break;
        }
        polls += 1;
        assert!(polls < 1000, "the connect never finished");
    }
    assert!(
        polls >= 2,
        "the connect had await points to cancel at ({polls})"
    );
}

/// A sibling that returns a destination fault ends the connect; the blackholed dial
/// still pending is dropped, and its half-open trial comes back with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_fault_returns_and_the_pending_sibling_gives_its_trial_back() {
    let hole = FaultProxy::start(Fault::Blackhole).await;
    let refuses_dest = FaultProxy::start(Fault::Socks5Reply(0x05)).await;
    let bal = balancer(&pool_yaml(&[
        hole.url("socks5"),
        refuses_dest.url("socks5"),
    ]));
    let pool = proxypool::testing::pool(&bal, ROUTE).unwrap().0.clone();
    half_open_all(&pool).await;
    let e = bal
        .connect(None, Transport::Http, &"127.0.0.1:9".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.class(), proxypool::FaultClass::Destination, "{e}");
    assert_eq!(hole.accepted(), 1, "the blackhole was dialed first");
    assert_eq!(
        pool.members()[0].breaker(),
        BreakerState::HalfOpen { trial: false },
        "the dropped dial gave its trial back"
    );
    assert!(pool.snapshot().is_eligible(0));
    assert_eq!(
        pool.members()[1].breaker(),
        BreakerState::HalfOpen { trial: false },
        "a target-tied answer neither charges the proxy nor clears it: its trial is given back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancellations_with_a_fixed_seed_leave_every_healthy_proxy_eligible() {
    let (Some(a), Some(b)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let hole = FaultProxy::start(Fault::Blackhole).await;
    let refuse = FaultProxy::start(Fault::Refuse).await;
    let reset = FaultProxy::start(Fault::ResetMidHandshake).await;
    let target = TargetServer::start().await;
    let to: Target = target.addr().into();
    let urls = [
        format!("socks5://{}", a.addr),
        hole.url("socks5"),
        refuse.url("socks5"),
        format!("socks5://{}", b.addr),
        reset.url("socks5"),
    ];
    let bal = balancer(&pool_yaml(&urls));
    let pool = proxypool::testing::pool(&bal, ROUTE).unwrap().0.clone();
    let mut rng = 0x8_2026_u64;
    let (mut finished, mut cancelled) = (0, 0);
    for _ in 0..200 {
        let r = splitmix64(&mut rng);
        if r.is_multiple_of(7) {
            half_open_all(&pool).await;
        }
        let polls = (splitmix64(&mut rng) % 12) as usize;
        match connect_cancelled_after(&bal, &to, polls).await {
            Some(Ok(c)) => {
                finished += 1;
                let via = c.via().unwrap().to_string();
                assert!(via == urls[0] || via == urls[3], "{via}");
            }
            Some(Err(e)) => panic!("two healthy proxies, yet: {e}"),
            None => cancelled += 1,
        }
    }
    assert!(
        finished > 10 && cancelled > 10,
        "{finished} finished, {cancelled} cancelled"
    );
    for id in [0usize, 3] {
        assert_eventually!(
            {
                pool.poll(Instant::now());
                pool.status()[id].eligible
            },
            "healthy member {id} eligible: {}",
            pool.status()[id]
        );
    }
    // Losers judged in the background hold their trials for their grace, no longer.
    assert_eventually!(
        {
            pool.poll(Instant::now());
            pool.status()
                .iter()
                .all(|m| m.breaker != (BreakerState::HalfOpen { trial: true }) && m.active == 0)
        },
        "no trial held and no lease left: {:?}",
        stuck(&pool)
    );
}

/// Every pool of three from the member kinds this process can build, healthy members
/// last: one connect each, through a fresh balancer (no history, no probes).
async fn run_fault_matrix() -> usize {
    use proxypool_tests::matrix::{Healthy, Kind, Members, available_kinds, combinations, label};
    let Some(healthy) = Healthy::start().await else {
        return 0;
    };
    let target = TargetServer::start().await;
    let to: Target = target.addr().into();
    let egresses = healthy.egresses();
    let combos = combinations(&available_kinds());
    for combo in &combos {
        let name = label(combo);
        let members = Members::start(*combo, &healthy).await;
        let bal = balancer(&members.yaml("{hedge_min_ms: 100, hedge_max_ms: 100}"));
        let before = target.peer_ips().len();
        let c = crate::failover::connect(&bal, None, &to)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let via = c.via().unwrap().to_string();
        let carrier = members
            .urls
            .iter()
            .position(|u| *u == via)
            .unwrap_or_else(|| panic!("{name}: via {via}"));
        assert_eq!(combo[carrier], Kind::Healthy, "{name}: carried by {via}");
        let healthy_before = combo[..carrier]
            .iter()
            .filter(|k| **k == Kind::Healthy)
            .count();
        let new_peers = target.peer_ips()[before..].to_vec();
        assert_eq!(
            new_peers,
            [egresses[healthy_before]],
            "{name}: exactly one tunnel, from the healthy member"
        );
        for (i, kind, proxy) in &members.faults {
            assert!(
                proxy.accepted() <= 1,
                "{name}: member {i} ({}) tried {} times",
                kind.name(),
                proxy.accepted()
            );
        }
        let counters = bal.counters();
        let dials = 1 + counters.failovers + counters.hedges;
        assert!(dials <= 3, "{name}: {dials} dials for three members");
        assert!(
            dials as usize > carrier.min(combo.iter().position(|k| *k == Kind::Healthy).unwrap()),
            "{name}: every member before the first healthy one was tried"
        );
    }
    combos.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_every_connect_succeeds_through_the_healthy_member() {
    let n = run_fault_matrix().await;
    if std::env::var_os(proxypool_tests::matrix::IN_NETNS_ENV).is_none() && n > 0 {
        assert_eq!(n, 28, "7 kinds: every multiset of 3 with a healthy member");
    }
}

/// The same matrix with the SYN-dropping kind, in a network namespace of the test's
/// own (root, `ip` and `nft` needed; skipped with a message otherwise). The test
/// runs itself again inside the namespace.
#[test]
fn fault_matrix_with_dropped_syns_in_a_network_namespace() {
    use proxypool_tests::matrix::{IN_NETNS_ENV, Netns, netns_unavailable};
    const NAME: &str = "hardening::fault_matrix_with_dropped_syns_in_a_network_namespace";
    if std::env::var_os(IN_NETNS_ENV).is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let n = rt.block_on(run_fault_matrix());
        assert_eq!(n, 36, "8 kinds: every multiset of 3 with a healthy member");
        return;
    }
    if let Some(why) = netns_unavailable() {
        eprintln!("SKIP: the SYN-drop matrix needs a network namespace: {why}");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIP: the SYN-drop matrix cannot make a network namespace here: {e}");
            return;
        }
    };
    let exe = std::env::current_exe().unwrap();
    let out = ns
        .command(&exe)
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .output()
        .expect("run inside the namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the inner run ran: {stdout}");
}

/// `when_all_down: panic` dials proxies the pool thinks are down; if they are
/// blackholes, the connect still ends at its deadline, not at each proxy's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_policy_keeps_the_connect_deadline() {
    let holes = [
        FaultProxy::start(Fault::Blackhole).await,
        FaultProxy::start(Fault::Blackhole).await,
    ];
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}', '{}'], timeout_seconds: 300, \
         when_all_down: panic, failover: {{deadline_seconds: 1}}, \
         breaker: {{cooldown_ms: 3600000, max_cooldown_seconds: 3600}}, health_check: {{enabled: false}}}}}}}}",
        holes[0].url("socks5"),
        holes[1].url("socks5")
    ));
    let pool = proxypool::testing::pool(&bal, ROUTE).unwrap().0.clone();
    for id in 0..2 {
        pool.record_failure(id, Instant::now(), "test");
    }
    assert!(pool.snapshot().eligible().is_empty());
    let started = std::time::Instant::now();
    let e = bal
        .connect(None, Transport::Http, &"127.0.0.1:9".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::Deadline { .. }), "{e}");
    assert!(
        holes[0].accepted() + holes[1].accepted() >= 1,
        "panic mode dialed"
    );
    // One deadline, against a 300 s per-proxy timeout.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// `when_all_down: panic` charges what it dials as every connect does: a proxy that
/// refuses our credentials is marked misconfigured, and the next member carries the
/// connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_policy_charges_the_proxies_it_dials() {
    let (Some(locked), Some(open)) = (
        microsocks(Some(("alice", "right"))).await,
        microsocks(None).await,
    ) else {
        return;
    };
    let target = TargetServer::start().await;
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://alice:wrong@{}', 'socks5://{}'], \
         when_all_down: panic, breaker: {{cooldown_ms: 3600000, max_cooldown_seconds: 3600}}, \
         health_check: {{enabled: false}}}}}}}}",
        locked.addr, open.addr
    ));
    let pool = proxypool::testing::pool(&bal, ROUTE).unwrap().0.clone();
    for id in 0..2 {
        pool.record_failure(id, Instant::now(), "test");
    }
    assert!(pool.snapshot().eligible().is_empty());
    // The panic rotor starts at the first member: two connects dial it at least once.
    for _ in 0..2 {
        crate::failover::connect(&bal, None, &target.addr().into())
            .await
            .expect("the open member carries it");
    }
    let status = pool.status();
    assert!(status[0].misconfigured, "{:?}", status[0]);
    assert!(!status[1].misconfigured);
}

/// Durations no configuration file could hold, given in code: nothing overflows,
/// nothing spins, and the pool still works.
#[tokio::test(start_paused = true)]
async fn a_pool_spec_with_absurd_durations_is_bounded() {
    use proxypool::balancer::Outcome;
    use proxypool::config::{ConfigBuilder, MAX_BAN, MAX_DURATION, Upstream};
    let config = ConfigBuilder::new()
        .yaml_str(
            "proxy: {enabled: true, default: {http: {pool: ['socks5://a:1', 'socks5://b:1']}}}",
        )
        .build()
        .unwrap();
    let Some(Upstream::Pool(spec)) = config.route(None, Transport::Http).upstream else {
        panic!("a pool");
    };
    let mut spec = (**spec).clone();
    spec.timeout = Duration::MAX;
    spec.health_check.interval = Duration::ZERO;
    spec.health_check.fast_interval = Duration::ZERO;
    spec.health_check.timeout = Duration::MAX;
    spec.breaker.cooldown = Duration::MAX;
    spec.breaker.max_cooldown = Duration::MAX;
    spec.breaker.failures = 0;
    spec.failover.deadline = Some(Duration::MAX);
    spec.failover.hedge = Some((Duration::MAX, Duration::ZERO));
    spec.bans.banned = Duration::MAX;
    let pool = Pool::new(ROUTE, &spec);
    let s = pool.spec();
    assert_eq!(s.timeout, MAX_DURATION);
    assert!(s.health_check.interval > Duration::ZERO);
    assert_eq!(s.breaker.failures, 1);
    assert_eq!(s.failover.deadline, Some(MAX_DURATION));
    let (lo, hi) = s.failover.hedge.unwrap();
    assert!(lo <= hi && hi <= MAX_DURATION);
    assert_eq!(s.bans.banned, MAX_BAN);
    let now = Instant::now();
    pool.record_failure(0, now, "refused");
    let BreakerState::Open { until } = pool.members()[0].breaker() else {
        panic!("open");
    };
    assert!(until - now <= MAX_DURATION.mul_f64(1.2));
    pool.report(1, "binance", Outcome::Banned { retry_after: None }, now);
    pool.report(
        1,
        "kraken",
        Outcome::RateLimited {
            retry_after: Some(Duration::MAX),
        },
        now,
    );
    assert!(
        pool.snapshot()
            .bans()
            .iter()
            .all(|b| b.until == Some(now + MAX_BAN))
    );
}

#[test]
fn targets_refuse_line_breaks_nul_and_over_long_names() {
    use proxypool::Target;
    for bad in ["a\r\nHost: evil", "a\nb", "a\0b", "a b", ""] {
        assert!(Target::try_new(bad, 443).is_err(), "{bad:?}");
        assert!(format!("{bad}:443").parse::<Target>().is_err(), "{bad:?}");
    }
    let long = "a".repeat(254);
    assert!(Target::try_new(long.as_str(), 443).is_err());
    assert!(Target::try_new("a".repeat(253), 443).is_ok());
    assert!(Target::try_new("h", 0).is_err(), "port 0");
    assert_eq!(Target::try_new("[::1]", 443).unwrap().host(), "::1");
    let e = "x\r\ny:1".parse::<Target>().unwrap_err().to_string();
    assert!(!e.contains('\n') && !e.contains('\r'), "{e}");
}

#[test]
fn a_health_check_url_or_target_with_a_line_break_is_refused() {
    use proxypool::config::ConfigBuilder;
    for (hc, path) in [
        (
            r#"{method: http, url: "http://h/\r\nX-Evil: 1"}"#,
            "health_check.url",
        ),
        (
            r#"{method: http, url: "http://a\u0000b/"}"#,
            "health_check.url",
        ),
        (
            r#"{method: http, url: "http://user:pw@h/"}"#,
            "health_check.url",
        ),
        (
            r#"{method: handshake, target: "h\nx:443"}"#,
            "health_check.target",
        ),
    ] {
        let yaml = format!(
            "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://a:1'], health_check: {hc}}}}}}}"
        );
        let e = ConfigBuilder::new().yaml_str(&yaml).build().unwrap_err();
        assert!(e.to_string().contains(path), "{hc}: {e}");
    }
}

#[test]
fn strategy_limits_from_code_are_bounded() {
    use proxypool::strategy::{Limits, MAX_CALL_DEADLINE, StrategyEngine};
    let e = StrategyEngine::try_new(Limits {
        deadline: Duration::MAX,
        update_deadline: Duration::ZERO,
        memory: usize::MAX,
        instances: 0,
        memories: 0,
        tables: 0,
        table_elements: 0,
    })
    .unwrap();
    let l = e.limits();
    assert_eq!(l.deadline, MAX_CALL_DEADLINE);
    assert!(l.update_deadline > Duration::ZERO);
    assert!(l.memory <= 4 << 30 && l.memories == 1 && l.instances == 1);
}
