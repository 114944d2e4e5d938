//! Selection strategies as WebAssembly components (WIT package
//! `proxypool:strategy@0.1.0`, world `selection`), with native fallbacks.
//!
//! One [`StrategyEngine`] per process: one `wasmtime::Engine`, compiled components
//! cached by the sha256 of their bytes, a per-call deadline by epoch interruption and
//! a memory cap per instance. [`Compiled`] is a checked, pre-instantiated component;
//! [`Instance`] is one live store. No wasmtime type appears in this module's API.

mod bindings;
pub mod check;
mod engine;
pub(crate) mod instance;
pub(crate) mod native;
pub(crate) mod selector;
pub(crate) mod verdict;
pub(crate) mod watch;

use crate::sync::Locked as _;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};

use crate::config::BuiltinStrategy;
use bindings::Plugins;
use bindings::exports::proxypool::strategy::selector as wit_selector;

pub(crate) use bindings::proxypool::strategy::types::Transport as WitTransport;
use engine::*;
pub use engine::{Compiled, Limits, StrategyEngine};
pub use instance::Instance;
use instance::*;
pub(crate) use instance::{PickContext, check_pick};
pub(crate) use native::Native;
pub(crate) use selector::Selector;
pub use selector::SelectorStats;
pub(crate) use verdict::WasmVerdict;
pub use verdict::{CompiledVerdict, threshold_bytes};
pub(crate) use watch::StrategyWatch;

pub(crate) use crate::pool::{LeaseCount, ProxyId};
use bindings::proxypool::strategy::types::LeaseCount as WitLeaseCount;

/// Google Service Extensions' per-call budget; a selection is a few hundred
/// nanoseconds, so 1 ms only trips on a runaway guest.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(1);
/// Google Service Extensions' cap; the reference strategies need under 2 MiB at
/// 10,000 proxies.
pub const DEFAULT_MEMORY_LIMIT: usize = 16 << 20;
/// Bound on `set-candidates`, which legitimately does O(N) work at up to 10,000
/// proxies and runs only when the eligible set changes, never on the pick path.
pub const DEFAULT_UPDATE_DEADLINE: Duration = Duration::from_millis(50);
/// Core instances per component: a strategy built by `wasm-component-ld` has one
/// module and a few shims; 16 leaves room and stops a component of thousands.
pub const DEFAULT_MAX_INSTANCES: usize = 16;
/// Linear memories per component: the guest's own, and nothing else.
pub const DEFAULT_MAX_MEMORIES: usize = 1;
/// Tables per component: the guest's function table and the shims'.
pub const DEFAULT_MAX_TABLES: usize = 8;
/// Elements per table: ample for a guest's indirect calls, far below a table grown
/// without bound.
pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 100_000;
/// The longest deadline any call may be given, whatever an embedder asks: a guest
/// call runs on the caller's thread, so it must never hold a worker for long.
pub const MAX_CALL_DEADLINE: Duration = Duration::from_millis(100);
/// Epoch granularity: deadlines are enforced to within one tick.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Fresh-instance retries of an admission canary that hit its deadline before the
/// strategy is refused as too slow.
const DEADLINE_CONFIRMATIONS: usize = 2;
/// Ticks with no guest call started after which the clock's thread parks: twice the
/// longest deadline, so that every call begun before has passed its own.
const PARK_AFTER_TICKS: u32 = 2 * (MAX_CALL_DEADLINE.as_millis() as u32);
/// The only interfaces a strategy may import: ours. No WASI, no capabilities.
pub const ALLOWED_IMPORTS: [&str; 2] = [
    "proxypool:strategy/host@0.1.0",
    "proxypool:strategy/types@0.1.0",
];

/// The reference strategies, built from `strategies/` by the build script.
pub fn builtin_bytes(b: BuiltinStrategy) -> &'static [u8] {
    match b {
        BuiltinStrategy::RoundRobin => {
            include_bytes!(concat!(env!("OUT_DIR"), "/round_robin.wasm"))
        }
        BuiltinStrategy::Random => include_bytes!(concat!(env!("OUT_DIR"), "/random.wasm")),
        BuiltinStrategy::LeastConnections => {
            include_bytes!(concat!(env!("OUT_DIR"), "/least_connections.wasm"))
        }
    }
}

/// Why a strategy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StrategyError {
    /// The engine could not be configured.
    #[error("cannot start the strategy engine: {0}")]
    Engine(String),
    /// Not a valid component.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component imports something outside the WIT package.
    #[error("imports {import:?}, but strategies may import only {}", ALLOWED_IMPORTS.join(" and "))]
    ForbiddenImport {
        /// The offending import.
        import: String,
    },
    /// The component does not implement the world it is loaded as.
    #[error("does not implement proxypool:strategy/{world}@0.1.0: {detail}")]
    WrongWorld {
        /// `selection` or `health-verdict`.
        world: &'static str,
        /// What is missing or mistyped.
        detail: String,
    },
    /// Instantiation failed (a trap in start-up code, say).
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// A canary pick failed under production limits.
    #[error("failed the canary \"{canary}\": {fault}")]
    Canary {
        /// Which canary.
        canary: &'static str,
        /// What went wrong.
        fault: Fault,
    },
    /// The component declares more memories, tables or elements than the sandbox
    /// allows.
    #[error("exceeds the sandbox: {detail}")]
    Resources {
        /// What it declares, against the limit.
        detail: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// How one guest call failed. Any of these makes the host serve the pick natively.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// The guest trapped (a panic arrives as `unreachable`).
    #[error("trap: {0}")]
    Trap(String),
    /// The call ran past its deadline.
    #[error("deadline exceeded")]
    Deadline,
    /// The guest tried to grow memory past the cap.
    #[error("memory limit exceeded")]
    OutOfMemory,
    /// It returned an id outside the eligible set.
    #[error("returned {0}, which is not eligible")]
    NotEligible(ProxyId),
    /// It returned an id already tried for this connection.
    #[error("returned {0}, which was already tried")]
    AlreadyTried(ProxyId),
    /// It returned none while untried eligible proxies exist.
    #[error("returned none while eligible proxies remain")]
    NoneWithEligible,
}

impl Fault {
    fn from_wasmtime(e: &wasmtime::Error) -> Fault {
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => Fault::Deadline,
            Some(wasmtime::Trap::AllocationTooLarge) => Fault::OutOfMemory,
            Some(t) => {
                // With trap_on_grow_failure a refused grow arrives as a plain error.
                Fault::Trap(t.to_string())
            }
            None if format!("{e:?}").contains("memory") => Fault::OutOfMemory,
            None => Fault::Trap(format!("{e:?}")),
        }
    }
}

pub(crate) use crate::pool::splitmix64;

#[cfg(test)]
mod tests {
    use super::*;

    /// The call that wakes a parked clock gets its whole deadline: the first tick
    /// after the wake-up is a whole tick later, not at once.
    #[test]
    fn after_a_park_the_first_tick_is_a_whole_tick_after_the_wake_up() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Instant;
        let clock = Arc::new(EpochClock::default());
        let ticks = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (clock, ticks, stop) = (clock.clone(), ticks.clone(), stop.clone());
            std::thread::spawn(move || {
                clock.run(
                    || ticks.lock().unwrap().push(Instant::now()),
                    || !stop.load(Ordering::SeqCst),
                )
            })
        };
        clock.thread.set(thread.thread().clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !clock.parked() {
            assert!(Instant::now() < deadline, "the clock never parked");
            std::thread::yield_now();
        }
        let woke = Instant::now();
        clock.enter();
        let first = loop {
            if let Some(&t) = ticks.lock().unwrap().iter().find(|&&t| t > woke) {
                break t;
            }
            assert!(Instant::now() < deadline, "no tick after the wake-up");
            std::thread::yield_now();
        };
        assert!(
            first - woke >= EPOCH_TICK,
            "a tick {:?} after the wake-up",
            first - woke
        );
        stop.store(true, Ordering::SeqCst);
        clock.enter();
        thread.join().unwrap();
    }

    #[test]
    fn deadline_ticks_cover_the_deadline() {
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 3);
    }

    #[test]
    fn check_pick_flags_each_bad_answer() {
        let eligible = |id| id < 3;
        assert_eq!(check_pick(Some(1), &[], eligible, true), Ok(Some(1)));
        assert_eq!(
            check_pick(Some(7), &[], eligible, true),
            Err(Fault::NotEligible(7))
        );
        assert_eq!(
            check_pick(Some(1), &[1], eligible, true),
            Err(Fault::AlreadyTried(1))
        );
        assert_eq!(
            check_pick(None, &[], eligible, true),
            Err(Fault::NoneWithEligible)
        );
        assert_eq!(check_pick(None, &[0, 1, 2], eligible, false), Ok(None));
    }
}
