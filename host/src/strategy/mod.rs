//! Selection strategies as WebAssembly components (WIT package
//! `proxypool:strategy@0.1.0`, world `selection`), with native fallbacks.
//!
//! One [`StrategyEngine`] per process: one `wasmtime::Engine`, compiled components
//! cached by the sha256 of their bytes, a per-call deadline by epoch interruption and
//! a memory cap per instance. [`Compiled`] is a checked, pre-instantiated component;
//! [`Instance`] is one live store. No wasmtime type appears in this module's API.

mod bindings;
pub mod check;
mod native;
mod selector;
mod verdict;
mod watch;

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

pub use bindings::proxypool::strategy::types::Transport as WitTransport;
pub use native::Native;
pub use selector::{
    BATCH_SIZE, PickError, QUARANTINE_FAULTS, QUARANTINE_WINDOW, Selector, SelectorStats,
};
pub use verdict::{CompiledVerdict, VerdictFaults, WasmVerdict, threshold_bytes};
pub use watch::{StrategyWatch, SwapCounters};

pub use crate::pool::{LeaseCount, ProxyId};
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

/// The sandbox of every instance: per-call deadlines, and caps on what one instance
/// may hold. Each cap is checked at admission against what the component declares,
/// and enforced while it runs (a grow past it traps).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bound on one pick-path call (`pick`, `pick-batch`).
    pub deadline: Duration,
    /// Bound on one `set-candidates` call.
    pub update_deadline: Duration,
    /// Bound on one linear memory, in bytes.
    pub memory: usize,
    /// Core instances one component may create.
    pub instances: usize,
    /// Linear memories one component may define.
    pub memories: usize,
    /// Tables one component may define.
    pub tables: usize,
    /// Elements one table may hold.
    pub table_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: DEFAULT_DEADLINE,
            update_deadline: DEFAULT_UPDATE_DEADLINE,
            memory: DEFAULT_MEMORY_LIMIT,
            instances: DEFAULT_MAX_INSTANCES,
            memories: DEFAULT_MAX_MEMORIES,
            tables: DEFAULT_MAX_TABLES,
            table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
        }
    }
}

impl Limits {
    /// The same limits with each within sane bounds: deadlines from one epoch tick to
    /// [`MAX_CALL_DEADLINE`], memory from one page to 4 GiB, every count at least 1.
    pub fn bounded(self) -> Limits {
        let call = |d: Duration| d.clamp(EPOCH_TICK, MAX_CALL_DEADLINE);
        Limits {
            deadline: call(self.deadline),
            update_deadline: call(self.update_deadline),
            memory: self.memory.clamp(64 << 10, 4 << 30),
            instances: self.instances.max(1),
            memories: self.memories.max(1),
            tables: self.tables.max(1),
            table_elements: self.table_elements.max(1),
        }
    }
}

/// The process's WebAssembly engine for strategies. Cheap to clone.
#[derive(Clone)]
pub struct StrategyEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: wasmtime::Engine,
    clock: Arc<EpochClock>,
    linker: Linker<HostState>,
    limits: Limits,
    cache: Mutex<HashMap<[u8; 32], Arc<Compiled>>>,
    threshold: std::sync::OnceLock<Arc<CompiledVerdict>>,
}

/// The deadline clock shared by the thread that ticks an engine's epoch and every
/// store of that engine. The thread parks once no guest call has started for
/// [`PARK_AFTER_TICKS`], and the next call wakes it: an idle gateway does not wake
/// 1,000 times a second, and a busy one pays a load per call.
#[derive(Default)]
struct EpochClock {
    /// [`ACTIVE`], [`SLEEPY`] (no call since the thread last looked) or [`PARKED`].
    state: std::sync::atomic::AtomicU8,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

const ACTIVE: u8 = 0;
const SLEEPY: u8 = 1;
const PARKED: u8 = 2;

impl EpochClock {
    /// Before each guest call: the clock must be ticking while it runs.
    fn enter(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        // The swap, and the cross-core traffic it costs, only after an idle spell.
        if self.state.load(SeqCst) != ACTIVE
            && self.state.swap(ACTIVE, SeqCst) == PARKED
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    fn parked(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::SeqCst) == PARKED
    }

    /// The ticking thread's body: `tick` once a tick while calls may run, until
    /// `alive` says the engine is gone. Each tick comes a whole tick after the last,
    /// or after the wake-up that ended a park, so that the call that woke the clock
    /// gets its whole deadline.
    #[allow(clippy::disallowed_methods)]
    fn run(&self, tick: impl Fn(), alive: impl Fn() -> bool) {
        use std::sync::atomic::Ordering::SeqCst;
        // Every LOOK ticks: a call since the last look resets `quiet`.
        const LOOK: u32 = 10;
        let (mut ticks, mut quiet) = (0, 0);
        while alive() {
            std::thread::sleep(EPOCH_TICK);
            tick();
            ticks += 1;
            if ticks < LOOK {
                continue;
            }
            ticks = 0;
            if self.state.swap(SLEEPY, SeqCst) == ACTIVE {
                quiet = 0;
                continue;
            }
            quiet += LOOK;
            if quiet >= PARK_AFTER_TICKS
                && self
                    .state
                    .compare_exchange(SLEEPY, PARKED, SeqCst, SeqCst)
                    .is_ok()
            {
                // Bounded, so that a dropped engine still ends the thread.
                while self.parked() && alive() {
                    std::thread::park_timeout(Duration::from_secs(1));
                }
                quiet = 0;
            }
        }
    }
}

impl fmt::Debug for StrategyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrategyEngine")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl StrategyEngine {
    /// Whether the deadline clock's thread is parked: no guest call has started for
    /// a while. The next call wakes it before it runs.
    pub fn clock_parked(&self) -> bool {
        self.inner.clock.parked()
    }

    /// An engine with these limits, and the thread that ticks its deadline clock.
    pub fn try_new(limits: Limits) -> Result<Self, StrategyError> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true).wasm_component_model(true);
        let engine =
            wasmtime::Engine::new(&config).map_err(|e| StrategyError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        Plugins::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| StrategyError::Engine(e.to_string()))?;
        let weak = engine.weak();
        let clock = Arc::new(EpochClock::default());
        let ticking = clock.clone();
        let thread = std::thread::Builder::new()
            .name("proxypool-epoch".into())
            // A plain thread, not a task: it must tick even if the runtime is starved.
            .spawn(move || {
                ticking.run(
                    || {
                        if let Some(engine) = weak.upgrade() {
                            engine.increment_epoch();
                        }
                    },
                    || weak.upgrade().is_some(),
                )
            })
            .map_err(|e| StrategyError::Engine(e.to_string()))?;
        let _ = clock.thread.set(thread.thread().clone());
        Ok(StrategyEngine {
            inner: Arc::new(EngineInner {
                engine,
                clock,
                linker,
                limits: limits.bounded(),
                cache: Mutex::default(),
                threshold: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The default verdict component, compiled once per engine.
    pub fn threshold_verdict(&self) -> Result<Arc<CompiledVerdict>, StrategyError> {
        if let Some(c) = self.inner.threshold.get() {
            return Ok(c.clone());
        }
        let c = self.compile_verdict_checked(threshold_bytes(), false)?;
        Ok(self.inner.threshold.get_or_init(|| c).clone())
    }

    /// Compiles a reference strategy (cached after the first time).
    pub fn builtin(&self, b: BuiltinStrategy) -> Result<Arc<Compiled>, StrategyError> {
        // Ours: compiled whatever the limits (a cap too small for it faults at run
        // time, and the native fallback serves).
        self.compile_checked(builtin_bytes(b), false)
    }

    /// Compiles and checks a component: its imports must be ours alone, and it must
    /// implement the `selection` world. Blocking (tens of milliseconds): call it off
    /// the async runtime. Identical bytes are compiled once.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<Compiled>, StrategyError> {
        self.compile_checked(bytes, true)
    }

    fn compile_checked(
        &self,
        bytes: &[u8],
        check_resources: bool,
    ) -> Result<Arc<Compiled>, StrategyError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(c) = self.lock_cache().get(&hash) {
            return Ok(c.clone());
        }
        let (pre, imports) = self.load(bytes, check_resources)?;
        let indices =
            wit_selector::GuestIndices::new(&pre).map_err(|e| StrategyError::WrongWorld {
                world: "selection",
                detail: format!("{e:#}"),
            })?;
        let compiled = Arc::new(Compiled {
            pre,
            indices,
            hash,
            imports,
        });
        self.lock_cache().insert(hash, compiled.clone());
        Ok(compiled)
    }

    /// Compiles `bytes`, checks that it imports nothing but our WIT and (with
    /// `check_resources`) declares no more than the sandbox allows, and links it.
    fn load(
        &self,
        bytes: &[u8],
        check_resources: bool,
    ) -> Result<(wasmtime::component::InstancePre<HostState>, Vec<String>), StrategyError> {
        let engine = &self.inner.engine;
        let component =
            Component::new(engine, bytes).map_err(|e| StrategyError::Compile(format!("{e:#}")))?;
        let imports: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        if let Some(bad) = imports
            .iter()
            .find(|i| !ALLOWED_IMPORTS.contains(&i.as_str()))
        {
            return Err(StrategyError::ForbiddenImport {
                import: bad.clone(),
            });
        }
        if check_resources {
            self.check_resources(&component)?;
        }
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| StrategyError::Compile(format!("{e:#}")))?;
        Ok((pre, imports))
    }

    /// Refuses a component that declares more than the sandbox allows, before any of
    /// it runs.
    fn check_resources(&self, component: &Component) -> Result<(), StrategyError> {
        let limits = self.inner.limits;
        let too_many = |detail: String| Err(StrategyError::Resources { detail });
        let Some(r) = component.resources_required() else {
            return too_many("instantiates a module it imports".into());
        };
        if r.num_memories as usize > limits.memories {
            return too_many(format!(
                "declares {} memories, at most {} allowed",
                r.num_memories, limits.memories
            ));
        }
        if r.num_tables as usize > limits.tables {
            return too_many(format!(
                "declares {} tables, at most {} allowed",
                r.num_tables, limits.tables
            ));
        }
        if let Some(pages) = r.max_initial_memory_size
            && pages.saturating_mul(64 << 10) > limits.memory as u64
        {
            return too_many(format!(
                "starts with {pages} memory pages, over the {} KiB cap",
                limits.memory >> 10
            ));
        }
        if let Some(n) = r.max_initial_table_size
            && n > limits.table_elements as u64
        {
            return too_many(format!(
                "starts with a table of {n} elements, at most {} allowed",
                limits.table_elements
            ));
        }
        Ok(())
    }

    /// A store under this engine's memory cap, with `host.random` seeded by `seed`,
    /// and the deadlines in epoch ticks (call, update).
    fn store(&self, seed: u64) -> (Store<HostState>, u64, u64) {
        let limits = self.inner.limits;
        let state = HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                .instances(limits.instances)
                .memories(limits.memories)
                .tables(limits.tables)
                .table_elements(limits.table_elements)
                .trap_on_grow_failure(true)
                .build(),
            rng: seed,
            pool: None,
            clock: self.inner.clock.clone(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = deadline_ticks(limits.deadline);
        let update_ticks = deadline_ticks(limits.update_deadline);
        // Instantiation runs guest code too.
        arm(&mut store, update_ticks);
        (store, ticks, update_ticks)
    }

    /// Admission: [`StrategyEngine::compile`], then canary calls under this engine's
    /// limits with adversarial inputs (an empty set, one proxy, 10,000 proxies,
    /// everything already tried). Only a component that passes them all may be
    /// installed; blocking, like `compile`.
    pub fn admit(&self, bytes: &[u8]) -> Result<Arc<Compiled>, StrategyError> {
        let compiled = self.compile(bytes)?;
        let mut inst = self.canary_instance(&compiled)?;
        let big: Vec<ProxyId> = (0..10_000).collect();
        // Each canary: candidates, what is tried, whether an untried id remains.
        let cases: [(&'static str, &[ProxyId], &[ProxyId], bool); 5] = [
            ("empty set", &[], &[], false),
            ("one proxy", &[7], &[], true),
            ("one proxy, tried", &[7], &[7], false),
            ("10,000 proxies", &big, &big[..3], true),
            ("10,000 proxies, all tried", &big, &big, false),
        ];
        for (name, ids, tried, untried_left) in cases {
            // A deadline is confirmed twice more on fresh instances: one may be the
            // OS descheduling this thread mid-call on a loaded machine.
            let mut outcome = self.canary(&mut inst, ids, tried, untried_left);
            for _ in 0..DEADLINE_CONFIRMATIONS {
                if outcome != Err(Fault::Deadline) {
                    break;
                }
                inst = self.canary_instance(&compiled)?;
                outcome = self.canary(&mut inst, ids, tried, untried_left);
            }
            outcome.map_err(|fault| StrategyError::Canary {
                canary: name,
                fault,
            })?;
        }
        Ok(compiled)
    }

    /// One canary: candidates `ids` (sorted), `tried` already, and whether an untried
    /// id remains; a pick and a batch must both be valid.
    fn canary(
        &self,
        inst: &mut Instance,
        ids: &[ProxyId],
        tried: &[ProxyId],
        untried_left: bool,
    ) -> Result<(), Fault> {
        let limits = self.inner.limits;
        let started = thread_cpu();
        inst.set_candidates(ids, &vec![1000; ids.len()], &vec![0; ids.len()])?;
        within(started, limits.update_deadline)?;
        let started = thread_cpu();
        let answer = inst.pick(
            PickContext {
                tried,
                ..PickContext::first("canary", crate::config::Transport::Http)
            },
            &[],
        )?;
        within(started, limits.deadline)?;
        let eligible = |id: ProxyId| ids.binary_search(&id).is_ok();
        check_pick(answer, tried, eligible, untried_left)?;
        let started = thread_cpu();
        let batch = inst.pick_batch(64)?;
        within(started, limits.deadline)?;
        match batch.into_iter().find(|&id| !eligible(id)) {
            Some(bad) => Err(Fault::NotEligible(bad)),
            None => Ok(()),
        }
    }

    /// An instance for admission canaries. Where this thread's CPU clock can be
    /// read, a canary is judged by the CPU its calls use (a loaded machine's
    /// descheduling is not the guest's doing), and the epoch deadline only stops a
    /// runaway, at [`MAX_CALL_DEADLINE`].
    fn canary_instance(&self, compiled: &Compiled) -> Result<Instance, StrategyError> {
        let mut inst = self.instantiate(compiled, 0x5eed)?;
        if thread_cpu().is_some() {
            inst.ticks = deadline_ticks(MAX_CALL_DEADLINE);
            inst.update_ticks = inst.ticks;
        }
        Ok(inst)
    }

    /// A fresh instance of `compiled`; `seed` seeds its `host.random`.
    pub fn instantiate(&self, compiled: &Compiled, seed: u64) -> Result<Instance, StrategyError> {
        self.instantiate_for(compiled, seed, None)
    }

    /// As [`StrategyEngine::instantiate`], serving `pool`: `host.handshake-latency-us`
    /// answers from its members' measurements.
    pub fn instantiate_for(
        &self,
        compiled: &Compiled,
        seed: u64,
        pool: Option<crate::pool::Pool>,
    ) -> Result<Instance, StrategyError> {
        let (mut store, ticks, update_ticks) = self.store(seed);
        store.data_mut().pool = pool;
        let bindings = compiled
            .pre
            .instantiate(&mut store)
            .and_then(|instance| compiled.indices.load(&mut store, &instance))
            .map_err(|e| StrategyError::Instantiate(format!("{e:#}")))?;
        Ok(Instance {
            store,
            bindings,
            ticks,
            update_ticks,
            leases: Vec::new(),
        })
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Compiled>>> {
        // A panic while holding it cannot leave the map half-written.
        self.inner.cache.locked()
    }
}

/// The CPU time this thread has used, where the platform tells it.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Option<Duration> {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(Duration::from)
}

/// The CPU time this thread has used, where the platform tells it.
#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Option<Duration> {
    None
}

/// A deadline fault if the calls since `started` (a [`thread_cpu`] reading) used
/// more CPU than `limit`.
fn within(started: Option<Duration>, limit: Duration) -> Result<(), Fault> {
    match (started, thread_cpu()) {
        (Some(a), Some(b)) if b.saturating_sub(a) > limit => Err(Fault::Deadline),
        _ => Ok(()),
    }
}

/// Ticks that cover `deadline`: never less than the deadline, at most one tick more.
fn deadline_ticks(deadline: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
}

/// A component that passed the import and world checks, ready to instantiate.
pub struct Compiled {
    pre: wasmtime::component::InstancePre<HostState>,
    indices: wit_selector::GuestIndices,
    hash: [u8; 32],
    imports: Vec<String>,
}

impl Compiled {
    /// The sha256 of the component's bytes.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// What the component imports (a subset of [`ALLOWED_IMPORTS`]).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short: String = self.hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("Compiled")
            .field("sha256", &short)
            .field("imports", &self.imports)
            .finish()
    }
}

/// What a guest sees of the host.
struct HostState {
    limits: StoreLimits,
    rng: u64,
    /// The pool a selection instance serves, for `handshake-latency-us`.
    pool: Option<crate::pool::Pool>,
    clock: Arc<EpochClock>,
}

/// Before a guest call: the deadline, `ticks` from now, and a ticking clock.
fn arm(store: &mut Store<HostState>, ticks: u64) {
    store.data().clock.enter();
    store.set_epoch_deadline(ticks);
}

impl bindings::proxypool::strategy::types::Host for HostState {}

impl bindings::proxypool::strategy::host::Host for HostState {
    fn random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }

    fn handshake_latency_us(&mut self, id: ProxyId) -> u32 {
        self.pool
            .as_ref()
            .and_then(|p| p.members().get(id as usize))
            .map_or(0, |m| m.latency_us())
    }
}

pub use crate::pool::splitmix64;

/// The context of one pick, borrowed: building it allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct PickContext<'a> {
    /// The exchange (lowercase), or "default".
    pub exchange: &'a str,
    /// The transport.
    pub transport: crate::config::Transport,
    /// 0 for a connection's first pick, then 1, 2, … for retries.
    pub attempt: u32,
    /// Proxies already tried for this connection.
    pub tried: &'a [ProxyId],
    /// An optional affinity key.
    pub affinity: Option<u64>,
}

impl<'a> PickContext<'a> {
    /// The first pick of a connection: nothing tried yet, no affinity key.
    pub const fn first(exchange: &'a str, transport: crate::config::Transport) -> Self {
        PickContext {
            exchange,
            transport,
            attempt: 0,
            tried: &[],
            affinity: None,
        }
    }
}

/// One live instance of a strategy. Not `Sync`: the pool serialises calls.
pub struct Instance {
    store: Store<HostState>,
    bindings: wit_selector::Guest,
    /// Reused for every pick's lease counts.
    leases: Vec<WitLeaseCount>,
    ticks: u64,
    update_ticks: u64,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl Instance {
    /// Replaces the eligible set (see the WIT for the meaning of each list).
    pub fn set_candidates(
        &mut self,
        ids: &[ProxyId],
        weights: &[u32],
        active: &[u32],
    ) -> Result<(), Fault> {
        arm(&mut self.store, self.update_ticks);
        self.bindings
            .call_set_candidates(&mut self.store, ids, weights, active)
            .map_err(|e| Fault::from_wasmtime(&e))
    }

    /// The guest's raw answer to one pick, given the lease counts that changed since
    /// the last call; the caller checks it against the eligible set ([`check_pick`]).
    pub fn pick(
        &mut self,
        ctx: PickContext<'_>,
        leases: &[LeaseCount],
    ) -> Result<Option<ProxyId>, Fault> {
        arm(&mut self.store, self.ticks);
        self.leases.clear();
        self.leases.extend(leases.iter().map(|l| WitLeaseCount {
            id: l.id,
            active: l.active,
        }));
        let wit = bindings::proxypool::strategy::types::PickContext {
            exchange: ctx.exchange,
            transport: match ctx.transport {
                crate::config::Transport::Http => WitTransport::Http,
                crate::config::Transport::Websocket => WitTransport::Websocket,
            },
            attempt: ctx.attempt,
            tried: ctx.tried,
            affinity: ctx.affinity,
            leases: &self.leases,
        };
        self.bindings
            .call_pick(&mut self.store, wit)
            .map_err(|e| Fault::from_wasmtime(&e))
    }

    /// Up to `max` upcoming picks; empty for load-dependent strategies.
    pub fn pick_batch(&mut self, max: u32) -> Result<Vec<ProxyId>, Fault> {
        arm(&mut self.store, self.ticks);
        let batch = self
            .bindings
            .call_pick_batch(&mut self.store, max)
            .map_err(|e| Fault::from_wasmtime(&e))?;
        if batch.len() > max as usize {
            return Err(Fault::Trap(format!(
                "pick-batch returned {} ids for max {max}",
                batch.len()
            )));
        }
        Ok(batch)
    }
}

/// Checks a guest's answer: an eligible, untried id, or none only when nothing is left.
/// `eligible(id)` must be O(1).
pub fn check_pick(
    answer: Option<ProxyId>,
    tried: &[ProxyId],
    eligible: impl Fn(ProxyId) -> bool,
    untried_left: bool,
) -> Result<Option<ProxyId>, Fault> {
    match answer {
        Some(id) if !eligible(id) => Err(Fault::NotEligible(id)),
        Some(id) if tried.contains(&id) => Err(Fault::AlreadyTried(id)),
        None if untried_left => Err(Fault::NoneWithEligible),
        ok => Ok(ok),
    }
}

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
