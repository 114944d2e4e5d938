//! Hot-swap latency: from the rename of a new strategy file to the new strategy live
//! (admission included), 20 swaps alternating two components.
//!
//! `cargo bench -p proxypool --bench swap`

// A timing harness, not criterion: each sample is one swap.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proxypool::config::BuiltinStrategy;
use proxypool::strategy::{Limits, StrategyEngine, builtin_bytes};
use proxypool::testing::{Selector, StrategyWatch};

/// `bytes` with a custom section `swap-<i>` appended (valid for components too).
fn with_custom_section(bytes: &[u8], i: usize) -> Vec<u8> {
    let name = format!("swap-{i}");
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(payload.len() as u8); // LEB128 size (< 128)
    out.extend_from_slice(&payload);
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let engine = StrategyEngine::try_new(Limits::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strategy.wasm");
    let files = [
        builtin_bytes(BuiltinStrategy::RoundRobin),
        builtin_bytes(BuiltinStrategy::Random),
    ];
    std::fs::write(&path, files[0]).unwrap();
    let selector = Arc::new(Selector::new(
        engine.clone(),
        engine.admit(files[0]).unwrap(),
        BuiltinStrategy::RoundRobin,
        1,
    ));
    let watch = StrategyWatch::start(engine, selector, &path).unwrap();
    let mut samples = Vec::new();
    for i in 1..=20 {
        let before = watch.counters().installed.load(Ordering::Relaxed);
        let tmp = dir.path().join("strategy.wasm.tmp");
        // A distinct custom section each time, so every swap compiles for real
        // rather than hitting the compiled-component cache.
        std::fs::write(&tmp, with_custom_section(files[i % 2], i)).unwrap();
        let t = Instant::now();
        std::fs::rename(&tmp, &path).unwrap();
        while watch.counters().installed.load(Ordering::Relaxed) == before {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "swap {i} never went live"
            );
            std::thread::yield_now();
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "file change → live, 20 swaps: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        ms(samples[0]),
        ms(samples[10]),
        ms(samples[19])
    );
}
