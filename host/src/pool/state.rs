//! Member state changes: health verdicts, breaker outcomes, credentials, bans. Each
//! change that alters eligibility republishes the snapshot, and each transition is
//! logged once, with its reason, and counted.

use crate::sync::Locked as _;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::breaker::Admission;

/// Bans a pool keeps at most: far above members × exchanges of any real pool.
pub(crate) const MAX_BANS: usize = 4096;
use super::{BreakerState, Pool, ProxyId};

/// Why a client reported a proxy for one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanReason {
    /// HTTP 429 and the like.
    RateLimited,
    /// An IP ban (Binance's 418).
    Banned,
    /// The exchange refuses the proxy's region (HTTP 451): until a reload changes
    /// the proxy's URL.
    GeoBlocked,
}

impl BanReason {
    /// The name used in logs, metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            BanReason::RateLimited => "rate_limited",
            BanReason::Banned => "banned",
            BanReason::GeoBlocked => "geo_blocked",
        }
    }
}

/// What a client learned from an exchange through a lease (see [`Pool::report`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The exchange rate-limited this proxy; `retry_after` if it said how long.
    RateLimited {
        /// The exchange's Retry-After.
        retry_after: Option<Duration>,
    },
    /// The exchange banned this proxy's address.
    Banned {
        /// The exchange's Retry-After.
        retry_after: Option<Duration>,
    },
    /// The exchange refuses this proxy's region.
    GeoBlocked,
}

/// A proxy kept away from one exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// The proxy.
    pub id: ProxyId,
    /// The exchange (lowercase).
    pub exchange: String,
    /// Why.
    pub reason: BanReason,
    /// When it ends; `None`: when a reload changes the member's URL.
    pub until: Option<Instant>,
}

impl Ban {
    /// Whether it is in force at `now`.
    pub fn active_at(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// One member as status output shows it.
#[derive(Clone, Debug)]
pub struct MemberStatus {
    /// The proxy's id.
    pub id: ProxyId,
    /// The proxy (redacted when displayed).
    pub url: crate::config::ProxyUrl,
    /// Its name in logs, metrics and status (`super::Member::label`).
    pub label: String,
    /// Whether picks may choose it now.
    pub eligible: bool,
    /// Enabled in the configuration.
    pub enabled: bool,
    /// The health verdict.
    pub healthy: bool,
    /// Whether any probe result has arrived.
    pub probed: bool,
    /// The breaker.
    pub breaker: BreakerState,
    /// Refused our credentials.
    pub misconfigured: bool,
    /// Active leases.
    pub active: u32,
    /// Why it last went out (empty if never).
    pub reason: String,
    /// Bans in force: exchange and reason.
    pub bans: Vec<(String, BanReason)>,
    /// Leases handed out on it so far.
    pub picks: u64,
    /// The median of its tunnel handshakes, to its histogram bucket's bound; `None`
    /// before the first.
    pub handshake_p50: Option<std::time::Duration>,
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}, breaker {}, {} active",
            self.id,
            self.label,
            if self.eligible { "in" } else { "out" },
            self.breaker.as_str(),
            self.active
        )?;
        if !self.healthy {
            write!(f, ", unhealthy")?;
        }
        if self.misconfigured {
            write!(f, ", misconfigured")?;
        }
        for (exchange, reason) in &self.bans {
            write!(f, ", {} for {exchange}", reason.as_str())?;
        }
        if !self.eligible && !self.reason.is_empty() {
            write!(f, " ({})", self.reason)?;
        }
        Ok(())
    }
}

/// A pool's event counters.
#[derive(Debug, Default)]
pub struct PoolCounters {
    /// Health transitions (up ↔ down).
    pub health_transitions: AtomicU64,
    /// Breaker openings.
    pub breaker_opened: AtomicU64,
    /// Breaker half-openings.
    pub breaker_half_opened: AtomicU64,
    /// Breaker closings.
    pub breaker_closed: AtomicU64,
    /// Bans reported.
    pub bans: AtomicU64,
    /// Members marked misconfigured.
    pub misconfigured: AtomicU64,
}

impl Pool {
    /// Applies a health verdict; `reason` says why (a probe's error, say). Logged once
    /// per transition. A proxy that comes back up also has its breaker closed: probes
    /// just proved it works again.
    pub fn set_health(&self, id: ProxyId, healthy: bool, reason: &str) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        let first = !m.cells.probed.swap(true, Ordering::AcqRel);
        let was = m.cells.healthy.swap(healthy, Ordering::AcqRel);
        let mut changed = was != healthy;
        // Only a recovery closes the breaker: a proxy that stays up by its probes may
        // still fail real connects (a tcp probe cannot see a broken handshake).
        if healthy
            && !was
            && let Some(state) = m.cells.breaker.locked().reset()
        {
            self.count_breaker(state);
            changed = true;
        }
        if was != healthy {
            self.inner
                .counters
                .health_transitions
                .fetch_add(1, Ordering::Relaxed);
            if !healthy {
                *m.cells.reason.locked() = format!("unhealthy: {reason}");
            }
            self.log(id, "health", if healthy { "up" } else { "down" }, reason);
        } else if first {
            // Confirms the initial state: exported (`proxypool_proxy_probed`), logged
            // quietly, since a large pool would print a line per proxy at start-up.
            tracing::debug!(
                target: "proxypool::health",
                pool = self.name(),
                proxy = %m.label,
                "health up (first check): {reason}"
            );
        }
        if changed {
            self.republish();
        }
    }

    /// A connect through `id` succeeded.
    pub fn record_success(&self, id: ProxyId) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        m.cells.successes.fetch_add(1, Ordering::Relaxed);
        if m.cells.target_strike.load(Ordering::Relaxed) != 0 {
            m.cells.target_strike.store(0, Ordering::Relaxed);
        }
        let changed = m.cells.breaker.locked().success();
        if let Some(state) = changed {
            self.count_breaker(state);
            self.log(id, "breaker", state.as_str(), "a connect succeeded");
            self.republish();
        }
    }

    /// A connect through `id` failed by the proxy's fault (`reason` says how).
    pub fn record_failure(&self, id: ProxyId, now: Instant, reason: &str) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        let changed = m.cells.breaker.locked().failure(now);
        if let Some(state) = changed {
            *m.cells.reason.locked() = format!("breaker open: {reason}");
            self.count_breaker(state);
            self.log(id, "breaker", state.as_str(), reason);
            if let BreakerState::Open { until } = state {
                self.note_deadline(until);
            }
            // Probe now rather than at the next (possibly 30 s) interval.
            m.cells.attention.notify_one();
            self.republish();
        }
    }

    /// `id` failed a target (`target_key`, from [`super::target_key`]) that another proxy
    /// then reached. One such target proves nothing against the proxy (its view of
    /// the network may differ); failures on two different targets in a row, with no
    /// success between, count as one proxy fault.
    pub fn record_target_fault(&self, id: ProxyId, target_key: u64, now: Instant, reason: &str) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        let before = m.cells.target_strike.swap(target_key, Ordering::Relaxed);
        if before != 0 && before != target_key {
            self.record_failure(
                id,
                now,
                &format!("{reason} (a second target others reached)"),
            );
        }
    }

    /// Connects through `id` that succeeded so far.
    pub fn successes(&self, id: ProxyId) -> u64 {
        self.inner
            .members
            .get(id as usize)
            .map_or(0, |m| m.cells.successes.load(Ordering::Relaxed))
    }

    /// A connect found `id` silent: its health task counts one failed observation
    /// and probes at once.
    pub fn suspect(&self, id: ProxyId) {
        if let Some(m) = self.inner.members.get(id as usize) {
            m.cells.suspected.store(true, Ordering::Release);
            m.cells.attention.notify_one();
        }
    }

    /// Whether a connect found `id` silent since the last call (and clears it).
    pub fn take_suspicion(&self, id: ProxyId) -> bool {
        self.inner
            .members
            .get(id as usize)
            .is_some_and(|m| m.cells.suspected.swap(false, Ordering::AcqRel))
    }

    /// Wakes `id`'s health task for a probe now, without charging it anything.
    pub fn ask_probe(&self, id: ProxyId) {
        if let Some(m) = self.inner.members.get(id as usize) {
            m.cells.attention.notify_one();
        }
    }

    /// The proxy refused our credentials: out until the configuration is reloaded.
    pub fn set_misconfigured(&self, id: ProxyId, reason: &str) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        if !m.cells.misconfigured.swap(true, Ordering::AcqRel) {
            *m.cells.reason.locked() = format!("misconfigured: {reason}");
            self.inner
                .counters
                .misconfigured
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                target: "proxypool::health",
                pool = self.name(),
                proxy = %m.label,
                "proxy misconfigured, out until reload: {reason}"
            );
            self.republish();
        }
    }

    /// Admits a connect through `id`: `None` if its breaker refuses (open, or its
    /// half-open trial is taken). The [`Trial`] holds the half-open trial, if one was
    /// taken, until an outcome is recorded; dropped before that (cancelled, or not
    /// needed), it gives the trial back, so the proxy cannot be stuck out of rotation.
    pub fn begin_attempt(&self, id: ProxyId) -> Option<Trial> {
        let m = self.inner.members.get(id as usize)?;
        let admission = m.cells.breaker.locked().take_trial();
        let trial = match admission {
            Admission::Refused => return None,
            Admission::Closed => None,
            Admission::Trial(n) => {
                // Others skip it while the trial runs.
                self.republish();
                Some(n)
            }
        };
        Some(Trial {
            pool: self.clone(),
            id,
            trial,
        })
    }

    /// Moves breakers whose cooldown has passed to half-open, and drops expired bans.
    /// Cheap when nothing is due (one atomic load).
    pub fn poll(&self, now: Instant) {
        let due = self.inner.next_deadline.load(Ordering::Acquire);
        if self.nanos(now) < due {
            return;
        }
        self.inner.next_deadline.store(u64::MAX, Ordering::Release);
        let mut changed = false;
        for (id, m) in self.inner.members.iter().enumerate() {
            let mut b = m.cells.breaker.locked();
            if let Some(state) = b.poll(now) {
                drop(b);
                self.count_breaker(state);
                self.log(
                    id as ProxyId,
                    "breaker",
                    state.as_str(),
                    "cooldown over, one trial allowed",
                );
                changed = true;
            } else if let Some(until) = b.deadline() {
                drop(b);
                self.note_deadline(until);
            }
        }
        {
            let mut bans = self.inner.bans.locked();
            let before = bans.len();
            bans.retain(|ban| {
                let keep = ban.active_at(now);
                if !keep {
                    tracing::info!(
                        target: "proxypool::health",
                        pool = self.name(),
                        proxy = %self.inner.members[ban.id as usize].label,
                        exchange = %ban.exchange,
                        "ban expired ({})",
                        ban.reason.as_str()
                    );
                }
                keep
            });
            changed |= bans.len() != before;
            for until in bans.iter().filter_map(|b| b.until) {
                self.note_deadline(until);
            }
        }
        if changed {
            self.republish();
        }
    }

    /// The earliest instant at which [`Pool::poll`] has work, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.inner.next_deadline.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(self.inner.epoch + Duration::from_nanos(n)),
        }
    }

    /// Keeps `id` away from `exchange` for the outcome's time (at most [`MAX_BANS`]
    /// bans a pool: past it the one that ends first goes; see the pool's `bans`
    /// settings); other exchanges keep using it.
    pub fn report(&self, id: ProxyId, exchange: &str, outcome: Outcome, now: Instant) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        let cfg = &self.inner.spec.bans;
        // An exchange's Retry-After is taken up to MAX_BAN: no overflow, no forever.
        let until = |d: Duration| Some(now + d.min(crate::config::MAX_BAN));
        let (reason, until) = match outcome {
            Outcome::RateLimited { retry_after } => (
                BanReason::RateLimited,
                until(retry_after.unwrap_or(cfg.rate_limited)),
            ),
            Outcome::Banned { retry_after } => {
                (BanReason::Banned, until(retry_after.unwrap_or(cfg.banned)))
            }
            // A region's block outlives any rate ban, but not forever: after a week
            // one request finds out whether it still holds.
            Outcome::GeoBlocked => (BanReason::GeoBlocked, until(crate::config::MAX_BAN)),
        };
        let exchange = exchange.to_ascii_lowercase();
        {
            let mut bans = self.inner.bans.locked();
            bans.retain(|b| !(b.id == id && b.exchange == exchange));
            // Bounded whatever reports arrive: the ban that ends first makes room.
            if bans.len() >= MAX_BANS
                && let Some(first) = (0..bans.len()).min_by_key(|&i| bans[i].until)
            {
                bans.swap_remove(first);
            }
            bans.push(Ban {
                id,
                exchange: exchange.clone(),
                reason,
                until,
            });
        }
        if let Some(u) = until {
            self.note_deadline(u);
        }
        self.inner.counters.bans.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "proxypool::health",
            pool = self.name(),
            proxy = %m.label,
            exchange = %exchange,
            "proxy {} for this exchange, {}",
            reason.as_str(),
            match until {
                Some(u) => format!("for {:?}", u - now),
                None => "until reload".to_owned(),
            }
        );
        self.republish();
    }

    /// Every member's state, for status output.
    pub fn status(&self) -> Vec<MemberStatus> {
        let snap = self.snapshot();
        let now = Instant::now();
        self.inner
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let id = i as ProxyId;
                MemberStatus {
                    id,
                    url: m.url.clone(),
                    label: m.label.clone(),
                    eligible: snap.is_eligible(id),
                    enabled: m.enabled,
                    healthy: m.healthy(),
                    probed: m.cells.probed.load(Ordering::Acquire),
                    breaker: m.breaker(),
                    misconfigured: m.misconfigured(),
                    active: m.active(),
                    reason: m.cells.reason.locked().clone(),
                    bans: snap
                        .bans()
                        .iter()
                        .filter(|b| b.id == id && b.active_at(now))
                        .map(|b| (b.exchange.clone(), b.reason))
                        .collect(),
                    picks: m.picks(),
                    handshake_p50: m.cells.handshakes.quantile(0.5),
                }
            })
            .collect()
    }

    /// Event counters.
    pub fn counters(&self) -> &PoolCounters {
        &self.inner.counters
    }

    fn count_breaker(&self, state: BreakerState) {
        let c = &self.inner.counters;
        match state {
            BreakerState::Open { .. } => &c.breaker_opened,
            BreakerState::HalfOpen { .. } => &c.breaker_half_opened,
            BreakerState::Closed => &c.breaker_closed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn log(&self, id: ProxyId, what: &str, to: &str, reason: &str) {
        tracing::info!(
            target: "proxypool::health",
            pool = self.name(),
            proxy = %self.inner.members[id as usize].label,
            "{what} {to}: {reason}"
        );
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.inner.epoch).as_nanos() as u64
    }

    fn note_deadline(&self, t: Instant) {
        let n = self.nanos(t);
        if self.inner.next_deadline.fetch_min(n, Ordering::AcqRel) > n {
            self.inner.deadline_changed.notify_waiters();
        }
    }

    /// Resolves when passive detection opens `id`'s breaker (or at once, if it did
    /// since the last call): its health task probes without waiting out the interval.
    pub async fn attention(&self, id: ProxyId) {
        if let Some(m) = self.inner.members.get(id as usize) {
            m.cells.attention.notified().await;
        }
    }

    /// Resolves when the next deadline moves earlier (create it before reading
    /// [`Pool::next_deadline`], so that no change falls between).
    pub fn deadline_changed(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        self.inner.deadline_changed.notified()
    }
}

/// The breaker's permission for one attempt through a proxy (see
/// [`Pool::begin_attempt`]). Keep it until the attempt's outcome is recorded.
#[must_use = "dropping it at once gives the half-open trial back"]
pub struct Trial {
    pool: Pool,
    id: ProxyId,
    /// The half-open trial's number, if this attempt holds it.
    trial: Option<u64>,
}

impl Trial {
    /// Whether this attempt is the breaker's half-open trial.
    pub fn is_half_open_trial(&self) -> bool {
        self.trial.is_some()
    }
}

impl fmt::Debug for Trial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trial")
            .field("pool", &self.pool.name())
            .field("id", &self.id)
            .field("trial", &self.trial)
            .finish()
    }
}

impl Drop for Trial {
    fn drop(&mut self) {
        let Some(n) = self.trial else { return };
        let Some(m) = self.pool.inner.members.get(self.id as usize) else {
            return;
        };
        // A recorded outcome has already moved the breaker on; then this does nothing.
        let released = m.cells.breaker.locked().release_trial(n);
        if released {
            self.pool.republish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::ProxyId;

    fn pool() -> Pool {
        Pool::from_urls(
            "default.http",
            ["socks5://a:1", "socks5://b:1", "socks5://c:1"],
        )
        .unwrap()
    }

    fn eligible(p: &Pool) -> Vec<ProxyId> {
        p.snapshot().eligible().to_vec()
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_half_opens_for_one_trial_and_closes() {
        let p = pool();
        let t0 = Instant::now();
        p.record_failure(1, t0, "refused");
        assert_eq!(
            eligible(&p),
            [0, 2],
            "open after one proxy fault (the default)"
        );
        let BreakerState::Open { until } = p.members()[1].breaker() else {
            panic!("not open");
        };
        assert_eq!(p.next_deadline(), Some(until));
        let cooldown = until - t0;
        // The timer task would call poll at `until`; nothing happens before it.
        tokio::time::advance(cooldown - Duration::from_millis(1)).await;
        p.poll(Instant::now());
        assert_eq!(eligible(&p), [0, 2]);
        tokio::time::advance(Duration::from_millis(1)).await;
        p.poll(Instant::now());
        assert_eq!(eligible(&p), [0, 1, 2], "half-open: eligible for its trial");
        let trial = p.begin_attempt(1).expect("the one trial");
        assert!(trial.is_half_open_trial());
        assert_eq!(eligible(&p), [0, 2], "out while the trial runs");
        assert!(p.begin_attempt(1).is_none(), "no second trial");
        // The trial fails: open again, longer.
        let t1 = Instant::now();
        p.record_failure(1, t1, "refused again");
        drop(trial);
        let BreakerState::Open { until } = p.members()[1].breaker() else {
            panic!("not reopened");
        };
        assert!(until - t1 > cooldown, "{:?} after {cooldown:?}", until - t1);
        tokio::time::advance(until - t1).await;
        p.poll(Instant::now());
        let trial = p
            .begin_attempt(1)
            .expect("a trial after the second cooldown");
        p.record_success(1);
        drop(trial);
        assert_eq!(p.members()[1].breaker(), BreakerState::Closed);
        assert_eq!(eligible(&p), [0, 1, 2]);
        let c = p.counters();
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            (
                n(&c.breaker_opened),
                n(&c.breaker_half_opened),
                n(&c.breaker_closed)
            ),
            (2, 2, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_dropped_without_an_outcome_is_given_back() {
        let p = pool();
        let t0 = Instant::now();
        p.record_failure(2, t0, "refused");
        let BreakerState::Open { until } = p.members()[2].breaker() else {
            panic!("not open");
        };
        tokio::time::advance(until - t0).await;
        p.poll(Instant::now());
        let trial = p.begin_attempt(2).expect("the trial");
        assert_eq!(eligible(&p), [0, 1]);
        drop(trial);
        assert_eq!(eligible(&p), [0, 1, 2], "back in rotation for a new trial");
        assert_eq!(
            p.members()[2].breaker(),
            BreakerState::HalfOpen { trial: false }
        );
        assert!(p.begin_attempt(7).is_none(), "an unknown id is refused");
        assert!(p.lease(7).is_none(), "an unknown id has no lease");
    }

    #[tokio::test(start_paused = true)]
    async fn a_health_recovery_closes_an_open_breaker() {
        let p = pool();
        p.record_failure(0, Instant::now(), "refused");
        // Probes that keep saying "up" do not override what real connects saw.
        p.set_health(0, true, "probe succeeded");
        assert!(matches!(
            p.members()[0].breaker(),
            BreakerState::Open { .. }
        ));
        p.set_health(0, false, "tcp probe failed");
        p.set_health(0, true, "probe succeeded");
        assert_eq!(p.members()[0].breaker(), BreakerState::Closed);
        assert_eq!(eligible(&p), [0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ban_covers_one_exchange_and_expires_on_time() {
        let p = pool();
        let t0 = Instant::now();
        p.report(
            2,
            "Binance",
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
            },
            t0,
        );
        p.report(1, "kraken", Outcome::GeoBlocked, t0);
        let banned = |ex: &str| {
            let mut v = Vec::new();
            p.snapshot().banned_for(ex, Instant::now(), &mut v);
            v
        };
        assert_eq!(banned("binance"), [2]);
        assert_eq!(banned("coinbase"), Vec::<ProxyId>::new());
        assert_eq!(
            eligible(&p),
            [0, 1, 2],
            "a ban is per exchange, not a health state"
        );
        tokio::time::advance(Duration::from_secs(30) - Duration::from_millis(1)).await;
        assert_eq!(banned("binance"), [2]);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(banned("binance").is_empty(), "expired at exactly 30 s");
        p.poll(Instant::now());
        assert_eq!(
            p.snapshot().bans().len(),
            1,
            "pruned; geo-blocked stays for its week"
        );
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert_eq!(banned("kraken"), [1]);
        tokio::time::advance(crate::config::MAX_BAN).await;
        assert!(banned("kraken").is_empty(), "a geo block expires too");
    }

    #[tokio::test(start_paused = true)]
    async fn bans_are_bounded_whatever_is_reported() {
        let p = pool();
        let t0 = Instant::now();
        for i in 0..(MAX_BANS as u64 + 500) {
            let outcome = Outcome::Banned {
                retry_after: Some(Duration::from_secs(60 + i)),
            };
            p.report((i % 3) as ProxyId, &format!("exchange{i}"), outcome, t0);
        }
        let bans = p.snapshot().bans().len();
        assert_eq!(bans, MAX_BANS);
        let mut v = Vec::new();
        p.snapshot().banned_for("exchange0", t0, &mut v);
        assert!(v.is_empty(), "the ban that ends first made room");
        p.snapshot()
            .banned_for(&format!("exchange{}", MAX_BANS + 499), t0, &mut v);
        assert_eq!(v, [((MAX_BANS + 499) % 3) as ProxyId]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_retry_after_is_clamped_and_a_zero_one_expires_at_once() {
        let p = pool();
        let t0 = Instant::now();
        p.report(
            0,
            "binance",
            Outcome::Banned {
                retry_after: Some(Duration::MAX),
            },
            t0,
        );
        assert_eq!(
            p.snapshot().bans()[0].until,
            Some(t0 + crate::config::MAX_BAN)
        );
        p.report(
            1,
            "binance",
            Outcome::RateLimited {
                retry_after: Some(Duration::ZERO),
            },
            t0,
        );
        let mut banned = Vec::new();
        p.snapshot().banned_for("binance", t0, &mut banned);
        assert_eq!(banned, [0], "a zero Retry-After is no ban");
        p.poll(t0);
        assert_eq!(p.snapshot().bans().len(), 1, "and is pruned at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ban_without_retry_after_uses_the_configured_time() {
        let p = pool();
        let t0 = Instant::now();
        p.report(0, "binance", Outcome::Banned { retry_after: None }, t0);
        assert_eq!(
            p.snapshot().bans()[0].until,
            Some(t0 + crate::config::DEFAULT_BANNED)
        );
    }
}
