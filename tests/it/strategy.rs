//! Strategies as WebAssembly components: the reference modules.

use proxypool::config::{BuiltinStrategy, Transport};
use proxypool::strategy::{
    ALLOWED_IMPORTS, Instance, Limits, Native, PickContext, StrategyEngine, StrategyError,
};

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
        let mut wasm = instance(&e, b, 42);
        let mut native = Native::new(b, 42);
        wasm.set_candidates(&ids, &weights, &active).unwrap();
        native.set_candidates(&ids, &weights, &active);
        for i in 0..500u32 {
            let tried: Vec<u32> = (0..i % 3).collect();
            let w = wasm.pick(ctx(&tried)).unwrap();
            let n = native.pick(&tried);
            assert_eq!(w, n, "{} pick {i}", b.as_str());
            let id = w.unwrap();
            assert!(!tried.contains(&id));
            wasm.leases_changed(&[id], &[]).unwrap();
            native.leases_changed(&[id], &[]);
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
        assert_eq!(s.pick(ctx(&[])).unwrap(), None, "{}", b.as_str());
        let t = std::time::Instant::now();
        s.set_candidates(&ids, &weights, &active).unwrap();
        eprintln!(
            "{}: set-candidates at 10,000 took {:?}",
            b.as_str(),
            t.elapsed()
        );
        for _ in 0..1000 {
            let id = s.pick(ctx(&[])).unwrap().unwrap();
            assert!(id < 10_000);
        }
        // Everything tried: none, not a fault.
        let t = std::time::Instant::now();
        assert_eq!(s.pick(ctx(&ids)).unwrap(), None, "{}", b.as_str());
        eprintln!(
            "{}: pick with 10,000 tried took {:?}",
            b.as_str(),
            t.elapsed()
        );
    }
}
