//! round_robin: each eligible proxy in turn, exactly fair; weights give a smooth
//! (interleaved, not bursty) weighted rotation.
//!
//! Stride scheduling: each proxy advances by `2^32 / weight` when picked, and the one
//! furthest behind goes next (ties by position); starting phases are staggered across
//! the first round. Equal weights give plain rotation.
//! O(log N) per pick and O(N) per candidate change, so it stays cheap at 10,000 proxies.
//! The logic is [`RoundRobin`], a plain type with native tests; the component export
//! at the bottom is a thin adapter.

use std::collections::{BTreeSet, VecDeque};

use strategy_support::Tried;

/// Round-robin state: the eligible proxies ordered by (pass, position).
#[derive(Debug, Default)]
pub struct RoundRobin {
    queue: BTreeSet<(u64, u32, u32)>,
    strides: Vec<u64>,
    /// Equal weights: the same order as stride scheduling, as a plain rotation
    /// (front goes next, a picked id moves to the back), O(1) per pick.
    uniform: Option<VecDeque<u32>>,
}

impl RoundRobin {
    /// Replaces the eligible set. Weights are in thousandths (1000 = 1.0).
    pub fn set_candidates(&mut self, ids: &[u32], weights: &[u32]) {
        let equal = weights.windows(2).all(|w| w[0] == w[1]);
        self.uniform = equal.then(|| ids.iter().copied().collect());
        if equal {
            self.queue.clear();
            return;
        }
        self.strides = (0..ids.len())
            .map(|i| (1u64 << 32) / u64::from(*weights.get(i).unwrap_or(&1000)).max(1))
            .collect();
        // Stagger the starting phases across the first round, so that equal weights
        // rotate in order and light proxies are spread between the heavy ones.
        let n = ids.len() as u64;
        self.queue = ids
            .iter()
            .enumerate()
            .map(|(pos, &id)| {
                let phase = self.strides[pos] * (2 * pos as u64 + 1) / (2 * n);
                (phase, pos as u32, id)
            })
            .collect();
    }

    /// The next id in rotation that is not in `tried`; none if every id is tried.
    /// Skipped proxies keep their place, so skipping does not bias later picks.
    pub fn pick(&mut self, tried: &[u32]) -> Option<u32> {
        let tried = Tried::new(tried);
        if let Some(order) = &mut self.uniform {
            let k = order.iter().position(|&id| !tried.contains(id))?;
            let id = order.remove(k)?;
            order.push_back(id);
            return Some(id);
        }
        let &(pass, pos, id) = self.queue.iter().find(|e| !tried.contains(e.2))?;
        self.queue.remove(&(pass, pos, id));
        self.queue
            .insert((pass + self.strides[pos as usize], pos, id));
        Some(id)
    }

    /// The next `max` picks of the rotation.
    pub fn batch(&mut self, max: u32) -> Vec<u32> {
        (0..max).map_while(|_| self.pick(&[])).collect()
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs)]
mod component {
    use std::cell::RefCell;

    wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "selection" });

    use exports::proxypool::strategy::selector::{Guest, PickContext};

    thread_local!(static STATE: RefCell<super::RoundRobin> = RefCell::default());

    struct Component;

    impl Guest for Component {
        fn set_candidates(ids: Vec<u32>, weights: Vec<u32>, _active: Vec<u32>) {
            STATE.with_borrow_mut(|s| s.set_candidates(&ids, &weights))
        }
        fn pick(context: PickContext) -> Option<u32> {
            STATE.with_borrow_mut(|s| s.pick(&context.tried))
        }
        fn pick_batch(max: u32) -> Vec<u32> {
            STATE.with_borrow_mut(|s| s.batch(max))
        }
    }

    export!(Component);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(ids: &[u32], weights: &[u32]) -> RoundRobin {
        let mut r = RoundRobin::default();
        r.set_candidates(ids, weights);
        r
    }

    #[test]
    fn rotates_in_order_and_is_exactly_fair() {
        let mut r = rr(&[3, 5, 9], &[1000; 3]);
        let picks: Vec<u32> = (0..6).map(|_| r.pick(&[]).unwrap()).collect();
        assert_eq!(picks, [3, 5, 9, 3, 5, 9]);
    }

    #[test]
    fn skips_tried_without_bias() {
        let mut r = rr(&[0, 1, 2], &[1000; 3]);
        assert_eq!(r.pick(&[0]), Some(1));
        // 0 was skipped, not served: it keeps its place at the front, 1 goes to the
        // back, and whole rounds stay exact.
        let picks: Vec<u32> = (0..5).map(|_| r.pick(&[]).unwrap()).collect();
        assert_eq!(picks, [0, 2, 1, 0, 2]);
        assert_eq!(r.pick(&[0, 1, 2]), None);
    }

    #[test]
    fn empty_set_picks_none() {
        let mut r = rr(&[], &[]);
        assert_eq!(r.pick(&[]), None);
        assert!(r.batch(8).is_empty());
    }

    #[test]
    fn weights_interleave_smoothly() {
        // Weights 5, 1, 1: every 7 picks hold 5, 1, 1, and the light ones are spread
        // out rather than bunched after a run of the heavy one.
        let mut r = rr(&[0, 1, 2], &[5000, 1000, 1000]);
        let picks: Vec<u32> = (0..70).map(|_| r.pick(&[]).unwrap()).collect();
        for window in picks.chunks(7) {
            let count = |id| window.iter().filter(|&&p| p == id).count();
            assert_eq!((count(0), count(1), count(2)), (5, 1, 1), "{picks:?}");
        }
        let longest_run = picks
            .chunk_by(|a, b| a == b && *a == 0)
            .map(<[u32]>::len)
            .max();
        assert!(longest_run <= Some(3), "{picks:?}");
    }

    #[test]
    fn batch_continues_the_rotation() {
        let mut r = rr(&[0, 1, 2], &[1000; 3]);
        assert_eq!(r.batch(4), [0, 1, 2, 0]);
        assert_eq!(r.pick(&[]), Some(1));
    }

    #[test]
    fn exact_over_whole_rounds_at_10_000() {
        let ids: Vec<u32> = (0..10_000).collect();
        let mut r = rr(&ids, &vec![1000; ids.len()]);
        let mut counts = vec![0u32; ids.len()];
        for _ in 0..3 * ids.len() {
            counts[r.pick(&[]).unwrap() as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c == 3));
    }
}
