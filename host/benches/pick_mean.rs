//! Criterion's view of one pick (mean with confidence interval), beside the
//! percentile harness in `pick.rs`: each reference strategy through WebAssembly, at
//! N = 10 and 10,000, one thread, the lease dropped at once.
//!
//! `cargo bench -p proxypool --bench pick_mean`

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use proxypool::config::{BuiltinStrategy, Transport};
use proxypool::strategy::{Limits, StrategyEngine};
use proxypool::testing::Pool;
use proxypool::testing::{PickContext, Selector};

const FIRST: PickContext<'static> = PickContext::first("binance", Transport::Http);

fn bench(c: &mut Criterion) {
    let engine = StrategyEngine::try_new(Limits::default()).unwrap();
    let mut group = c.benchmark_group("pick");
    for b in BuiltinStrategy::ALL {
        for n in [10usize, 10_000] {
            let pool = Pool::from_urls("default.http", (0..n).map(|i| format!("socks5://p{i}:1")))
                .unwrap();
            let s = Selector::new(engine.clone(), engine.builtin(b).unwrap(), b, 7);
            group.bench_function(BenchmarkId::new(b.as_str(), n), |bench| {
                bench.iter(|| drop(s.pick(&pool, FIRST).unwrap()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
