//! The pool's Prometheus series: each member's state, and the pool's counters.

use std::sync::atomic::Ordering;

use super::{BreakerState, Pool, ProxyId};
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
            let gauge =
                |name, help, value: bool| Sample::gauge(name, help, labels(), value as u8 as f64);
            out.push(gauge(
                "proxypool_proxy_up",
                "1 if the proxy's health verdict is up.",
                s.healthy,
            ));
            out.push(gauge(
                "proxypool_proxy_probed",
                "1 once a probe result has arrived.",
                s.probed,
            ));
            out.push(gauge(
                "proxypool_proxy_eligible",
                "1 if picks may choose the proxy now.",
                s.eligible,
            ));
            out.push(Sample::gauge(
                "proxypool_proxy_breaker_state",
                "0 closed, 1 half-open, 2 open.",
                labels(),
                match s.breaker {
                    BreakerState::Closed => 0.0,
                    BreakerState::HalfOpen { .. } => 1.0,
                    BreakerState::Open { .. } => 2.0,
                },
            ));
            out.push(Sample::gauge(
                "proxypool_proxy_active_leases",
                "Connections through the proxy now.",
                labels(),
                s.active as f64,
            ));
            out.push(Sample::gauge(
                "proxypool_proxy_bans",
                "Exchanges the proxy is banned for now.",
                labels(),
                s.bans.len() as f64,
            ));
            let member = &self.inner.members[s.id as usize];
            out.push(Sample::counter(
                "proxypool_proxy_picks_total",
                "Leases handed out on the proxy (each pick, failover and hedge dial).",
                labels(),
                member.picks(),
            ));
            let (up, down) = member.bytes();
            for (direction, n) in [("up", up), ("down", down)] {
                let mut labels = labels();
                labels.push(("direction", direction.to_owned()));
                out.push(Sample::counter(
                    "proxypool_proxy_bytes_total",
                    "Bytes relayed through the proxy by the gateway (up: client to upstream).",
                    labels,
                    n,
                ));
            }
        }
    }

    /// The pool-wide counters' series.
    fn collect_counters(&self, out: &mut Vec<Sample>) {
        let pool = || ("pool", self.name().to_owned());
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
            out.push(Sample::counter(
                name,
                help,
                vec![pool()],
                v.load(Ordering::Relaxed),
            ));
        }
    }
}
