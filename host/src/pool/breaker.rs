//! One proxy's circuit breaker: closed → open after `failures` consecutive proxy
//! faults → half-open after a cooldown (doubling per reopen, with jitter, up to a cap)
//! → one trial → closed on success, open again (longer) on failure. Pure logic: the
//! caller passes the time, so tests drive it with the paused clock.

use std::time::Duration;

use tokio::time::Instant;

use crate::config;

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows; counting consecutive faults.
    Closed,
    /// No traffic until the instant given.
    Open {
        /// When it turns half-open.
        until: Instant,
    },
    /// One trial may go through; `trial` says whether it is under way.
    HalfOpen {
        /// Whether the one trial is taken.
        trial: bool,
    },
}

impl BreakerState {
    /// The name used in logs, metrics and status.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

/// A breaker and its counters.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: config::Breaker,
    state: BreakerState,
    consecutive: u32,
    /// Opens since it was last closed by a success: the backoff exponent.
    reopens: u32,
    rng: u64,
    /// Numbers each half-open trial, so that only its own holder can give it back.
    trials: u64,
}

/// What [`Breaker::take_trial`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed: go ahead, no trial is held.
    Closed,
    /// The half-open trial, numbered.
    Trial(u64),
    /// Open, or its trial is taken.
    Refused,
}

impl Breaker {
    pub(crate) fn new(config: config::Breaker, seed: u64) -> Breaker {
        Breaker {
            config,
            state: BreakerState::Closed,
            consecutive: 0,
            reopens: 0,
            rng: seed,
            trials: 0,
        }
    }

    /// New thresholds and cooldowns from a reload; the state stays as it is.
    pub(crate) fn reconfigure(&mut self, config: config::Breaker) {
        self.config = config;
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether picks may choose this proxy (closed, or half-open with the trial free).
    pub(crate) fn admits(&self) -> bool {
        matches!(
            self.state,
            BreakerState::Closed | BreakerState::HalfOpen { trial: false }
        )
    }

    /// A proxy fault. Returns the new state if it changed.
    pub(crate) fn failure(&mut self, now: Instant) -> Option<BreakerState> {
        match self.state {
            BreakerState::Closed => {
                self.consecutive += 1;
                (self.consecutive >= self.config.failures).then(|| self.open(now))
            }
            BreakerState::HalfOpen { .. } => Some(self.open(now)),
            BreakerState::Open { .. } => None,
        }
    }

    /// A success through the proxy. Returns the new state if it changed.
    pub(crate) fn success(&mut self) -> Option<BreakerState> {
        self.consecutive = 0;
        match self.state {
            BreakerState::Closed => None,
            _ => Some(self.close()),
        }
    }

    /// Takes the half-open trial if it is free; a closed breaker admits without one.
    pub(crate) fn take_trial(&mut self) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Closed,
            BreakerState::HalfOpen { trial: false } => {
                self.state = BreakerState::HalfOpen { trial: true };
                self.trials += 1;
                Admission::Trial(self.trials)
            }
            _ => Admission::Refused,
        }
    }

    /// Frees trial `n` if it is still the one under way: its attempt ended with no
    /// outcome (cancelled, or not needed). True if the breaker changed.
    pub(crate) fn release_trial(&mut self, n: u64) -> bool {
        let held = self.state == (BreakerState::HalfOpen { trial: true }) && self.trials == n;
        if held {
            self.state = BreakerState::HalfOpen { trial: false };
        }
        held
    }

    /// Open → half-open once the cooldown has passed.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<BreakerState> {
        match self.state {
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { trial: false };
                Some(self.state)
            }
            _ => None,
        }
    }

    /// Closes it outright: active health checks saw the proxy recover.
    pub(crate) fn reset(&mut self) -> Option<BreakerState> {
        self.consecutive = 0;
        (self.state != BreakerState::Closed).then(|| self.close())
    }

    /// The instant the breaker next changes by itself, if open.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    fn close(&mut self) -> BreakerState {
        self.reopens = 0;
        self.state = BreakerState::Closed;
        self.state
    }

    fn open(&mut self, now: Instant) -> BreakerState {
        self.consecutive = 0;
        let cooldown = self.cooldown();
        self.reopens = self.reopens.saturating_add(1);
        self.state = BreakerState::Open {
            until: now + cooldown,
        };
        self.state
    }

    /// base × 2^reopens, capped, then ±20% so that proxies opened together do not
    /// come back together.
    fn cooldown(&mut self) -> Duration {
        let base = self.config.cooldown;
        let doubled = base
            .checked_mul(1u32.checked_shl(self.reopens.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.config.max_cooldown)
            .min(self.config.max_cooldown);
        let unit = (super::splitmix64(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
        doubled.mul_f64(0.8 + 0.4 * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32) -> Breaker {
        Breaker::new(
            config::Breaker {
                failures,
                cooldown: Duration::from_secs(1),
                max_cooldown: Duration::from_secs(8),
            },
            7,
        )
    }

    fn open_for(state: Option<BreakerState>, now: Instant) -> Duration {
        match state {
            Some(BreakerState::Open { until }) => until - now,
            other => panic!("expected open, got {other:?}"),
        }
    }

    #[test]
    fn opens_at_the_threshold_and_not_before() {
        let now = Instant::now();
        let mut b = breaker(3);
        assert_eq!(b.failure(now), None);
        assert_eq!(b.success(), None, "a success resets the count");
        assert_eq!((b.failure(now), b.failure(now)), (None, None));
        let d = open_for(b.failure(now), now);
        assert!(
            d >= Duration::from_millis(800) && d <= Duration::from_millis(1200),
            "{d:?}"
        );
        assert!(!b.admits());
    }

    #[test]
    fn half_open_admits_one_trial_and_reopens_longer_on_failure() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        let first = open_for(b.failure(t0), t0);
        assert_eq!(b.poll(t0 + first / 2), None);
        let t1 = t0 + first;
        assert_eq!(b.poll(t1), Some(BreakerState::HalfOpen { trial: false }));
        assert!(b.admits());
        assert_eq!(b.take_trial(), Admission::Trial(1));
        assert_eq!(b.take_trial(), Admission::Refused, "one trial only");
        assert!(!b.admits());
        let second = open_for(b.failure(t1), t1);
        assert!(second > first, "{second:?} after {first:?}");
        assert!(second >= Duration::from_millis(1600), "{second:?}");
        // Doubling stops at the cap (8 s, +20% jitter at most).
        let mut t = t1 + second;
        for _ in 0..6 {
            b.poll(t);
            b.take_trial();
            let d = open_for(b.failure(t), t);
            assert!(d <= Duration::from_millis(9600), "{d:?}");
            t += d;
        }
    }

    #[test]
    fn a_trial_success_closes_and_restarts_the_backoff() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        let d = open_for(b.failure(t0), t0);
        b.poll(t0 + d);
        assert!(matches!(b.take_trial(), Admission::Trial(_)));
        assert_eq!(b.success(), Some(BreakerState::Closed));
        let again = open_for(b.failure(t0 + d), t0 + d);
        assert!(
            again <= Duration::from_millis(1200),
            "backoff restarted: {again:?}"
        );
    }

    #[test]
    fn only_the_holder_of_the_current_trial_can_give_it_back() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        let d = open_for(b.failure(t0), t0);
        b.poll(t0 + d);
        let Admission::Trial(first) = b.take_trial() else {
            panic!("no trial");
        };
        assert!(b.release_trial(first));
        assert!(b.admits(), "free again");
        let Admission::Trial(second) = b.take_trial() else {
            panic!("no second trial");
        };
        assert!(!b.release_trial(first), "a stale holder changes nothing");
        assert!(!b.admits());
        assert!(b.release_trial(second));
        b.success();
        assert!(!b.release_trial(second), "closed: nothing to give back");
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
