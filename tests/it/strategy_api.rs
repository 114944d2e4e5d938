//! Changing a pool's strategy through the API: the same admission as a file swap.

use std::time::Duration;

use proxypool::Balancer;
use proxypool::Dialer;
use proxypool::config::{BuiltinStrategy, ConfigBuilder, ProxyEntry, StrategyRef, Transport};
use proxypool::strategy::{Limits, builtin_bytes};
use proxypool::testing::PickContext;

const FIRST: PickContext<'static> = PickContext::first("binance", Transport::Http);
const ROUTE: &str = "default.http";

fn balancer() -> Balancer {
    let config = ConfigBuilder::new()
        .enabled(true)
        .default_proxy(
            Transport::Http,
            ProxyEntry::pool((0..3).map(|i| format!("socks5://127.0.0.1:{}", 1080 + i))),
        )
        .build()
        .unwrap();
    // Production limits, except a deadline a debug-built host meets on the canaries.
    let limits = Limits {
        deadline: Duration::from_millis(100),
        ..Limits::default()
    };
    Balancer::with_limits(config, Dialer::new(), limits).unwrap()
}

fn picks(b: &Balancer, n: usize) -> Vec<u32> {
    let (pool, selector) = proxypool::testing::pool(b, ROUTE).unwrap();
    (0..n)
        .map(|_| selector.pick(&pool, FIRST).unwrap().id())
        .collect()
}

#[test]
fn strategy_changes_through_the_api_go_through_admission() {
    let b = balancer();
    assert_eq!(picks(&b, 6), [0, 1, 2, 0, 1, 2]);

    // A built-in: least_connections follows the leases held.
    b.set_strategy(
        ROUTE,
        &StrategyRef::Builtin(BuiltinStrategy::LeastConnections),
    )
    .unwrap();
    let (pool, selector) = proxypool::testing::pool(&b, ROUTE).unwrap();
    let held = [selector.pick(&pool, FIRST).unwrap(), pool.lease(1).unwrap()];
    assert_eq!(held[0].id(), 0);
    assert_eq!(picks(&b, 1), [2], "0 and 1 carry a lease each");
    let generation = selector.stats().generation;

    // A broken file is rejected and the current strategy keeps serving.
    let dir = tempfile::tempdir().unwrap();
    let trap = dir.path().join("trap.wasm");
    std::fs::write(
        &trap,
        include_bytes!(concat!(env!("OUT_DIR"), "/trap.wasm")),
    )
    .unwrap();
    let err = b
        .set_strategy(ROUTE, &StrategyRef::Wasm(trap.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("canary"), "{err}");
    let missing = StrategyRef::Wasm(dir.path().join("missing.wasm"));
    let err = b.set_strategy(ROUTE, &missing).unwrap_err();
    assert!(err.to_string().contains("missing.wasm"), "{err}");
    assert_eq!(selector.stats().generation, generation);
    assert_eq!(picks(&b, 1), [2], "still least_connections");

    // A good file goes live and is watched from then on.
    let custom = dir.path().join("custom.wasm");
    std::fs::write(
        &custom,
        include_bytes!(concat!(env!("OUT_DIR"), "/priority.wasm")),
    )
    .unwrap();
    b.set_strategy(ROUTE, &StrategyRef::Wasm(custom.clone()))
        .unwrap();
    assert_eq!(picks(&b, 3), [0, 0, 0], "priority: the first eligible");
    let tmp = dir.path().join("custom.wasm.tmp");
    std::fs::write(&tmp, builtin_bytes(BuiltinStrategy::RoundRobin)).unwrap();
    std::fs::rename(&tmp, &custom).unwrap();
    proxypool_tests::wait::blocking(
        "the swapped file to go live",
        Duration::from_secs(30),
        || picks(&b, 3) != [0, 0, 0],
    );

    let err = b
        .set_strategy(
            "exchanges.nope.http",
            &StrategyRef::Builtin(BuiltinStrategy::Random),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("no pool at exchanges.nope.http"),
        "{err}"
    );
    drop(held);
}
