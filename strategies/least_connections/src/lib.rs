//! least_connections: a proxy with the fewest active leases; ties go to the one picked
//! least recently, so equal proxies rotate instead of the first one taking every tie.
//!
//! Exact at any N: the host delivers every lease change before the next pick, and the
//! eligible proxies sit in one ordered set keyed by (active leases, last pick, id), so a
//! pick and a lease change each cost O(log N). The logic is [`LeastConnections`], a plain
//! type with native tests; the component export is an adapter.

use std::collections::BTreeSet;

use strategy_support::Tried;

/// Per-proxy load and the ordered set of eligible proxies.
#[derive(Debug, Default)]
pub struct LeastConnections {
    /// By id: (active leases, stamp of the last pick, eligible).
    state: Vec<(u32, u64, bool)>,
    order: BTreeSet<(u32, u64, u32)>,
    clock: u64,
}

impl LeastConnections {
    /// Replaces the eligible set; `active[i]` is the current lease count of `ids[i]`.
    pub fn set_candidates(&mut self, ids: &[u32], active: &[u32]) {
        for s in &mut self.state {
            s.2 = false;
        }
        self.order.clear();
        for (i, &id) in ids.iter().enumerate() {
            let s = self.slot(id);
            s.0 = *active.get(i).unwrap_or(&0);
            s.2 = true;
            let key = (s.0, s.1, id);
            self.order.insert(key);
        }
    }

    /// Applies lease changes, in order.
    pub fn leases_changed(&mut self, acquired: &[u32], released: &[u32]) {
        for &id in acquired {
            self.adjust(id, 1);
        }
        for &id in released {
            self.adjust(id, -1);
        }
    }

    /// The least-loaded id not in `tried` (least recently picked among equals).
    pub fn pick(&mut self, tried: &[u32]) -> Option<u32> {
        let tried = Tried::new(tried);
        let &(active, stamp, id) = self.order.iter().find(|k| !tried.contains(k.2))?;
        self.order.remove(&(active, stamp, id));
        self.clock += 1;
        self.order.insert((active, self.clock, id));
        self.slot(id).1 = self.clock;
        Some(id)
    }

    fn adjust(&mut self, id: u32, delta: i32) {
        let (active, stamp, eligible) = *self.slot(id);
        let next = active.saturating_add_signed(delta);
        if eligible {
            self.order.remove(&(active, stamp, id));
            self.order.insert((next, stamp, id));
        }
        self.slot(id).0 = next;
    }

    fn slot(&mut self, id: u32) -> &mut (u32, u64, bool) {
        let i = id as usize;
        if i >= self.state.len() {
            self.state.resize(i + 1, (0, 0, false));
        }
        &mut self.state[i]
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs)]
mod component {
    use std::cell::RefCell;

    wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "selection" });

    use exports::proxypool::strategy::selector::{Guest, PickContext};

    thread_local!(static STATE: RefCell<super::LeastConnections> = RefCell::default());

    struct Component;

    impl Guest for Component {
        fn set_candidates(ids: Vec<u32>, _weights: Vec<u32>, active: Vec<u32>) {
            STATE.with_borrow_mut(|s| s.set_candidates(&ids, &active))
        }
        fn leases_changed(acquired: Vec<u32>, released: Vec<u32>) {
            STATE.with_borrow_mut(|s| s.leases_changed(&acquired, &released))
        }
        fn pick(context: PickContext) -> Option<u32> {
            STATE.with_borrow_mut(|s| s.pick(&context.tried))
        }
        // Load-dependent: every pick goes through `pick`.
        fn pick_batch(_max: u32) -> Vec<u32> {
            Vec::new()
        }
    }

    export!(Component);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_least_loaded() {
        let mut lc = LeastConnections::default();
        lc.set_candidates(&[0, 1, 2], &[3, 1, 2]);
        assert_eq!(lc.pick(&[]), Some(1));
        lc.leases_changed(&[1, 1], &[]);
        assert_eq!(lc.pick(&[]), Some(2));
        lc.leases_changed(&[], &[0, 0, 0]);
        assert_eq!(lc.pick(&[]), Some(0));
    }

    #[test]
    fn ties_rotate_instead_of_taking_the_first() {
        let mut lc = LeastConnections::default();
        lc.set_candidates(&[0, 1, 2], &[0, 0, 0]);
        let picks: Vec<u32> = (0..6)
            .map(|_| {
                let id = lc.pick(&[]).unwrap();
                // The connection opens and closes before the next pick.
                lc.leases_changed(&[id], &[id]);
                id
            })
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_tried_and_ineligible() {
        let mut lc = LeastConnections::default();
        lc.set_candidates(&[0, 1, 2], &[0, 5, 5]);
        assert_eq!(lc.pick(&[0]), Some(1));
        lc.set_candidates(&[2], &[5]);
        assert_eq!(lc.pick(&[]), Some(2));
        // A release for a proxy that left the set is kept for when it returns.
        lc.leases_changed(&[], &[1, 1, 1]);
        lc.set_candidates(&[1, 2], &[2, 5]);
        assert_eq!(lc.pick(&[]), Some(1));
        assert_eq!(lc.pick(&[1, 2]), None);
    }

    #[test]
    fn scripted_leases_always_pick_a_minimum() {
        let n = 50u32;
        let ids: Vec<u32> = (0..n).collect();
        let mut lc = LeastConnections::default();
        lc.set_candidates(&ids, &vec![0; n as usize]);
        let mut active = vec![0u32; n as usize];
        let mut held: Vec<u32> = Vec::new();
        for step in 0..10_000u32 {
            let id = lc.pick(&[]).unwrap();
            let min = *active.iter().min().unwrap();
            assert_eq!(active[id as usize], min, "step {step}");
            active[id as usize] += 1;
            held.push(id);
            lc.leases_changed(&[id], &[]);
            // Drop some leases in a fixed, uneven pattern.
            if step % 3 == 0 {
                let gone = held.swap_remove((step as usize * 7) % held.len());
                active[gone as usize] -= 1;
                lc.leases_changed(&[], &[gone]);
            }
        }
    }
}
