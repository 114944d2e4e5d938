//! Health verdicts as WebAssembly components (world `health-verdict`), behind the
//! health layer's [`Verdict`] trait. The default is the `threshold` component built
//! from `strategies/threshold`; a custom file goes through the same kind of
//! admission as a strategy. A verdict that faults has no opinion: the proxy's state
//! stays as it is, the fault is counted, and the instance is rebuilt; one that keeps
//! faulting is quarantined.

use crate::sync::Locked as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::exports::proxypool::strategy::verdict as wit_verdict;
use super::bindings::proxypool::strategy::types::{Health as WitHealth, ProbeResult};
use super::selector::{QUARANTINE_FAULTS, QUARANTINE_WINDOW};
use super::{Fault, HostState, ProxyId, StrategyEngine, StrategyError};
use crate::health::{Health, Threshold, Verdict};

/// The default verdict component (rise/fall), built from `strategies/threshold`.
pub fn threshold_bytes() -> &'static [u8] {
    include_bytes!(concat!(env!("OUT_DIR"), "/threshold.wasm"))
}

/// A checked verdict component, ready to instantiate.
pub struct CompiledVerdict {
    pre: InstancePre<HostState>,
    indices: wit_verdict::GuestIndices,
}

impl std::fmt::Debug for CompiledVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledVerdict").finish_non_exhaustive()
    }
}

struct Live {
    store: Store<HostState>,
    guest: wit_verdict::Guest,
    ticks: u64,
}

/// Fault counters of one verdict.
#[derive(Debug, Default)]
pub(crate) struct VerdictFaults {
    /// Calls that trapped, overran or ran out of memory.
    pub faults: AtomicU64,
}

/// A verdict component serving one pool. After [`QUARANTINE_FAULTS`] faults within
/// `QUARANTINE_WINDOW` it is quarantined, as a strategy is: the native
/// [`Threshold`] with the same rise and fall decides until another verdict is
/// installed.
pub struct WasmVerdict {
    engine: StrategyEngine,
    compiled: Arc<CompiledVerdict>,
    rise: u32,
    fall: u32,
    live: Mutex<Option<Live>>,
    faults: Arc<VerdictFaults>,
    last_log: Mutex<Option<Instant>>,
    window: Mutex<(Instant, u32)>,
    quarantined: AtomicBool,
    fallback: Threshold,
}

impl std::fmt::Debug for WasmVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmVerdict")
            .field("rise", &self.rise)
            .field("fall", &self.fall)
            .finish_non_exhaustive()
    }
}

impl StrategyEngine {
    /// Compiles and checks a verdict component: its imports must be ours alone, and
    /// it must export `proxypool:strategy/verdict`. Blocking.
    pub fn compile_verdict(&self, bytes: &[u8]) -> Result<Arc<CompiledVerdict>, StrategyError> {
        self.compile_verdict_checked(bytes, true)
    }

    /// As [`StrategyEngine::compile_verdict`]; the built-in one skips the sandbox's
    /// resource check, as built-in strategies do.
    pub(crate) fn compile_verdict_checked(
        &self,
        bytes: &[u8],
        check_resources: bool,
    ) -> Result<Arc<CompiledVerdict>, StrategyError> {
        let (pre, _imports) = self.load(bytes, check_resources)?;
        let indices =
            wit_verdict::GuestIndices::new(&pre).map_err(|e| StrategyError::WrongWorld {
                world: "health-verdict",
                detail: format!("{e:#}"),
            })?;
        Ok(Arc::new(CompiledVerdict { pre, indices }))
    }

    /// Admission for a verdict: [`StrategyEngine::compile_verdict`], then canary
    /// probes (successes and failures, for the first and the 10,000th proxy) under
    /// production limits. Any answer is acceptable; a fault is not.
    pub fn admit_verdict(
        &self,
        bytes: &[u8],
        rise: u32,
        fall: u32,
    ) -> Result<Arc<CompiledVerdict>, StrategyError> {
        let compiled = self.compile_verdict(bytes)?;
        let canary = |name: &'static str, fault: Fault| StrategyError::Canary {
            canary: name,
            fault,
        };
        let mut live = self.live_verdict(&compiled, rise, fall)?;
        for (name, id, success) in [
            ("first proxy, failing", 0, false),
            ("first proxy, recovering", 0, true),
            ("10,000th proxy", 9_999, true),
        ] {
            for _ in 0..rise.max(fall).max(1) {
                // A deadline is confirmed on a fresh instance, as for strategies.
                if let Err(f) = observe(&mut live, id, success, Duration::from_millis(1)) {
                    if f != Fault::Deadline {
                        return Err(canary(name, f));
                    }
                    live = self.live_verdict(&compiled, rise, fall)?;
                    observe(&mut live, id, success, Duration::from_millis(1))
                        .map_err(|f| canary(name, f))?;
                }
            }
        }
        Ok(compiled)
    }

    fn live_verdict(
        &self,
        compiled: &CompiledVerdict,
        rise: u32,
        fall: u32,
    ) -> Result<Live, StrategyError> {
        let (mut store, ticks, _) = self.store(0x5eed);
        let guest = compiled
            .pre
            .instantiate(&mut store)
            .and_then(|i| compiled.indices.load(&mut store, &i))
            .map_err(|e| StrategyError::Instantiate(format!("{e:#}")))?;
        guest
            .call_configure(&mut store, rise, fall)
            .map_err(|e| StrategyError::Instantiate(format!("configure: {e:#}")))?;
        Ok(Live {
            store,
            guest,
            ticks,
        })
    }
}

fn observe(
    live: &mut Live,
    id: ProxyId,
    success: bool,
    latency: Duration,
) -> Result<Health, Fault> {
    super::arm(&mut live.store, live.ticks);
    let probe = ProbeResult {
        id,
        success,
        latency_us: latency.as_micros().min(u32::MAX as u128) as u32,
    };
    live.guest
        .call_observe(&mut live.store, probe)
        .map(|h| match h {
            WitHealth::Healthy => Health::Healthy,
            WitHealth::Unhealthy => Health::Unhealthy,
            WitHealth::Unchanged => Health::Unchanged,
        })
        .map_err(|e| Fault::from_wasmtime(&e))
}

impl WasmVerdict {
    /// A verdict running `compiled`, configured with `rise` and `fall`.
    pub fn new(
        engine: StrategyEngine,
        compiled: Arc<CompiledVerdict>,
        rise: u32,
        fall: u32,
    ) -> Self {
        WasmVerdict {
            engine,
            compiled,
            rise,
            fall,
            live: Mutex::new(None),
            faults: Arc::default(),
            last_log: Mutex::new(None),
            window: Mutex::new((Instant::now(), 0)),
            quarantined: AtomicBool::new(false),
            fallback: Threshold::new(rise, fall),
        }
    }

    /// Whether faults have quarantined it (the native threshold decides).
    pub fn quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }
}

impl Verdict for WasmVerdict {
    fn faults(&self) -> u64 {
        self.faults.faults.load(Ordering::Relaxed)
    }

    fn observe(&self, id: ProxyId, success: bool, latency: Duration) -> Health {
        if self.quarantined() {
            return self.fallback.observe(id, success, latency);
        }
        let mut live = self.live.locked();
        if live.is_none() {
            match self
                .engine
                .live_verdict(&self.compiled, self.rise, self.fall)
            {
                Ok(l) => *live = Some(l),
                Err(e) => return self.fault(&e.to_string()),
            }
        }
        let l = live.as_mut().expect("instantiated above");
        match observe(l, id, success, latency) {
            Ok(h) => h,
            Err(f) => {
                // A trap poisons the store: rebuild on the next probe.
                *live = None;
                self.fault(&f.to_string())
            }
        }
    }
}

impl WasmVerdict {
    fn fault(&self, what: &str) -> Health {
        self.faults.faults.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut window = self.window.locked();
        if now.duration_since(window.0) > QUARANTINE_WINDOW {
            *window = (now, 0);
        }
        window.1 += 1;
        if window.1 >= QUARANTINE_FAULTS && !self.quarantined.swap(true, Ordering::AcqRel) {
            tracing::error!(
                target: "proxypool::health",
                "health verdict quarantined after {} faults in {QUARANTINE_WINDOW:?}: the built-in threshold decides until a new verdict is installed (last: {what})",
                window.1
            );
            return Health::Unchanged;
        }
        drop(window);
        let mut last = self.last_log.locked();
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            *last = Some(Instant::now());
            tracing::warn!(target: "proxypool::health", "health verdict fault, no opinion: {what}");
        }
        Health::Unchanged
    }
}
