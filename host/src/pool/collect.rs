//! The pool's Prometheus series: each member's state, and the pool's counters.

use std::sync::atomic::Ordering;

use super::{BreakerState, Pool, ProxyId};
use crate::metrics::families as F;
use crate::metrics::{Collect, Sample};

impl Collect for Pool {
    fn collect(&self, out: &mut Vec<Sample>) {
        self.collect_members(None, out);
        self.collect_counters(out);
    }
}

impl Pool {
    /// The per-proxy series of `ids` (all members: `None`).
    pub fn collect_members(&self, ids: Option<&[ProxyId]>, out: &mut Vec<Sample>) {
        let pool = || ("pool", self.name().to_owned());
        for s in self.status() {
            if ids.is_some_and(|ids| !ids.contains(&s.id)) {
                continue;
            }
            let labels = || vec![pool(), ("proxy", s.label.clone())];
            let gauge = |family, value: bool| Sample::gauge(family, labels(), value as u8 as f64);
            out.push(gauge(&F::PROXY_UP, s.healthy));
            out.push(gauge(&F::PROXY_PROBED, s.probed));
            out.push(gauge(&F::PROXY_ELIGIBLE, s.eligible));
            out.push(Sample::gauge(
                &F::PROXY_BREAKER_STATE,
                labels(),
                match s.breaker {
                    BreakerState::Closed => 0.0,
                    BreakerState::HalfOpen { .. } => 1.0,
                    BreakerState::Open { .. } => 2.0,
                },
            ));
            out.push(Sample::gauge(
                &F::PROXY_ACTIVE_LEASES,
                labels(),
                s.active as f64,
            ));
            out.push(Sample::gauge(&F::PROXY_BANS, labels(), s.bans.len() as f64));
            let member = &self.inner.members[s.id as usize];
            out.push(Sample::counter(
                &F::PROXY_PICKS_TOTAL,
                labels(),
                member.picks(),
            ));
            let (up, down) = member.bytes();
            for (direction, n) in [("up", up), ("down", down)] {
                let mut labels = labels();
                labels.push(("direction", direction.to_owned()));
                out.push(Sample::counter(&F::PROXY_BYTES_TOTAL, labels, n));
            }
        }
    }

    /// The pool-wide counters' series.
    fn collect_counters(&self, out: &mut Vec<Sample>) {
        let pool = || ("pool", self.name().to_owned());
        let c = &self.inner.counters;
        for (family, v) in [
            (&F::HEALTH_TRANSITIONS_TOTAL, &c.health_transitions),
            (&F::BREAKER_OPENED_TOTAL, &c.breaker_opened),
            (&F::BREAKER_HALF_OPENED_TOTAL, &c.breaker_half_opened),
            (&F::BREAKER_CLOSED_TOTAL, &c.breaker_closed),
            (&F::BANS_TOTAL, &c.bans),
            (&F::MISCONFIGURED_TOTAL, &c.misconfigured),
        ] {
            out.push(Sample::counter(
                family,
                vec![pool()],
                v.load(Ordering::Relaxed),
            ));
        }
    }
}
