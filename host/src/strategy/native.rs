//! Native built-ins with the guests' semantics (the very same code, compiled for the
//! host): they serve a pick whenever the WebAssembly strategy faults.

use least_connections::LeastConnections;
use random::Random;
use round_robin::RoundRobin;

use super::{LeaseCount, ProxyId, splitmix64};
use crate::config::BuiltinStrategy;

/// A native strategy.
#[derive(Debug)]
pub enum Native {
    /// See the `round_robin` crate.
    RoundRobin(RoundRobin),
    /// See the `random` crate; the `u64` is the generator state.
    Random(Random, u64),
    /// See the `least_connections` crate.
    LeastConnections(LeastConnections),
}

impl Native {
    /// A fresh instance of `b`; `seed` seeds random.
    pub fn new(b: BuiltinStrategy, seed: u64) -> Native {
        match b {
            BuiltinStrategy::RoundRobin => Native::RoundRobin(RoundRobin::default()),
            BuiltinStrategy::Random => Native::Random(Random::default(), seed),
            BuiltinStrategy::LeastConnections => {
                Native::LeastConnections(LeastConnections::default())
            }
        }
    }

    /// Replaces the eligible set.
    pub fn set_candidates(&mut self, ids: &[ProxyId], weights: &[u32], active: &[u32]) {
        match self {
            Native::RoundRobin(s) => s.set_candidates(ids, weights),
            // The guest reseeds from one `host.random` draw: so does the fallback.
            Native::Random(s, rng) => s.set_candidates(ids, weights, splitmix64(rng)),
            Native::LeastConnections(s) => s.set_candidates(ids, active),
        }
    }

    /// Applies changed lease counts.
    pub fn set_active(&mut self, leases: &[LeaseCount]) {
        if let Native::LeastConnections(s) = self {
            for l in leases {
                s.set_active(l.id, l.active);
            }
        }
    }

    /// Whether its picks depend on live load (so the pool must track lease changes).
    pub fn is_load_dependent(&self) -> bool {
        matches!(self, Native::LeastConnections(_))
    }

    /// One pick.
    pub fn pick(&mut self, tried: &[ProxyId]) -> Option<ProxyId> {
        match self {
            Native::RoundRobin(s) => s.pick(tried),
            Native::Random(s, _) => s.pick(tried),
            Native::LeastConnections(s) => s.pick(tried),
        }
    }

    /// Up to `max` upcoming picks (none for least_connections).
    pub fn pick_batch(&mut self, max: u32) -> Vec<ProxyId> {
        match self {
            Native::RoundRobin(s) => s.batch(max),
            Native::Random(s, _) => s.batch(max),
            Native::LeastConnections(_) => Vec::new(),
        }
    }
}
