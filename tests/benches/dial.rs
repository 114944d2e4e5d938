//! Whole-system dial cost: connect plus handshake through real proxies on loopback,
//! against a direct connect. Needs microsocks and tinyproxy (scripts/install-test-deps).

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use proxypool::config::{ProxyUrl, Transport};
use proxypool::testing::DialContext;
use proxypool::{Dialer, Target};
use proxypool_tests::servers::{microsocks, tinyproxy};
use proxypool_tests::target::TargetServer;

fn bench(c: &mut Criterion) {
    // Current-thread: the I/O driver runs on the measuring thread, so no cross-thread
    // wake-ups are counted (block_on into a 2-worker runtime measured 2.3 ms for socks5).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (target, socks, http) = rt.block_on(async {
        (
            TargetServer::start().await,
            microsocks(None).await.expect("microsocks"),
            tinyproxy("u", "p").await.expect("tinyproxy"),
        )
    });
    let dialer = Dialer::new();
    let t = Target::from(target.addr());
    let ctx = DialContext {
        exchange: Some("binance"),
        transport: Transport::Http,
    };
    let timeout = Duration::from_secs(5);
    let mut g = c.benchmark_group("dial");
    g.bench_function("direct", |b| {
        b.iter(|| rt.block_on(dialer.dial_direct(&t, timeout)).unwrap())
    });
    for (name, url) in [
        ("socks5_microsocks", format!("socks5://{}", socks.addr)),
        (
            "http_connect_tinyproxy_basic_auth",
            format!("http://u:p@{}", http.addr),
        ),
    ] {
        let url = ProxyUrl::parse(&url).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(dialer.dial(&url, timeout, &t, ctx)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
