//! When one connect starts its next dial, and when it gives up: pure logic over
//! events and instants, so that its transitions are tested on the paused clock with
//! no sockets.
//!
//! The rules, in full:
//! - The first dial starts at once.
//! - An attempt that fails loudly starts the next candidate at once, whatever other
//!   attempts are still pending.
//! - A dial that has had no tunnel for one hedge delay since the latest start is
//!   raced by the next candidate, so a silent proxy costs at most one hedge delay.
//! - Nothing starts past `max_attempts`, or once the strategy has no candidate left.
//! - With nothing pending and nothing left to start, the connect is exhausted; at the
//!   deadline it gives up whatever is pending.

use std::time::Duration;

use tokio::time::Instant;

/// What the connect does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Pick and start a dial now; `hedge` when others are still pending.
    Start {
        /// Another attempt is still pending.
        hedge: bool,
    },
    /// Wait for a pending attempt, the hedge timer (if any), or the deadline.
    Wait {
        /// When the next candidate starts unless something happens first.
        hedge_at: Option<Instant>,
    },
    /// Nothing is pending and nothing more can start.
    Exhausted,
    /// The deadline passed with attempts still pending.
    Deadline,
}

/// The attempts of one connect.
#[derive(Debug)]
pub(super) struct Schedule {
    max_attempts: usize,
    hedge_delay: Option<Duration>,
    deadline: Instant,
    started: usize,
    pending: usize,
    /// When the next candidate starts if nothing else happens.
    next_start: Option<Instant>,
    no_candidates: bool,
}

impl Schedule {
    /// A connect that may start `max_attempts` dials before `deadline`, hedging after
    /// `hedge_delay` (`None`: only a failure starts the next dial).
    pub(super) fn new(
        max_attempts: usize,
        hedge_delay: Option<Duration>,
        deadline: Instant,
    ) -> Schedule {
        Schedule {
            max_attempts,
            hedge_delay,
            deadline,
            started: 0,
            pending: 0,
            next_start: None,
            no_candidates: false,
        }
    }

    /// The first step.
    pub(super) fn begin(&self, now: Instant) -> Step {
        self.step(now)
    }

    /// Dials started so far.
    pub(super) fn started(&self) -> usize {
        self.started
    }

    /// Attempts pending now.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    /// The hedge delay in force.
    pub(super) fn hedge_delay(&self) -> Option<Duration> {
        self.hedge_delay
    }

    /// The deadline.
    #[cfg(test)]
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A dial was started at `now`.
    pub(super) fn on_started(&mut self, now: Instant) -> Step {
        self.started += 1;
        self.pending += 1;
        self.next_start = self.hedge_delay.map(|d| now + d);
        self.step(now)
    }

    /// The strategy had no candidate left to start.
    pub(super) fn on_no_candidate(&mut self, now: Instant) -> Step {
        self.no_candidates = true;
        self.next_start = None;
        self.step(now)
    }

    /// A pending attempt failed with a proxy or config fault: the next candidate
    /// starts at once.
    pub(super) fn on_failed(&mut self, now: Instant) -> Step {
        self.pending = self.pending.saturating_sub(1);
        self.next_start = Some(now);
        self.step(now)
    }

    /// A pending attempt opened a tunnel: the connect is over.
    pub(super) fn on_won(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// The hedge timer fired.
    pub(super) fn on_hedge_timer(&mut self, now: Instant) -> Step {
        self.step(now)
    }

    /// The deadline timer fired.
    pub(super) fn on_deadline(&mut self, now: Instant) -> Step {
        self.step(now)
    }

    fn can_start(&self) -> bool {
        self.started < self.max_attempts && !self.no_candidates
    }

    fn step(&self, now: Instant) -> Step {
        if now >= self.deadline {
            return if self.pending > 0 {
                Step::Deadline
            } else {
                Step::Exhausted
            };
        }
        let due = self.pending == 0 || self.next_start.is_some_and(|t| now >= t);
        if self.can_start() && due {
            return Step::Start {
                hedge: self.pending > 0,
            };
        }
        if self.pending == 0 {
            return Step::Exhausted;
        }
        Step::Wait {
            hedge_at: self.next_start.filter(|_| self.can_start()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEDGE: Duration = Duration::from_millis(100);

    fn schedule(max: usize) -> (Schedule, Instant) {
        let now = Instant::now();
        (
            Schedule::new(max, Some(HEDGE), now + Duration::from_secs(5)),
            now,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_dial_starts_at_once_and_arms_the_hedge_timer() {
        let (mut s, t0) = schedule(3);
        assert_eq!(s.begin(t0), Step::Start { hedge: false });
        assert_eq!(
            s.on_started(t0),
            Step::Wait {
                hedge_at: Some(t0 + HEDGE)
            }
        );
        tokio::time::advance(HEDGE - Duration::from_millis(1)).await;
        assert!(matches!(
            s.on_hedge_timer(Instant::now()),
            Step::Wait { .. }
        ));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            s.on_hedge_timer(Instant::now()),
            Step::Start { hedge: true }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_loud_failure_starts_the_next_candidate_at_once_while_a_silent_one_pends() {
        let (mut s, t0) = schedule(3);
        s.on_started(t0);
        tokio::time::advance(HEDGE).await;
        let t1 = Instant::now();
        assert_eq!(s.on_hedge_timer(t1), Step::Start { hedge: true });
        s.on_started(t1);
        // The hedge is refused at once; the first (silent) dial is still pending.
        assert_eq!(s.pending(), 2);
        assert_eq!(s.on_failed(t1), Step::Start { hedge: true });
        s.on_started(t1);
        assert_eq!(s.started(), 3);
        assert_eq!(
            s.on_hedge_timer(t1 + HEDGE),
            Step::Wait { hedge_at: None },
            "max_attempts reached: no more starts, only waiting"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_silent_dial_costs_at_most_one_hedge_delay() {
        let (mut s, t0) = schedule(3);
        s.on_started(t0);
        for k in 1..3u32 {
            let t = t0 + HEDGE * k;
            assert_eq!(s.on_hedge_timer(t), Step::Start { hedge: true });
            assert_eq!(
                s.on_started(t),
                if k < 2 {
                    Step::Wait {
                        hedge_at: Some(t + HEDGE),
                    }
                } else {
                    Step::Wait { hedge_at: None }
                }
            );
        }
        s.on_won();
        assert_eq!(s.pending(), 2, "the other two are settled by the caller");
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_pending_and_nothing_to_start_it_is_exhausted() {
        let (mut s, t0) = schedule(2);
        s.on_started(t0);
        assert_eq!(s.on_failed(t0), Step::Start { hedge: false });
        s.on_started(t0);
        assert_eq!(s.on_failed(t0), Step::Exhausted);

        let (mut s, t0) = schedule(3);
        assert_eq!(s.on_no_candidate(t0), Step::Exhausted);
        assert_eq!(s.started(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn no_candidate_stops_hedging_but_keeps_waiting_for_the_pending_dial() {
        let (mut s, t0) = schedule(3);
        s.on_started(t0);
        let t1 = t0 + HEDGE;
        assert_eq!(s.on_hedge_timer(t1), Step::Start { hedge: true });
        assert_eq!(s.on_no_candidate(t1), Step::Wait { hedge_at: None });
        assert_eq!(s.on_failed(t1), Step::Exhausted);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_gives_up_on_pending_attempts() {
        let (mut s, t0) = schedule(1);
        s.on_started(t0);
        assert_eq!(s.on_hedge_timer(t0 + HEDGE), Step::Wait { hedge_at: None });
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(s.on_deadline(Instant::now()), Step::Deadline);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn without_hedging_only_a_failure_starts_the_next_dial() {
        let now = Instant::now();
        let mut s = Schedule::new(3, None, now + Duration::from_secs(5));
        assert_eq!(s.on_started(now), Step::Wait { hedge_at: None });
        assert_eq!(
            s.on_hedge_timer(now + Duration::from_secs(4)),
            Step::Wait { hedge_at: None }
        );
        assert_eq!(s.on_failed(now), Step::Start { hedge: false });
        assert_eq!(s.hedge_delay(), None);
    }
}
