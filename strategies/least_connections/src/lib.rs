//! least_connections: a proxy with the fewest active leases; ties go to the one picked
//! least recently, so equal proxies rotate instead of the first one taking every tie.
//!
//! Exact at any N: the host sends every changed lease count (an absolute value) with the
//! next pick. Eligible proxies sit in one intrusive list per lease count, each list in
//! pick order, so a pick and a count change cost O(1) (a pick skipping tried proxies
//! costs O(tried)). The logic is [`LeastConnections`], a plain type with native tests;
//! the component export is an adapter.

use strategy_support::Tried;

/// No neighbour.
const NIL: u32 = u32::MAX;
/// Counts at or above this share the top list. A proxy can carry at most ~64k
/// connections from one address (the port range), so the top list is never reached.
const MAX_BUCKET: u32 = 1 << 16;

#[derive(Clone, Copy, Debug)]
struct Slot {
    active: u32,
    eligible: bool,
    prev: u32,
    next: u32,
    /// When it was last picked, to keep rotation order across `set_candidates`.
    stamp: u64,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            active: 0,
            eligible: false,
            prev: NIL,
            next: NIL,
            stamp: 0,
        }
    }
}

/// Per-proxy load and, per lease count, the eligible proxies in pick order.
#[derive(Debug, Default)]
pub struct LeastConnections {
    slots: Vec<Slot>,
    /// (head, tail) of each count's list.
    buckets: Vec<(u32, u32)>,
    /// No non-empty list below this one.
    min: usize,
    clock: u64,
}

impl LeastConnections {
    /// Replaces the eligible set; `active[i]` is the current lease count of `ids[i]`.
    pub fn set_candidates(&mut self, ids: &[u32], active: &[u32]) {
        for s in &mut self.slots {
            *s = Slot {
                stamp: s.stamp,
                active: s.active,
                ..Slot::default()
            };
        }
        self.buckets.clear();
        self.min = 0;
        for (i, &id) in ids.iter().enumerate() {
            self.slot(id).active = active.get(i).copied().unwrap_or(0);
        }
        // Re-link least recently picked first, so rotation carries on where it was.
        let mut order: Vec<u32> = ids.to_vec();
        order.sort_by_key(|&id| (self.slots[id as usize].stamp, id));
        order.dedup();
        for id in order {
            self.slots[id as usize].eligible = true;
            self.push_back(id);
        }
    }

    /// Sets `id`'s active lease count; `id` need not be eligible.
    pub fn set_active(&mut self, id: u32, active: u32) {
        let s = *self.slot(id);
        if s.active == active {
            return;
        }
        if s.eligible {
            self.unlink(id);
        }
        self.slots[id as usize].active = active;
        if s.eligible {
            self.push_back(id);
        }
    }

    /// The least-loaded id not in `tried` (least recently picked among equals).
    pub fn pick(&mut self, tried: &[u32]) -> Option<u32> {
        let tried = Tried::new(tried);
        while self.buckets.get(self.min).is_some_and(|b| b.0 == NIL) {
            self.min += 1;
        }
        let mut found = None;
        'scan: for b in self.min..self.buckets.len() {
            let mut id = self.buckets[b].0;
            while id != NIL {
                if !tried.contains(id) {
                    found = Some(id);
                    break 'scan;
                }
                id = self.slots[id as usize].next;
            }
        }
        let id = found?;
        // To the back of its list: the next tie goes to another proxy.
        self.unlink(id);
        self.push_back(id);
        self.clock += 1;
        self.slots[id as usize].stamp = self.clock;
        Some(id)
    }

    fn bucket_of(&self, id: u32) -> usize {
        self.slots[id as usize].active.min(MAX_BUCKET) as usize
    }

    fn push_back(&mut self, id: u32) {
        let b = self.bucket_of(id);
        if b >= self.buckets.len() {
            self.buckets.resize(b + 1, (NIL, NIL));
        }
        let tail = self.buckets[b].1;
        let s = &mut self.slots[id as usize];
        s.prev = tail;
        s.next = NIL;
        if tail == NIL {
            self.buckets[b].0 = id;
        } else {
            self.slots[tail as usize].next = id;
        }
        self.buckets[b].1 = id;
        self.min = self.min.min(b);
    }

    fn unlink(&mut self, id: u32) {
        let b = self.bucket_of(id);
        let Slot { prev, next, .. } = self.slots[id as usize];
        match prev {
            NIL => self.buckets[b].0 = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.buckets[b].1 = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn slot(&mut self, id: u32) -> &mut Slot {
        let i = id as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, Slot::default());
        }
        &mut self.slots[i]
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
        fn pick(context: PickContext) -> Option<u32> {
            STATE.with_borrow_mut(|s| {
                for l in &context.leases {
                    s.set_active(l.id, l.active);
                }
                s.pick(&context.tried)
            })
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
        lc.set_active(1, 3);
        assert_eq!(lc.pick(&[]), Some(2));
        lc.set_active(0, 0);
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
                lc.set_active(id, 1);
                lc.set_active(id, 0);
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
        // A count for a proxy that left the set is kept for when it returns.
        lc.set_active(1, 2);
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
            lc.set_active(id, active[id as usize]);
            // Drop some leases in a fixed, uneven pattern.
            if step % 3 == 0 {
                let gone = held.swap_remove((step as usize * 7) % held.len());
                active[gone as usize] -= 1;
                lc.set_active(gone, active[gone as usize]);
            }
        }
    }

    #[test]
    fn rotation_survives_a_new_candidate_set() {
        let mut lc = LeastConnections::default();
        lc.set_candidates(&[0, 1, 2], &[0, 0, 0]);
        assert_eq!((lc.pick(&[]), lc.pick(&[])), (Some(0), Some(1)));
        // A health change re-sends the set; 2 has waited longest.
        lc.set_candidates(&[0, 1, 2], &[0, 0, 0]);
        assert_eq!(lc.pick(&[]), Some(2));
    }

    #[test]
    fn a_skipped_minimum_leaves_the_next_count_reachable() {
        let mut lc = LeastConnections::default();
        lc.set_candidates(&[0, 1, 2], &[0, 4, 2]);
        assert_eq!(lc.pick(&[0]), Some(2));
        assert_eq!(lc.pick(&[0, 2]), Some(1));
        lc.set_active(0, 9);
        assert_eq!(lc.pick(&[]), Some(2));
        lc.set_active(1, 0);
        assert_eq!(lc.pick(&[]), Some(1));
    }
}
