//! Member state changes: health verdicts, breaker outcomes, credentials, bans. Each
//! change that alters eligibility republishes the snapshot, and each transition is
//! logged once, with its reason, and counted.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{BreakerState, Pool, ProxyId, lock};
use crate::metrics::{Collect, Kind, Sample};

/// Why a client reported a proxy for one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanReason {
    /// HTTP 429 and the like.
    RateLimited,
    /// An IP ban (Binance's 418).
    Banned,
    /// The exchange refuses the proxy's region (HTTP 451): until reload.
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
    /// When it ends; `None`: at reload.
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
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}, breaker {}, {} active",
            self.id,
            self.url,
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
    /// per transition. A proxy that comes up also has its breaker closed: probes just
    /// proved it works.
    pub fn set_health(&self, id: ProxyId, healthy: bool, reason: &str) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        let first = !m.probed.swap(true, Ordering::AcqRel);
        let was = m.healthy.swap(healthy, Ordering::AcqRel);
        let mut changed = was != healthy;
        if healthy && let Some(state) = lock(&m.breaker).reset() {
            m.breaker_admits.store(true, Ordering::Release);
            self.count_breaker(state);
            changed = true;
        }
        if was != healthy {
            self.inner
                .counters
                .health_transitions
                .fetch_add(1, Ordering::Relaxed);
            if !healthy {
                *lock(&m.reason) = format!("unhealthy: {reason}");
            }
            self.log(id, "health", if healthy { "up" } else { "down" }, reason);
        } else if first {
            // The first verdict is news even when it confirms the initial state.
            self.log(
                id,
                "health",
                if healthy {
                    "up (first check)"
                } else {
                    "down (first check)"
                },
                reason,
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
        let changed = lock(&m.breaker).success();
        if let Some(state) = changed {
            m.breaker_admits.store(true, Ordering::Release);
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
        let changed = lock(&m.breaker).failure(now);
        if let Some(state) = changed {
            m.breaker_admits.store(false, Ordering::Release);
            *lock(&m.reason) = format!("breaker open: {reason}");
            self.count_breaker(state);
            self.log(id, "breaker", state.as_str(), reason);
            if let BreakerState::Open { until } = state {
                self.note_deadline(until);
            }
            self.republish();
        }
    }

    /// The proxy refused our credentials: out until the configuration is reloaded.
    pub fn set_misconfigured(&self, id: ProxyId, reason: &str) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        if !m.misconfigured.swap(true, Ordering::AcqRel) {
            *lock(&m.reason) = format!("misconfigured: {reason}");
            self.inner
                .counters
                .misconfigured
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                target: "proxypool::health",
                pool = self.name(),
                proxy = %m.url,
                "proxy misconfigured, out until reload: {reason}"
            );
            self.republish();
        }
    }

    /// Takes the breaker's half-open trial for a connect through `id`: true if the
    /// connect may go ahead (closed, or the trial was free).
    pub fn begin_attempt(&self, id: ProxyId) -> bool {
        let Some(m) = self.inner.members.get(id as usize) else {
            return false;
        };
        let mut b = lock(&m.breaker);
        let was_free = b.state() == (BreakerState::HalfOpen { trial: false });
        let ok = b.take_trial();
        drop(b);
        if was_free && ok {
            // Others skip it while the trial runs.
            m.breaker_admits.store(false, Ordering::Release);
            self.republish();
        }
        ok
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
            let mut b = lock(&m.breaker);
            if let Some(state) = b.poll(now) {
                m.breaker_admits.store(true, Ordering::Release);
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
            let mut bans = lock(&self.inner.bans);
            let before = bans.len();
            bans.retain(|ban| {
                let keep = ban.active_at(now);
                if !keep {
                    tracing::info!(
                        target: "proxypool::health",
                        pool = self.name(),
                        proxy = %self.inner.members[ban.id as usize].url,
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

    /// Keeps `id` away from `exchange` for the outcome's time (see the pool's `bans`
    /// settings); other exchanges keep using it.
    pub fn report(&self, id: ProxyId, exchange: &str, outcome: Outcome, now: Instant) {
        let Some(m) = self.inner.members.get(id as usize) else {
            return;
        };
        let cfg = &self.inner.spec.bans;
        let (reason, until) = match outcome {
            Outcome::RateLimited { retry_after } => (
                BanReason::RateLimited,
                Some(now + retry_after.unwrap_or(cfg.rate_limited)),
            ),
            Outcome::Banned { retry_after } => (
                BanReason::Banned,
                Some(now + retry_after.unwrap_or(cfg.banned)),
            ),
            Outcome::GeoBlocked => (BanReason::GeoBlocked, None),
        };
        let exchange = exchange.to_ascii_lowercase();
        {
            let mut bans = lock(&self.inner.bans);
            bans.retain(|b| !(b.id == id && b.exchange == exchange));
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
            proxy = %m.url,
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
                    eligible: snap.is_eligible(id),
                    enabled: m.enabled,
                    healthy: m.healthy(),
                    probed: m.probed.load(Ordering::Acquire),
                    breaker: m.breaker(),
                    misconfigured: m.misconfigured(),
                    active: m.active(),
                    reason: lock(&m.reason).clone(),
                    bans: snap
                        .bans()
                        .iter()
                        .filter(|b| b.id == id && b.active_at(now))
                        .map(|b| (b.exchange.clone(), b.reason))
                        .collect(),
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
            proxy = %self.inner.members[id as usize].url,
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

    /// Resolves when the next deadline moves earlier (create it before reading
    /// [`Pool::next_deadline`], so that no change falls between).
    pub fn deadline_changed(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        self.inner.deadline_changed.notified()
    }
}

impl Collect for Pool {
    fn collect(&self, out: &mut Vec<Sample>) {
        let pool = || ("pool", self.name().to_owned());
        for s in self.status() {
            let labels = || vec![pool(), ("proxy", s.url.to_string())];
            let gauge = |name, help, value: f64| Sample {
                name,
                help,
                kind: Kind::Gauge,
                labels: labels(),
                value,
            };
            out.push(gauge(
                "proxypool_proxy_up",
                "1 if the proxy's health verdict is up.",
                s.healthy as u8 as f64,
            ));
            out.push(gauge(
                "proxypool_proxy_probed",
                "1 once a probe result has arrived.",
                s.probed as u8 as f64,
            ));
            out.push(gauge(
                "proxypool_proxy_eligible",
                "1 if picks may choose the proxy now.",
                s.eligible as u8 as f64,
            ));
            out.push(gauge(
                "proxypool_proxy_breaker_state",
                "0 closed, 1 half-open, 2 open.",
                match s.breaker {
                    BreakerState::Closed => 0.0,
                    BreakerState::HalfOpen { .. } => 1.0,
                    BreakerState::Open { .. } => 2.0,
                },
            ));
            out.push(gauge(
                "proxypool_proxy_active_leases",
                "Connections through the proxy now.",
                s.active as f64,
            ));
            out.push(gauge(
                "proxypool_proxy_bans",
                "Exchanges the proxy is banned for now.",
                s.bans.len() as f64,
            ));
        }
        let c = &self.inner.counters;
        for (name, help, v) in [
            (
                "proxypool_health_transitions_total",
                "Health transitions (up and down).",
                &c.health_transitions,
            ),
            (
                "proxypool_breaker_opened_total",
                "Breakers opened.",
                &c.breaker_opened,
            ),
            (
                "proxypool_breaker_half_opened_total",
                "Breakers half-opened.",
                &c.breaker_half_opened,
            ),
            (
                "proxypool_breaker_closed_total",
                "Breakers closed.",
                &c.breaker_closed,
            ),
            ("proxypool_bans_total", "Bans reported by clients.", &c.bans),
            (
                "proxypool_misconfigured_total",
                "Proxies that refused our credentials.",
                &c.misconfigured,
            ),
        ] {
            out.push(Sample {
                name,
                help,
                kind: Kind::Counter,
                labels: vec![pool()],
                value: v.load(Ordering::Relaxed) as f64,
            });
        }
    }
}
