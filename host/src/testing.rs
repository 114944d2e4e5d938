//! Internals that proxypool's own integration tests, benchmarks and fuzz targets
//! reach. Not part of the API: hidden from the docs, and free to change in any
//! release. An embedder needs none of it; the facade ([`crate::balancer`]) is the door.

use std::sync::Arc;

use crate::balancer::Balancer;

pub use crate::dial::{ConnectReply, DialContext, DialProbe, parse_connect_reply};
pub use crate::gateway::admin::status_json;
pub use crate::gateway::route::normalize;
pub use crate::gateway::sniff::sniff;
pub use crate::health::{Health, Probe, Threshold, Verdict};
pub use crate::pool::{LeaseCount, Pool, splitmix64};
pub use crate::strategy::Fault;
pub use crate::strategy::instance::PickContext;
pub use crate::strategy::native::Native;
pub use crate::strategy::selector::{QUARANTINE_FAULTS, Selector};
pub use crate::strategy::verdict::WasmVerdict;
pub use crate::strategy::watch::StrategyWatch;

/// The pool serving a route path (`default.http`), and its selector.
pub fn pool(balancer: &Balancer, route: &str) -> Option<(Pool, Arc<Selector>)> {
    balancer.pool(route)
}
