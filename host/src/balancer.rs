//! The facade: wires a [`Config`] into pools, strategies and the dialer, and opens
//! tunnels by route. A gateway (or any embedding client) uses only this.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{
    BuiltinStrategy, Config, PoolSpec, ProxyUrl, RouteOrigin, StrategyRef, Transport, Upstream,
};
use crate::dial::{DialContext, DialError, Dialer, ProxyStream, Target};
use crate::pool::{Lease, Pool, ProxyId};
use crate::strategy::{
    Limits, PickContext, Selector, StrategyEngine, StrategyError, StrategyWatch,
};

/// Attempts per connection through a pool (bounded by the pool's size): the first
/// proxy and two others, as HAProxy's `retries 3` with `redispatch`.
pub const DEFAULT_MAX_ATTEMPTS: usize = 3;

/// Why a balancer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BalancerError {
    /// A pool's strategy could not be loaded or failed admission.
    #[error("{pool}: strategy {strategy}: {source}")]
    Strategy {
        /// The pool's route (`exchanges.binance.http`).
        pool: String,
        /// The configured strategy.
        strategy: String,
        /// Why.
        source: StrategyError,
    },
    /// No pool serves this route path.
    #[error("no pool at {route}")]
    NoPool {
        /// The route path asked for.
        route: String,
    },
}

/// A tunnel opened through a route.
#[derive(Debug)]
pub struct Connected {
    /// The tunnel.
    pub stream: ProxyStream,
    /// The proxy that carried it, or `None` for a direct connection.
    pub via: Option<ProxyUrl>,
    /// Time from the start of the connect to an open tunnel, retries included.
    pub handshake: Duration,
    /// Counts this connection against its proxy while held; keep it with the stream.
    pub lease: Option<Lease>,
}

struct PoolEntry {
    pool: Pool,
    selector: Arc<Selector>,
    /// The watch on the strategy file, if the strategy is one.
    watch: std::sync::Mutex<Option<StrategyWatch>>,
}

/// Routes, pools and strategies for one configuration.
pub struct Balancer {
    config: Config,
    dialer: Dialer,
    engine: StrategyEngine,
    pools: HashMap<String, PoolEntry>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("pools", &self.pools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Balancer {
    /// Builds every pool and loads its strategy: built-ins from inside the binary,
    /// `.wasm` files through admission (and then watched for hot swap). Blocking:
    /// compiling takes tens of milliseconds per distinct component.
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
        let seeds = std::collections::hash_map::RandomState::new();
        let mut pools = HashMap::new();
        for (name, spec) in config.pools() {
            let entry = Self::pool_entry(&engine, &name, spec, seeds.hash_one(&name))?;
            pools.insert(name, entry);
        }
        Ok(Balancer {
            config,
            dialer,
            engine,
            pools,
        })
    }

    fn pool_entry(
        engine: &StrategyEngine,
        name: &str,
        spec: &PoolSpec,
        seed: u64,
    ) -> Result<PoolEntry, BalancerError> {
        let err = |source| BalancerError::Strategy {
            pool: name.to_owned(),
            strategy: spec.strategy.to_string(),
            source,
        };
        let pool = Pool::new(name, spec);
        let (compiled, fallback) = load_strategy(engine, &spec.strategy).map_err(err)?;
        let selector = Arc::new(Selector::new(engine.clone(), compiled, fallback, seed));
        let watch = watch_strategy(engine, &selector, &spec.strategy).map_err(err)?;
        Ok(PoolEntry {
            pool,
            selector,
            watch: std::sync::Mutex::new(watch),
        })
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
        let entry = self.pools.get(route).ok_or_else(|| BalancerError::NoPool {
            route: route.to_owned(),
        })?;
        let loaded = load_strategy(&self.engine, strategy)
            .and_then(|(compiled, fallback)| {
                let watch = watch_strategy(&self.engine, &entry.selector, strategy)?;
                Ok((compiled, fallback, watch))
            })
            .map_err(err);
        match loaded {
            Ok((compiled, fallback, watch)) => {
                entry.selector.set_strategy(compiled, fallback);
                *entry.watch.lock().unwrap_or_else(|p| p.into_inner()) = watch;
                tracing::info!(target: "proxypool::strategy", pool = route, "strategy {strategy} installed");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(target: "proxypool::strategy", "{e}; the previous strategy keeps serving");
                Err(e)
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The strategy engine (for tools that load more components).
    pub fn engine(&self) -> &StrategyEngine {
        &self.engine
    }

    /// The pool serving a route path (`default.http`, `exchanges.binance.websocket`).
    pub fn pool(&self, route: &str) -> Option<(&Pool, &Selector)> {
        self.pools.get(route).map(|e| (&e.pool, &*e.selector))
    }

    /// Opens a tunnel to `target` for `(exchange, transport)`: direct if the route says
    /// so, through its proxy, or through its pool's strategy. In a pool a proxy fault
    /// moves on to another proxy (up to [`DEFAULT_MAX_ATTEMPTS`]); a destination or
    /// config fault returns at once. Never a direct connection unless the route says
    /// direct.
    pub async fn connect(
        &self,
        exchange: Option<&str>,
        transport: Transport,
        target: &Target,
    ) -> Result<Connected, DialError> {
        let started = Instant::now();
        let route = self.config.route(exchange, transport);
        let ctx = DialContext {
            exchange,
            transport,
        };
        match route.upstream {
            None | Some(Upstream::Direct) => {
                let stream = self
                    .dialer
                    .dial_direct(target, crate::config::DEFAULT_TIMEOUT)
                    .await?;
                Ok(Connected {
                    stream,
                    via: None,
                    handshake: started.elapsed(),
                    lease: None,
                })
            }
            Some(Upstream::Proxy(p)) => {
                let stream = self.dialer.dial(&p.url, p.timeout, target, ctx).await?;
                Ok(Connected {
                    stream,
                    via: Some(p.url.clone()),
                    handshake: started.elapsed(),
                    lease: None,
                })
            }
            Some(Upstream::Pool(_)) => {
                let name = pool_name(exchange, transport, route.origin);
                let entry = self.pools.get(&name).ok_or(DialError::NoProxy {
                    route: name.clone(),
                })?;
                self.connect_pool(entry, exchange, ctx, target, started)
                    .await
            }
        }
    }

    async fn connect_pool(
        &self,
        entry: &PoolEntry,
        exchange: Option<&str>,
        ctx: DialContext<'_>,
        target: &Target,
        started: Instant,
    ) -> Result<Connected, DialError> {
        let attempts = DEFAULT_MAX_ATTEMPTS.min(entry.pool.members().len());
        let mut tried: Vec<ProxyId> = Vec::with_capacity(attempts);
        let mut last = None;
        for attempt in 0..attempts {
            let pick = PickContext {
                exchange: exchange.unwrap_or("default"),
                transport: ctx.transport,
                attempt: attempt as u32,
                tried: &tried,
                affinity: None,
            };
            // The lease is taken before the dial, so the strategy sees the load at once.
            let Ok(lease) = entry.selector.pick(&entry.pool, pick) else {
                break;
            };
            let url = lease.url().clone();
            match self
                .dialer
                .dial(&url, entry.pool.timeout(), target, ctx)
                .await
            {
                Ok(stream) => {
                    return Ok(Connected {
                        stream,
                        via: Some(url),
                        handshake: started.elapsed(),
                        lease: Some(lease),
                    });
                }
                Err(e) if e.is_retryable() => {
                    tried.push(lease.id());
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| DialError::NoProxy {
            route: entry.pool.name().to_owned(),
        }))
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
    match (origin, exchange) {
        (RouteOrigin::Exchange, Some(e)) => {
            format!("exchanges.{}.{transport}", e.to_ascii_lowercase())
        }
        _ => format!("default.{transport}"),
    }
}
