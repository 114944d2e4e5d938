//! One broken strategy per feature: each misbehaves in `pick` (and, where a batch
//! would hide it, returns no batch so that the host calls `pick`). Two kinds of
//! fixture share the crate because they share its build: `fastest` is a well-behaved
//! latency-aware strategy (it reads `host.handshake-latency-us`), and the `verdict_*`
//! features build health verdicts instead (module `verdict`).

#[cfg(any(feature = "verdict_down", feature = "verdict_trap"))]
mod verdict {
    wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "proxypool:strategy/health-verdict@0.1.0" });

    use exports::proxypool::strategy::verdict::Guest;
    use proxypool::strategy::types::{Health, ProbeResult};

    struct Verdict;

    impl Guest for Verdict {
        fn configure(_rise: u32, _fall: u32) {}
        fn observe(probe: ProbeResult) -> Health {
            // Past admission (whose canaries probe ids 0 and 9999), then faulting.
            if cfg!(feature = "verdict_trap") {
                if probe.id == 1 {
                    panic!("trap on purpose");
                }
                return if probe.success { Health::Healthy } else { Health::Unhealthy };
            }
            Health::Unhealthy
        }
    }

    export!(Verdict);
}

#[cfg(not(any(feature = "verdict_down", feature = "verdict_trap")))]
mod selection {
    #[cfg(not(feature = "wasi_import"))]
    wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "proxypool:strategy/selection@0.1.0" });
    #[cfg(feature = "wasi_import")]
    wit_bindgen::generate!({ path: "wit", world: "proxypool:fixture/faulty-wasi", generate_all });

    use exports::proxypool::strategy::selector::{Guest, PickContext};
    use std::cell::RefCell;

    thread_local!(static IDS: RefCell<Vec<u32>> = RefCell::default());

    struct Faulty;

    impl Guest for Faulty {
        fn set_candidates(ids: Vec<u32>, _weights: Vec<u32>, _active: Vec<u32>) {
            #[cfg(feature = "wasi_import")]
            let _ = wasi::cli::environment::get_arguments();
            IDS.with_borrow_mut(|v| *v = ids);
        }

        fn pick(context: PickContext) -> Option<u32> {
            let first = IDS.with_borrow(|v| v.first().copied());
            if cfg!(feature = "trap") {
                panic!("trap on purpose");
            }
            if cfg!(feature = "spin") {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            if cfg!(feature = "grow") {
                let v = vec![1u8; 64 << 20];
                return Some(std::hint::black_box(v)[0] as u32 + 1_000_000);
            }
            if cfg!(feature = "out_of_range") {
                return Some(4_000_000_000);
            }
            if cfg!(feature = "tried") {
                return context.tried.first().copied().or(first);
            }
            if cfg!(feature = "fastest") {
                // Not a fault: the lowest measured handshake latency, from the host.
                let mut tried = context.tried.clone();
                tried.sort_unstable(); // admission tries 10,000 tried ids
                return IDS.with_borrow(|ids| {
                    ids.iter()
                        .copied()
                        .filter(|id| tried.binary_search(id).is_err())
                        .min_by_key(|&id| {
                            match proxypool::strategy::host::handshake_latency_us(id) {
                                0 => u32::MAX,
                                us => us,
                            }
                        })
                });
            }
            first
        }

        fn pick_batch(_max: u32) -> Vec<u32> {
            Vec::new()
        }
    }

    export!(Faulty);
}
