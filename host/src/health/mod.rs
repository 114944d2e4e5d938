//! Active health checking: probes on background tasks, a pluggable verdict, and the
//! pool's health cells flipped through [`Pool::set_health`].
//!
//! This layer defines what a probe and a verdict are ([`Probe`], [`Verdict`]) but not
//! how a probe reaches a proxy (that is `dial`'s job) nor how a WebAssembly verdict
//! runs (`strategy`'s); the [`crate::Balancer`] wires them in.
//!
//! Each member gets its own task: it sleeps an interval with ±25% jitter (HAProxy's
//! `spread-checks`), or the fast interval while the proxy is down, its breaker is not
//! closed, or its probes disagree with its state; takes a permit from a semaphore
//! shared by every pool (so 10,000 proxies never mean 10,000 sockets at once); probes
//! with up to `retry_count` attempts (none after an attempt that used up its whole
//! timeout); and hands the result to the verdict. Picks never
//! wait for any of this: they read the snapshot. A per-pool task moves breakers to
//! half-open when their cooldown ends.

mod threshold;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{HealthCheck, ProxyUrl};
use crate::metrics::families as F;
use crate::metrics::{Collect, Sample};
use crate::pool::{BreakerState, Pool, ProxyId, splitmix64};
pub use threshold::Threshold;

/// Probes running at once across every pool: enough to check 1,000 proxies at a 1 s
/// interval with 100 ms probes, few enough not to exhaust file descriptors.
pub(crate) const DEFAULT_PROBE_CONCURRENCY: usize = 256;

/// A boxed future, as probes return.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One way of testing a proxy (implemented by `dial` for each method).
pub trait Probe: Send + Sync + 'static {
    /// The method's name, for metrics (`tcp`, `handshake`, `http`, `ping`).
    fn method(&self) -> &'static str;

    /// Tests `proxy` once within `timeout`: how long it took, or why it failed. A
    /// reason that starts with `NO_OPINION` says the probe could not be made (our
    /// side ran short): it neither counts nor moves the verdict.
    fn probe<'a>(
        &'a self,
        proxy: &'a ProxyUrl,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Duration, String>>;
}

/// The start of a probe error that is ours, not the proxy's (out of file
/// descriptors, say): such a probe is skipped, not failed.
pub(crate) const NO_OPINION: &str = "no opinion: ";

/// What a verdict module says after one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Eligible for picks.
    Healthy,
    /// Not eligible for picks.
    Unhealthy,
    /// No opinion (a faulting module says this): leave the state as it is.
    Unchanged,
}

/// Turns probe results into up/down decisions (the built-in [`Threshold`], or a
/// WebAssembly component of the `health-verdict` world).
pub trait Verdict: Send + Sync {
    /// One probe's outcome for `id`; the proxy's health as the verdict now sees it.
    fn observe(&self, id: ProxyId, success: bool, latency: Duration) -> Health;

    /// Calls that faulted (and so had no opinion) since this verdict was installed.
    fn faults(&self) -> u64 {
        0
    }
}

/// Where a pool's verdict lives: swapped whole, live.
pub(crate) type VerdictSlot = Arc<ArcSwap<Box<dyn Verdict>>>;

/// Probe counters of one pool, by result.
#[derive(Debug, Default)]
pub(crate) struct ProbeCounters {
    /// Probes that succeeded.
    pub ok: AtomicU64,
    /// Probes that failed (after their retries).
    pub failed: AtomicU64,
}

/// A pool's running health checks; dropping it stops them.
pub(crate) struct HealthChecker {
    /// Aborts every task when dropped.
    _tasks: JoinSet<()>,
    counters: Arc<ProbeCounters>,
    method: &'static str,
    pool: Pool,
    verdict: VerdictSlot,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("pool", &self.pool.name())
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// Starts checking `pool` with `probe` (if its `health_check` is enabled) and its
    /// breaker timer. Must run inside a tokio runtime.
    pub(crate) fn spawn(
        pool: Pool,
        probe: Arc<dyn Probe>,
        verdict: VerdictSlot,
        permits: Arc<Semaphore>,
    ) -> HealthChecker {
        let mut tasks = JoinSet::new();
        let counters = Arc::new(ProbeCounters::default());
        let method = probe.method();
        tasks.spawn(breaker_timer(pool.clone()));
        let hc = pool.spec().health_check.clone();
        if hc.enabled {
            // Per pool, so that pools' probes do not fall into step with each other.
            let mut seed = pool
                .name()
                .bytes()
                .fold(0x5eed_u64, |h, b| splitmix64(&mut (h ^ b as u64)));
            for id in 0..pool.members().len() as ProxyId {
                if !pool.members()[id as usize].enabled() {
                    continue;
                }
                let member = MemberCheck {
                    pool: pool.clone(),
                    id,
                    hc: hc.clone(),
                    probe: probe.clone(),
                    verdict: verdict.clone(),
                    permits: permits.clone(),
                    counters: counters.clone(),
                };
                tasks.spawn(member.run(splitmix64(&mut seed)));
            }
        }
        HealthChecker {
            _tasks: tasks,
            counters,
            method,
            pool,
            verdict,
        }
    }
}

impl Collect for HealthChecker {
    fn collect(&self, out: &mut Vec<Sample>) {
        for (result, v) in [("ok", &self.counters.ok), ("failed", &self.counters.failed)] {
            out.push(Sample::counter(
                &F::PROBES_TOTAL,
                vec![
                    ("pool", self.pool.name().to_owned()),
                    ("method", self.method.to_owned()),
                    ("result", result.to_owned()),
                ],
                v.load(Ordering::Relaxed),
            ));
        }
        out.push(Sample::counter(
            &F::VERDICT_FAULTS_TOTAL,
            vec![("pool", self.pool.name().to_owned())],
            self.verdict.load().faults(),
        ));
    }
}

/// Moves the pool's breakers to half-open when their cooldown ends, even if no
/// connect comes along to notice.
async fn breaker_timer(pool: Pool) {
    loop {
        let wake = pool.deadline_changed();
        match pool.next_deadline() {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t) => pool.poll(Instant::now()),
                    _ = wake => {}
                }
            }
            None => wake.await,
        }
    }
}

/// One member's health task: what it probes with, and where the verdict goes.
struct MemberCheck {
    pool: Pool,
    id: ProxyId,
    hc: HealthCheck,
    probe: Arc<dyn Probe>,
    verdict: VerdictSlot,
    /// Probes in flight at once, process-wide.
    permits: Arc<Semaphore>,
    counters: Arc<ProbeCounters>,
}

impl MemberCheck {
    /// Probes until the pool's permits close: at the fast interval while the verdict
    /// is unsettled, at the interval once it holds, and at once when a connect
    /// asks for attention.
    async fn run(self, mut rng: u64) {
        let (pool, id, hc) = (&self.pool, self.id, &self.hc);
        // The first probe comes soon, spread over the fast interval, so the first
        // verdict is exported quickly without every proxy probed at the same instant.
        let mut wait = hc.fast_interval.mul_f64(unit(&mut rng));
        let mut last_success: Option<bool> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = pool.attention(id) => {}
            }
            // A connect that found it silent is one failed observation, so that a
            // hung proxy is down after fall - 1 probes rather than fall.
            if pool.take_suspicion(id) {
                let why = "a connect found it silent";
                observe(pool, &self.verdict, id, false, Duration::ZERO, why);
            }
            let Some(result) = self.probe_once().await else {
                return;
            };
            if let Err(e) = &result
                && e.starts_with(NO_OPINION)
            {
                // A shortage of ours says nothing of the proxy: try again soon.
                tracing::debug!(target: "proxypool::health", pool = pool.name(), "probe skipped: {e}");
                wait = hc.fast_interval.mul_f64(0.75 + 0.5 * unit(&mut rng));
                continue;
            }
            let success = self.record(&result);
            let member = &pool.members()[id as usize];
            let settled = member.healthy() == success
                && last_success.is_none_or(|l| l == success)
                && member.breaker() == BreakerState::Closed;
            last_success = Some(success);
            let base = if settled && member.healthy() {
                hc.interval
            } else {
                hc.fast_interval
            };
            wait = base.mul_f64(0.75 + 0.5 * unit(&mut rng));
        }
    }

    /// One probe, retried after loud failures: `None` once the permits are closed.
    async fn probe_once(&self) -> Option<Result<Duration, String>> {
        let url = self.pool.members()[self.id as usize].url();
        let _permit = self.permits.acquire().await.ok()?;
        let mut result = Err(String::new());
        for _ in 0..self.hc.retry_count.max(1) {
            let began = Instant::now();
            result = self.probe.probe(url, self.hc.timeout).await;
            // Retries are for loud failures: an attempt that used up its whole
            // timeout met a silent proxy, and two more would triple the wait.
            let silent = began.elapsed() >= self.hc.timeout.mul_f64(0.95);
            if result.is_ok() || silent || result.as_ref().is_err_and(|e| e.starts_with(NO_OPINION))
            {
                break;
            }
        }
        Some(result)
    }

    /// Counts a probe's result and hands it to the verdict; whether it succeeded.
    fn record(&self, result: &Result<Duration, String>) -> bool {
        let (success, latency, reason) = match result {
            Ok(d) => (true, *d, "probe succeeded".to_owned()),
            Err(e) => (
                false,
                Duration::ZERO,
                format!("{} probe failed: {e}", self.probe.method()),
            ),
        };
        if success {
            self.counters.ok.fetch_add(1, Ordering::Relaxed);
            self.pool.record_probe_rtt(self.id, latency);
            // Only a probe that does a whole handshake measures what connects see.
            if self.probe.method() == "handshake" {
                self.pool.record_latency(self.id, latency);
            }
        } else {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        observe(
            &self.pool,
            &self.verdict,
            self.id,
            success,
            latency,
            &reason,
        );
        success
    }
}

/// Hands one observation to the verdict and applies what it says.
fn observe(
    pool: &Pool,
    verdict: &VerdictSlot,
    id: ProxyId,
    success: bool,
    latency: Duration,
    reason: &str,
) {
    match verdict.load().observe(id, success, latency) {
        Health::Healthy => pool.set_health(id, true, reason),
        Health::Unhealthy => pool.set_health(id, false, reason),
        Health::Unchanged => {}
    }
}

/// A uniform number in [0, 1).
fn unit(rng: &mut u64) -> f64 {
    (splitmix64(rng) >> 11) as f64 / (1u64 << 53) as f64
}
