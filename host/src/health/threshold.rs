//! The native build of the default verdict, for embedders that run health checks
//! without the WebAssembly engine. Same logic as the `threshold` component.

use crate::sync::Locked as _;
use std::sync::Mutex;
use std::time::Duration;

use super::{Health, Verdict};
use crate::pool::ProxyId;

/// Rise/fall counting per proxy (see the `threshold` crate).
#[derive(Debug)]
pub struct Threshold(Mutex<threshold::Threshold>);

impl Threshold {
    /// Every proxy starts up, as the pool does.
    pub fn new(rise: u32, fall: u32) -> Threshold {
        Threshold(Mutex::new(threshold::Threshold::new(rise, fall)))
    }
}

impl Verdict for Threshold {
    fn observe(&self, id: ProxyId, success: bool, _latency: Duration) -> Health {
        let mut t = self.0.locked();
        if t.observe(id, success) {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }
}
