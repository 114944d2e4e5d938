//! One connect through a pool: pick, dial, fail over, hedge, and the all-down policy.
//!
//! [`Schedule`] decides when the next dial starts: at once after a loud failure,
//! after one hedge delay of silence otherwise, so that a blackholed proxy never holds
//! a connect up for longer than that. The first tunnel wins; the other dials are
//! dropped (and their breaker trials given back) or, if they went silent before the
//! winner started, judged in the background.
//!
//! Who is charged:
//! - a proxy fault (refused, reset, garbage, its own timeout) opens the proxy's
//!   breaker, and the connect moves on; a 407 marks the proxy misconfigured;
//! - a target-tied failure (the proxy answered that this destination failed) is
//!   held: a second proxy failing the same target makes it the destination's, and
//!   the client gets a destination error with nobody charged; a second proxy that
//!   reaches it gives the first a strike, and strikes on two different targets in a
//!   row count as one proxy fault. One client's bad name costs no member anything;
//! - a local shortage (EMFILE, ENOBUFS…) and our own deadline charge nobody;
//! - a dial that lost is no fault: it runs on in the background for a short grace,
//!   and only its own outcome within it counts, or silence past it while the proxy
//!   opened no other tunnel (that is how a blackholed or hung proxy's breaker opens
//!   fast).

use crate::sync::Locked as _;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::schedule::{Schedule, Step};
use super::{Balancer, ConnectError, PoolEntry, Routes, Tunnel};
use crate::config::{DEFAULT_HEDGE_INITIAL, Transport, WhenAllDown};
use crate::dial::{DialContext, DialError, FaultClass, ProxyStream, Target};
use crate::pool::{Lease, Pool, ProxyId, Trial};
use crate::strategy::PickContext;

/// Recent handshakes kept per pool for the hedge delay.
const HANDSHAKE_SAMPLES: usize = 64;
/// Below this many samples the hedge delay comes from what the pool measured otherwise.
const MIN_SAMPLES: usize = 8;
/// A first dial that lost to its hedge gets this many hedge delays more, in the
/// background, before it counts as a proxy fault.
const LOSER_GRACE_DELAYS: u32 = 3;
/// The least grace a losing dial gets: under load, a healthy handshake can take this.
const MIN_LOSER_GRACE: Duration = Duration::from_millis(250);

/// Owned, so that a losing dial can finish in the background.
type Dial = Pin<Box<dyn Future<Output = Result<ProxyStream, DialError>> + Send + 'static>>;

/// One dial in flight.
struct Attempt {
    lease: Lease,
    /// The breaker's admission; dropped unresolved, it gives a half-open trial back.
    _trial: Trial,
    dial: Dial,
    started: Instant,
    /// Started as a hedge, beside a silent dial (not after a failure).
    hedge: bool,
}

enum Event {
    Done(usize, Result<ProxyStream, DialError>),
    HedgeDue,
    Deadline,
}

/// What one connect asks for, handed down the connect path whole.
pub(super) struct Request<'a> {
    pub(super) ctx: DialContext<'a>,
    /// The name ban lists and reports use (lowercase), or "default".
    pub(super) exchange: String,
    pub(super) target: &'a Target,
    pub(super) started: Instant,
}

/// One connect's dials: who is excluded, what is in flight, what failed.
struct Race {
    schedule: Schedule,
    /// Proxies this connect must not use: banned for the exchange, then tried.
    excluded: Vec<ProxyId>,
    inflight: Vec<Attempt>,
    last: Option<DialError>,
    /// The first target-tied failure, held until another proxy confirms or refutes it.
    suspect: Option<(ProxyId, DialError)>,
}

impl Race {
    /// What the client hears when the race ran out: a held destination fault, else
    /// the last failure, else that the pool had no enabled proxy.
    fn lost(self, route: &str) -> ConnectError {
        match (self.suspect, self.last) {
            (Some((_, e)), _) | (None, Some(e)) => ConnectError::Dial(e),
            (None, None) => ConnectError::NoProxy {
                route: route.to_owned(),
            },
        }
    }
}

/// What a failed dial leaves a connect to do.
enum AfterFailure {
    /// Go on with this step.
    Go(Step),
    /// Stop: the client hears this.
    Stop(ConnectError),
}

impl Balancer {
    pub(super) async fn connect_pool(
        &self,
        routes: &Routes,
        entry: &PoolEntry,
        req: Request<'_>,
        mut prefer: Option<ProxyId>,
    ) -> Result<Tunnel, ConnectError> {
        let pool = &entry.pool;
        let started = req.started;
        pool.poll(started);
        let failover = &pool.spec().failover;
        let deadline = started + failover.deadline.unwrap_or(pool.timeout());
        let max_attempts = (failover.max_attempts as usize).min(pool.members().len());
        let mut race = Race {
            schedule: Schedule::new(max_attempts, self.hedge_delay(entry), deadline),
            excluded: Vec::new(),
            inflight: Vec::with_capacity(max_attempts),
            last: None,
            suspect: None,
        };
        pool.snapshot()
            .banned_for(&req.exchange, started, &mut race.excluded);
        let mut step = race.schedule.begin(started);
        loop {
            let hedge_at = match step {
                Step::Start { hedge } => {
                    match self.start_next(entry, &mut race, &req, prefer.take(), hedge) {
                        Some(next) => step = next,
                        None => break,
                    }
                    continue;
                }
                Step::Wait { hedge_at } => hedge_at,
                Step::Exhausted => break,
                Step::Deadline => {
                    // Our own deadline is no verdict on a proxy: the dials still
                    // pending finish in the background and are judged on their own.
                    let grace = loser_grace(race.schedule.hedge_delay());
                    for a in race.inflight.drain(..) {
                        judge_loser(pool.clone(), a, grace);
                    }
                    entry.counters.failed.fetch_add(1, Ordering::Relaxed);
                    let (after, attempts) = (deadline - started, race.schedule.started());
                    let route = pool.name().to_owned();
                    return Err(ConnectError::Deadline {
                        route,
                        after,
                        attempts,
                    });
                }
            };
            let event = next_event(&mut race.inflight, hedge_at, deadline).await;
            let now = Instant::now();
            step = match event {
                Event::HedgeDue => race.schedule.on_hedge_timer(now),
                Event::Deadline => race.schedule.on_deadline(now.max(deadline)),
                Event::Done(i, Ok(stream)) => {
                    return Ok(self.won(entry, race, i, stream, req, now));
                }
                Event::Done(i, Err(e)) => match failed(entry, &mut race, i, e, now) {
                    AfterFailure::Go(next) => next,
                    AfterFailure::Stop(e) => {
                        entry.counters.failed.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                },
            };
        }
        if race.schedule.started() == 0 {
            return self.all_down(routes, entry, req, &race.excluded).await;
        }
        entry.counters.failed.fetch_add(1, Ordering::Relaxed);
        Err(race.lost(pool.name()))
    }

    /// Picks the next proxy (`prefer` first, while it may take the connect) and
    /// starts its dial: the step that follows, or `None` to stop the race, when no
    /// proxy is left and a held destination fault is the answer.
    fn start_next(
        &self,
        entry: &PoolEntry,
        race: &mut Race,
        req: &Request<'_>,
        prefer: Option<ProxyId>,
        hedge: bool,
    ) -> Option<Step> {
        let now = Instant::now();
        let (exchange, transport) = (&req.exchange, req.ctx.transport);
        let picked = match prefer {
            Some(id) => self
                .pick_preferred(entry, id, &race.excluded)
                .or_else(|| self.pick(entry, exchange, transport, &mut race.excluded)),
            None => self.pick(entry, exchange, transport, &mut race.excluded),
        };
        match picked {
            Some((lease, trial)) => {
                if hedge {
                    entry.counters.hedges.fetch_add(1, Ordering::Relaxed);
                } else if race.schedule.started() > 0 {
                    entry.counters.failovers.fetch_add(1, Ordering::Relaxed);
                }
                race.excluded.push(lease.id());
                let mut dial = self.start_dial(&entry.pool, lease, trial, req.ctx, req.target, now);
                dial.hedge = hedge;
                race.inflight.push(dial);
                Some(race.schedule.on_started(now))
            }
            None if race.suspect.is_some() => None,
            None => Some(race.schedule.on_no_candidate(now)),
        }
    }

    fn start_dial(
        &self,
        pool: &Pool,
        lease: Lease,
        trial: Trial,
        ctx: DialContext<'_>,
        target: &Target,
        now: Instant,
    ) -> Attempt {
        let (url, timeout) = (lease.url().clone(), pool.timeout());
        let (dialer, target) = (self.dialer.clone(), target.clone());
        let (exchange, transport) = (ctx.exchange.map(str::to_owned), ctx.transport);
        Attempt {
            lease,
            _trial: trial,
            dial: Box::pin(async move {
                let ctx = DialContext {
                    exchange: exchange.as_deref(),
                    transport,
                };
                dialer.dial(&url, timeout, &target, ctx).await
            }),
            started: now,
            hedge: false,
        }
    }

    /// Records the winner (dial `i` of the race) and settles the others: a dial
    /// started before the winner went silent for at least a hedge delay and is judged
    /// in the background for a grace; one started after it was a hedge that was not
    /// needed, and is dropped.
    fn won(
        &self,
        entry: &PoolEntry,
        mut race: Race,
        i: usize,
        stream: ProxyStream,
        req: Request<'_>,
        now: Instant,
    ) -> Tunnel {
        let pool = &entry.pool;
        race.schedule.on_won();
        let won = race.inflight.swap_remove(i);
        // The proxy whose destination fault this win refutes gets its strike.
        if let Some((id, e)) = race.suspect.take() {
            let key = crate::pool::target_key(req.target.host(), req.target.port());
            pool.record_target_fault(id, key, now, &e.to_string());
        }
        let grace = loser_grace(race.schedule.hedge_delay());
        let others = race.inflight;
        let id = won.lease.id();
        let took = won.started.elapsed();
        pool.record_success(id);
        pool.record_latency(id, took);
        self.note_handshake(entry, took);
        // Only a hedge's win counts: a failover after a loud failure is no race.
        if won.hedge {
            entry.counters.hedges_won.fetch_add(1, Ordering::Relaxed);
        }
        for other in others {
            if other.started < won.started {
                judge_loser(pool.clone(), other, grace);
            } else {
                entry.counters.hedges_lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        entry.counters.connects.fetch_add(1, Ordering::Relaxed);
        let handshake = req.started.elapsed();
        entry.counters.connect_latency.observe(handshake);
        Tunnel::new(stream, Some(won.lease), handshake, req.exchange)
    }

    /// A lease on the strategy's next proxy outside `excluded`, with the breaker's
    /// admission (its half-open trial where there is one); `None` if no proxy is left.
    fn pick(
        &self,
        entry: &PoolEntry,
        exchange: &str,
        transport: Transport,
        excluded: &mut Vec<ProxyId>,
    ) -> Option<(Lease, Trial)> {
        let attempt = excluded.len() as u32;
        // The wall clock, not tokio's: a pick's cost is real even on a paused clock.
        let began = std::time::Instant::now();
        loop {
            let ctx = PickContext {
                exchange,
                transport,
                attempt,
                tried: excluded,
                affinity: None,
            };
            let lease = entry.selector.pick(&entry.pool, ctx).ok()?;
            if let Some(trial) = entry.pool.begin_attempt(lease.id()) {
                entry.counters.pick_latency.observe(began.elapsed());
                return Some((lease, trial));
            }
            // Its half-open trial is taken by another connect.
            excluded.push(lease.id());
        }
    }

    /// A lease on `id` if it may take this connect: eligible, not excluded (banned
    /// or tried), and admitted by its breaker.
    fn pick_preferred(
        &self,
        entry: &PoolEntry,
        id: ProxyId,
        excluded: &[ProxyId],
    ) -> Option<(Lease, Trial)> {
        let pool = &entry.pool;
        if !pool.snapshot().is_eligible(id) || excluded.contains(&id) {
            return None;
        }
        let trial = pool.begin_attempt(id)?;
        Some((pool.lease(id)?, trial))
    }

    /// The pool's recent p95 handshake, within the configured bounds. Until there
    /// are enough samples: twice the slowest member's measured handshake, else four
    /// probe round trips (a handshake is at least two round trips to the proxy plus
    /// its own connect), else [`DEFAULT_HEDGE_INITIAL`]; never the ceiling by default.
    fn hedge_delay(&self, entry: &PoolEntry) -> Option<Duration> {
        let (min, max) = entry.pool.spec().failover.hedge?;
        let samples = entry.handshakes.locked();
        if samples.len() < MIN_SAMPLES {
            drop(samples);
            return Some(initial_hedge_delay(&entry.pool).clamp(min, max));
        }
        // On the stack, and a selection rather than a sort: this runs on every connect.
        let mut copy = [Duration::ZERO; HANDSHAKE_SAMPLES];
        let n = samples.len();
        for (slot, d) in copy.iter_mut().zip(samples.iter()) {
            *slot = *d;
        }
        drop(samples);
        let rank = (n * 95 / 100).min(n - 1);
        let (_, p95, _) = copy[..n].select_nth_unstable(rank);
        Some((*p95).clamp(min, max))
    }

    fn note_handshake(&self, entry: &PoolEntry, took: Duration) {
        let mut samples = entry.handshakes.locked();
        if samples.len() == HANDSHAKE_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(took);
    }

    /// No proxy was eligible: the pool's policy decides. Never direct unless the
    /// default route itself says direct (for `fallback_default`).
    async fn all_down(
        &self,
        routes: &Routes,
        entry: &PoolEntry,
        req: Request<'_>,
        banned: &[ProxyId],
    ) -> Result<Tunnel, ConnectError> {
        let pool = &entry.pool;
        let policy = pool.spec().when_all_down;
        entry.counters.all_down[policy as usize].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "proxypool::health",
            pool = pool.name(),
            policy = policy.as_str(),
            "no eligible proxy: {}",
            self.why_out(entry, banned)
        );
        match policy {
            WhenAllDown::Panic => self.panic_connect(entry, req, banned).await,
            WhenAllDown::FallbackDefault => {
                let default =
                    crate::config::RoutePath::default_route(req.ctx.transport).to_string();
                if pool.name() == default {
                    return Err(self.all_down_error(
                        entry,
                        banned,
                        "fallback_default, but this is the default route",
                    ));
                }
                let route = routes.config.route(None, req.ctx.transport);
                self.connect_upstream(routes, route.upstream, &default, req, None)
                    .await
            }
            WhenAllDown::Fail => Err(self.all_down_error(entry, banned, policy.as_str())),
        }
    }

    /// Envoy's panic mode: every enabled proxy not banned for this exchange, in
    /// rotation, health and breakers ignored, up to `max_attempts`.
    async fn panic_connect(
        &self,
        entry: &PoolEntry,
        req: Request<'_>,
        banned: &[ProxyId],
    ) -> Result<Tunnel, ConnectError> {
        let Request {
            ctx,
            exchange,
            target,
            started,
        } = req;
        let pool = &entry.pool;
        let candidates: Vec<ProxyId> = (0..pool.members().len() as ProxyId)
            .filter(|id| pool.members()[*id as usize].enabled() && !banned.contains(id))
            .collect();
        if candidates.is_empty() {
            return Err(self.all_down_error(entry, banned, "panic"));
        }
        let first = entry.panic_rotor.fetch_add(1, Ordering::Relaxed) as usize;
        let attempts = (pool.spec().failover.max_attempts as usize).min(candidates.len());
        let deadline = started + pool.spec().failover.deadline.unwrap_or(pool.timeout());
        let mut last = None;
        let tries = async {
            for k in 0..attempts {
                let id = candidates[(first + k) % candidates.len()];
                let Some(lease) = pool.lease(id) else {
                    continue;
                };
                match self
                    .dialer
                    .dial(lease.url(), pool.timeout(), target, ctx)
                    .await
                {
                    Ok(stream) => {
                        pool.record_success(id);
                        entry.counters.connects.fetch_add(1, Ordering::Relaxed);
                        let handshake = started.elapsed();
                        entry.counters.connect_latency.observe(handshake);
                        return Ok(Tunnel::new(
                            stream,
                            Some(lease),
                            handshake,
                            exchange.clone(),
                        ));
                    }
                    Err(e) => match charge(pool, id, &e, Instant::now()) {
                        FaultClass::Destination | FaultClass::Local => return Err(e.into()),
                        FaultClass::Proxy | FaultClass::Config => last = Some(e),
                    },
                }
            }
            Err(ConnectError::NoProxy {
                route: pool.name().to_owned(),
            })
        };
        // Panic mode still keeps the connect's deadline.
        match tokio::time::timeout_at(deadline, tries).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) if matches!(e.class(), FaultClass::Destination | FaultClass::Local) => {
                return Err(e);
            }
            Ok(Err(_)) => {}
            Err(_) => {
                entry.counters.failed.fetch_add(1, Ordering::Relaxed);
                return Err(ConnectError::Deadline {
                    route: pool.name().to_owned(),
                    after: deadline - started,
                    attempts,
                });
            }
        }
        entry.counters.failed.fetch_add(1, Ordering::Relaxed);
        Err(last.map_or_else(
            || self.all_down_error(entry, banned, "panic"),
            ConnectError::Dial,
        ))
    }

    fn all_down_error(
        &self,
        entry: &PoolEntry,
        banned: &[ProxyId],
        policy: &'static str,
    ) -> ConnectError {
        entry.counters.failed.fetch_add(1, Ordering::Relaxed);
        ConnectError::AllDown {
            route: entry.pool.name().to_owned(),
            policy,
            why: self.why_out(entry, banned),
        }
    }

    /// "proxy: reason" for the first [`WHY_OUT_SHOWN`] members, redacted, and how
    /// many more: a pool of a thousand would make each such log line a page.
    fn why_out(&self, entry: &PoolEntry, banned: &[ProxyId]) -> String {
        let status = entry.pool.status();
        let mut shown = status
            .iter()
            .take(WHY_OUT_SHOWN)
            .map(|m| {
                let why = if !m.enabled {
                    "disabled".to_owned()
                } else if banned.contains(&m.id) {
                    "banned for this exchange".to_owned()
                } else if m.reason.is_empty() {
                    if m.eligible {
                        "eligible".to_owned()
                    } else {
                        "out".to_owned()
                    }
                } else {
                    m.reason.clone()
                };
                format!("{}: {why}", m.label)
            })
            .collect::<Vec<_>>()
            .join("; ");
        if status.len() > WHY_OUT_SHOWN {
            shown.push_str(&format!("; and {} more", status.len() - WHY_OUT_SHOWN));
        }
        shown
    }
}

/// Whichever comes first: a dial's end, the hedge timer, the deadline.
async fn next_event(
    inflight: &mut [Attempt],
    hedge_at: Option<Instant>,
    deadline: Instant,
) -> Event {
    tokio::select! {
        (i, r) = poll_fn(|cx| {
            for (i, a) in inflight.iter_mut().enumerate() {
                if let Poll::Ready(r) = a.dial.as_mut().poll(cx) {
                    return Poll::Ready((i, r));
                }
            }
            Poll::Pending
        }) => Event::Done(i, r),
        _ = sleep_until_some(hedge_at), if hedge_at.is_some() => Event::HedgeDue,
        _ = tokio::time::sleep_until(deadline) => Event::Deadline,
    }
}

/// A dial of the race failed: its proxy is charged as the fault says, and the
/// connect goes on or stops. A destination fault is held while one more dial
/// confirms or refutes it (without one the client hears it at once, and nobody is
/// charged); a second one is the destination's, and nobody is charged; a local
/// fault has nobody to blame and nobody who would do better.
fn failed(
    entry: &PoolEntry,
    race: &mut Race,
    i: usize,
    e: DialError,
    now: Instant,
) -> AfterFailure {
    let failed = race.inflight.swap_remove(i);
    let id = failed.lease.id();
    match charge(&entry.pool, id, &e, now) {
        FaultClass::Proxy | FaultClass::Config => {}
        FaultClass::Local => return AfterFailure::Stop(e.into()),
        FaultClass::Destination if race.suspect.is_some() => return AfterFailure::Stop(e.into()),
        FaultClass::Destination => {
            let step = race.schedule.on_failed(now);
            if !matches!(step, Step::Start { .. }) {
                return AfterFailure::Stop(e.into());
            }
            race.suspect = Some((id, e));
            return AfterFailure::Go(step);
        }
    }
    race.last = Some(e);
    AfterFailure::Go(race.schedule.on_failed(now))
}

/// What a failed dial through `id` costs it, the one passive-health rule of every
/// connect path: a proxy fault counts against its breaker and health, a config
/// fault (our credentials refused) takes it out until reload, and a destination or
/// local fault charges nobody (a held destination fault is charged later, as a
/// strike, if another proxy reaches the target). Returns the class.
fn charge(pool: &Pool, id: ProxyId, e: &DialError, now: Instant) -> FaultClass {
    let class = e.class();
    match class {
        FaultClass::Proxy => pool.record_failure(id, now, &e.to_string()),
        FaultClass::Config => pool.set_misconfigured(id, &e.to_string()),
        FaultClass::Destination | FaultClass::Local => {}
    }
    class
}

/// Members named one by one in a "no eligible proxy" message.
const WHY_OUT_SHOWN: usize = 8;

/// Lets a dial that lost (to a later one, or to our deadline) run a little longer
/// in the background, so that a dead proxy is told from a slow one; its tunnel, if
/// any, is closed. Losing is no fault: only the dial's own outcome within `grace`
/// counts, or silence past it while the proxy opened no other tunnel (a blackhole,
/// a hung proxy). A proxy that served others meanwhile was slow, not dead (a loaded
/// machine), and is not judged at all.
fn judge_loser(pool: Pool, loser: Attempt, grace: Duration) {
    tokio::spawn(async move {
        let id = loser.lease.id();
        let successes = pool.successes(id);
        match tokio::time::timeout(grace, loser.dial).await {
            Ok(Ok(_tunnel)) => pool.record_success(id),
            Ok(Err(e)) => {
                charge(&pool, id, &e, Instant::now());
            }
            Err(_) if pool.successes(id) == successes => {
                pool.record_failure(
                    id,
                    Instant::now(),
                    &format!("no tunnel {:?} after a hedge won", loser.started.elapsed()),
                );
                // Silence is what a hung proxy shows: its health hears of it too.
                pool.suspect(id);
            }
            Err(_) => {}
        }
        drop((loser.lease, loser._trial));
    });
}

/// How long a dial that lost to a later one may go on before it counts as a proxy
/// fault: a few of the connect's hedge delays.
fn loser_grace(hedge_delay: Option<Duration>) -> Duration {
    let delay = hedge_delay.unwrap_or(MIN_LOSER_GRACE);
    (delay * LOSER_GRACE_DELAYS).max(MIN_LOSER_GRACE)
}

/// The hedge delay of a pool with too few handshakes recorded (see
/// [`Balancer::hedge_delay`]'s rules).
fn initial_hedge_delay(pool: &Pool) -> Duration {
    let slowest = |f: fn(&crate::pool::Member) -> u32| {
        pool.members().iter().map(f).max().filter(|&us| us > 0)
    };
    if let Some(us) = slowest(crate::pool::Member::latency_us) {
        return Duration::from_micros(us as u64 * 2);
    }
    if let Some(us) = slowest(crate::pool::Member::probe_rtt_us) {
        return Duration::from_micros(us as u64 * 4);
    }
    DEFAULT_HEDGE_INITIAL
}

async fn sleep_until_some(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_hedge_delay_comes_from_what_the_pool_measured() {
        let pool = Pool::from_urls("default.http", ["socks5://a:1", "socks5://b:1"]).unwrap();
        assert_eq!(
            initial_hedge_delay(&pool),
            DEFAULT_HEDGE_INITIAL,
            "nothing known"
        );
        pool.record_probe_rtt(0, Duration::from_millis(30));
        assert_eq!(
            initial_hedge_delay(&pool),
            Duration::from_millis(120),
            "four probe round trips"
        );
        pool.record_latency(1, Duration::from_millis(70));
        assert_eq!(
            initial_hedge_delay(&pool),
            Duration::from_millis(140),
            "a measured handshake wins over probes"
        );
    }
}
