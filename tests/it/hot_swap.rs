//! Hot swap under load: the strategy file is replaced while two threads pick.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proxypool::config::{BuiltinStrategy, Transport};
use proxypool::strategy::{Limits, StrategyEngine, builtin_bytes};
use proxypool::testing::{PickContext, Selector, StrategyWatch};

const FIRST: PickContext<'static> = PickContext::first("binance", Transport::Http);

/// Replaces `path` atomically: write beside it, then rename over it.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(what: &str, check: impl Fn() -> bool) {
    proxypool_tests::wait::blocking(what, Duration::from_secs(30), check);
}

#[test]
fn hot_swap_under_load_never_fails_a_pick() {
    // Admission runs at production limits but with a deadline a debug-built host can
    // meet on the 10,000-proxy canary.
    let engine = StrategyEngine::try_new(Limits {
        deadline: Duration::from_millis(100),
        ..Limits::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.wasm");
    let good = BuiltinStrategy::ALL.map(builtin_bytes);
    let bad: [&[u8]; 5] = [
        b"not a component",
        include_bytes!(concat!(env!("OUT_DIR"), "/trap.wasm")),
        include_bytes!(concat!(env!("OUT_DIR"), "/spin.wasm")),
        include_bytes!(concat!(env!("OUT_DIR"), "/wasi_import.wasm")),
        include_bytes!(concat!(env!("OUT_DIR"), "/out_of_range.wasm")),
    ];
    replace(&path, good[0]);
    let p = proxypool_tests::pool_of(5);
    let selector = Arc::new(Selector::new(
        engine.clone(),
        engine.admit(good[0]).unwrap(),
        BuiltinStrategy::RoundRobin,
        1,
    ));
    let watch = StrategyWatch::start(engine, selector.clone(), &path).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let picks = Arc::new(AtomicU64::new(0));
    let pickers: Vec<_> = (0..2)
        .map(|_| {
            let (p, s, stop, failures, picks) = (
                p.clone(),
                selector.clone(),
                stop.clone(),
                failures.clone(),
                picks.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match s.pick(&p, FIRST) {
                        Ok(_) => picks.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    let mut last_good = good[0];
    for i in 0..20 {
        let (installed, rejected) = (
            watch.counters().installed.load(Ordering::Relaxed),
            watch.counters().rejected.load(Ordering::Relaxed),
        );
        if i % 2 == 0 {
            // Never the one already live, so that it is a real change.
            let next = good[(i / 2 + 1) % 3];
            replace(&path, next);
            last_good = next;
            wait_for("the good file to go live", || {
                watch.counters().installed.load(Ordering::Relaxed) == installed + 1
            });
        } else {
            replace(&path, bad[(i / 2) % bad.len()]);
            wait_for("the bad file to be rejected", || {
                watch.counters().rejected.load(Ordering::Relaxed) == rejected + 1
            });
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in pickers {
        t.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(picks.load(Ordering::Relaxed) > 0);
    assert_eq!(watch.counters().installed.load(Ordering::Relaxed), 10);
    assert_eq!(watch.counters().rejected.load(Ordering::Relaxed), 10);
    let stats = selector.stats();
    assert_eq!(stats.generation, 11, "{stats:?}");
    use sha2_check::sha256;
    assert_eq!(
        selector.strategy_hash(),
        sha256(last_good),
        "the last good file serves"
    );
    assert_eq!(stats.faults, 0, "bad files never went live: {stats:?}");
}

mod sha2_check {
    /// The hash the selector reports for a component, computed independently.
    pub fn sha256(bytes: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(bytes).into()
    }
}
