//! threshold: the default health verdict. `rise` consecutive successful probes bring a
//! proxy up, `fall` consecutive failures take it down (HAProxy's rise/fall); every
//! proxy starts up, as the pool does. The logic is [`Threshold`], a plain type with
//! native tests; the component export (world `health-verdict`) is an adapter.

/// Per-proxy state: up, consecutive successes, consecutive failures.
#[derive(Debug)]
pub struct Threshold {
    rise: u32,
    fall: u32,
    state: Vec<(bool, u32, u32)>,
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::new(2, 3)
    }
}

impl Threshold {
    /// A verdict with these thresholds (0 counts as 1).
    pub fn new(rise: u32, fall: u32) -> Threshold {
        Threshold {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Vec::new(),
        }
    }

    /// Changes the thresholds, keeping what each proxy has seen.
    pub fn configure(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// One probe's outcome for `id`: whether the proxy is up now.
    pub fn observe(&mut self, id: u32, success: bool) -> bool {
        let i = id as usize;
        if i >= self.state.len() {
            self.state.resize(i + 1, (true, 0, 0));
        }
        let (up, ok, bad) = &mut self.state[i];
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
        *up
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs)]
mod component {
    use std::cell::RefCell;

    wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "health-verdict" });

    use exports::proxypool::strategy::verdict::Guest;
    use proxypool::strategy::types::{Health, ProbeResult};

    thread_local!(static STATE: RefCell<super::Threshold> = RefCell::default());

    struct Component;

    impl Guest for Component {
        fn configure(rise: u32, fall: u32) {
            STATE.with_borrow_mut(|s| s.configure(rise, fall))
        }
        fn observe(probe: ProbeResult) -> Health {
            match STATE.with_borrow_mut(|s| s.observe(probe.id, probe.success)) {
                true => Health::Healthy,
                false => Health::Unhealthy,
            }
        }
    }

    export!(Component);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut t = Threshold::new(2, 3);
        let mut seq = |s: &[bool]| -> Vec<bool> { s.iter().map(|&ok| t.observe(4, ok)).collect() };
        assert_eq!(seq(&[false, false, true, false, false]), [true; 5]);
        assert_eq!(seq(&[false]), [false]);
        assert_eq!(seq(&[true, false, true, true]), [false, false, false, true]);
    }

    #[test]
    fn proxies_are_independent_and_start_up() {
        let mut t = Threshold::new(1, 1);
        assert!(!t.observe(9, false));
        assert!(!t.observe(0, false) && t.observe(3, true));
    }
}
