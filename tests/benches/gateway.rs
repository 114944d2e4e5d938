//! What the gateway adds to connection setup: SOCKS5 connections (connect, handshake,
//! tunnel open, close) straight to microsocks, and through `proxypool::gateway` over
//! the same microsocks, at concurrency 1 and 16. The clock stops when the tunnel is
//! open: microsocks relays a destination's first bytes ~40 ms late (Nagle on its
//! side), which would hide everything else. Issue 12's harness compares against
//! HAProxy and pproxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proxypool::Balancer;
use proxypool::config::{ConfigBuilder, ListenTransport};
use proxypool::dial::Dialer;
use proxypool::gateway::{self, Listener, Settings};
use proxypool_tests::servers::microsocks;
use proxypool_tests::target::TargetServer;
use tokio::net::TcpListener;

const PER_TASK: usize = 2_000;

async fn one(proxy: SocketAddr, target: SocketAddr) -> Result<Duration> {
    let started = Instant::now();
    let s = tokio_socks::tcp::Socks5Stream::connect(proxy, target).await?;
    let took = started.elapsed();
    drop(s);
    Ok(took)
}

async fn run(
    proxy: SocketAddr,
    target: SocketAddr,
    concurrency: usize,
) -> Result<(f64, Duration, Duration)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(PER_TASK);
                for _ in 0..PER_TASK {
                    took.push(one(proxy, target).await?);
                }
                anyhow::Ok(took)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok((all.len() as f64 / secs, p(0.5), p(0.99)))
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let upstream = microsocks(None).await.context("microsocks")?;
        let target = TargetServer::start().await;
        let config = ConfigBuilder::new()
            .yaml_str(&format!(
                "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}'], health_check: {{enabled: false}}}}}}}}",
                upstream.addr
            ))
            .build()?;
        let balancer = Arc::new(Balancer::try_new(config, Dialer::new())?);
        let socket = TcpListener::bind("127.0.0.1:0").await?;
        let gw = socket.local_addr()?;
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(gateway::run(
            vec![Listener {
                socket,
                transport: ListenTransport::Auto,
                auth: None,
            }],
            balancer,
            Default::default(),
            Settings::default(),
            stopped,
        ));
        println!("| path | concurrency | connections/s | p50 | p99 |");
        println!("|---|---|---|---|---|");
        for concurrency in [1, 16] {
            for (name, via) in [("microsocks directly", upstream.addr), ("gateway → microsocks", gw)] {
                let (rate, p50, p99) = run(via, target.addr(), concurrency).await?;
                println!("| {name} | {concurrency} | {rate:.0} | {p50:.2?} | {p99:.2?} |");
            }
        }
        anyhow::Ok(())
    })
}
