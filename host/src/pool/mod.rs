//! Pools: the live state of one route's proxies.
//!
//! A [`Pool`] keeps per-proxy runtime cells (active leases, eligibility) and publishes
//! the eligible set as one immutable [`Snapshot`] behind an `ArcSwap`, so readers see
//! a consistent set without locks and every update is atomic. A [`Lease`] counts one
//! active connection on a proxy for as long as it lives (RAII, as tower's
//! pending-requests handle does).
//!
//! For load-aware strategies the pool can also track *which* counts changed: a lease
//! then sets the proxy's bit in a two-level bitmap, and [`Pool::drain_load_changes`]
//! reads the current count of each marked proxy. Absolute counts make delivery
//! idempotent (nothing drifts if a change is seen twice), and the bitmap is bounded
//! by the pool size however long nobody drains it. With tracking off a lease is one
//! atomic add. This layer has no probe logic and knows nothing of WebAssembly.

mod breaker;
mod collect;
mod lease;
mod state;
mod succession;

use crate::sync::Locked as _;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::config::{PoolSpec, ProxyUrl};
use breaker::Breaker;
pub use breaker::BreakerState;
use lease::DirtyBits;
pub use lease::{Lease, LeaseCount};
pub use state::{Ban, BanReason, MemberStatus, Outcome};
pub(crate) use state::{PoolCounters, Trial};
use succession::Successor;
pub(crate) use succession::{Succession, match_members};

/// A small, fast, seedable generator (splitmix64): jitter here, and the strategies'
/// randomness, reproducible in tests.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A destination's key for [`Pool::record_target_fault`]: FNV-1a of the host (ASCII
/// case folded) and port, never 0 (0 means "none").
pub(crate) fn target_key(host: &str, port: u16) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host.bytes().chain(port.to_be_bytes()) {
        h ^= b.to_ascii_lowercase() as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

/// A proxy's id within its pool: its index in the configured member list.
pub(crate) type ProxyId = u32;

/// One member: what the configuration says of it, and what the pool learned.
#[derive(Debug)]
pub struct Member {
    url: ProxyUrl,
    /// The redacted URL, numbered when another member reads the same redacted (they
    /// differ only in credentials): what logs, metrics and status call it.
    label: String,
    weight_milli: u32,
    enabled: bool,
    /// Shared with the same member of the pool a reload replaced, and of the one
    /// that replaces it: a member that stays keeps what was learned.
    cells: Arc<Cells>,
}

/// A member's runtime cells.
#[derive(Debug)]
struct Cells {
    /// The active health verdict; members start up, so the first connects need not
    /// wait for a probe.
    healthy: AtomicBool,
    /// Whether any probe result has arrived.
    probed: AtomicBool,
    breaker: Mutex<Breaker>,
    /// The proxy refused our credentials (407, auth rejected): out until reload.
    misconfigured: AtomicBool,
    /// Why the member last went out, for status and the `fail` policy.
    reason: Mutex<String>,
    active: AtomicU32,
    /// Handshake time, an exponentially weighted mean in microseconds (0: unmeasured).
    latency_us: AtomicU32,
    /// A successful probe's round trip, the same kind of mean (0: unmeasured).
    probe_rtt_us: AtomicU32,
    /// Leases handed out on it.
    picks: AtomicU64,
    /// Its tunnel handshakes, for the median `status` shows.
    handshakes: crate::metrics::Histogram,
    /// Bytes relayed through it, client → upstream and back (the gateway counts).
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    /// Wakes the member's health task when passive detection saw trouble.
    attention: tokio::sync::Notify,
    /// Connects through it that succeeded: a loser silent past its grace is only
    /// slow if this moved meanwhile.
    successes: AtomicU64,
    /// The key of the last target it failed alone (another proxy reached it), or 0.
    /// A second, different target opens the breaker: one target proves nothing.
    target_strike: AtomicU64,
    /// Set when a connect found it silent (no tunnel past a loser's grace while it
    /// opened no other): its health task counts that as one failed observation.
    suspected: AtomicBool,
}

impl Cells {
    /// A new member's cells: healthy until a probe says otherwise, breaker closed.
    fn new(breaker: crate::config::Breaker, seed: u64) -> Cells {
        Cells {
            healthy: AtomicBool::new(true),
            probed: AtomicBool::new(false),
            breaker: Mutex::new(Breaker::new(breaker, seed)),
            misconfigured: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            active: AtomicU32::new(0),
            latency_us: AtomicU32::new(0),
            probe_rtt_us: AtomicU32::new(0),
            picks: AtomicU64::new(0),
            handshakes: crate::metrics::Histogram::new(crate::metrics::CONNECT_BUCKETS),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            attention: tokio::sync::Notify::new(),
            successes: AtomicU64::new(0),
            target_strike: AtomicU64::new(0),
            suspected: AtomicBool::new(false),
        }
    }
}

impl Member {
    /// The proxy.
    pub fn url(&self) -> &ProxyUrl {
        &self.url
    }

    /// The name logs, metrics and status give it: the redacted URL, with `#2`, `#3`…
    /// after members that would otherwise read the same (same endpoint, other user).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Active leases right now.
    pub fn active(&self) -> u32 {
        self.cells.active.load(Ordering::Relaxed)
    }

    /// Recent handshake time through this proxy in microseconds (an exponentially
    /// weighted mean over connects and probes), or 0 before the first measurement.
    pub fn latency_us(&self) -> u32 {
        self.cells.latency_us.load(Ordering::Relaxed)
    }

    /// Recent successful probe time in microseconds (an exponentially weighted mean,
    /// whatever the method), or 0 before the first.
    pub fn probe_rtt_us(&self) -> u32 {
        self.cells.probe_rtt_us.load(Ordering::Relaxed)
    }

    /// Leases handed out on it so far: picks, failovers and hedges.
    pub fn picks(&self) -> u64 {
        self.cells.picks.load(Ordering::Relaxed)
    }

    /// Bytes relayed through it so far: (client → upstream, upstream → client).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.cells.bytes_up.load(Ordering::Relaxed),
            self.cells.bytes_down.load(Ordering::Relaxed),
        )
    }

    /// The active health verdict.
    pub fn healthy(&self) -> bool {
        self.cells.healthy.load(Ordering::Acquire)
    }

    /// The breaker's state.
    pub fn breaker(&self) -> BreakerState {
        self.cells.breaker.locked().state()
    }

    /// Whether the proxy refused our credentials.
    pub fn misconfigured(&self) -> bool {
        self.cells.misconfigured.load(Ordering::Acquire)
    }

    /// Whether the member is enabled in the configuration.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn eligible(&self) -> bool {
        self.enabled
            && self.healthy()
            && self.cells.breaker.locked().admits()
            && !self.misconfigured()
    }
}

/// The eligible set at one moment. Immutable; replaced whole.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    eligible: Vec<ProxyId>,
    weights: Vec<u32>,
    mask: Vec<bool>,
    bans: Vec<Ban>,
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

    /// Bans in force or not yet pruned (check [`Ban::active_at`]).
    pub fn bans(&self) -> &[Ban] {
        &self.bans
    }

    /// Appends the members banned for `exchange` at `now`.
    pub fn banned_for(&self, exchange: &str, now: Instant, into: &mut Vec<ProxyId>) {
        into.extend(
            self.bans
                .iter()
                .filter(|b| b.active_at(now) && b.exchange.eq_ignore_ascii_case(exchange))
                .map(|b| b.id),
        );
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
    spec: PoolSpec,
    /// Authoritative ban list; the snapshot holds a copy.
    bans: Mutex<Vec<Ban>>,
    /// Earliest breaker or ban deadline, in nanoseconds after `epoch` (`u64::MAX`: none).
    next_deadline: AtomicU64,
    epoch: Instant,
    /// Woken when `next_deadline` moves earlier.
    deadline_changed: tokio::sync::Notify,
    /// Shared with the pools a reload replaces and makes, so counts never go back.
    counters: Arc<PoolCounters>,
    snapshot: ArcSwap<Snapshot>,
    /// Serialises snapshot rebuilds (readers never take it).
    rebuild: Mutex<()>,
    tracking: AtomicBool,
    dirty: DirtyBits,
    next_version: AtomicU64,
    /// The pool a reload made to replace this one, once there is one.
    successor: std::sync::OnceLock<Successor>,
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
        Self::build(name.into(), spec, None).0
    }

    /// The pool that replaces `self` after a reload to `spec`. A member that stays
    /// (the same scheme, host, port and user: [`ProxyUrl::same_member`]) keeps its
    /// health, breaker, latency, bans and live leases, whatever its position or
    /// weight now; a new breaker setting applies to its state as it is. Members
    /// that left keep serving their live leases through `self`, which takes no new
    /// picks once the caller stops using it; a lease dropped there still reaches
    /// the new pool's load tracking. Snapshot versions go on from `self`'s, so a
    /// strategy never mistakes the new membership for one it saw.
    pub fn succeed(&self, spec: &PoolSpec) -> (Pool, Succession) {
        let (pool, succession) = Self::build(self.inner.name.clone(), spec, Some(self));
        let ids = succession.kept.iter().fold(
            vec![None; self.inner.members.len()],
            |mut ids, &(old, new)| {
                ids[old as usize] = Some(new);
                ids
            },
        );
        let _ = self.inner.successor.set(Successor {
            pool: pool.inner.clone(),
            ids,
        });
        (pool, succession)
    }

    fn build(name: String, spec: &PoolSpec, previous: Option<&Pool>) -> (Pool, Succession) {
        // Whatever built the spec, no duration in it can overflow a deadline.
        let spec = &spec.bounded();
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let labels = member_labels(spec.members.iter().map(|m| &m.url));
        let old: &[Member] = previous.map_or(&[], |p| &p.inner.members);
        let old_urls: Vec<&ProxyUrl> = old.iter().map(|m| &m.url).collect();
        let new_urls: Vec<&ProxyUrl> = spec.members.iter().map(|m| &m.url).collect();
        let (found, succession) = match_members(&old_urls, &new_urls);
        let members = members_of(spec, labels, found, old, seed);
        let dirty = DirtyBits::new(members.len());
        let (bans, next_deadline, epoch, counters, next_version) = match previous {
            Some(p) => (
                succession::carry_bans(p, &succession, &members),
                p.inner.next_deadline.load(SeqCst),
                p.inner.epoch,
                p.inner.counters.clone(),
                p.inner.next_version.load(SeqCst),
            ),
            None => (
                Vec::new(),
                u64::MAX,
                Instant::now(),
                Arc::new(PoolCounters::default()),
                1,
            ),
        };
        let inner = Arc::new(PoolInner {
            name,
            members,
            spec: spec.clone(),
            bans: Mutex::new(bans),
            next_deadline: AtomicU64::new(next_deadline),
            epoch,
            deadline_changed: tokio::sync::Notify::new(),
            counters,
            snapshot: ArcSwap::from_pointee(Snapshot {
                version: 0,
                eligible: Vec::new(),
                weights: Vec::new(),
                mask: Vec::new(),
                bans: Vec::new(),
            }),
            rebuild: Mutex::new(()),
            tracking: AtomicBool::new(false),
            dirty,
            next_version: AtomicU64::new(next_version),
            successor: std::sync::OnceLock::new(),
        });
        let pool = Pool { inner };
        pool.republish();
        (pool, succession)
    }

    /// A pool of `urls` with the config layer's defaults (round robin, weight 1,
    /// 30 s timeout), for embedding without a config file; the URLs are validated
    /// as in a config.
    pub fn from_urls<I, S>(name: impl Into<String>, urls: I) -> Result<Pool, crate::ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(Pool::new(name, &spec_of(urls)?))
    }

    /// The route this pool serves.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Bound on connect plus handshake through a member.
    pub fn timeout(&self) -> Duration {
        self.inner.spec.timeout
    }

    /// All members, by id.
    pub fn members(&self) -> &[Member] {
        &self.inner.members
    }

    /// The current eligible set (a cheap, lock-free load).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.snapshot.load()
    }

    /// Folds one handshake time into `id`'s mean (weight 1/8, as TCP's SRTT).
    pub fn record_latency(&self, id: ProxyId, took: Duration) {
        if let Some(m) = self.inner.members.get(id as usize) {
            m.cells.handshakes.observe(took);
            fold_mean(&m.cells.latency_us, took);
        }
    }

    /// Folds one successful probe's time into `id`'s probe mean.
    pub fn record_probe_rtt(&self, id: ProxyId, took: Duration) {
        if let Some(m) = self.inner.members.get(id as usize) {
            fold_mean(&m.cells.probe_rtt_us, took);
        }
    }

    /// The configuration the pool was built from.
    pub fn spec(&self) -> &PoolSpec {
        &self.inner.spec
    }

    /// Marks a member healthy or not, republishing the snapshot if that changes it.
    pub fn set_healthy(&self, id: ProxyId, healthy: bool) {
        self.set_health(id, healthy, "set by the embedding application");
    }

    /// A lease on `id`: counts one active connection until dropped. `None` if the
    /// pool has no member `id`.
    pub fn lease(&self, id: ProxyId) -> Option<Lease> {
        let m = self.inner.members.get(id as usize)?;
        m.cells.picks.fetch_add(1, Ordering::Relaxed);
        self.inner.count(id, 1);
        Some(Lease {
            pool: self.inner.clone(),
            id,
        })
    }

    /// Whether lease changes are being tracked for [`Pool::drain_load_changes`].
    pub fn load_tracking(&self) -> bool {
        self.inner.tracking.load(SeqCst)
    }

    /// Starts or stops tracking which lease counts change. After turning it on, read
    /// the counts afresh ([`Pool::active_counts`]): every change after that read
    /// reaches the next drain, and none before it is lost.
    pub fn set_load_tracking(&self, on: bool) {
        self.inner.tracking.store(on, SeqCst);
    }

    /// Appends the current count of every member whose count changed since the last
    /// drain (or whose change raced the last drain), in id order per 64 members.
    pub fn drain_load_changes(&self, into: &mut Vec<LeaseCount>) {
        let members = &self.inner.members;
        self.inner.dirty.drain(|id| {
            into.push(LeaseCount {
                id,
                active: members[id as usize].cells.active.load(SeqCst),
            })
        });
    }

    /// Replaces `into` with the active leases of `snap`'s eligible ids, in its order.
    pub fn active_counts(&self, snap: &Snapshot, into: &mut Vec<u32>) {
        into.clear();
        into.extend(
            snap.eligible
                .iter()
                .map(|&id| self.inner.members[id as usize].cells.active.load(SeqCst)),
        );
    }

    fn republish(&self) {
        let _guard = self.inner.rebuild.locked();
        let members = &self.inner.members;
        let mut eligible = Vec::new();
        let mut weights = Vec::new();
        let mut mask = vec![false; members.len()];
        for (i, m) in members.iter().enumerate() {
            if m.eligible() {
                eligible.push(i as ProxyId);
                weights.push(m.weight_milli);
                mask[i] = true;
            }
        }
        let bans = self.inner.bans.locked().clone();
        let version = self.inner.next_version.fetch_add(1, Ordering::Relaxed);
        self.inner.snapshot.store(Arc::new(Snapshot {
            version,
            eligible,
            weights,
            mask,
            bans,
        }));
        drop(_guard);
        // A member shared with the pool that replaced this one changed there too.
        if let Some(next) = self.inner.successor.get() {
            Pool {
                inner: next.pool.clone(),
            }
            .republish();
        }
    }
}

/// The members of a pool of `spec`: each that matched an old member (`found`) keeps
/// its cells, under the new breaker setting; each new one starts fresh.
fn members_of(
    spec: &PoolSpec,
    labels: Vec<String>,
    found: Vec<Option<usize>>,
    old: &[Member],
    seed: u64,
) -> Vec<Member> {
    spec.members
        .iter()
        .zip(labels)
        .zip(found)
        .enumerate()
        .map(|(i, ((m, label), found))| {
            let cells = match found {
                Some(j) => {
                    let cells = old[j].cells.clone();
                    cells.breaker.locked().reconfigure(spec.breaker.clone());
                    // New credentials may cure a refusal of the old ones.
                    if old[j].url != m.url {
                        cells.misconfigured.store(false, SeqCst);
                    }
                    cells
                }
                None => Arc::new(Cells::new(spec.breaker.clone(), seed ^ i as u64)),
            };
            Member {
                url: m.url.clone(),
                label,
                weight_milli: (m.weight * 1000.0).round() as u32,
                enabled: m.enabled,
                cells,
            }
        })
        .collect()
}

/// The spec of a pool of `urls` with the config layer's defaults.
fn spec_of<I, S>(urls: I) -> Result<PoolSpec, crate::ConfigError>
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
        Some(Upstream::Pool(spec)) => Ok((**spec).clone()),
        other => unreachable!("a pool entry resolves to a pool, got {other:?}"),
    }
}

/// Each URL's redacted form, numbered from the second one that reads the same.
pub(crate) fn member_labels<'a>(urls: impl Iterator<Item = &'a ProxyUrl>) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    urls.map(|u| {
        let shown = u.to_string();
        let n = seen.entry(shown.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            shown
        } else {
            format!("{shown}#{n}")
        }
    })
    .collect()
}

/// An exponentially weighted mean in microseconds, weight 1/8; 0 means unmeasured.
fn fold_mean(cell: &AtomicU32, took: Duration) {
    let sample = took.as_micros().clamp(1, u32::MAX as u128) as u32;
    // A lost race between two updates loses one sample: harmless for a mean.
    let old = cell.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample
    } else {
        ((old as u64 * 7 + sample as u64) / 8) as u32
    };
    cell.store(new.max(1), Ordering::Relaxed);
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
    fn members_that_differ_only_in_credentials_get_distinct_labels() {
        let p = Pool::from_urls(
            "default.http",
            [
                "socks5://alice:one@gw:1080",
                "socks5://bob:two@gw:1080",
                "socks5://gw:1080",
                "socks5://carol:three@gw:1080",
            ],
        )
        .unwrap();
        let labels: Vec<&str> = p.members().iter().map(Member::label).collect();
        assert_eq!(
            labels,
            [
                "socks5://***@gw:1080",
                "socks5://***@gw:1080#2",
                "socks5://gw:1080",
                "socks5://***@gw:1080#3"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_successor_keeps_what_staying_members_learned_and_live_leases_count_there() {
        let old = Pool::from_urls(
            "default.http",
            ["socks5://u:p@a:1", "socks5://b:1", "socks5://c:1"],
        )
        .unwrap();
        let lease = old.lease(0).unwrap();
        let now = Instant::now();
        for _ in 0..old.spec().breaker.failures {
            old.record_failure(2, now, "refused");
        }
        assert!(matches!(
            old.members()[2].breaker(),
            BreakerState::Open { .. }
        ));
        old.report(
            2,
            "binance",
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(60)),
            },
            now,
        );
        let before = old.snapshot().version();
        // c moves to the front, a gets a new password and stays, b leaves, d comes.
        let spec = spec_of(["socks5://c:1", "socks5://u:new@a:1", "socks5://d:1"]).unwrap();
        let (new, succession) = old.succeed(&spec);
        assert_eq!(succession.kept, [(2, 0), (0, 1)]);
        assert_eq!(succession.added, [2]);
        assert_eq!(succession.removed, [1]);
        assert!(new.snapshot().version() > before, "versions go on");
        assert!(matches!(
            new.members()[0].breaker(),
            BreakerState::Open { .. }
        ));
        assert_eq!(new.snapshot().bans().len(), 1);
        assert_eq!(new.snapshot().bans()[0].id, 0, "the ban follows its member");
        assert_eq!(
            new.members()[1].active(),
            1,
            "the live lease counts in the new pool"
        );
        new.set_load_tracking(true);
        drop(lease);
        assert_eq!(new.members()[1].active(), 0);
        let mut changes = Vec::new();
        new.drain_load_changes(&mut changes);
        assert_eq!(
            changes,
            [LeaseCount { id: 1, active: 0 }],
            "an old lease's drop reaches the new pool's tracking"
        );
        // The breaker's cooldown ends: the half-open state shows in the new snapshot.
        let BreakerState::Open { until } = new.members()[0].breaker() else {
            unreachable!()
        };
        old.poll(until);
        assert!(
            new.snapshot().is_eligible(0),
            "old pool's change republished the new"
        );
    }

    #[test]
    fn leases_count_while_alive() {
        let p = pool(3);
        let a = p.lease(1).unwrap();
        let b = p.lease(1).unwrap();
        assert_eq!(p.members()[1].active(), 2);
        drop(a);
        assert_eq!(p.members()[1].active(), 1);
        let mut counts = Vec::new();
        p.active_counts(&p.snapshot(), &mut counts);
        assert_eq!(counts, [0, 1, 0]);
        drop(b);
        assert_eq!(p.members()[1].active(), 0);
    }

    #[test]
    fn tracking_reports_each_changed_count_once_with_its_latest_value() {
        let p = pool(200);
        let mut changes = Vec::new();
        let untracked = p.lease(5).unwrap();
        p.drain_load_changes(&mut changes);
        assert!(changes.is_empty(), "tracking is off by default");

        p.set_load_tracking(true);
        let a = p.lease(130).unwrap();
        let b = p.lease(130).unwrap();
        let c = p.lease(63).unwrap();
        drop(untracked);
        p.drain_load_changes(&mut changes);
        let at = |id| LeaseCount {
            id,
            active: p.members()[id as usize].active(),
        };
        assert_eq!(changes, [at(5), at(63), at(130)]);
        assert_eq!(changes[2].active, 2);

        changes.clear();
        p.drain_load_changes(&mut changes);
        assert!(changes.is_empty(), "a drain clears the marks");
        drop((a, c));
        p.drain_load_changes(&mut changes);
        assert_eq!(
            changes,
            [
                LeaseCount { id: 63, active: 0 },
                LeaseCount { id: 130, active: 1 }
            ]
        );
        drop(b);
    }

    #[test]
    fn concurrent_leases_never_leave_a_stale_count_behind() {
        let p = pool(100);
        p.set_load_tracking(true);
        let mut seen = vec![0u32; 100];
        let mut changes = Vec::new();
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let p = p.clone();
                s.spawn(move || {
                    for i in 0..20_000u32 {
                        let held = p.lease((i * 7 + t) % 100).unwrap();
                        drop(held);
                    }
                });
            }
            for _ in 0..1000 {
                changes.clear();
                p.drain_load_changes(&mut changes);
                for c in &changes {
                    seen[c.id as usize] = c.active;
                }
            }
        });
        changes.clear();
        p.drain_load_changes(&mut changes);
        for c in &changes {
            seen[c.id as usize] = c.active;
        }
        assert!(seen.iter().all(|&n| n == 0), "{seen:?}");
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
