//! Config-layer costs: URL parsing, route resolution, a whole YAML load.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use proxypool::config::{ConfigBuilder, ProxyUrl, Transport};

fn bench(c: &mut Criterion) {
    c.bench_function("proxy_url_parse", |b| {
        b.iter(|| {
            ProxyUrl::parse(black_box(
                "socks5://trader:pa%40ss@proxy-17.example.com:1080",
            ))
        })
    });

    let mut yaml =
        String::from("proxy:\n  enabled: true\n  default: {http: 'socks5://d:1'}\n  exchanges:\n");
    for i in 0..100 {
        yaml.push_str(&format!(
            "    exchange{i}: {{http: 'socks5://p{i}:1080', websocket: {{pool: ['socks5://a{i}:1', 'socks5://b{i}:1']}}}}\n"
        ));
    }
    let config = ConfigBuilder::new().yaml_str(&yaml).build().unwrap();
    c.bench_function("route_lowercase_hit_100_exchanges", |b| {
        b.iter(|| config.route(black_box(Some("exchange57")), Transport::Websocket))
    });
    c.bench_function("route_mixed_case_hit_100_exchanges", |b| {
        b.iter(|| config.route(black_box(Some("Exchange57")), Transport::Websocket))
    });
    c.bench_function("route_fallback_to_default", |b| {
        b.iter(|| config.route(black_box(Some("unknown")), Transport::Http))
    });
    c.bench_function("load_yaml_100_exchanges", |b| {
        b.iter(|| {
            ConfigBuilder::new()
                .yaml_str(black_box(&yaml))
                .build()
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
