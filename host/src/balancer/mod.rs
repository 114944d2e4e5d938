//! The facade: wires a [`Config`] into pools, strategies, health checks and the
//! dialer, and opens tunnels by route with failover, hedging and the pool's all-down
//! policy. A gateway (or any embedding client) uses only this.

mod check;
mod connect;
mod counters;
mod error;
mod reload;
mod schedule;
mod tunnel;

use crate::sync::Locked as _;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{
    BuiltinStrategy, Config, PoolSpec, RouteOrigin, RoutePath, StrategyRef, Transport, Upstream,
    UpstreamRef, VerdictRef,
};
use crate::dial::{DialContext, DialProbe};
use crate::health::{DEFAULT_PROBE_CONCURRENCY, HealthChecker, Verdict, VerdictSlot};
use crate::metrics::families as F;
use crate::metrics::{Collect, Registry, Sample};
use crate::pool::Pool;
use crate::strategy::{
    Limits, Selector, StrategyEngine, StrategyError, StrategyWatch, WasmVerdict,
};
use arc_swap::ArcSwap;
pub use check::{ProxyCheck, check_proxies, proxies_to_check};
// What the gateway and the CLI use of the layers below: the facade is their one door.
pub use crate::dial::{
    DestinationGuard, DialError, Dialer, FaultClass, Forbidden, ProxyStream, Replay, Target,
    canonical,
};
pub use crate::pool::{Ban, BanReason, BreakerState, Lease, MemberStatus, Outcome};
pub use crate::strategy::SelectorStats;
pub use counters::{ConnectCounters, ConnectTotals};
pub use error::{BalancerError, ConnectError};
pub use reload::{ReloadOutcome, ReloadReport, RouteChange};
use sha2::Digest;
pub use tunnel::Tunnel;

/// The parts of a pool entry that can fail to load.
struct EntryParts {
    selector: Arc<Selector>,
    watch: Option<StrategyWatch>,
    verdict: VerdictSlot,
    verdict_watch: Option<StrategyWatch>,
}

impl EntryParts {
    /// The entry for `pool`; with `previous` (the entry a reload replaces), its
    /// counters and measured handshakes go on.
    fn assemble(self, pool: Pool, previous: Option<&PoolEntry>) -> PoolEntry {
        let handshakes = previous.map_or_else(VecDeque::new, |p| {
            p.handshakes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        });
        PoolEntry {
            pool,
            selector: self.selector,
            watch: Mutex::new(self.watch),
            verdict: self.verdict,
            verdict_watch: Mutex::new(self.verdict_watch),
            handshakes: Mutex::new(handshakes),
            panic_rotor: AtomicU64::new(0),
            counters: previous.map_or_else(Default::default, |p| p.counters.clone()),
            checker: Mutex::new(None),
        }
    }
}

struct PoolEntry {
    pool: Pool,
    selector: Arc<Selector>,
    /// The watch on the strategy file, if the strategy is one.
    watch: Mutex<Option<StrategyWatch>>,
    verdict: VerdictSlot,
    /// The watch on the verdict file, if the verdict is one.
    verdict_watch: Mutex<Option<StrategyWatch>>,
    /// Recent handshake times, for the hedge delay.
    handshakes: Mutex<VecDeque<Duration>>,
    /// Rotation for the panic policy, which bypasses the strategy.
    panic_rotor: AtomicU64,
    /// Shared with the entry a reload makes for the same route, so counts go on.
    counters: Arc<ConnectCounters>,
    /// The pool's health checks, once [`Balancer::start`] (or a reload after it)
    /// started them; they stop when the entry drops.
    checker: Mutex<Option<Arc<HealthChecker>>>,
}

impl Collect for PoolEntry {
    fn collect(&self, out: &mut Vec<Sample>) {
        self.pool.collect(out);
        if let Some(c) = &*self.checker.locked() {
            c.collect(out);
        }
        let name = self.pool.name();
        self.counters.collect(name, out);
        let labels = || vec![("pool", name.to_owned())];
        let stats = self.selector.stats();
        out.push(Sample::gauge(
            &F::STRATEGY_GENERATION,
            labels(),
            stats.generation as f64,
        ));
        out.push(Sample::gauge(
            &F::STRATEGY_QUARANTINED,
            labels(),
            stats.quarantined as u8 as f64,
        ));
        out.push(Sample::counter(
            &F::STRATEGY_FAULTS_TOTAL,
            labels(),
            stats.faults,
        ));
        out.push(Sample::counter(
            &F::STRATEGY_FALLBACK_PICKS_TOTAL,
            labels(),
            stats.fallback_picks,
        ));
        for (component, watch) in [("strategy", &self.watch), ("verdict", &self.verdict_watch)] {
            let watch = watch.locked();
            let (installed, rejected) = watch.as_ref().map_or((0, 0), |w| {
                let c = w.counters();
                (
                    c.installed.load(Ordering::Relaxed),
                    c.rejected.load(Ordering::Relaxed),
                )
            });
            for (result, n) in [("installed", installed), ("rejected", rejected)] {
                let mut labels = labels();
                labels.push(("component", component.to_owned()));
                labels.push(("result", result.to_owned()));
                out.push(Sample::counter(&F::STRATEGY_RELOADS_TOTAL, labels, n));
            }
        }
    }
}

/// One configuration's routes and pools: a connect reads them once, so it sees the
/// configuration before a reload or after it, never a mix.
pub(crate) struct Routes {
    /// 1 for the configuration the balancer was built with; each reload that
    /// changes something adds one.
    pub(crate) generation: u64,
    pub(crate) config: Arc<Config>,
    pools: HashMap<String, Arc<PoolEntry>>,
    /// Pools a reload switched off (`enabled: false`), kept with what they learned
    /// for the reload that switches them on; nothing picks from them or probes them.
    parked: HashMap<String, Arc<PoolEntry>>,
}

/// Routes, pools, strategies and health checks, for one configuration at a time
/// ([`Balancer::reload`] replaces it).
pub struct Balancer {
    dialer: Dialer,
    engine: StrategyEngine,
    routes: Arc<ArcSwap<Routes>>,
    /// Where health checks run: set by [`Balancer::start`], used by later reloads.
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    /// Bounds the probes in flight across every pool.
    probe_permits: Arc<tokio::sync::Semaphore>,
    seeds: std::collections::hash_map::RandomState,
    /// Serialises reloads; connects never take it.
    reloading: Mutex<()>,
    reloads: Arc<reload::ReloadCounters>,
    draining: Draining,
    metrics: Registry,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field(
                "pools",
                &self.routes.load().pools.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Members a reload took out of service, by the pool they belonged to, while their
/// tunnels run: their series stay until the last one ends.
type Draining = Arc<Mutex<Vec<(Pool, Vec<crate::pool::ProxyId>)>>>;

/// Every pool's series, read from the routes in force at scrape time.
struct RoutesMetrics {
    routes: Arc<ArcSwap<Routes>>,
    reloads: Arc<reload::ReloadCounters>,
    draining: Draining,
}

impl Collect for RoutesMetrics {
    fn collect(&self, out: &mut Vec<Sample>) {
        let routes = self.routes.load();
        let mut names: Vec<&String> = routes.pools.keys().collect();
        names.sort();
        for name in names {
            routes.pools[name].collect(out);
        }
        self.reloads.collect(routes.generation, out);
        let mut draining = self.draining.locked();
        draining.retain(|(pool, ids)| {
            ids.iter()
                .any(|&id| pool.members()[id as usize].active() > 0)
        });
        for (pool, ids) in draining.iter() {
            pool.collect_members(Some(ids), out);
        }
    }
}

impl Balancer {
    /// Builds every pool and loads its strategy and health verdict: built-ins from
    /// inside the binary, `.wasm` files through admission (and then watched for hot
    /// swap). Nothing runs in the background until [`Balancer::start`], whether or
    /// not a runtime exists here. Blocking: compiling takes tens of milliseconds per
    /// distinct component.
    pub fn try_new(config: Config, dialer: Dialer) -> Result<Balancer, BalancerError> {
        Self::with_limits(config, dialer, Limits::default())
    }

    /// As [`Balancer::try_new`], with strategy limits other than the defaults.
    pub fn with_limits(
        config: Config,
        dialer: Dialer,
        limits: Limits,
    ) -> Result<Balancer, BalancerError> {
        let engine = StrategyEngine::try_new(limits).map_err(|source| BalancerError::Strategy {
            pool: "(engine)".into(),
            strategy: String::new(),
            source,
        })?;
        Self::with_engine(config, dialer, engine)
    }

    /// As [`Balancer::try_new`], on an engine that already exists: balancers that
    /// share one compile each distinct component once.
    pub fn with_engine(
        config: Config,
        dialer: Dialer,
        engine: StrategyEngine,
    ) -> Result<Balancer, BalancerError> {
        let seeds = std::collections::hash_map::RandomState::new();
        let mut pools = HashMap::new();
        for (name, spec) in config.pools() {
            let parts = Self::load_parts(&engine, &name, spec, seeds.hash_one(&name))?;
            let entry = parts.assemble(Pool::new(&name, spec), None);
            pools.insert(name, Arc::new(entry));
        }
        let routes = Arc::new(ArcSwap::from_pointee(Routes {
            generation: 1,
            config: Arc::new(config),
            pools,
            parked: HashMap::new(),
        }));
        let reloads = Arc::new(reload::ReloadCounters::default());
        let draining = Draining::default();
        let metrics = Registry::new();
        metrics.register(Arc::new(RoutesMetrics {
            routes: routes.clone(),
            reloads: reloads.clone(),
            draining: draining.clone(),
        }));
        Ok(Balancer {
            dialer,
            engine,
            routes,
            runtime: Mutex::new(None),
            probe_permits: Arc::new(tokio::sync::Semaphore::new(DEFAULT_PROBE_CONCURRENCY)),
            seeds,
            reloading: Mutex::new(()),
            reloads,
            draining,
            metrics,
        })
    }

    /// Starts the work that runs in the background on `runtime`: each pool's health
    /// probes and its breaker timer (which turns open breakers half-open when their
    /// cooldown ends). Until then the balancer dials, fails over and opens breakers,
    /// but nothing probes and a breaker turns half-open only when a connect looks.
    /// Strategy and verdict file watches need no runtime: they run on their own
    /// threads from construction. Pools a later reload adds start on the same
    /// runtime. Calling it again does nothing; the tasks stop when the balancer
    /// drops.
    pub fn start(&self, runtime: &tokio::runtime::Handle) {
        {
            let mut rt = self.runtime.locked();
            if rt.is_some() {
                return;
            }
            *rt = Some(runtime.clone());
        }
        let routes = self.routes.load();
        let started = self.start_checks(&routes);
        tracing::debug!(target: "proxypool::health", pools = started, "health checks started");
    }

    /// Starts the health checks of the pools in `routes` that have none yet, if the
    /// balancer has started; how many it started.
    fn start_checks(&self, routes: &Routes) -> usize {
        let Some(runtime) = self.runtime.locked().clone() else {
            return 0;
        };
        let _entered = runtime.enter();
        let mut names: Vec<&String> = routes.pools.keys().collect();
        names.sort();
        let mut started = 0;
        for name in names {
            let entry = &routes.pools[name];
            let mut checker = entry.checker.locked();
            if checker.is_some() {
                continue;
            }
            let probe = Arc::new(DialProbe::new(
                self.dialer.clone(),
                &entry.pool.spec().health_check,
            ));
            *checker = Some(Arc::new(HealthChecker::spawn(
                entry.pool.clone(),
                probe,
                entry.verdict.clone(),
                self.probe_permits.clone(),
            )));
            started += 1;
        }
        started
    }

    /// Whether [`Balancer::start`] has started the background work.
    pub fn started(&self) -> bool {
        self.runtime.locked().is_some()
    }

    /// What a pool needs besides its members, loaded before anything changes: the
    /// strategy through admission, its selector and watch, the verdict and its watch.
    fn load_parts(
        engine: &StrategyEngine,
        name: &str,
        spec: &PoolSpec,
        seed: u64,
    ) -> Result<EntryParts, BalancerError> {
        let err = |source| BalancerError::Strategy {
            pool: name.to_owned(),
            strategy: spec.strategy.to_string(),
            source,
        };
        let (compiled, fallback) = load_strategy(engine, &spec.strategy).map_err(err)?;
        let selector = Arc::new(Selector::new(engine.clone(), compiled, fallback, seed));
        let watch = watch_strategy(engine, &selector, &spec.strategy).map_err(err)?;
        let hc = &spec.health_check;
        let verdict_err = |source| BalancerError::Strategy {
            pool: name.to_owned(),
            strategy: format!("verdict {}", hc.verdict),
            source,
        };
        let verdict = load_verdict(engine, &hc.verdict, hc.rise, hc.fall).map_err(verdict_err)?;
        let slot: VerdictSlot = Arc::new(arc_swap::ArcSwap::from_pointee(verdict));
        let verdict_watch =
            watch_verdict(engine, &slot, &hc.verdict, hc.rise, hc.fall).map_err(verdict_err)?;
        Ok(EntryParts {
            selector,
            watch,
            verdict: slot,
            verdict_watch,
        })
    }

    /// The metrics of every pool, health checker and connect, for a gateway to serve.
    pub fn metrics(&self) -> &Registry {
        &self.metrics
    }

    /// Connect counters (failovers, hedges, all-down events), summed over pools.
    pub fn counters(&self) -> ConnectTotals {
        let mut totals = ConnectTotals::default();
        for entry in self.routes.load().pools.values() {
            totals.add(&entry.counters);
        }
        totals
    }

    /// Reports what `exchange` said through member `id` of the pool at `route`, as
    /// [`Tunnel::report`] does, for a client that no longer holds the connection
    /// (the gateway's `POST /report`). The upstream's name is `route/id`, as the
    /// gateway's `Proxypool-Upstream` header gives it.
    pub fn report(
        &self,
        route: &str,
        id: u32,
        exchange: &str,
        outcome: Outcome,
    ) -> Result<(), BalancerError> {
        let entry = self.entry(route)?;
        if id as usize >= entry.pool.members().len() {
            return Err(BalancerError::NoMember {
                route: route.to_owned(),
                id,
            });
        }
        entry
            .pool
            .report(id, exchange, outcome, tokio::time::Instant::now());
        Ok(())
    }

    /// Every pool's members and why any is out, by route path.
    pub fn status(&self) -> Vec<(String, Vec<MemberStatus>)> {
        let mut out: Vec<_> = self
            .routes
            .load()
            .pools
            .iter()
            .map(|(name, e)| (name.clone(), e.pool.status()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Changes a pool's health verdict live, through admission (as for strategies):
    /// on failure the current verdict keeps serving. A `.wasm` verdict is watched
    /// from then on. Blocking (it may compile).
    pub fn set_verdict(&self, route: &str, verdict: &VerdictRef) -> Result<(), BalancerError> {
        let entry = self.entry(route)?;
        let hc = &entry.pool.spec().health_check;
        let loaded = load_verdict(&self.engine, verdict, hc.rise, hc.fall).and_then(|v| {
            let watch = watch_verdict(&self.engine, &entry.verdict, verdict, hc.rise, hc.fall)?;
            Ok((v, watch))
        });
        match loaded {
            Ok((v, watch)) => {
                entry.verdict.store(Arc::new(v));
                *entry.verdict_watch.locked() = watch;
                tracing::info!(target: "proxypool::health", pool = route, "verdict {verdict} installed");
                Ok(())
            }
            Err(source) => {
                let e = BalancerError::Strategy {
                    pool: route.to_owned(),
                    strategy: format!("verdict {verdict}"),
                    source,
                };
                tracing::warn!(target: "proxypool::health", "{e}; the previous verdict keeps serving");
                Err(e)
            }
        }
    }

    /// Changes a pool's strategy at run time, through the same admission as a file
    /// swap: on any failure the current strategy keeps serving and the error says
    /// why. A `.wasm` path is watched from then on; a built-in stops any watch.
    /// Blocking (it may compile): call it from a blocking task.
    pub fn set_strategy(&self, route: &str, strategy: &StrategyRef) -> Result<(), BalancerError> {
        let err = |source| BalancerError::Strategy {
            pool: route.to_owned(),
            strategy: strategy.to_string(),
            source,
        };
        let entry = self.entry(route)?;
        let loaded = load_strategy(&self.engine, strategy)
            .and_then(|(compiled, fallback)| {
                let watch = watch_strategy(&self.engine, &entry.selector, strategy)?;
                Ok((compiled, fallback, watch))
            })
            .map_err(err);
        match loaded {
            Ok((compiled, fallback, watch)) => {
                entry.selector.set_strategy(compiled, fallback);
                *entry.watch.locked() = watch;
                tracing::info!(target: "proxypool::strategy", pool = route, "strategy {strategy} installed");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(target: "proxypool::strategy", "{e}; the previous strategy keeps serving");
                Err(e)
            }
        }
    }

    /// Limits where direct routes may connect (a gateway's own addresses, private
    /// ranges), checked on every resolved address; `None` lifts the limit.
    pub fn set_destination_guard(&self, guard: Option<crate::dial::DestinationGuard>) {
        self.dialer.set_guard(guard);
    }

    /// The limit [`Balancer::set_destination_guard`] set, if any.
    pub fn destination_guard(&self) -> Option<Arc<crate::dial::DestinationGuard>> {
        self.dialer.guard()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.routes.load().config.clone()
    }

    /// The entry serving a route path now.
    fn entry(&self, route: &str) -> Result<Arc<PoolEntry>, BalancerError> {
        self.routes
            .load()
            .pools
            .get(route)
            .cloned()
            .ok_or_else(|| BalancerError::NoPool {
                route: route.to_owned(),
            })
    }

    /// The strategy engine (for tools that load more components).
    pub fn engine(&self) -> &StrategyEngine {
        &self.engine
    }

    /// One route's members (`default.http`, `exchanges.binance.websocket`), as
    /// [`Balancer::status`] gives every route's.
    pub fn members(&self, route: &str) -> Option<Vec<MemberStatus>> {
        Some(self.routes.load().pools.get(route)?.pool.status())
    }

    /// One route's strategy: its generation, faults and fallback picks.
    pub fn strategy_stats(&self, route: &str) -> Option<SelectorStats> {
        Some(self.routes.load().pools.get(route)?.selector.stats())
    }

    /// The pool serving a route path, and its selector: for the crate's own tests.
    pub(crate) fn pool(&self, route: &str) -> Option<(Pool, Arc<Selector>)> {
        self.routes
            .load()
            .pools
            .get(route)
            .map(|e| (e.pool.clone(), e.selector.clone()))
    }

    /// Opens a tunnel to `target` for `(exchange, transport)`: direct if the route says
    /// so, through its proxy, or through its pool: the strategy picks, a proxy or
    /// config fault moves on to another proxy (up to the pool's `max_attempts`, within
    /// its deadline), a proxy that has not finished its handshake after the hedge
    /// delay is raced by a second one, and a destination fault returns at once. With
    /// no proxy eligible, the pool's `when_all_down` policy applies. Never a direct
    /// connection unless the route says direct.
    pub async fn connect(
        &self,
        exchange: Option<&str>,
        transport: Transport,
        target: &Target,
    ) -> Result<Tunnel, ConnectError> {
        self.connect_preferring(exchange, transport, target, None)
            .await
    }

    /// As [`Balancer::connect`], trying `prefer` first (an upstream as
    /// [`Tunnel::upstream`] names it, `route/id`) while it is eligible, not banned
    /// for the exchange, and of the route this connect takes: a sticky session. If it
    /// is not, or its dial fails, the connect goes on as usual.
    pub async fn connect_preferring(
        &self,
        exchange: Option<&str>,
        transport: Transport,
        target: &Target,
        prefer: Option<&str>,
    ) -> Result<Tunnel, ConnectError> {
        let started = tokio::time::Instant::now();
        // One load: this connect sees one configuration, whatever a reload does.
        let routes = self.routes.load_full();
        let route = routes.config.route(exchange, transport);
        let ctx = DialContext {
            exchange,
            transport,
        };
        let name = pool_name(exchange, transport, route.origin);
        // The name ban lists and `Tunnel::report` use.
        let key = exchange.unwrap_or("default").to_ascii_lowercase();
        let prefer = prefer
            .and_then(|u| u.parse::<UpstreamRef>().ok())
            .filter(|u| u.route.to_string() == name)
            .map(|u| u.id);
        let req = connect::Request {
            ctx,
            exchange: key,
            target,
            started,
        };
        self.connect_upstream(&routes, route.upstream, &name, req, prefer)
            .await
    }

    async fn connect_upstream(
        &self,
        routes: &Routes,
        upstream: Option<&Upstream>,
        pool_name: &str,
        req: connect::Request<'_>,
        prefer: Option<u32>,
    ) -> Result<Tunnel, ConnectError> {
        let connected = |stream, via| {
            Tunnel::through(
                stream,
                via,
                None,
                req.started.elapsed(),
                req.exchange.clone(),
            )
        };
        match upstream {
            // `route` gives what a switched-off pool does instead, never the pool.
            None | Some(Upstream::Direct) | Some(Upstream::SwitchedOff { .. }) => {
                let stream = self
                    .dialer
                    .dial_direct(req.target, crate::config::DEFAULT_TIMEOUT)
                    .await?;
                Ok(connected(stream, None))
            }
            Some(Upstream::Proxy(p)) => {
                let stream = self
                    .dialer
                    .dial(&p.url, p.timeout, req.target, req.ctx)
                    .await?;
                Ok(connected(stream, Some(p.url.clone())))
            }
            Some(Upstream::Pool(_)) => {
                let entry = routes.pools.get(pool_name).ok_or(ConnectError::NoProxy {
                    route: pool_name.to_owned(),
                })?;
                Box::pin(self.connect_pool(routes, entry, req, prefer)).await
            }
        }
    }
}

/// A strategy's component and the native fallback with its semantics: built-ins come
/// from inside the binary, files go through admission (a custom file falls back to
/// round robin).
fn load_strategy(
    engine: &StrategyEngine,
    strategy: &StrategyRef,
) -> Result<(Arc<crate::strategy::Compiled>, BuiltinStrategy), StrategyError> {
    match strategy {
        StrategyRef::Builtin(b) => Ok((engine.builtin(*b)?, *b)),
        StrategyRef::Wasm(path) => {
            let bytes = std::fs::read(path).map_err(|source| StrategyError::Read {
                path: path.display().to_string(),
                source,
            })?;
            Ok((engine.admit(&bytes)?, BuiltinStrategy::RoundRobin))
        }
    }
}

/// A pool's verdict: the built-in `threshold` component or an admitted file.
fn load_verdict(
    engine: &StrategyEngine,
    verdict: &VerdictRef,
    rise: u32,
    fall: u32,
) -> Result<Box<dyn Verdict>, StrategyError> {
    let compiled = match verdict {
        VerdictRef::Threshold => engine.threshold_verdict()?,
        VerdictRef::Wasm(path) => {
            let bytes = std::fs::read(path).map_err(|source| StrategyError::Read {
                path: path.display().to_string(),
                source,
            })?;
            engine.admit_verdict(&bytes, rise, fall)?
        }
    };
    Ok(Box::new(WasmVerdict::new(
        engine.clone(),
        compiled,
        rise,
        fall,
    )))
}

fn watch_verdict(
    engine: &StrategyEngine,
    slot: &VerdictSlot,
    verdict: &VerdictRef,
    rise: u32,
    fall: u32,
) -> Result<Option<StrategyWatch>, StrategyError> {
    let VerdictRef::Wasm(path) = verdict else {
        return Ok(None);
    };
    let seen = std::fs::read(path)
        .ok()
        .map(|b| <[u8; 32]>::from(sha2::Sha256::digest(&b)));
    let (engine, slot) = (engine.clone(), slot.clone());
    StrategyWatch::start_with(path, seen, move |bytes| {
        let compiled = engine.admit_verdict(bytes, rise, fall)?;
        let v: Box<dyn Verdict> = Box::new(WasmVerdict::new(engine.clone(), compiled, rise, fall));
        slot.store(Arc::new(v));
        Ok(())
    })
    .map(Some)
}

fn watch_strategy(
    engine: &StrategyEngine,
    selector: &Arc<Selector>,
    strategy: &StrategyRef,
) -> Result<Option<StrategyWatch>, StrategyError> {
    match strategy {
        StrategyRef::Builtin(_) => Ok(None),
        StrategyRef::Wasm(path) => {
            StrategyWatch::start(engine.clone(), selector.clone(), path).map(Some)
        }
    }
}

/// The path of the pool a route resolved to: exchanges that fall back share the
/// default's pool.
fn pool_name(exchange: Option<&str>, transport: Transport, origin: RouteOrigin) -> String {
    let exchange = exchange.filter(|_| origin == RouteOrigin::Exchange);
    RoutePath::new(exchange, transport).to_string()
}
