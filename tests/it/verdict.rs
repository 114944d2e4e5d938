//! Health verdicts as WebAssembly components: swapped live, with admission, and a
//! faulting one has no opinion.

use proxypool::config::VerdictRef;
use proxypool::strategy::threshold_bytes;
use proxypool::{Balancer, ConnectError};
use proxypool_tests::assert_eventually;
use proxypool_tests::servers::microsocks;
use proxypool_tests::target::TargetServer;

use crate::failover::{balancer, connect};

const ROUTE: &str = "default.http";
const ALWAYS_DOWN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/verdict_down.wasm"));
const TRAPS_ON_1: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/verdict_trap.wasm"));
const FAST: &str =
    "interval: 1, fast_interval_ms: 100, timeout_seconds: 1, retry_count: 1, rise: 2, fall: 2";

fn states(b: &Balancer) -> Vec<(bool, bool)> {
    proxypool::testing::pool(b, ROUTE)
        .unwrap()
        .0
        .status()
        .iter()
        .map(|m| (m.probed, m.healthy))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_unhealthy_verdict_empties_the_pool_live_and_the_default_restores_it() {
    let Some(a) = microsocks(None).await else {
        return;
    };
    let Some(b) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}', 'socks5://{}'], when_all_down: fail, \
         health_check: {{method: tcp, {FAST}}}}}}}}}",
        a.addr, b.addr
    ));
    assert_eventually!(
        states(&bal) == [(true, true); 2],
        "both up by the default verdict"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdict.wasm");
    std::fs::write(&path, ALWAYS_DOWN).unwrap();
    bal.set_verdict(ROUTE, &VerdictRef::Wasm(path.clone()))
        .unwrap();
    assert_eventually!(
        states(&bal) == [(true, false); 2],
        "the custom verdict to take both down"
    );
    let err = connect(&bal, None, &target.addr().into())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::AllDown { .. }), "{err}");

    // A broken file is rejected; the swapped-in verdict keeps serving.
    let tmp = dir.path().join("verdict.wasm.tmp");
    std::fs::write(&tmp, b"not a component").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    // Then the default, swapped in through the watched file.
    std::fs::write(&tmp, threshold_bytes()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eventually!(
        states(&bal) == [(true, true); 2],
        "the default verdict to bring both back"
    );
    connect(&bal, None, &target.addr().into()).await.unwrap();
}

#[tokio::test]
async fn a_verdict_that_does_not_implement_the_world_is_refused() {
    let bal = balancer(
        "proxy: {enabled: true, default: {http: {pool: ['socks5://127.0.0.1:9'], health_check: {enabled: false}}}}",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strategy.wasm");
    // A selection strategy is not a verdict.
    std::fs::write(
        &path,
        proxypool::strategy::builtin_bytes(proxypool::config::BuiltinStrategy::RoundRobin),
    )
    .unwrap();
    let err = bal.set_verdict(ROUTE, &VerdictRef::Wasm(path)).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not implement proxypool:strategy/health-verdict"),
        "{err}"
    );
}

#[tokio::test]
async fn a_faulting_verdict_has_no_opinion() {
    let Some(mut a) = microsocks(None).await else {
        return;
    };
    let Some(mut b) = microsocks(None).await else {
        return;
    };
    let (logs, _guard) = proxypool_tests::capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdict.wasm");
    std::fs::write(&path, TRAPS_ON_1).unwrap();
    let bal = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}', 'socks5://{}'], \
         health_check: {{method: tcp, verdict: '{}', {FAST}}}}}}}}}",
        a.addr,
        b.addr,
        path.display()
    ));
    a.kill().await;
    b.kill().await;
    assert_eventually!(states(&bal)[0] == (true, false), "proxy 0 to go down");
    assert_eventually!(
        logs.contents().contains("health verdict fault, no opinion"),
        "the fault logged"
    );
    // Proxy 1's verdict faults on every probe: its state never changes.
    assert_eq!(states(&bal)[1], (false, true));
    let metrics = bal.metrics().render();
    let faults: f64 = metrics
        .lines()
        .find(|l| l.starts_with("proxypool_verdict_faults_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(faults >= 1.0, "{metrics}");
}
