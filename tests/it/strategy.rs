//! Strategies as WebAssembly components: the reference modules.

use proxypool::config::{BuiltinStrategy, Transport};
use proxypool::strategy::{ALLOWED_IMPORTS, Instance, Limits, StrategyEngine, StrategyError};
use proxypool::testing::{LeaseCount, Native, PickContext};

/// Functional tests get a roomy deadline: on a loaded 2-core machine a thread can be
/// descheduled for longer than the production 1 ms, and that is the fault tests' job.
fn engine() -> StrategyEngine {
    StrategyEngine::try_new(Limits {
        deadline: std::time::Duration::from_millis(200),
        ..Limits::default()
    })
    .unwrap()
}

fn ctx(tried: &[u32]) -> PickContext<'_> {
    PickContext {
        exchange: "binance",
        transport: Transport::Http,
        attempt: tried.len() as u32,
        tried,
        affinity: None,
    }
}

fn instance(e: &StrategyEngine, b: BuiltinStrategy, seed: u64) -> Instance {
    e.instantiate(&e.builtin(b).unwrap(), seed).unwrap()
}

#[test]
fn reference_components_import_nothing_but_the_wit() {
    let e = engine();
    for b in BuiltinStrategy::ALL {
        let c = e.builtin(b).unwrap();
        for import in c.imports() {
            assert!(
                ALLOWED_IMPORTS.contains(&import.as_str()),
                "{}: {import}",
                b.as_str()
            );
            assert!(!import.starts_with("wasi:"), "{}: {import}", b.as_str());
        }
    }
    // random draws from the host.
    assert!(
        e.builtin(BuiltinStrategy::Random)
            .unwrap()
            .imports()
            .contains(&"proxypool:strategy/host@0.1.0".to_owned())
    );
}

#[test]
fn identical_bytes_compile_once() {
    let e = engine();
    let a = e.builtin(BuiltinStrategy::RoundRobin).unwrap();
    let b = e.builtin(BuiltinStrategy::RoundRobin).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

#[test]
fn garbage_is_rejected_with_a_clear_error() {
    let err = engine().compile(b"not wasm at all").unwrap_err();
    assert!(matches!(err, StrategyError::Compile(_)), "{err}");
}

#[test]
fn wasm_and_native_pick_the_same_sequence() {
    let e = engine();
    let ids: Vec<u32> = (0..7).collect();
    let weights = [1000, 2000, 1000, 500, 1000, 3000, 1000];
    let active = [0; 7];
    for b in BuiltinStrategy::ALL {
        let (mut held, mut opened) = ([0u32; 7], Vec::new());
        let mut wasm = instance(&e, b, 42);
        let mut native = Native::new(b, 42);
        wasm.set_candidates(&ids, &weights, &active).unwrap();
        native.set_candidates(&ids, &weights, &active);
        for i in 0..500u32 {
            let tried: Vec<u32> = (0..i % 3).collect();
            let w = wasm.pick(ctx(&tried), &opened).unwrap();
            native.set_active(&opened);
            let n = native.pick(&tried);
            assert_eq!(w, n, "{} pick {i}", b.as_str());
            let id = w.unwrap();
            assert!(!tried.contains(&id));
            held[id as usize] += 1;
            opened = vec![LeaseCount {
                id,
                active: held[id as usize],
            }];
        }
        assert_eq!(
            wasm.pick_batch(16).unwrap(),
            native.pick_batch(16),
            "{}",
            b.as_str()
        );
    }
}

#[test]
fn reference_strategies_handle_empty_and_ten_thousand_proxies() {
    let e = engine();
    let ids: Vec<u32> = (0..10_000).collect();
    let weights = vec![1000; ids.len()];
    let active = vec![0; ids.len()];
    for b in BuiltinStrategy::ALL {
        let mut s = instance(&e, b, 1);
        s.set_candidates(&[], &[], &[]).unwrap();
        assert_eq!(s.pick(ctx(&[]), &[]).unwrap(), None, "{}", b.as_str());
        let t = std::time::Instant::now();
        s.set_candidates(&ids, &weights, &active).unwrap();
        eprintln!(
            "{}: set-candidates at 10,000 took {:?}",
            b.as_str(),
            t.elapsed()
        );
        for _ in 0..1000 {
            let id = s.pick(ctx(&[]), &[]).unwrap().unwrap();
            assert!(id < 10_000);
        }
        // Everything tried: none, not a fault.
        let t = std::time::Instant::now();
        assert_eq!(s.pick(ctx(&ids), &[]).unwrap(), None, "{}", b.as_str());
        eprintln!(
            "{}: pick with 10,000 tried took {:?}",
            b.as_str(),
            t.elapsed()
        );
    }
}

mod selection {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use proxypool::balancer::Lease;
    use proxypool::config::{BuiltinStrategy, Transport};
    use proxypool::strategy::{Limits, StrategyEngine};
    use proxypool::testing::Pool;
    use proxypool::testing::{PickContext, Selector};

    fn selector(e: &StrategyEngine, b: BuiltinStrategy, seed: u64) -> Selector {
        Selector::new(e.clone(), e.builtin(b).unwrap(), b, seed)
    }

    const FIRST: PickContext<'static> = PickContext::first("binance", Transport::Http);

    /// Picks and asserts that the proxy had the fewest active leases of the eligible
    /// ones (so it has one more than that minimum now).
    fn pick_a_minimum(p: &Pool, s: &Selector, step: usize) -> Lease {
        let snap = p.snapshot();
        let min = snap
            .eligible()
            .iter()
            .map(|&id| p.members()[id as usize].active())
            .min()
            .unwrap();
        let lease = s.pick(p, FIRST).unwrap();
        assert_eq!(
            p.members()[lease.id() as usize].active(),
            min + 1,
            "step {step}"
        );
        lease
    }

    #[test]
    fn round_robin_is_exactly_fair_across_two_threads() {
        let e = super::engine();
        let p = proxypool_tests::pool_of(7);
        let s = Arc::new(selector(&e, BuiltinStrategy::RoundRobin, 1));
        let counts: Arc<Vec<AtomicU64>> = Arc::new((0..7).map(|_| AtomicU64::new(0)).collect());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (p, s, counts) = (p.clone(), s.clone(), counts.clone());
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        let lease = s.pick(&p, FIRST).unwrap();
                        counts[lease.id() as usize].fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let total = 200_000.0 / 7.0;
        for (id, c) in counts.iter().enumerate() {
            let c = c.load(Ordering::Relaxed) as f64;
            assert!(
                (c - total).abs() <= 1.0,
                "proxy {id}: {c} picks, want {total:.1} ± 1"
            );
        }
        let stats = s.stats();
        assert_eq!(stats.faults, 0);
        assert!(stats.batched_picks > 190_000, "{stats:?}");
    }

    #[test]
    fn round_robin_skips_an_unhealthy_proxy_without_bias() {
        let e = super::engine();
        let p = proxypool_tests::pool_of(3);
        let s = selector(&e, BuiltinStrategy::RoundRobin, 1);
        p.set_healthy(1, false);
        let picks: Vec<u32> = (0..6).map(|_| s.pick(&p, FIRST).unwrap().id()).collect();
        assert_eq!(picks, [0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn random_passes_chi_square_with_a_fixed_seed() {
        let e = super::engine();
        let p = proxypool_tests::pool_of(10);
        let s = selector(&e, BuiltinStrategy::Random, 1234);
        let mut counts = [0u64; 10];
        for _ in 0..100_000 {
            counts[s.pick(&p, FIRST).unwrap().id() as usize] += 1;
        }
        let chi: f64 = counts
            .iter()
            .map(|&o| (o as f64 - 10_000.0).powi(2) / 10_000.0)
            .sum();
        // 9 degrees of freedom: the 0.999 quantile is 27.88.
        assert!(chi < 27.88, "chi-square {chi:.2}: {counts:?}");
    }

    #[test]
    fn least_connections_picks_a_minimum_and_rotates_on_ties() {
        let e = super::engine();
        let p = proxypool_tests::pool_of(4);
        let s = selector(&e, BuiltinStrategy::LeastConnections, 1);
        // Ties rotate: with every lease dropped at once, each proxy takes its turn.
        let picks: Vec<u32> = (0..8).map(|_| s.pick(&p, FIRST).unwrap().id()).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3]);
        // Scripted holds and drops: every pick has the fewest active leases.
        let mut held = Vec::new();
        for step in 0..2_000usize {
            held.push(pick_a_minimum(&p, &s, step));
            if step % 3 == 2 {
                held.swap_remove((step * 5) % held.len());
            }
        }
        assert_eq!(s.stats().faults, 0);
    }

    #[test]
    fn load_is_tracked_only_for_strategies_that_use_it() {
        let e = super::engine();
        for (b, tracked) in [
            (BuiltinStrategy::RoundRobin, false),
            (BuiltinStrategy::Random, false),
            (BuiltinStrategy::LeastConnections, true),
        ] {
            let p = proxypool_tests::pool_of(3);
            let s = selector(&e, b, 1);
            drop(s.pick(&p, FIRST).unwrap());
            assert_eq!(p.load_tracking(), tracked, "{}", b.as_str());
        }
    }

    #[test]
    fn least_connections_stays_exact_across_threads_and_health_changes() {
        let e = super::engine();
        let p = proxypool_tests::pool_of(5);
        let s = Arc::new(selector(&e, BuiltinStrategy::LeastConnections, 1));
        // Two threads open and close leases while this one picks, holds and checks.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn: Vec<_> = (0..2)
            .map(|_| {
                let (p, s, stop) = (p.clone(), s.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        drop(s.pick(&p, FIRST).unwrap());
                    }
                })
            })
            .collect();
        let mut held = Vec::new();
        for step in 0..3_000usize {
            if step % 500 == 250 {
                p.set_healthy((step / 500) as u32 % 5, step % 1000 != 250);
            }
            let lease = s.pick(&p, FIRST).unwrap();
            held.push(lease);
            if step % 4 == 3 {
                held.swap_remove((step * 7) % held.len());
            }
        }
        stop.store(true, Ordering::Relaxed);
        for t in churn {
            t.join().unwrap();
        }
        // Quiet now: what the guest believes must equal the pool's counts, so the
        // next picks go exactly to the minimum.
        for step in 0..200 {
            held.push(pick_a_minimum(&p, &s, step));
        }
        assert_eq!(s.stats().faults, 0);
    }

    #[test]
    fn a_strategy_that_cannot_run_falls_back_and_is_quarantined() {
        // 64 KiB cannot hold a Rust guest's memory: every instantiation faults.
        let e = StrategyEngine::try_new(Limits {
            memory: 64 << 10,
            ..Limits::default()
        })
        .unwrap();
        let p = proxypool_tests::pool_of(3);
        let s = selector(&e, BuiltinStrategy::RoundRobin, 1);
        let picks: Vec<u32> = (0..9).map(|_| s.pick(&p, FIRST).unwrap().id()).collect();
        assert_eq!(
            picks,
            [0, 1, 2, 0, 1, 2, 0, 1, 2],
            "the native fallback rotates too"
        );
        let stats = s.stats();
        assert_eq!(stats.faults, 5, "quarantined after 5 faults: {stats:?}");
        assert!(stats.quarantined);
        assert_eq!(stats.fallback_picks, 9);
    }
}

#[test]
fn a_strategy_reads_handshake_latency_from_the_host() {
    use proxypool::testing::Selector;
    let e = engine();
    let fastest = e
        .admit(include_bytes!(concat!(env!("OUT_DIR"), "/fastest.wasm")))
        .unwrap();
    let p = proxypool_tests::pool_of(3);
    let s = Selector::new(e.clone(), fastest, BuiltinStrategy::RoundRobin, 1);
    for (id, ms) in [(0, 5), (1, 1), (2, 9)] {
        p.record_latency(id, std::time::Duration::from_millis(ms));
    }
    assert_eq!(p.members()[1].latency_us(), 1000);
    let pick = |tried: &[u32]| s.pick(&p, PickContext { tried, ..ctx(&[]) }).unwrap().id();
    assert_eq!(pick(&[]), 1);
    assert_eq!(pick(&[1]), 0);
    // A slower sample moves the mean: 1 ms → (7 × 1 + 40) / 8 ≈ 5.9 ms.
    p.record_latency(1, std::time::Duration::from_millis(40));
    assert_eq!(pick(&[]), 0);
    assert_eq!(s.stats().faults, 0);
}
