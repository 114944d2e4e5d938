//! Pick latency percentiles: each reference strategy through WebAssembly and natively,
//! at N = 10, 100, 1,000 and 10,000, on 1 and 2 threads. Prints a table.
//!
//! `cargo bench -p proxypool --bench pick [-- STRATEGY]` (e.g. `-- least_connections`)

// A percentile harness, not criterion: criterion reports means, the goal is on p99.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use proxypool::config::{BuiltinStrategy, Transport};
use proxypool::strategy::{Limits, StrategyEngine};
use proxypool::testing::Pool;
use proxypool::testing::{LeaseCount, Native, PickContext, Selector};

const PICKS: usize = 200_000;

const FIRST: PickContext<'static> = PickContext::first("binance", Transport::Http);

fn pool(n: usize) -> Pool {
    Pool::from_urls(
        "default.http",
        (0..n).map(|i| format!("socks5://p{i}:1080")),
    )
    .unwrap()
}

fn percentiles(mut ns: Vec<u64>) -> (u64, u64, u64) {
    ns.sort_unstable();
    (
        ns[ns.len() / 2],
        ns[ns.len() * 99 / 100],
        ns[ns.len() * 999 / 1000],
    )
}

/// Per-pick latencies of `threads` threads picking (and dropping the lease) at once.
fn run(threads: usize, pick: Arc<dyn Fn() + Send + Sync>) -> (u64, u64, u64) {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let pick = pick.clone();
            std::thread::spawn(move || {
                let mut ns = Vec::with_capacity(PICKS);
                for _ in 0..PICKS {
                    let t = Instant::now();
                    pick();
                    ns.push(t.elapsed().as_nanos() as u64);
                }
                ns
            })
        })
        .collect();
    let all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    percentiles(all)
}

fn row(name: &str, n: usize, threads: usize, (p50, p99, p999): (u64, u64, u64), faults: &str) {
    println!("{name:<24} {n:>6} {threads:>7} {p50:>8} {p99:>8} {p999:>9} {faults:>6}");
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `cargo bench -- --list` probe with these
    }
    let engine = StrategyEngine::try_new(Limits::default()).unwrap();
    let (p50, p99, _) = run(1, Arc::new(|| {}));
    println!("timer overhead: p50 {p50} ns, p99 {p99} ns (included below)");
    println!(
        "{:<24} {:>6} {:>7} {:>8} {:>8} {:>9} {:>6}",
        "strategy", "N", "threads", "p50 ns", "p99 ns", "p99.9 ns", "faults"
    );
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for b in BuiltinStrategy::ALL {
        if only.as_deref().is_some_and(|o| o != b.as_str()) {
            continue;
        }
        for n in [10, 100, 1_000, 10_000] {
            for threads in [1, 2] {
                let p = pool(n);
                let s = Arc::new(Selector::new(
                    engine.clone(),
                    engine.builtin(b).unwrap(),
                    b,
                    7,
                ));
                // Warm up: instantiate, push the candidate set.
                for _ in 0..1000 {
                    drop(s.pick(&p, FIRST).unwrap());
                }
                let (sp, pp) = (s.clone(), p.clone());
                let r = run(
                    threads,
                    Arc::new(move || drop(sp.pick(&pp, FIRST).unwrap())),
                );
                let name = format!("wasm {}", b.as_str());
                row(&name, n, threads, r, &s.stats().faults.to_string());
            }
            let ids: Vec<u32> = (0..n as u32).collect();
            let mut native = Native::new(b, 7);
            native.set_candidates(&ids, &vec![1000; n], &vec![0; n]);
            let native = std::sync::Mutex::new(native);
            let r = run(
                1,
                Arc::new(move || {
                    let mut g = native.lock().unwrap();
                    let id = g.pick(&[]).unwrap();
                    // The lease opens and closes before the next pick.
                    g.set_active(&[LeaseCount { id, active: 0 }]);
                }),
            );
            row(&format!("native {}", b.as_str()), n, 1, r, "-");
        }
    }
}
