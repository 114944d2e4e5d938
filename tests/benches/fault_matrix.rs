//! Time to tunnel for every pool of the fault matrix (issue 8), through a fresh
//! balancer each run with the default failover settings: no handshake history and no
//! probes, so the hedge delay is the documented initial one. Run as root, it re-runs
//! itself inside a network namespace where SYNs to one address are dropped, so the
//! SYN-drop kind is measured too. `bench/fault-matrix` runs it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proxypool::Balancer;
use proxypool::config::{ConfigBuilder, DEFAULT_HEDGE_INITIAL, Transport};
use proxypool::strategy::{Limits, StrategyEngine};
use proxypool::{Dialer, Target};
use proxypool_tests::matrix::{
    Healthy, IN_NETNS_ENV, Kind, Members, Netns, available_kinds, combinations, label,
    netns_unavailable,
};
use proxypool_tests::target::{GREETING, TargetServer};
use tokio::io::AsyncReadExt;

const RUNS: usize = 5;

async fn matrix() -> Result<()> {
    let healthy = Healthy::start().await.context("microsocks")?;
    let target = TargetServer::start().await;
    let to: Target = target.addr().into();
    let engine = StrategyEngine::try_new(Limits::default())?;
    let hedge = DEFAULT_HEDGE_INITIAL;
    println!(
        "fault matrix: {RUNS} fresh balancers per pool, hedge delay {} ms (the initial one)",
        hedge.as_millis()
    );
    println!(
        "| pool (tried in this order) | silent before healthy | goal (ms) | p50 (ms) | max (ms) | max − goal (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut worst_excess = Duration::ZERO;
    for combo in combinations(&available_kinds()) {
        let first_healthy = combo.iter().position(|k| *k == Kind::Healthy).unwrap_or(0);
        let silent = combo[..first_healthy].iter().filter(|k| k.silent()).count() as u32;
        let goal = hedge * silent;
        let mut took = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let members = Members::start(combo, &healthy).await;
            let config = ConfigBuilder::new().yaml_str(&members.yaml("{}")).build()?;
            let bal = Balancer::with_engine(config, Dialer::new(), engine.clone())?;
            let started = Instant::now();
            let mut c = bal
                .connect(None, Transport::Http, &to)
                .await
                .with_context(|| label(&combo))?;
            // The tunnel is open; the greeting only proves it works (microsocks
            // relays it about 40 ms late: Nagle on its side, delayed ACK on ours).
            took.push(started.elapsed());
            let mut greeting = [0u8; GREETING.len()];
            c.read_exact(&mut greeting).await?;
        }
        took.sort();
        let (p50, max) = (took[RUNS / 2], took[RUNS - 1]);
        let excess = max.saturating_sub(goal);
        worst_excess = worst_excess.max(excess);
        println!(
            "| {} | {silent} | {} | {:.1} | {:.1} | {:.1} |",
            label(&combo),
            goal.as_millis(),
            ms(p50),
            ms(max),
            ms(excess)
        );
    }
    println!(
        "worst time over the goal: {:.1} ms{}",
        ms(worst_excess),
        if std::env::var_os(IN_NETNS_ENV).is_some() {
            ""
        } else {
            " (no SYN-drop kind: not root, or no ip/nft)"
        }
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return Ok(()); // `cargo test --benches` and `cargo bench -- --list` probe with these
    }
    if std::env::var_os(IN_NETNS_ENV).is_none() {
        match netns_unavailable() {
            None => {
                let ns = Netns::create()?;
                let status = ns
                    .command(&std::env::current_exe()?)
                    .args(std::env::args().skip(1))
                    .status()?;
                anyhow::ensure!(status.success(), "the run inside the namespace failed");
                return Ok(());
            }
            Some(why) => eprintln!("without the SYN-drop kind: {why}"),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(matrix())
}
