//! Picking from a pool through a strategy component, with a native fallback.
//!
//! Fast path: strategies that do not depend on live load hand out a batch of
//! upcoming picks, which every thread consumes lock-free (one atomic add) until it
//! runs out or the eligible set changes; that keeps round robin exactly fair across
//! threads. A quarter of the way through a batch, the thread that drew that index
//! fetches the next one (if the lock is free), so other threads move on to it without
//! waiting. For these strategies the pool does not track load at all. Everything else
//! (retries, load-aware strategies, refills) takes the selector's lock, hands the
//! guest the changed lease counts with the pick (one call), and calls it.
//!
//! Any guest fault serves that pick natively, is counted, logged once per burst, and
//! the instance is rebuilt from its pre-instantiated template; repeated faults
//! quarantine the generation until a new one is installed.

use crate::sync::Locked as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{Compiled, Fault, Instance, Native, PickContext, StrategyEngine, check_pick};
use crate::config::BuiltinStrategy;
use crate::pool::{Lease, LeaseCount, Pool, ProxyId, Snapshot};

/// Picks handed out per batch: a refill costs a few microseconds (two guest calls
/// and a list copy), so at 256 it lands on fewer than 0.4% of picks, below p99; a
/// change of the eligible set discards at most this many precomputed picks.
pub(crate) const BATCH_SIZE: u32 = 256;
/// The batch index whose taker fetches the next batch: early enough that, at two
/// threads' pace, the rest of the batch outlasts the fetch.
const PREFETCH_AT: usize = BATCH_SIZE as usize / 4;
/// Faults within `QUARANTINE_WINDOW` that quarantine a strategy generation.
pub const QUARANTINE_FAULTS: u32 = 5;
/// See [`QUARANTINE_FAULTS`].
pub(crate) const QUARANTINE_WINDOW: Duration = Duration::from_secs(10);
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
    /// Picks served from batches (counted when a batch is retired, so approximate
    /// while batches are being replaced under concurrent picks).
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
    /// The snapshot version it was drawn for.
    version: u64,
    ids: Vec<ProxyId>,
    next: AtomicUsize,
    /// The batch after this one, fetched ahead of time.
    successor: OnceLock<Arc<Batch>>,
}

impl Batch {
    fn new(version: u64, ids: Vec<ProxyId>, next: usize) -> Batch {
        Batch {
            version,
            ids,
            next: AtomicUsize::new(next),
            successor: OnceLock::new(),
        }
    }

    fn served(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.ids.len()) as u64
    }
}

struct State {
    instance: Option<Instance>,
    instance_generation: u64,
    /// Snapshot version the instance has seen; 0 forces a resync.
    instance_version: u64,
    native: Native,
    native_version: u64,
    /// Lease counts changed since the last pick, and the full counts on a resync.
    changes: Vec<LeaseCount>,
    counts: Vec<u32>,
    /// What the instance said of itself: `None` until its first `pick-batch`.
    load_dependent: Option<bool>,
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
    /// Ticket order for the pick path's hold on `state` (see [`Selector::turn`]).
    next_ticket: AtomicU64,
    serving: AtomicU64,
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
            batch: ArcSwap::from_pointee(Batch::new(0, Vec::new(), 0)),
            state: Mutex::new(State {
                instance: None,
                instance_generation: 0,
                instance_version: 0,
                native: Native::new(fallback, seed),
                native_version: 0,
                changes: Vec::new(),
                counts: Vec::new(),
                load_dependent: None,
                quarantined: false,
                window_start: Instant::now(),
                window_faults: 0,
                last_log: None,
                unlogged: 0,
                last_fault: None,
            }),
            next_ticket: AtomicU64::new(0),
            serving: AtomicU64::new(0),
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
        // The old generation's upcoming picks are void.
        self.retire(Batch::new(0, Vec::new(), 0));
    }

    fn retire(&self, next: Batch) {
        let old = self.batch.swap(Arc::new(next));
        self.batched_picks
            .fetch_add(old.served(), Ordering::Relaxed);
    }

    /// Installs a new generation with a new native fallback (a change of strategy,
    /// not just of its file).
    pub fn set_strategy(&self, compiled: Arc<Compiled>, fallback: BuiltinStrategy) {
        {
            let mut st = self.lock();
            st.native = Native::new(fallback, self.seed);
            st.native_version = 0;
        }
        self.install(compiled);
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
            batched_picks: self.batched_picks.load(Ordering::Relaxed) + self.batch.load().served(),
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
            && let Some(id) = self.take_batched(pool, &snap)
        {
            return leased(pool, &snap, ctx, id);
        }
        let mut st = self.turn();
        if ctx.tried.is_empty()
            && let Some(id) = self.take_batched(pool, &snap)
        {
            return leased(pool, &snap, ctx, id);
        }
        let generation = self.generation.load_full();
        // A deadline can be the OS descheduling this thread, not the guest looping:
        // it counts as a fault only if a second try on a fresh instance hits it too.
        for attempt in 0..2 {
            Self::sync(&mut st, pool, &snap, &generation);
            if st.quarantined {
                break;
            }
            match self.guest_pick(&mut st, pool, &generation, &snap, ctx) {
                Ok(Some(id)) => {
                    if st.load_dependent == Some(false) && !st.native.is_load_dependent() {
                        // Off is always safe; turning it on again resyncs.
                        pool.set_load_tracking(false);
                    }
                    // Leased under the lock, so the next pick already counts it.
                    return leased(pool, &snap, ctx, id);
                }
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
            Some(id) if snap.is_eligible(id) => leased(pool, &snap, ctx, id),
            _ => Err(exhausted(pool, &snap, ctx)),
        }
    }

    /// The next id of the current batch, moving on to a prefetched successor when it
    /// runs out; `None` if there is none for this snapshot.
    fn take_batched(&self, pool: &Pool, snap: &Snapshot) -> Option<ProxyId> {
        loop {
            let batch = self.batch.load();
            if batch.version != snap.version() {
                return None;
            }
            let i = batch.next.fetch_add(1, Ordering::Relaxed);
            if let Some(&id) = batch.ids.get(i) {
                if i == PREFETCH_AT {
                    self.prefetch(pool, snap, &batch);
                }
                return Some(id);
            }
            // Every id of this batch is handed out, so the successor keeps the order.
            let next = batch.successor.get()?;
            if next.version != snap.version() {
                return None;
            }
            let prev = self.batch.compare_and_swap(&*batch, Arc::clone(next));
            if Arc::ptr_eq(&prev, &*batch) {
                self.batched_picks
                    .fetch_add(batch.ids.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Draws the batch after `batch`, unless the lock is busy (then the thread that
    /// finds the batch empty refills it under the lock).
    fn prefetch(&self, pool: &Pool, snap: &Snapshot, batch: &Batch) {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let generation = self.generation.load();
        let ready = !st.quarantined
            && st.load_dependent == Some(false)
            && st.instance_generation == generation.number
            && st.instance_version == snap.version();
        let Some(instance) = st.instance.as_mut().filter(|_| ready) else {
            return;
        };
        match instance.pick_batch(BATCH_SIZE) {
            Ok(ids) if !ids.is_empty() => {
                if let Some(bad) = ids.iter().find(|&&id| !snap.is_eligible(id)) {
                    self.on_fault(&mut st, pool, Fault::NotEligible(*bad));
                } else {
                    let _ = batch
                        .successor
                        .set(Arc::new(Batch::new(snap.version(), ids, 0)));
                }
            }
            Ok(_) => {}
            // Left to the slow path, which retries a deadline once.
            Err(Fault::Deadline) => st.instance = None,
            Err(fault) => self.on_fault(&mut st, pool, fault),
        }
    }

    /// Brings the pool's load tracking, the changed counts and the fallback up to date.
    fn sync(st: &mut State, pool: &Pool, snap: &Snapshot, generation: &Generation) {
        let instance_stale = st.instance.is_none()
            || st.instance_generation != generation.number
            || st.instance_version != snap.version();
        // Until a fresh instance says otherwise, assume it needs load.
        let guest_needs_load = instance_stale || st.load_dependent != Some(false);
        let wanted = guest_needs_load || st.native.is_load_dependent();
        if pool.load_tracking() != wanted {
            pool.set_load_tracking(wanted);
            // Counts read after the switch, so no change falls between.
            st.instance_version = 0;
            st.native_version = 0;
        }
        st.changes.clear();
        pool.drain_load_changes(&mut st.changes);
        let resync = st.instance_version != snap.version() || st.native_version != snap.version();
        if resync {
            pool.active_counts(snap, &mut st.counts);
        }
        if st.native_version != snap.version() {
            st.native
                .set_candidates(snap.eligible(), snap.weights(), &st.counts);
            st.native_version = snap.version();
        } else {
            st.native.set_active(&st.changes);
        }
    }

    /// The guest's checked answer, delivering what changed first.
    fn guest_pick(
        &self,
        st: &mut State,
        pool: &Pool,
        generation: &Generation,
        snap: &Snapshot,
        ctx: PickContext<'_>,
    ) -> Result<Option<ProxyId>, Fault> {
        if st.instance.is_none() || st.instance_generation != generation.number {
            let instance = self
                .engine
                .instantiate_for(&generation.compiled, self.seed, Some(pool.clone()))
                .map_err(|e| Fault::Trap(e.to_string()))?;
            st.instance = Some(instance);
            st.instance_generation = generation.number;
            st.instance_version = 0;
            st.load_dependent = None;
        }
        let instance = st.instance.as_mut().expect("instantiated above");
        if st.instance_version != snap.version() {
            instance.set_candidates(snap.eligible(), snap.weights(), &st.counts)?;
            st.instance_version = snap.version();
        }
        if ctx.tried.is_empty() && st.load_dependent != Some(true) {
            let ids = instance.pick_batch(BATCH_SIZE)?;
            if let Some(bad) = ids.iter().find(|&&id| !snap.is_eligible(id)) {
                return Err(Fault::NotEligible(*bad));
            }
            if let Some(&first) = ids.first() {
                st.load_dependent = Some(false);
                self.retire(Batch::new(snap.version(), ids, 1));
                return Ok(Some(first));
            }
            if !snap.eligible().is_empty() {
                st.load_dependent = Some(true);
            }
        }
        let answer = instance.pick(ctx, &st.changes)?;
        let untried_left =
            answer.is_none() && snap.eligible().iter().any(|id| !ctx.tried.contains(id));
        check_pick(answer, ctx.tried, |id| snap.is_eligible(id), untried_left)
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

    /// The state for a pick, in arrival order. A plain mutex lets the thread that
    /// just unlocked take it straight back, so under steady contention a waiter
    /// parks and pays a futex wake-up (~40 µs here) for a section of ~0.6 µs; a
    /// ticket keeps waiters spinning briefly and serves them first come, first
    /// served.
    fn turn(&self) -> Turn<'_> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let mut spins = 0u32;
        while self.serving.load(Ordering::Acquire) != ticket {
            if spins < TURN_SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                // The holder was descheduled: let it run.
                std::thread::yield_now();
            }
        }
        Turn {
            guard: Some(self.lock()),
            serving: &self.serving,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }
}

/// Spins before a waiter for the pick lock starts yielding: a few microseconds,
/// several times the longest pick.
const TURN_SPINS: u32 = 2_000;

/// A pick's hold on the selector state; passes it to the next ticket when dropped.
struct Turn<'a> {
    guard: Option<MutexGuard<'a, State>>,
    serving: &'a AtomicU64,
}

impl std::ops::Deref for Turn<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.guard.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Turn<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.guard.as_mut().expect("held until drop")
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Unlock first, so the next ticket finds the mutex free.
        self.guard = None;
        self.serving.fetch_add(1, Ordering::Release);
    }
}

fn exhausted(pool: &Pool, snap: &Snapshot, ctx: PickContext<'_>) -> PickError {
    PickError::Exhausted {
        pool: pool.name().to_owned(),
        eligible: snap.eligible().len(),
        tried: ctx.tried.len(),
    }
}

/// A lease on a picked id (ids come from the snapshot, so the pool has them).
fn leased(
    pool: &Pool,
    snap: &Snapshot,
    ctx: PickContext<'_>,
    id: ProxyId,
) -> Result<Lease, PickError> {
    pool.lease(id).ok_or_else(|| exhausted(pool, snap, ctx))
}
