//! random: uniform over the eligible proxies, or proportional to weight.
//!
//! Randomness comes from the host: each candidate update reseeds a local generator
//! from `host.random`, which the host seeds per pool. The logic is [`Random`], a
//! plain type with native tests; the component export is an adapter.

use strategy_support::{SplitMix64, Tried};

/// Rejection draws before a pick with many tried proxies falls back to an exact
/// draw over the untried ones.
const REJECTION_TRIES: usize = 8;

/// Weighted random state: cumulative weights over the eligible ids.
#[derive(Debug, Default)]
pub struct Random {
    ids: Vec<u32>,
    cumulative: Vec<u64>,
    rng: SplitMix64,
}

impl Random {
    /// Replaces the eligible set and reseeds. Weights are in thousandths (1000 = 1.0).
    pub fn set_candidates(&mut self, ids: &[u32], weights: &[u32], seed: u64) {
        self.rng = SplitMix64(seed);
        self.ids = ids.to_vec();
        let mut sum = 0u64;
        self.cumulative = (0..ids.len())
            .map(|i| {
                sum += u64::from(*weights.get(i).unwrap_or(&1000)).max(1);
                sum
            })
            .collect();
    }

    /// A random id not in `tried`, with probability proportional to weight; none if
    /// every id is tried.
    pub fn pick(&mut self, tried: &[u32]) -> Option<u32> {
        let rng = &mut self.rng;
        let total = *self.cumulative.last()?;
        let tried = Tried::new(tried);
        for _ in 0..REJECTION_TRIES {
            let r = rng.next_u64() % total;
            let id = self.ids[self.cumulative.partition_point(|&c| c <= r)];
            if !tried.contains(id) {
                return Some(id);
            }
        }
        // Most of the set is tried: draw exactly among the rest.
        let mut rest = Vec::new();
        let mut sum = 0u64;
        let mut prev = 0u64;
        for (i, &id) in self.ids.iter().enumerate() {
            let w = self.cumulative[i] - prev;
            prev = self.cumulative[i];
            if !tried.contains(id) {
                sum += w;
                rest.push((sum, id));
            }
        }
        let r = rng.next_u64() % rest.last()?.0;
        rest.iter().find(|(c, _)| r < *c).map(|&(_, id)| id)
    }

    /// `max` independent picks.
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
    use proxypool::strategy::host::random;

    thread_local!(static STATE: RefCell<super::Random> = RefCell::default());

    struct Component;

    impl Guest for Component {
        fn set_candidates(ids: Vec<u32>, weights: Vec<u32>, _active: Vec<u32>) {
            STATE.with_borrow_mut(|s| s.set_candidates(&ids, &weights, random()))
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

    fn chi_square(counts: &[u64], expected: &[f64]) -> f64 {
        counts
            .iter()
            .zip(expected)
            .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
            .sum()
    }

    #[test]
    fn uniform_passes_chi_square() {
        let mut r = Random::default();
        let ids: Vec<u32> = (0..10).collect();
        r.set_candidates(&ids, &[1000; 10], 42);
        let mut counts = [0u64; 10];
        for _ in 0..100_000 {
            counts[r.pick(&[]).unwrap() as usize] += 1;
        }
        // 9 degrees of freedom: the 0.999 quantile is 27.88.
        assert!(chi_square(&counts, &[10_000.0; 10]) < 27.88, "{counts:?}");
    }

    #[test]
    fn weighted_is_proportional() {
        let mut r = Random::default();
        r.set_candidates(&[7, 8, 9], &[1000, 2000, 7000], 7);
        let mut counts = [0u64; 3];
        for _ in 0..100_000 {
            counts[(r.pick(&[]).unwrap() - 7) as usize] += 1;
        }
        // 2 degrees of freedom: the 0.999 quantile is 13.82.
        assert!(
            chi_square(&counts, &[10_000.0, 20_000.0, 70_000.0]) < 13.82,
            "{counts:?}"
        );
    }

    #[test]
    fn never_returns_tried_and_none_when_all_tried() {
        let mut r = Random::default();
        let ids: Vec<u32> = (0..100).collect();
        r.set_candidates(&ids, &[1000; 100], 1);
        let tried: Vec<u32> = (0..99).collect();
        for _ in 0..100 {
            assert_eq!(r.pick(&tried), Some(99));
        }
        assert_eq!(r.pick(&ids), None);
        r.set_candidates(&[], &[], 1);
        assert_eq!(r.pick(&[]), None);
    }
}
