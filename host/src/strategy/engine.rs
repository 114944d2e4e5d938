//! The engine: one `wasmtime::Engine` per process, its epoch clock (the per-call
//! deadline), the sandbox limits, admission, and the cache of compiled components.

use super::*;

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
    pub(super) inner: Arc<EngineInner>,
}

pub(super) struct EngineInner {
    pub(super) engine: wasmtime::Engine,
    pub(super) clock: Arc<EpochClock>,
    pub(super) linker: Linker<HostState>,
    pub(super) limits: Limits,
    pub(super) cache: Mutex<HashMap<[u8; 32], Arc<Compiled>>>,
    pub(super) threshold: std::sync::OnceLock<Arc<CompiledVerdict>>,
}

/// The deadline clock shared by the thread that ticks an engine's epoch and every
/// store of that engine. The thread parks once no guest call has started for
/// [`PARK_AFTER_TICKS`], and the next call wakes it: an idle gateway does not wake
/// 1,000 times a second, and a busy one pays a load per call.
#[derive(Default)]
pub(super) struct EpochClock {
    /// [`ACTIVE`], [`SLEEPY`] (no call since the thread last looked) or [`PARKED`].
    pub(super) state: std::sync::atomic::AtomicU8,
    pub(super) thread: std::sync::OnceLock<std::thread::Thread>,
}

pub(super) const ACTIVE: u8 = 0;
pub(super) const SLEEPY: u8 = 1;
pub(super) const PARKED: u8 = 2;

impl EpochClock {
    /// Before each guest call: the clock must be ticking while it runs.
    pub(super) fn enter(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        // The swap, and the cross-core traffic it costs, only after an idle spell.
        if self.state.load(SeqCst) != ACTIVE
            && self.state.swap(ACTIVE, SeqCst) == PARKED
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    pub(super) fn parked(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::SeqCst) == PARKED
    }

    /// The ticking thread's body: `tick` once a tick while calls may run, until
    /// `alive` says the engine is gone. Each tick comes a whole tick after the last,
    /// or after the wake-up that ended a park, so that the call that woke the clock
    /// gets its whole deadline.
    #[allow(clippy::disallowed_methods)]
    pub(super) fn run(&self, tick: impl Fn(), alive: impl Fn() -> bool) {
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
    pub(super) fn load(
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
    pub(super) fn store(&self, seed: u64) -> (Store<HostState>, u64, u64) {
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
pub(super) fn thread_cpu() -> Option<Duration> {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(Duration::from)
}

/// The CPU time this thread has used, where the platform tells it.
#[cfg(not(target_os = "linux"))]
pub(super) fn thread_cpu() -> Option<Duration> {
    None
}

/// A deadline fault if the calls since `started` (a [`thread_cpu`] reading) used
/// more CPU than `limit`.
pub(super) fn within(started: Option<Duration>, limit: Duration) -> Result<(), Fault> {
    match (started, thread_cpu()) {
        (Some(a), Some(b)) if b.saturating_sub(a) > limit => Err(Fault::Deadline),
        _ => Ok(()),
    }
}

/// Ticks that cover `deadline`: never less than the deadline, at most one tick more.
pub(super) fn deadline_ticks(deadline: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
}

/// A component that passed the import and world checks, ready to instantiate.
pub struct Compiled {
    pub(super) pre: wasmtime::component::InstancePre<HostState>,
    pub(super) indices: wit_selector::GuestIndices,
    pub(super) hash: [u8; 32],
    pub(super) imports: Vec<String>,
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
