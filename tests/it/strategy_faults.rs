//! Broken strategies: the host survives, picks go on through the native fallback,
//! faults are counted, and admission refuses every one of them.

use std::time::Duration;

use proxypool::config::{BuiltinStrategy, Transport};
use proxypool::strategy::{Limits, StrategyEngine, StrategyError};
use proxypool::testing::{Fault, PickContext, Selector};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".wasm")).as_slice()
    };
}

const TRAP: &[u8] = fixture!("trap");
const SPIN: &[u8] = fixture!("spin");
const GROW: &[u8] = fixture!("grow");
const OUT_OF_RANGE: &[u8] = fixture!("out_of_range");
const TRIED: &[u8] = fixture!("tried");
const WASI_IMPORT: &[u8] = fixture!("wasi_import");

/// Production memory cap; a deadline short enough for a fast test, long enough that
/// a descheduled thread on a loaded 2-core machine does not trip it.
fn engine() -> StrategyEngine {
    StrategyEngine::try_new(Limits {
        deadline: Duration::from_millis(50),
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

/// Installs `bytes` without admission (as if it had slipped through) and picks:
/// every pick must succeed, be eligible and untried, and the fault must be counted.
fn survives(bytes: &[u8], tried: &[u32], expect: impl Fn(&Fault) -> bool) {
    survives_on(&engine(), bytes, tried, expect);
}

fn survives_on(e: &StrategyEngine, bytes: &[u8], tried: &[u32], expect: impl Fn(&Fault) -> bool) {
    let p = proxypool_tests::pool_of(3);
    let s = Selector::new(
        e.clone(),
        e.compile(bytes).unwrap(),
        BuiltinStrategy::RoundRobin,
        1,
    );
    for _ in 0..3 {
        let lease = s
            .pick(&p, ctx(tried))
            .expect("the fallback serves the pick");
        assert!(lease.id() < 3 && !tried.contains(&lease.id()));
    }
    let stats = s.stats();
    assert!(stats.faults >= 1, "{stats:?}");
    assert_eq!(stats.fallback_picks, 3, "{stats:?}");
    let fault = stats.last_fault.expect("a fault was recorded");
    assert!(expect(&fault), "unexpected fault {fault:?}");
}

#[test]
fn trapping_strategy_falls_back() {
    survives(TRAP, &[], |f| matches!(f, Fault::Trap(_)));
}

#[test]
fn infinite_loop_hits_the_deadline_and_falls_back() {
    survives(SPIN, &[], |f| *f == Fault::Deadline);
}

/// The deadline clock's thread parks while no guest runs (an idle gateway does not
/// wake a thousand times a second), and a call wakes it: a spinning guest that starts
/// after an idle spell still hits its deadline. Then the clock parks again.
#[test]
fn the_deadline_clock_parks_when_idle_and_still_stops_a_spinning_guest() {
    let e = engine();
    let parked = std::time::Duration::from_secs(20);
    proxypool_tests::wait::blocking("the clock to park", parked, || e.clock_parked());
    survives_on(&e, SPIN, &[], |f| *f == Fault::Deadline);
    proxypool_tests::wait::blocking("the clock to park again", parked, || e.clock_parked());
}

#[test]
fn growing_past_the_memory_cap_falls_back() {
    survives(GROW, &[], |f| {
        matches!(f, Fault::OutOfMemory | Fault::Trap(_))
    });
}

#[test]
fn out_of_range_id_falls_back() {
    survives(OUT_OF_RANGE, &[], |f| {
        *f == Fault::NotEligible(4_000_000_000)
    });
}

#[test]
fn already_tried_id_falls_back() {
    survives(TRIED, &[1], |f| *f == Fault::AlreadyTried(1));
}

#[test]
fn wasi_import_is_rejected_before_anything_runs() {
    let err = engine().compile(WASI_IMPORT).unwrap_err();
    match &err {
        StrategyError::ForbiddenImport { import } => {
            assert!(import.starts_with("wasi:cli/environment"), "{import}")
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("may import only proxypool:strategy/host@0.1.0")
    );
}

#[test]
fn admission_refuses_every_broken_strategy_with_a_clear_reason() {
    let e = StrategyEngine::try_new(Limits::default()).unwrap();
    for (name, bytes) in [
        ("trap", TRAP),
        ("spin", SPIN),
        ("grow", GROW),
        ("out_of_range", OUT_OF_RANGE),
        ("tried", TRIED),
        ("wasi_import", WASI_IMPORT),
    ] {
        let err = e.admit(bytes).expect_err(name);
        let shown = err.to_string();
        assert!(
            matches!(
                err,
                StrategyError::Canary { .. } | StrategyError::ForbiddenImport { .. }
            ),
            "{name}: {shown}"
        );
        eprintln!("{name}: {shown}");
    }
}

#[test]
fn admission_accepts_the_reference_strategies() {
    // Production limits, but a roomy deadline: the debug-built host copies the
    // 10,000-id canary lists slowly. The release numbers are in BENCHMARKS.md.
    let e = StrategyEngine::try_new(Limits {
        deadline: Duration::from_millis(100),
        ..Limits::default()
    })
    .unwrap();
    for b in BuiltinStrategy::ALL {
        e.admit(proxypool::strategy::builtin_bytes(b))
            .unwrap_or_else(|err| panic!("{}: {err}", b.as_str()));
    }
}

/// A fixture written in the component text format, under `tests/fixtures`.
fn wat_fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_component_that_declares_many_memories_is_refused_at_admission() {
    let bytes = wat_fixture("many_memories");
    let e = engine();
    for refused in [e.admit(&bytes).err(), e.admit_verdict(&bytes, 2, 3).err()] {
        match refused {
            Some(StrategyError::Resources { detail }) => {
                assert!(detail.contains("3 memories, at most 1"), "{detail}")
            }
            other => panic!("expected a sandbox refusal, got {other:?}"),
        }
    }
}

#[test]
fn a_component_that_starts_with_a_huge_table_is_refused_at_admission() {
    let e = engine();
    match e.admit(&wat_fixture("huge_table")) {
        Err(StrategyError::Resources { detail }) => {
            assert!(detail.contains("10000000 elements"), "{detail}")
        }
        other => panic!("expected a sandbox refusal, got {other:?}"),
    }
}

#[test]
fn a_verdict_that_grows_a_table_without_bound_traps_and_is_quarantined() {
    use proxypool::testing::WasmVerdict;
    use proxypool::testing::{Health, Verdict};
    let e = engine();
    // Its canaries probe ids 0 and 9999: it passes admission.
    let compiled = e
        .admit_verdict(&wat_fixture("table_grow_verdict"), 1, 1)
        .expect("admitted");
    let v = WasmVerdict::new(e.clone(), compiled, 1, 1);
    let (logs, _guard) = proxypool_tests::capture_logs();
    assert_eq!(v.observe(0, false, Duration::ZERO), Health::Unhealthy);
    for _ in 0..proxypool::testing::QUARANTINE_FAULTS {
        // Each call grows the table until the cap refuses: a trap, no opinion.
        assert_eq!(v.observe(1, true, Duration::ZERO), Health::Unchanged);
    }
    assert_eq!(v.faults(), proxypool::testing::QUARANTINE_FAULTS as u64);
    assert!(v.quarantined());
    // The cap stopped it, not the deadline.
    let logs = logs.contents();
    assert!(
        logs.contains("quarantined") && logs.contains("table"),
        "{logs}"
    );
    assert!(!logs.contains("deadline"), "{logs}");
    // The built-in threshold decides now (rise 1, fall 1), and the guest is not called.
    assert_eq!(v.observe(1, false, Duration::ZERO), Health::Unhealthy);
    assert_eq!(v.observe(1, true, Duration::ZERO), Health::Healthy);
    assert_eq!(v.faults(), proxypool::testing::QUARANTINE_FAULTS as u64);
}
