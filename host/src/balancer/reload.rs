//! Configuration reload that keeps everything learned.
//!
//! [`Balancer::reload`] loads every changed pool's strategy and verdict first,
//! through the same admission as a file swap; any failure rejects the whole file
//! and nothing changes. Then it builds the new routes and swaps them in one store:
//! a connect sees the old routes or the new ones. A pool whose settings did not
//! change is the same pool afterwards. A changed one is succeeded
//! ([`Pool::succeed`]): members are matched by scheme, host, port and user, so a
//! member that stays keeps its health, breaker, latency, bans and live leases; a
//! member that left drains (its tunnels go on, no new pick reaches it, its probes
//! stop with the old pool's checker); the new strategy instance starts from the
//! live lease counts.

use crate::sync::Locked as _;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{Balancer, BalancerError, Routes};
use crate::config::Config;
use crate::metrics::Sample;
use crate::metrics::families as F;
use crate::pool::Pool;

/// What a reload did to one route's pool.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteChange {
    /// Its settings are as they were: the same pool, untouched.
    Kept {
        /// The route path (`exchanges.binance.http`).
        route: String,
    },
    /// A new pool.
    Added {
        /// The route path.
        route: String,
        /// Its members' labels.
        members: Vec<String>,
    },
    /// The pool is gone; its live tunnels drain.
    Removed {
        /// The route path.
        route: String,
    },
    /// The pool was switched off (`enabled: false`): the route takes its `url`, or
    /// goes direct; live tunnels drain; the members' state is kept.
    SwitchedOff {
        /// The route path.
        route: String,
    },
    /// A switched-off pool is on again, with the state its members had.
    SwitchedOn {
        /// The route path.
        route: String,
    },
    /// The pool's settings changed; its staying members kept their state.
    Changed {
        /// The route path.
        route: String,
        /// Labels of the members that stayed.
        kept: Vec<String>,
        /// Labels of the members that are new.
        added: Vec<String>,
        /// Labels of the members that left (they drain).
        removed: Vec<String>,
    },
}

/// What [`Balancer::reload`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadReport {
    /// The generation in force afterwards (unchanged if nothing changed).
    pub generation: u64,
    /// One entry per route that has, or had, a pool, in route order.
    pub pools: Vec<RouteChange>,
    /// Whether anything besides the pools changed (single proxies, direct routes,
    /// the `gateway:` section).
    pub other_settings: bool,
}

impl ReloadReport {
    /// Whether the reload changed nothing at all.
    pub fn is_unchanged(&self) -> bool {
        !self.other_settings
            && self
                .pools
                .iter()
                .all(|c| matches!(c, RouteChange::Kept { .. }))
    }
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unchanged() {
            return f.write_str("no change");
        }
        write!(f, "generation {}:", self.generation)?;
        let list = |v: &[String]| v.join(", ");
        for c in &self.pools {
            match c {
                RouteChange::Kept { .. } => {}
                RouteChange::Added { route, members } => {
                    write!(f, " {route} added ({});", list(members))?
                }
                RouteChange::Removed { route } => write!(f, " {route} removed;")?,
                RouteChange::SwitchedOff { route } => write!(f, " {route} switched off;")?,
                RouteChange::SwitchedOn { route } => write!(f, " {route} switched on;")?,
                RouteChange::Changed {
                    route,
                    kept,
                    added,
                    removed,
                } => {
                    write!(f, " {route} changed ({} kept", kept.len())?;
                    if !added.is_empty() {
                        write!(f, ", added {}", list(added))?;
                    }
                    if !removed.is_empty() {
                        write!(f, ", removed {}", list(removed))?;
                    }
                    f.write_str(");")?;
                }
            }
        }
        let kept = self
            .pools
            .iter()
            .filter(|c| matches!(c, RouteChange::Kept { .. }))
            .count();
        write!(f, " {kept} pools unchanged")?;
        if self.other_settings {
            f.write_str("; other settings changed")?;
        }
        Ok(())
    }
}

/// The last reload's result, for status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// When it was tried.
    pub at: SystemTime,
    /// Whether it was applied (or changed nothing).
    pub ok: bool,
    /// The report, or why it was rejected (redacted).
    pub summary: String,
}

/// Reloads by result, and the last one.
#[derive(Debug, Default)]
pub(super) struct ReloadCounters {
    applied: AtomicU64,
    unchanged: AtomicU64,
    rejected: AtomicU64,
    last: Mutex<Option<ReloadOutcome>>,
}

impl ReloadCounters {
    fn record(&self, ok: bool, unchanged: bool, summary: String) {
        let counter = match (ok, unchanged) {
            (false, _) => &self.rejected,
            (true, true) => &self.unchanged,
            (true, false) => &self.applied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        *self.last.locked() = Some(ReloadOutcome {
            at: SystemTime::now(),
            ok,
            summary,
        });
    }

    pub(super) fn collect(&self, generation: u64, out: &mut Vec<Sample>) {
        for (result, v) in [
            ("applied", &self.applied),
            ("unchanged", &self.unchanged),
            ("rejected", &self.rejected),
        ] {
            out.push(Sample::counter(
                &F::RELOADS_TOTAL,
                vec![("result", result.to_owned())],
                v.load(Ordering::Relaxed),
            ));
        }
        out.push(Sample::gauge(
            &F::CONFIG_GENERATION,
            vec![],
            generation as f64,
        ));
    }
}

/// One route's pool in the reload being built.
enum Plan {
    Keep(Arc<super::PoolEntry>),
    /// A parked entry whose settings are as they were, back in service.
    Unpark(Arc<super::PoolEntry>),
    Build(super::EntryParts, Option<Arc<super::PoolEntry>>),
}

impl Balancer {
    /// Replaces the configuration in force with `config`, keeping what the pools
    /// learned (see the module documentation). All or nothing: if any changed pool's
    /// strategy or verdict fails to load, the error is logged once, counted, and
    /// returned, and the running configuration keeps serving. Blocking (it may
    /// compile): call it from a blocking task.
    pub fn reload(&self, config: Config) -> Result<ReloadReport, BalancerError> {
        let _one_at_a_time = self.reloading.locked();
        let old = self.routes.load_full();
        let mut plans = Vec::new();
        for (name, spec) in config.pools() {
            let parked = old.parked.get(&name);
            let previous = old.pools.get(&name).or(parked);
            let plan = match previous {
                Some(e) if *e.pool.spec() == spec.bounded() && parked.is_some() => {
                    Plan::Unpark(e.clone())
                }
                Some(e) if *e.pool.spec() == spec.bounded() => Plan::Keep(e.clone()),
                _ => {
                    let seed = std::hash::BuildHasher::hash_one(&self.seeds, &name);
                    match Self::load_parts(&self.engine, &name, spec, seed) {
                        Ok(parts) => Plan::Build(parts, previous.cloned()),
                        Err(e) => {
                            self.reload_rejected(&e, 1);
                            return Err(e);
                        }
                    }
                }
            };
            plans.push((name, spec.clone(), plan));
        }
        // Nothing can fail from here on.
        let report = diff(&old, &config);
        if report.is_unchanged() {
            self.reloads.record(true, true, report.to_string());
            tracing::info!(target: "proxypool::config", "reload: no change");
            return Ok(report);
        }
        let mut pools = std::collections::HashMap::new();
        let mut drained = Vec::new();
        for (name, spec, plan) in plans {
            let entry = match plan {
                Plan::Keep(e) | Plan::Unpark(e) => e,
                Plan::Build(parts, None) => Arc::new(parts.assemble(Pool::new(&name, &spec), None)),
                Plan::Build(parts, Some(previous)) => {
                    let (pool, succession) = previous.pool.succeed(&spec);
                    if !succession.removed.is_empty() {
                        drained.push((previous.pool.clone(), succession.removed));
                    }
                    Arc::new(parts.assemble(pool, Some(&previous)))
                }
            };
            pools.insert(name, entry);
        }
        let mut parked = std::collections::HashMap::new();
        for (name, _) in config.switched_off_pools() {
            if let Some(e) = old.pools.get(&name) {
                drained.push((e.pool.clone(), all_ids(&e.pool)));
                parked.insert(name, e.clone());
            } else if let Some(e) = old.parked.get(&name) {
                parked.insert(name, e.clone());
            }
        }
        for (name, e) in old.pools.iter().chain(old.parked.iter()) {
            if !pools.contains_key(name) && !parked.contains_key(name) {
                drained.push((e.pool.clone(), all_ids(&e.pool)));
            }
        }
        // A parked pool neither probes nor keeps a breaker timer.
        for e in parked.values() {
            e.checker.locked().take();
        }
        let routes = Routes {
            generation: report.generation,
            config: Arc::new(config),
            pools,
            parked,
        };
        self.routes.store(Arc::new(routes));
        self.draining.locked().extend(drained);
        self.start_checks(&self.routes.load());
        tracing::info!(target: "proxypool::config", "reload applied: {report}");
        self.reloads.record(true, false, report.to_string());
        Ok(report)
    }

    /// What [`Balancer::reload`] with `config` would change, changing nothing. It
    /// does not load strategies, so a strategy that would fail admission is not
    /// caught here.
    pub fn plan(&self, config: &Config) -> ReloadReport {
        diff(&self.routes.load(), config)
    }

    /// Counts a reload that failed before it reached [`Balancer::reload`] (a file
    /// that does not parse or validate), logs it once, and keeps it as the last
    /// result. `why` must already be redacted (config errors are).
    /// Status and metrics, which scrapers read, get only the count of `problems`;
    /// the log gets `why` (redacted).
    pub fn reload_rejected(&self, why: &dyn fmt::Display, problems: usize) {
        tracing::warn!(target: "proxypool::config", "reload rejected: {why}; the running configuration keeps serving");
        let problems = problems.max(1);
        let plural = if problems == 1 { "" } else { "s" };
        self.reloads.record(
            false,
            false,
            format!("rejected: {problems} problem{plural} (the log has them); the running configuration keeps serving"),
        );
    }

    /// The configuration generation in force: 1 at start, one more per applied reload.
    pub fn generation(&self) -> u64 {
        self.routes.load().generation
    }

    /// The last reload's result, if there was one.
    pub fn last_reload(&self) -> Option<ReloadOutcome> {
        self.reloads.last.locked().clone()
    }
}

/// What replacing `old` with `config` changes, per route: the report of a reload
/// and of a plan alike. Members are named by their labels, old and new.
fn diff(old: &Routes, config: &Config) -> ReloadReport {
    let mut changes = Vec::new();
    for (name, spec) in config.pools() {
        let parked = old.parked.get(&name);
        let new_labels = || crate::pool::member_labels(spec.members.iter().map(|m| &m.url));
        let change = match old.pools.get(&name).or(parked) {
            Some(e) if *e.pool.spec() == spec.bounded() && parked.is_some() => {
                RouteChange::SwitchedOn { route: name }
            }
            Some(e) if *e.pool.spec() == spec.bounded() => RouteChange::Kept { route: name },
            Some(e) => {
                let old_urls: Vec<_> = e.pool.members().iter().map(|m| m.url()).collect();
                let new_urls: Vec<_> = spec.members.iter().map(|m| &m.url).collect();
                let (_, s) = crate::pool::match_members(&old_urls, &new_urls);
                let new_labels = new_labels();
                let pick = |ids: &[u32]| -> Vec<String> {
                    ids.iter()
                        .map(|&i| new_labels[i as usize].clone())
                        .collect()
                };
                let kept: Vec<u32> = s.kept.iter().map(|(_, new)| *new).collect();
                RouteChange::Changed {
                    route: name,
                    kept: pick(&kept),
                    added: pick(&s.added),
                    removed: labels(&e.pool, s.removed.iter().copied()),
                }
            }
            None => RouteChange::Added {
                route: name,
                members: new_labels(),
            },
        };
        changes.push(change);
    }
    let mut off = Vec::new();
    for (name, _) in config.switched_off_pools() {
        if old.pools.contains_key(&name) {
            changes.push(RouteChange::SwitchedOff {
                route: name.clone(),
            });
        } else if old.parked.contains_key(&name) {
            changes.push(RouteChange::Kept {
                route: name.clone(),
            });
        }
        off.push(name);
    }
    for name in old.pools.keys().chain(old.parked.keys()) {
        if !off.contains(name) && !config.pools().any(|(n, _)| n == *name) {
            changes.push(RouteChange::Removed {
                route: name.clone(),
            });
        }
    }
    changes.sort_by(|a, b| route_of(a).cmp(route_of(b)));
    let pools_same = changes
        .iter()
        .all(|c| matches!(c, RouteChange::Kept { .. }));
    ReloadReport {
        generation: old.generation + u64::from(*old.config != *config),
        pools: changes,
        // Pools alike but files not: what changed is elsewhere.
        other_settings: *old.config != *config
            && (pools_same || other_than_pools(&old.config, config)),
    }
}

fn route_of(c: &RouteChange) -> &str {
    match c {
        RouteChange::Kept { route }
        | RouteChange::Added { route, .. }
        | RouteChange::Removed { route }
        | RouteChange::SwitchedOff { route }
        | RouteChange::SwitchedOn { route }
        | RouteChange::Changed { route, .. } => route,
    }
}

fn all_ids(pool: &Pool) -> Vec<u32> {
    (0..pool.members().len() as u32).collect()
}

fn labels(pool: &Pool, ids: impl Iterator<Item = u32>) -> Vec<String> {
    ids.map(|id| pool.members()[id as usize].label().to_owned())
        .collect()
}

/// Whether two configurations differ in more than their pools' settings.
fn other_than_pools(a: &Config, b: &Config) -> bool {
    a.gateway() != b.gateway() || a.route_table() != b.route_table()
}
