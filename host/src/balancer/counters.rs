//! What the connect path counts per pool: connects, failures, failovers, hedges
//! and all-down events, and the pick and connect latency histograms.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::families as F;
use crate::metrics::{CONNECT_BUCKETS, Histogram, PICK_BUCKETS, Sample};

/// Connect counters of one pool.
#[derive(Debug)]
pub struct ConnectCounters {
    /// Tunnels opened through the pool.
    pub connects: AtomicU64,
    /// Connects through the pool that failed.
    pub failed: AtomicU64,
    /// Attempts that moved on to another proxy after a proxy or config fault.
    pub failovers: AtomicU64,
    /// Second dials started because the first went a hedge delay without a tunnel.
    pub hedges: AtomicU64,
    /// Hedges whose dial won the race.
    pub hedges_won: AtomicU64,
    /// Hedges cancelled because the first dial won after all.
    pub hedges_lost: AtomicU64,
    /// Connects that found no eligible proxy, by policy: panic, fallback_default, fail.
    pub all_down: [AtomicU64; 3],
    /// Time a pick takes: the strategy's answer and the breaker's admission.
    pub pick_latency: Histogram,
    /// Time from the start of a connect to an open tunnel, failover included.
    pub connect_latency: Histogram,
}

impl Default for ConnectCounters {
    fn default() -> ConnectCounters {
        ConnectCounters {
            connects: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            hedges_won: AtomicU64::new(0),
            hedges_lost: AtomicU64::new(0),
            all_down: Default::default(),
            pick_latency: Histogram::new(PICK_BUCKETS),
            connect_latency: Histogram::new(CONNECT_BUCKETS),
        }
    }
}

/// Connect counters summed over every pool of a balancer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectTotals {
    /// Tunnels opened through pools.
    pub connects: u64,
    /// Connects through pools that failed.
    pub failed: u64,
    /// Attempts that moved on to another proxy after a proxy or config fault.
    pub failovers: u64,
    /// Second dials raced against a slow first one.
    pub hedges: u64,
    /// Hedges whose dial won.
    pub hedges_won: u64,
    /// Hedges cancelled because the first dial won.
    pub hedges_lost: u64,
    /// Connects that found no eligible proxy, by policy: panic, fallback_default, fail.
    pub all_down: [u64; 3],
}

impl ConnectTotals {
    pub(super) fn add(&mut self, c: &ConnectCounters) {
        let n = |v: &AtomicU64| v.load(Ordering::Relaxed);
        self.connects += n(&c.connects);
        self.failed += n(&c.failed);
        self.failovers += n(&c.failovers);
        self.hedges += n(&c.hedges);
        self.hedges_won += n(&c.hedges_won);
        self.hedges_lost += n(&c.hedges_lost);
        for (t, v) in self.all_down.iter_mut().zip(&c.all_down) {
            *t += n(v);
        }
    }
}

impl ConnectCounters {
    /// Its samples, labelled with the pool's route.
    pub(super) fn collect(&self, pool: &str, out: &mut Vec<Sample>) {
        let labels = || vec![("pool", pool.to_owned())];
        for (family, v) in [
            (&F::CONNECTS_TOTAL, &self.connects),
            (&F::CONNECTS_FAILED_TOTAL, &self.failed),
            (&F::FAILOVERS_TOTAL, &self.failovers),
            (&F::HEDGES_TOTAL, &self.hedges),
            (&F::HEDGES_WON_TOTAL, &self.hedges_won),
            (&F::HEDGES_LOST_TOTAL, &self.hedges_lost),
        ] {
            out.push(Sample::counter(family, labels(), v.load(Ordering::Relaxed)));
        }
        for (i, policy) in ["panic", "fallback_default", "fail"]
            .into_iter()
            .enumerate()
        {
            let mut labels = labels();
            labels.push(("policy", policy.to_owned()));
            out.push(Sample::counter(
                &F::ALL_DOWN_TOTAL,
                labels,
                self.all_down[i].load(Ordering::Relaxed),
            ));
        }
        out.push(
            self.pick_latency
                .sample(&F::PICK_DURATION_SECONDS, labels()),
        );
        out.push(
            self.connect_latency
                .sample(&F::CONNECT_DURATION_SECONDS, labels()),
        );
    }
}
