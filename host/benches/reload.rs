//! Reload cost: `Balancer::reload` between two files that differ in one pool's
//! members (100 members, one swapped: a succession), to the same file (no change),
//! and a strategy change (round_robin ↔ least_connections); and what a connect's
//! route lookup costs meanwhile (one `ArcSwap` load plus the pick).
//!
//! `cargo bench -p proxypool --bench reload`

// A timing harness, not criterion: each sample is one reload.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use proxypool::Balancer;
use proxypool::Dialer;
use proxypool::config::{Config, ConfigBuilder};

const SAMPLES: usize = 200;

fn config(last: u16, strategy: &str) -> Config {
    let members: Vec<String> = (1..100u16)
        .chain([last])
        .map(|i| format!("'socks5://10.0.{}.{}:1080'", i / 250, i % 250 + 1))
        .collect();
    ConfigBuilder::new()
        .yaml_str(&format!(
            "proxy: {{enabled: true, default: {{http: {{pool: [{}], strategy: {strategy}, \
             health_check: {{enabled: false}}}}}}, exchanges: {{binance: {{http: 'socks5://10.1.0.1:1080'}}}}}}",
            members.join(", ")
        ))
        .build()
        .unwrap()
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn time(bal: &Balancer, configs: &[Config]) -> (Duration, Duration) {
    let samples = (0..SAMPLES)
        .map(|i| {
            let c = configs[i % configs.len()].clone();
            let started = Instant::now();
            bal.reload(c).unwrap();
            started.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let bal = Balancer::try_new(config(100, "round_robin"), Dialer::new()).unwrap();
    println!("| reload | p50 | p99 |");
    println!("|---|---|---|");
    let cases = [
        (
            "one member of 100 swapped (succession)",
            vec![config(100, "round_robin"), config(101, "round_robin")],
        ),
        (
            "the same file (no change)",
            vec![config(100, "round_robin")],
        ),
        (
            "round_robin ↔ least_connections",
            vec![config(100, "least_connections"), config(100, "round_robin")],
        ),
    ];
    for (name, configs) in cases {
        let (p50, p99) = time(&bal, &configs);
        println!("| {name} | {p50:.1?} | {p99:.1?} |");
    }
    // The route lookup a connect does first, with and without reloads going on.
    let lookups = |n: usize| {
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(proxypool::testing::pool(&bal, "default.http"));
        }
        started.elapsed() / n as u32
    };
    println!();
    println!("| route lookup (`Balancer::pool`) | mean |");
    println!("|---|---|");
    println!("| quiet | {:.0?} |", lookups(1_000_000));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let configs = [config(100, "round_robin"), config(101, "round_robin")];
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                bal.reload(configs[i % 2].clone()).unwrap();
                i += 1;
            }
        });
        println!(
            "| while another thread reloads nonstop | {:.0?} |",
            lookups(1_000_000)
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
