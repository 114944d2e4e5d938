//! Pick latency: proxypool's round_robin and random (through WebAssembly, and their
//! native fallbacks) beside pingora-load-balancing's `RoundRobin` and `Random`
//! `select()`, in one run, one thread. Prints a table.
//!
//! `cargo run --release --manifest-path bench/pingora_compare/Cargo.toml`

use std::time::Instant;

use pingora_load_balancing::LoadBalancer;
use pingora_load_balancing::selection::{Random, RoundRobin};
use proxypool::config::{BuiltinStrategy, Transport};
use proxypool::strategy::{Limits, StrategyEngine};
use proxypool::testing::{PickContext, Pool, Selector};

const PICKS: usize = 300_000;

fn percentiles(mut f: impl FnMut()) -> (u64, u64) {
    for _ in 0..10_000 {
        f();
    }
    let mut ns = Vec::with_capacity(PICKS);
    for _ in 0..PICKS {
        let t = Instant::now();
        f();
        ns.push(t.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    (ns[PICKS / 2], ns[PICKS * 99 / 100])
}

fn pool(n: usize) -> Pool {
    Pool::from_urls(
        "default.http",
        (0..n).map(|i| format!("socks5://127.0.0.1:{}", i + 1)),
    )
    .unwrap()
}

fn main() {
    let engine = StrategyEngine::try_new(Limits::default()).unwrap();
    let first = PickContext {
        exchange: "binance",
        transport: Transport::Http,
        attempt: 0,
        tried: &[],
        affinity: None,
    };
    let (t50, t99) = percentiles(|| {});
    println!("timer overhead: p50 {t50} ns, p99 {t99} ns (included below)");
    println!(
        "{:<36} {:>6} {:>8} {:>8}",
        "selector", "N", "p50 ns", "p99 ns"
    );
    for n in [10usize, 100, 1_000, 10_000] {
        let addrs: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", i + 1)).collect();
        let rr =
            LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().map(String::as_str)).unwrap();
        let (a, b) = percentiles(|| {
            std::hint::black_box(rr.select(b"", 256));
        });
        println!("{:<36} {n:>6} {a:>8} {b:>8}", "pingora RoundRobin::select");
        let rnd = LoadBalancer::<Random>::try_from_iter(addrs.iter().map(String::as_str)).unwrap();
        let (a, b) = percentiles(|| {
            std::hint::black_box(rnd.select(b"", 256));
        });
        println!("{:<36} {n:>6} {a:>8} {b:>8}", "pingora Random::select");
        for s in [BuiltinStrategy::RoundRobin, BuiltinStrategy::Random] {
            let p = pool(n);
            let sel = Selector::new(engine.clone(), engine.builtin(s).unwrap(), s, 7);
            let (a, b) = percentiles(|| drop(sel.pick(&p, first).unwrap()));
            let name = format!("proxypool wasm {} (with lease)", s.as_str());
            println!("{name:<36} {n:>6} {a:>8} {b:>8}");
        }
    }
}
