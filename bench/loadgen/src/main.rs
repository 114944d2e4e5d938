//! The load generator of `bench/run`. It speaks to a proxy the way clients do
//! (SOCKS5 with tokio-socks, or HTTP CONNECT), or to the target directly, and prints
//! one JSON line of results. `targets` runs the destinations: an HTTP server that
//! answers each request and closes, and a sink that counts what it gets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP target and the sink on 127.0.0.1, printing `http ADDR` and `sink ADDR`.
    Targets,
    /// Prints N free loopback ports, one per line.
    Ports {
        /// How many.
        n: usize,
    },
    /// Short connections: connect, handshake, one small request, close.
    Cps(#[command(flatten)] Load),
    /// A steady load for failover and soak runs: like `cps`, at most RATE connections
    /// a second, each request held PATH's time by the target; failures are told
    /// apart by when they happen (opening the tunnel, or inside it) and each is
    /// printed to stderr with its time.
    Steady {
        #[command(flatten)]
        load: Load,
        /// Connections a second, all workers together (0: as fast as they go).
        #[arg(long, default_value = "0")]
        rate: f64,
        /// The path asked for: `/wait` is answered after 20 ms.
        #[arg(long, default_value = "/wait")]
        path: String,
        /// A request not done after this many seconds fails.
        #[arg(long, default_value = "10")]
        timeout: f64,
    },
    /// Opens N tunnels to the sink and holds them, idle, until stdin closes; prints
    /// `open N` once they are all up.
    Idle {
        /// As for `cps`.
        #[arg(long)]
        via: String,
        /// The sink.
        #[arg(long)]
        target: SocketAddr,
        /// Tunnels to hold.
        #[arg(long)]
        n: usize,
    },
    /// Bulk: STREAMS connections each send BYTES to the sink.
    Bulk {
        /// As for `cps`.
        #[arg(long)]
        via: String,
        /// The sink.
        #[arg(long)]
        target: SocketAddr,
        /// Bytes per stream.
        #[arg(long)]
        bytes: u64,
        /// Parallel streams.
        #[arg(long, default_value = "1")]
        streams: usize,
    },
}

/// What a load runs against, and for how long.
#[derive(clap::Args)]
struct Load {
    /// `socks5://HOST:PORT`, `http://HOST:PORT` (CONNECT) or `direct`.
    #[arg(long)]
    via: String,
    /// The HTTP target.
    #[arg(long)]
    target: SocketAddr,
    /// Connections in flight at once.
    #[arg(long)]
    concurrency: usize,
    /// Seconds to run (a float).
    #[arg(long)]
    seconds: f64,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A tunnel to `target` through `via`.
async fn open(via: &str, target: SocketAddr) -> anyhow::Result<Box<dyn Io>> {
    if via == "direct" {
        let s = TcpStream::connect(target).await?;
        s.set_nodelay(true)?;
        return Ok(Box::new(s));
    }
    if let Some(proxy) = via.strip_prefix("socks5://") {
        let s = tokio_socks::tcp::Socks5Stream::connect(proxy, target).await?;
        return Ok(Box::new(s));
    }
    if let Some(proxy) = via.strip_prefix("http://") {
        let mut s = TcpStream::connect(proxy).await?;
        s.set_nodelay(true)?;
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await?;
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await? == 0 {
                bail!("the proxy closed during CONNECT");
            }
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
            bail!("CONNECT refused: {}", String::from_utf8_lossy(&head));
        }
        return Ok(Box::new(s));
    }
    bail!("--via: socks5://HOST:PORT, http://HOST:PORT or direct")
}

async fn targets() -> anyhow::Result<()> {
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let sink = TcpListener::bind("127.0.0.1:0").await?;
    println!("http {}", http.local_addr()?);
    println!("sink {}", sink.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = http.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 1024];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.starts_with(b"GET /wait ") {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    while let Ok((mut s, _)) = sink.accept().await {
        // The length comes first, so that no half-close is needed (microsocks,
        // for one, closes both ways when the client shuts its side).
        tokio::spawn(async move {
            let mut len = [0u8; 8];
            if s.read_exact(&mut len).await.is_err() {
                return;
            }
            let want = u64::from_be_bytes(len);
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            while n < want {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k as u64,
                }
            }
            let _ = s.write_all(&n.to_be_bytes()).await;
        });
    }
    Ok(())
}

async fn one_request(via: &str, target: SocketAddr) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut s = open(via, target).await?;
    let setup = started.elapsed();
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("not a 200");
    }
    Ok(setup)
}

async fn cps(
    via: String,
    target: SocketAddr,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<()> {
    let via = Arc::new(via);
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (via, failed) = (via.clone(), failed.clone());
            tokio::spawn(async move {
                let mut setups = Vec::new();
                while Instant::now() < end {
                    match tokio::time::timeout(Duration::from_secs(10), one_request(&via, target))
                        .await
                    {
                        Ok(Ok(d)) => setups.push(d),
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                setups
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let p = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{}",
        serde_json::json!({
            "ok": all.len(),
            "failed": failed.load(Ordering::Relaxed),
            "cps": all.len() as f64 / secs,
            "p50_us": p(0.5),
            "p99_us": p(0.99),
        })
    );
    Ok(())
}

/// How one steady request ended.
enum Outcome {
    /// Done; the tunnel took this long to open.
    Ok(Duration),
    /// The tunnel did not open (refused, reset, timed out in the handshake).
    NewFailed(String),
    /// The tunnel opened and the request failed inside it.
    InFlightFailed(String),
}

async fn steady_request(via: &str, target: SocketAddr, path: &str, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let deadline = started + timeout;
    let opened = match tokio::time::timeout_at(deadline.into(), open(via, target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Outcome::NewFailed(format!("{e:#}")),
        Err(_) => return Outcome::NewFailed("timed out opening the tunnel".into()),
    };
    let setup = started.elapsed();
    let mut s = opened;
    let exchange = async {
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200"), "not a 200");
        anyhow::Ok(())
    };
    match tokio::time::timeout_at(deadline.into(), exchange).await {
        Ok(Ok(())) => Outcome::Ok(setup),
        Ok(Err(e)) => Outcome::InFlightFailed(format!("{e:#}")),
        Err(_) => Outcome::InFlightFailed("timed out in the tunnel".into()),
    }
}

/// A request whose tunnel took longer than this was stuck on a bad upstream
/// (a healthy one opens in well under a millisecond here).
const STUCK: Duration = Duration::from_millis(50);

#[allow(clippy::too_many_arguments)]
async fn steady(
    via: String,
    target: SocketAddr,
    concurrency: usize,
    seconds: f64,
    rate: f64,
    path: String,
    timeout: f64,
) -> anyhow::Result<()> {
    #[derive(Default)]
    struct Tally {
        setups: Vec<Duration>,
        new_failed: u64,
        inflight_failed: u64,
        stuck: Duration,
    }
    let shared = Arc::new((via, path));
    let timeout = Duration::from_secs_f64(timeout);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    // Each worker keeps its share of the rate.
    let gap = (rate > 0.0).then(|| Duration::from_secs_f64(concurrency as f64 / rate));
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let (via, path) = &*shared;
                let mut tally = Tally::default();
                let mut next = Instant::now()
                    + gap.map_or(Duration::ZERO, |g| g.mul_f64(w as f64 / concurrency as f64));
                while Instant::now() < end {
                    if let Some(g) = gap {
                        tokio::time::sleep_until(next.into()).await;
                        next += g;
                    }
                    let at = Instant::now();
                    let outcome = steady_request(via, target, path, timeout).await;
                    let took = at.elapsed();
                    let t = at.duration_since(started).as_secs_f64();
                    match outcome {
                        Outcome::Ok(setup) => {
                            if setup > STUCK {
                                tally.stuck += setup;
                            }
                            tally.setups.push(setup);
                        }
                        Outcome::NewFailed(why) => {
                            eprintln!("{t:.3}s new-connection failure after {took:.1?}: {why}");
                            tally.new_failed += 1;
                            tally.stuck += took;
                        }
                        Outcome::InFlightFailed(why) => {
                            eprintln!("{t:.3}s in-flight failure after {took:.1?}: {why}");
                            tally.inflight_failed += 1;
                            tally.stuck += took;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?;
        all.setups.extend(t.setups);
        all.new_failed += t.new_failed;
        all.inflight_failed += t.inflight_failed;
        all.stuck += t.stuck;
    }
    let secs = started.elapsed().as_secs_f64();
    all.setups.sort();
    let p = |q: f64| {
        all.setups
            .get(((all.setups.len() as f64 * q) as usize).min(all.setups.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{}",
        serde_json::json!({
            "ok": all.setups.len(),
            "new_failed": all.new_failed,
            "inflight_failed": all.inflight_failed,
            "stuck_share": (all.stuck.as_secs_f64() / (secs * concurrency as f64)).min(1.0),
            "cps": all.setups.len() as f64 / secs,
            "p50_us": p(0.5),
            "p99_us": p(0.99),
        })
    );
    Ok(())
}

async fn idle(via: String, target: SocketAddr, n: usize) -> anyhow::Result<()> {
    // Opened a few hundred at a time: a burst of 10,000 SYNs overflows accept queues.
    let via = Arc::new(via);
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (via, gate) = (via.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await?;
                open(&via, target).await
            })
        })
        .collect();
    let mut held = Vec::with_capacity(n);
    for t in tasks {
        held.push(t.await?.context("an idle tunnel")?);
    }
    println!("open {}", held.len());
    let mut rest = Vec::new();
    tokio::io::stdin().read_to_end(&mut rest).await?;
    drop(held);
    Ok(())
}

async fn bulk(via: String, target: SocketAddr, bytes: u64, streams: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let via = via.clone();
            tokio::spawn(async move {
                let mut s = open(&via, target).await?;
                let buf = vec![7u8; 256 * 1024];
                s.write_all(&bytes.to_be_bytes()).await?;
                let mut sent = 0u64;
                while sent < bytes {
                    let n = (bytes - sent).min(buf.len() as u64) as usize;
                    s.write_all(&buf[..n]).await?;
                    sent += n as u64;
                }
                let mut count = [0u8; 8];
                s.read_exact(&mut count).await?;
                anyhow::ensure!(
                    u64::from_be_bytes(count) == bytes,
                    "the sink got every byte"
                );
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await?.context("a bulk stream")?;
    }
    let secs = started.elapsed().as_secs_f64();
    let gbit = (bytes * streams as u64) as f64 * 8.0 / secs / 1e9;
    println!("{}", serde_json::json!({ "seconds": secs, "gbit_s": gbit }));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Targets => targets().await,
        Command::Ports { n } => {
            let held: Vec<std::net::TcpListener> = (0..n)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
                .collect::<Result<_, _>>()?;
            for l in &held {
                println!("{}", l.local_addr()?.port());
            }
            Ok(())
        }
        Command::Cps(l) => cps(l.via, l.target, l.concurrency, l.seconds).await,
        Command::Steady {
            load: l,
            rate,
            path,
            timeout,
        } => {
            steady(
                l.via,
                l.target,
                l.concurrency,
                l.seconds,
                rate,
                path,
                timeout,
            )
            .await
        }
        Command::Idle { via, target, n } => idle(via, target, n).await,
        Command::Bulk {
            via,
            target,
            bytes,
            streams,
        } => bulk(via, target, bytes, streams).await,
    }
}
