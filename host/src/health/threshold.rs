//! The default verdict: rise consecutive successes bring a proxy up, fall consecutive
//! failures take it down (HAProxy's rise/fall). Native here; the `threshold`
//! component runs the same logic as WebAssembly.

use std::sync::Mutex;
use std::time::Duration;

use super::{Health, Verdict};
use crate::pool::ProxyId;

/// Per-proxy counters: (up, consecutive successes, consecutive failures).
#[derive(Debug)]
pub struct Threshold {
    rise: u32,
    fall: u32,
    state: Mutex<Vec<(bool, u32, u32)>>,
}

impl Threshold {
    /// Every proxy starts up, as the pool does.
    pub fn new(rise: u32, fall: u32) -> Threshold {
        Threshold {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Mutex::new(Vec::new()),
        }
    }
}

impl Verdict for Threshold {
    fn observe(&self, id: ProxyId, success: bool, _latency: Duration) -> Health {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let i = id as usize;
        if i >= state.len() {
            state.resize(i + 1, (true, 0, 0));
        }
        let (up, ok, bad) = &mut state[i];
        if success {
            *ok += 1;
            *bad = 0;
            if !*up && *ok >= self.rise {
                *up = true;
            }
        } else {
            *bad += 1;
            *ok = 0;
            if *up && *bad >= self.fall {
                *up = false;
            }
        }
        if *up {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let t = Threshold::new(2, 3);
        let z = Duration::ZERO;
        let seq = |t: &Threshold, s: &[bool]| -> Vec<Health> {
            s.iter().map(|&ok| t.observe(4, ok, z)).collect()
        };
        use Health::*;
        assert_eq!(seq(&t, &[false, false, true, false, false]), [Healthy; 5]);
        assert_eq!(seq(&t, &[false]), [Unhealthy]);
        assert_eq!(
            seq(&t, &[true, false, true, true]),
            [Unhealthy, Unhealthy, Unhealthy, Healthy]
        );
        assert_eq!(t.observe(0, false, z), Healthy, "proxies are independent");
    }
}
