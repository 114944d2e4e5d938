//! What the gateway adds to connection setup: SOCKS5 connections (connect, handshake,
//! tunnel open, close) straight to microsocks, and through `proxypool::gateway` over
//! the same microsocks, at concurrency 1 and 16. The clock stops when the tunnel is
//! open: microsocks relays a destination's first bytes ~40 ms late (Nagle on its
//! side), which would hide everything else. Then bulk: 1 GiB sent to a sink, directly
//! and through the gateway on a direct route (no upstream), so that the gateway's
//! relay is the only hop measured. Issue 12's harness compares against HAProxy and
//! pproxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proxypool::Balancer;
use proxypool::Dialer;
use proxypool::config::{ConfigBuilder, Listen};
use proxypool::gateway;
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

const BULK: u64 = 1 << 30;

/// A server that reads every connection to its end and answers with the count.
async fn sink() -> Result<SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                let _ = s.write_all(&n.to_be_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// Seconds to send [`BULK`] bytes to `sink` over `stream` and hear them counted.
async fn bulk<S>(mut stream: S) -> Result<f64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let buf = vec![7u8; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < BULK {
        stream.write_all(&buf).await?;
        sent += buf.len() as u64;
    }
    stream.shutdown().await?;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).await?;
    anyhow::ensure!(u64::from_be_bytes(count) == BULK, "the sink got every byte");
    Ok(started.elapsed().as_secs_f64())
}

/// A gateway over `balancer` on 127.0.0.1:0, until the sender drops.
async fn serve(balancer: Arc<Balancer>) -> Result<(SocketAddr, tokio::sync::watch::Sender<bool>)> {
    Ok(gateway::Gateway::builder(balancer)
        .listen(Listen::loopback())
        .spawn()
        .await?)
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
        let (gw, _stop) = serve(balancer).await?;
        println!("| path | concurrency | connections/s | p50 | p99 |");
        println!("|---|---|---|---|---|");
        for concurrency in [1, 16] {
            for (name, via) in [("microsocks directly", upstream.addr), ("gateway → microsocks", gw)] {
                let (rate, p50, p99) = run(via, target.addr(), concurrency).await?;
                println!("| {name} | {concurrency} | {rate:.0} | {p50:.2?} | {p99:.2?} |");
            }
        }
        let sink = sink().await?;
        let direct = Arc::new(Balancer::try_new(
            ConfigBuilder::new()
                .yaml_str("proxy: {enabled: true, default: {http: {}}}")
                .build()?,
            Dialer::new(),
        )?);
        let (gw_direct, _stop_direct) = serve(direct).await?;
        println!();
        println!("| bulk, 1 GiB | seconds | Gbit/s |");
        println!("|---|---|---|");
        let plain = bulk(tokio::net::TcpStream::connect(sink).await?).await?;
        let through = bulk(tokio_socks::tcp::Socks5Stream::connect(gw_direct, sink).await?).await?;
        for (name, secs) in [("client → sink", plain), ("client → gateway → sink", through)] {
            let gbit = BULK as f64 * 8.0 / secs / 1e9;
            println!("| {name} | {secs:.2} | {gbit:.1} |");
        }
        anyhow::Ok(())
    })
}
