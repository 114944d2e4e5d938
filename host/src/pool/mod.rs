//! Pools: the live state of one route's proxies.
//!
//! A [`Pool`] keeps per-proxy runtime cells (active leases, eligibility) and publishes
//! the eligible set as one immutable [`Snapshot`] behind an `ArcSwap`, so readers see
//! a consistent set without locks and every update is atomic. A [`Lease`] counts one
//! active connection on a proxy for as long as it lives (RAII, as tower's
//! pending-requests handle does), and records the change for load-aware strategies.
//! This layer has no probe logic and knows nothing of WebAssembly.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{PoolSpec, ProxyUrl};

/// A proxy's id within its pool: its index in the configured member list.
pub type ProxyId = u32;

/// One member and its runtime cells.
#[derive(Debug)]
pub struct Member {
    url: ProxyUrl,
    weight_milli: u32,
    enabled: bool,
    /// Set by health and breakers; only enabled and healthy members are eligible.
    healthy: AtomicBool,
    active: AtomicU32,
}

impl Member {
    /// The proxy.
    pub fn url(&self) -> &ProxyUrl {
        &self.url
    }

    /// Active leases right now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }
}

/// The eligible set at one moment. Immutable; replaced whole.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    eligible: Vec<ProxyId>,
    weights: Vec<u32>,
    mask: Vec<bool>,
}

impl Snapshot {
    /// Increases with every change of the eligible set.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Eligible ids, in member order.
    pub fn eligible(&self) -> &[ProxyId] {
        &self.eligible
    }

    /// Weights of the eligible ids, in thousandths, in the same order.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// Whether `id` is eligible, in O(1).
    pub fn is_eligible(&self, id: ProxyId) -> bool {
        self.mask.get(id as usize).copied().unwrap_or(false)
    }
}

/// Lease changes not yet delivered to the strategy.
#[derive(Debug, Default)]
pub struct LeaseEvents {
    /// One entry per lease acquired.
    pub acquired: Vec<ProxyId>,
    /// One entry per lease released.
    pub released: Vec<ProxyId>,
}

impl LeaseEvents {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        self.acquired.is_empty() && self.released.is_empty()
    }

    /// Forgets the events but keeps the buffers' capacity.
    pub fn clear(&mut self) {
        self.acquired.clear();
        self.released.clear();
    }
}

/// The live state of one route's proxies. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    name: String,
    members: Vec<Member>,
    timeout: Duration,
    snapshot: ArcSwap<Snapshot>,
    /// Serialises snapshot rebuilds (readers never take it).
    rebuild: Mutex<()>,
    events: Mutex<LeaseEvents>,
    next_version: AtomicU64,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("members", &self.inner.members)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `spec`, named by its route (`exchanges.binance.http`). Every enabled
    /// member starts eligible.
    pub fn new(name: impl Into<String>, spec: &PoolSpec) -> Pool {
        let members = spec
            .members
            .iter()
            .map(|m| Member {
                url: m.url.clone(),
                weight_milli: (m.weight * 1000.0).round() as u32,
                enabled: m.enabled,
                healthy: AtomicBool::new(true),
                active: AtomicU32::new(0),
            })
            .collect();
        let inner = Arc::new(PoolInner {
            name: name.into(),
            members,
            timeout: spec.timeout,
            snapshot: ArcSwap::from_pointee(Snapshot {
                version: 0,
                eligible: Vec::new(),
                weights: Vec::new(),
                mask: Vec::new(),
            }),
            rebuild: Mutex::new(()),
            events: Mutex::default(),
            next_version: AtomicU64::new(1),
        });
        let pool = Pool { inner };
        pool.republish();
        pool
    }

    /// A pool of `urls` with the config layer's defaults (round robin, weight 1,
    /// 30 s timeout), for embedding without a config file; the URLs are validated
    /// as in a config.
    pub fn from_urls<I, S>(name: impl Into<String>, urls: I) -> Result<Pool, crate::ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        use crate::config::{ConfigBuilder, ProxyEntry, Transport, Upstream};
        let config = ConfigBuilder::new()
            .enabled(true)
            .default_proxy(Transport::Http, ProxyEntry::pool(urls))
            .build()?;
        match config.route(None, Transport::Http).upstream {
            Some(Upstream::Pool(spec)) => Ok(Pool::new(name, spec)),
            other => unreachable!("a pool entry resolves to a pool, got {other:?}"),
        }
    }

    /// The route this pool serves.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Bound on connect plus handshake through a member.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// All members, by id.
    pub fn members(&self) -> &[Member] {
        &self.inner.members
    }

    /// The current eligible set (a cheap, lock-free load).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.snapshot.load()
    }

    /// Marks a member healthy or not, republishing the snapshot if that changes it.
    pub fn set_healthy(&self, id: ProxyId, healthy: bool) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        if m.healthy.swap(healthy, Ordering::AcqRel) != healthy {
            self.republish();
        }
    }

    /// A lease on `id`: counts one active connection until dropped.
    pub fn lease(&self, id: ProxyId) -> Lease {
        // Count and event change together, so a reader of both never double counts.
        let mut ev = self.lock_events();
        self.inner.members[id as usize]
            .active
            .fetch_add(1, Ordering::Relaxed);
        ev.acquired.push(id);
        drop(ev);
        Lease {
            pool: self.inner.clone(),
            id,
        }
    }

    /// Moves the undelivered lease changes into `into` (whose buffers are reused) and,
    /// if `counts_for` is given, reads the active leases of its eligible ids at the
    /// same instant: the counts include exactly the events taken.
    pub fn take_events(
        &self,
        into: &mut LeaseEvents,
        counts_for: Option<&Snapshot>,
    ) -> Option<Vec<u32>> {
        let mut ev = self.lock_events();
        std::mem::swap(&mut *ev, into);
        ev.clear();
        counts_for.map(|snap| {
            snap.eligible
                .iter()
                .map(|&id| self.inner.members[id as usize].active())
                .collect()
        })
    }

    fn lock_events(&self) -> std::sync::MutexGuard<'_, LeaseEvents> {
        lock(&self.inner.events)
    }

    fn republish(&self) {
        let _guard = lock(&self.inner.rebuild);
        let members = &self.inner.members;
        let mut eligible = Vec::new();
        let mut weights = Vec::new();
        let mut mask = vec![false; members.len()];
        for (i, m) in members.iter().enumerate() {
            if m.enabled && m.healthy.load(Ordering::Acquire) {
                eligible.push(i as ProxyId);
                weights.push(m.weight_milli);
                mask[i] = true;
            }
        }
        let version = self.inner.next_version.fetch_add(1, Ordering::Relaxed);
        self.inner.snapshot.store(Arc::new(Snapshot {
            version,
            eligible,
            weights,
            mask,
        }));
    }
}

/// Holding the lock only to push or swap a vector: a panic cannot corrupt it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One active connection through a proxy. Owned by whatever holds the stream; the
/// count goes down when it drops, on every path (early returns and panics included).
pub struct Lease {
    pool: Arc<PoolInner>,
    id: ProxyId,
}

impl Lease {
    /// The proxy's id in its pool.
    pub fn id(&self) -> ProxyId {
        self.id
    }

    /// The proxy.
    pub fn url(&self) -> &ProxyUrl {
        &self.pool.members[self.id as usize].url
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("pool", &self.pool.name)
            .field("id", &self.id)
            .field("proxy", self.url())
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut ev = lock(&self.pool.events);
        self.pool.members[self.id as usize]
            .active
            .fetch_sub(1, Ordering::Relaxed);
        ev.released.push(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        Pool::from_urls(
            "default.http",
            (0..n).map(|i| format!("socks5://p{i}:1080")),
        )
        .unwrap()
    }

    #[test]
    fn leases_count_while_alive_and_record_events() {
        let p = pool(3);
        let a = p.lease(1);
        let b = p.lease(1);
        assert_eq!(p.members()[1].active(), 2);
        drop(a);
        assert_eq!(p.members()[1].active(), 1);
        let mut ev = LeaseEvents::default();
        let counts = p.take_events(&mut ev, Some(&p.snapshot()));
        assert_eq!(counts, Some(vec![0, 1, 0]));
        assert_eq!(
            (ev.acquired.as_slice(), ev.released.as_slice()),
            (&[1, 1][..], &[1][..])
        );
        drop(b);
        assert_eq!(p.take_events(&mut ev, None), None);
        assert_eq!((ev.acquired.len(), ev.released.as_slice()), (0, &[1][..]));
    }

    #[test]
    fn health_changes_republish_the_snapshot_atomically() {
        let p = pool(3);
        let before = p.snapshot().version();
        assert_eq!(p.snapshot().eligible(), [0, 1, 2]);
        p.set_healthy(1, false);
        let s = p.snapshot();
        assert!(s.version() > before);
        assert_eq!(s.eligible(), [0, 2]);
        assert!(!s.is_eligible(1) && s.is_eligible(2));
        // No change, no new version.
        p.set_healthy(1, false);
        assert_eq!(p.snapshot().version(), s.version());
    }
}
