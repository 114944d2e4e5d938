//! Picking from a pool through a strategy component, with a native fallback.
//!
//! Fast path: strategies that do not depend on live load hand out a batch of
//! upcoming picks, which every thread consumes lock-free (one atomic add) until it
//! runs out or the eligible set changes; that keeps round robin exactly fair across
//! threads. Everything else (retries, load-aware strategies, refills) takes the
//! selector's lock, delivers pending changes to the guest, and calls it.
//!
//! Any guest fault serves that pick natively, is counted, logged once per burst, and
//! the instance is rebuilt from its pre-instantiated template; repeated faults
//! quarantine the generation until a new one is installed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{Compiled, Fault, Instance, Native, PickContext, StrategyEngine, check_pick};
use crate::config::BuiltinStrategy;
use crate::pool::{Lease, LeaseEvents, Pool, ProxyId, Snapshot};

/// Picks handed out per batch: a refill costs a few microseconds (two guest calls
/// and a list copy), so at 256 it lands on fewer than 0.4% of picks, below p99; a
/// change of the eligible set discards at most this many precomputed picks.
pub const BATCH_SIZE: u32 = 256;
/// Faults within [`QUARANTINE_WINDOW`] that quarantine a strategy generation.
pub const QUARANTINE_FAULTS: u32 = 5;
/// See [`QUARANTINE_FAULTS`].
pub const QUARANTINE_WINDOW: Duration = Duration::from_secs(10);
/// At most one fault log line per this interval (a burst is summarised).
const FAULT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Why no proxy could be picked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickError {
    /// Every eligible proxy was already tried, or none is eligible.
    #[error("pool {pool}: no eligible proxy left ({eligible} eligible, {tried} tried)")]
    Exhausted {
        /// The pool's route.
        pool: String,
        /// How many are eligible.
        eligible: usize,
        /// How many this connection tried.
        tried: usize,
    },
}

/// Counters of one selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectorStats {
    /// Guest faults (trap, deadline, memory, bad answer).
    pub faults: u64,
    /// Picks the native fallback served.
    pub fallback_picks: u64,
    /// Picks served from a batch without a guest call.
    pub batched_picks: u64,
    /// Deadlines hit once and not on the retry (the thread was descheduled).
    pub retried_deadlines: u64,
    /// Whether the current generation is quarantined.
    pub quarantined: bool,
    /// The installed generation (1 for the first).
    pub generation: u64,
    /// The most recent fault, if any.
    pub last_fault: Option<Fault>,
}

struct Generation {
    number: u64,
    compiled: Arc<Compiled>,
}

struct Batch {
    version: u64,
    generation: u64,
    ids: Vec<ProxyId>,
    next: AtomicUsize,
}

struct State {
    instance: Option<Instance>,
    instance_generation: u64,
    /// Snapshot version the instance has seen; 0 forces a resync.
    instance_version: u64,
    native: Native,
    native_version: u64,
    events: LeaseEvents,
    load_dependent: bool,
    quarantined: bool,
    window_start: Instant,
    window_faults: u32,
    last_log: Option<Instant>,
    unlogged: u32,
    last_fault: Option<Fault>,
}

/// A pool's strategy: the installed component generation and its live instance.
pub struct Selector {
    engine: StrategyEngine,
    seed: u64,
    generation: ArcSwap<Generation>,
    batch: ArcSwap<Batch>,
    state: Mutex<State>,
    faults: AtomicU64,
    fallback_picks: AtomicU64,
    batched_picks: AtomicU64,
    preempted: AtomicU64,
}

impl std::fmt::Debug for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selector")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Selector {
    /// A selector running `compiled`, falling back to the native `fallback`.
    /// `seed` seeds the guest's and the fallback's randomness.
    pub fn new(
        engine: StrategyEngine,
        compiled: Arc<Compiled>,
        fallback: BuiltinStrategy,
        seed: u64,
    ) -> Selector {
        Selector {
            engine,
            seed,
            generation: ArcSwap::from_pointee(Generation {
                number: 1,
                compiled,
            }),
            batch: ArcSwap::from_pointee(Batch {
                version: 0,
                generation: 0,
                ids: Vec::new(),
                next: AtomicUsize::new(0),
            }),
            state: Mutex::new(State {
                instance: None,
                instance_generation: 0,
                instance_version: 0,
                native: Native::new(fallback, seed),
                native_version: 0,
                events: LeaseEvents::default(),
                load_dependent: false,
                quarantined: false,
                window_start: Instant::now(),
                window_faults: 0,
                last_log: None,
                unlogged: 0,
                last_fault: None,
            }),
            faults: AtomicU64::new(0),
            fallback_picks: AtomicU64::new(0),
            batched_picks: AtomicU64::new(0),
            preempted: AtomicU64::new(0),
        }
    }

    /// Installs a new generation. In-flight picks finish on the old one; the next
    /// pick instantiates the new one. A quarantine ends here.
    pub fn install(&self, compiled: Arc<Compiled>) {
        let mut st = self.lock();
        let number = self.generation.load().number + 1;
        self.generation
            .store(Arc::new(Generation { number, compiled }));
        st.instance = None;
        st.quarantined = false;
        st.window_faults = 0;
        st.load_dependent = false;
    }

    /// The sha256 of the installed component.
    pub fn strategy_hash(&self) -> [u8; 32] {
        *self.generation.load().compiled.hash()
    }

    /// Counters.
    pub fn stats(&self) -> SelectorStats {
        let st = self.lock();
        SelectorStats {
            faults: self.faults.load(Ordering::Relaxed),
            fallback_picks: self.fallback_picks.load(Ordering::Relaxed),
            batched_picks: self.batched_picks.load(Ordering::Relaxed),
            retried_deadlines: self.preempted.load(Ordering::Relaxed),
            quarantined: st.quarantined,
            generation: self.generation.load().number,
            last_fault: st.last_fault.clone(),
        }
    }

    /// Picks a proxy of `pool` for one connection and leases it.
    pub fn pick(&self, pool: &Pool, ctx: PickContext<'_>) -> Result<Lease, PickError> {
        let snap = pool.snapshot();
        if ctx.tried.is_empty()
            && let Some(id) = self.take_batched(&snap)
        {
            return Ok(pool.lease(id));
        }
        let mut st = self.lock();
        if ctx.tried.is_empty()
            && let Some(id) = self.take_batched(&snap)
        {
            return Ok(pool.lease(id));
        }
        let generation = self.generation.load_full();
        // A deadline can be the OS descheduling this thread, not the guest looping:
        // it counts as a fault only if a second try on a fresh instance hits it too.
        for attempt in 0..2 {
            let instance_stale = st.instance.is_none()
                || st.instance_generation != generation.number
                || st.instance_version != snap.version();
            let resync = instance_stale || st.native_version != snap.version();
            let counts = pool.take_events(&mut st.events, resync.then_some(&**snap));
            let counts = counts.as_deref().unwrap_or(&[]);
            Self::sync_native(&mut st, &snap, counts);
            if st.quarantined {
                break;
            }
            match self.guest_pick(&mut st, &generation, &snap, counts, ctx) {
                Ok(Some(id)) => return Ok(pool.lease(id)),
                Ok(None) => return Err(exhausted(pool, &snap, ctx)),
                Err(Fault::Deadline) if attempt == 0 => {
                    self.preempted.fetch_add(1, Ordering::Relaxed);
                    st.instance = None;
                }
                Err(fault) => {
                    self.on_fault(&mut st, pool, fault);
                    break;
                }
            }
        }
        self.fallback_picks.fetch_add(1, Ordering::Relaxed);
        match st.native.pick(ctx.tried) {
            Some(id) if snap.is_eligible(id) => Ok(pool.lease(id)),
            _ => Err(exhausted(pool, &snap, ctx)),
        }
    }

    fn take_batched(&self, snap: &Snapshot) -> Option<ProxyId> {
        let batch = self.batch.load();
        if batch.version != snap.version() || batch.generation != self.generation.load().number {
            return None;
        }
        let i = batch.next.fetch_add(1, Ordering::Relaxed);
        let id = *batch.ids.get(i)?;
        self.batched_picks.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    /// The guest's checked answer, delivering what changed first.
    fn guest_pick(
        &self,
        st: &mut State,
        generation: &Generation,
        snap: &Snapshot,
        counts: &[u32],
        ctx: PickContext<'_>,
    ) -> Result<Option<ProxyId>, Fault> {
        if st.instance.is_none() || st.instance_generation != generation.number {
            let instance = self
                .engine
                .instantiate(&generation.compiled, self.seed)
                .map_err(|e| Fault::Trap(e.to_string()))?;
            st.instance = Some(instance);
            st.instance_generation = generation.number;
            st.instance_version = 0;
        }
        let State {
            instance,
            instance_version,
            events,
            load_dependent,
            ..
        } = st;
        let instance = instance.as_mut().expect("instantiated above");
        if *instance_version != snap.version() {
            instance.set_candidates(snap.eligible(), snap.weights(), counts)?;
            *instance_version = snap.version();
        } else if !events.is_empty() {
            instance.leases_changed(&events.acquired, &events.released)?;
        }
        if ctx.tried.is_empty() && !*load_dependent {
            let ids = instance.pick_batch(BATCH_SIZE)?;
            if let Some(bad) = ids.iter().find(|&&id| !snap.is_eligible(id)) {
                return Err(Fault::NotEligible(*bad));
            }
            if let Some(&first) = ids.first() {
                self.batch.store(Arc::new(Batch {
                    version: snap.version(),
                    generation: generation.number,
                    ids,
                    next: AtomicUsize::new(1),
                }));
                return Ok(Some(first));
            }
            *load_dependent = true;
        }
        let answer = instance.pick(ctx)?;
        let untried_left =
            answer.is_none() && snap.eligible().iter().any(|id| !ctx.tried.contains(id));
        check_pick(answer, ctx.tried, |id| snap.is_eligible(id), untried_left)
    }

    /// Keeps the fallback in step, so it can serve any pick with the same semantics.
    /// `counts` are the active leases, read when the version changed.
    fn sync_native(st: &mut State, snap: &Snapshot, counts: &[u32]) {
        if st.native_version != snap.version() {
            st.native
                .set_candidates(snap.eligible(), snap.weights(), counts);
            st.native_version = snap.version();
        } else {
            st.native
                .leases_changed(&st.events.acquired, &st.events.released);
        }
    }

    fn on_fault(&self, st: &mut State, pool: &Pool, fault: Fault) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        // Rebuild from the template: a trap poisons the store.
        st.instance = None;
        st.last_fault = Some(fault.clone());
        let now = Instant::now();
        if now.duration_since(st.window_start) > QUARANTINE_WINDOW {
            st.window_start = now;
            st.window_faults = 0;
        }
        st.window_faults += 1;
        if st.window_faults >= QUARANTINE_FAULTS && !st.quarantined {
            st.quarantined = true;
            tracing::error!(
                target: "proxypool::strategy",
                pool = pool.name(),
                generation = self.generation.load().number,
                "strategy quarantined after {} faults in {:?}: the native fallback serves until a new strategy is installed (last: {fault})",
                st.window_faults,
                QUARANTINE_WINDOW
            );
            return;
        }
        if st
            .last_log
            .is_none_or(|t| now.duration_since(t) >= FAULT_LOG_INTERVAL)
        {
            tracing::warn!(
                target: "proxypool::strategy",
                pool = pool.name(),
                suppressed = st.unlogged,
                "strategy fault, pick served by the native fallback: {fault}"
            );
            st.last_log = Some(now);
            st.unlogged = 0;
        } else {
            st.unlogged += 1;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn exhausted(pool: &Pool, snap: &Snapshot, ctx: PickContext<'_>) -> PickError {
    PickError::Exhausted {
        pool: pool.name().to_owned(),
        eligible: snap.eligible().len(),
        tried: ctx.tried.len(),
    }
}
