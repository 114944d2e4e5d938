//! Whole-system resilience measurements (issue 4), not timed tests:
//!
//! - `failover`: 8 tasks connect in a loop through 3 microsocks; one is killed. Time from
//!   the kill to its breaker opening (after which no pick can choose it) and to its
//!   health verdict going down; picks of it after the kill; client-visible failures.
//! - `pick`: pick p50/p99 on 2 threads over 1,000 proxies, with every one of them
//!   health-checked (tcp, 1 s interval) and without health checks.
//! - `memory`: resident memory per proxy at 10, 100, 1,000 and 10,000 proxies (health
//!   checks running), each in a fresh process.
//! - `false-positives`: 100,000 handshake probes against healthy microsocks proxies;
//!   failed probes and down transitions of the default verdict.
//!
//! `bench/resilience [failover|pick|memory|false-positives]` (all by default).

#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proxypool::Balancer;
use proxypool::balancer::BreakerState;
use proxypool::config::{ConfigBuilder, Transport};
use proxypool::testing::DialProbe;
use proxypool::testing::PickContext;
use proxypool::testing::{Health, Probe, Threshold, Verdict};
use proxypool::{Dialer, Target};
use proxypool_tests::servers::microsocks;
use proxypool_tests::target::{GREETING, TargetServer};
use tokio::io::AsyncReadExt;

fn balancer(yaml: &str) -> Result<Balancer> {
    let config = ConfigBuilder::new().yaml_str(yaml).build()?;
    let b = Balancer::try_new(config, Dialer::new())?;
    b.start(&tokio::runtime::Handle::current());
    Ok(b)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn failover(runs: usize) -> Result<()> {
    println!("failover: 3 microsocks, 8 tasks connecting in a loop, one proxy killed");
    println!(
        "run  opened before kill  kill→breaker open  kill→health down  picks of it after kill  client failures"
    );
    for run in 0..runs {
        let mut dead = microsocks(None).await.context("microsocks")?;
        let b = microsocks(None).await.context("microsocks")?;
        let c = microsocks(None).await.context("microsocks")?;
        let target = TargetServer::start().await;
        let to: Target = target.addr().into();
        let bal = Arc::new(balancer(&format!(
            "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}', 'socks5://{}', 'socks5://{}']}}}}}}",
            dead.addr, b.addr, c.addr
        ))?);
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (bal, stop, failed, to) =
                    (bal.clone(), stop.clone(), failed.clone(), to.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match bal.connect(None, Transport::Http, &to).await {
                            Ok(mut conn) => {
                                let mut g = [0u8; GREETING.len()];
                                let _ = conn.read_exact(&mut g).await;
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let failovers_before = bal.counters().failovers;
        let (pool, _) = proxypool::testing::pool(&bal, "default.http").context("pool")?;
        let pool = pool.clone();
        let opened_before = pool.counters().breaker_opened.load(Ordering::Relaxed);
        let killed = Instant::now();
        dead.kill().await;
        let mut opened = None;
        let mut down = None;
        while down.is_none() || opened.is_none() {
            let m = &pool.members()[0];
            if opened.is_none() && !matches!(m.breaker(), BreakerState::Closed) {
                opened = Some(killed.elapsed());
            }
            if down.is_none() && !m.healthy() {
                down = Some(killed.elapsed());
            }
            if killed.elapsed() > Duration::from_secs(120) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await?;
        }
        let picks = bal.counters().failovers - failovers_before;
        println!(
            "{run:>3}  {opened_before:>20}  {:>17?}  {:>16?}  {picks:>22}  {:>15}",
            opened.unwrap_or_default(),
            down.unwrap_or_default(),
            failed.load(Ordering::Relaxed)
        );
    }
    Ok(())
}

async fn listeners(n: usize) -> Result<Vec<u16>> {
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        ports.push(l.local_addr()?.port());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
    }
    Ok(ports)
}

fn pool_yaml(ports: &[u16], health: &str) -> String {
    let members: Vec<String> = ports
        .iter()
        .map(|p| format!("'socks5://127.0.0.1:{p}'"))
        .collect();
    format!(
        "proxy: {{enabled: true, default: {{http: {{pool: [{}], health_check: {health}}}}}}}",
        members.join(", ")
    )
}

async fn pick(n: usize) -> Result<()> {
    println!(
        "pick: 2 threads × 200,000 picks over {n} proxies (round_robin, lease dropped at once)"
    );
    let ports = listeners(n).await?;
    for (label, health) in [
        ("no health checks", "{enabled: false}".to_owned()),
        (
            "tcp probes, 1 s interval",
            "{method: tcp, interval: 1}".to_owned(),
        ),
    ] {
        let bal = Arc::new(balancer(&pool_yaml(&ports, &health))?);
        // Let the first probe round run.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let bal = bal.clone();
                std::thread::spawn(move || {
                    let (pool, sel) = proxypool::testing::pool(&bal, "default.http").expect("pool");
                    let ctx = PickContext::first("binance", Transport::Http);
                    let mut ns = Vec::with_capacity(200_000);
                    for _ in 0..200_000 {
                        let t = Instant::now();
                        drop(sel.pick(&pool, ctx).expect("pick"));
                        ns.push(t.elapsed());
                    }
                    ns
                })
            })
            .collect();
        let mut all: Vec<Duration> = Vec::new();
        for t in threads {
            all.extend(t.join().expect("thread"));
        }
        all.sort_unstable();
        let probes = bal.metrics().render();
        let probed: f64 = probes
            .lines()
            .filter(|l| l.starts_with("proxypool_probes_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        println!(
            "  {label:<26} p50 {:>6?}  p99 {:>7?}  p99.9 {:>8?}  ({probed} probes so far)",
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            percentile(&all, 0.999)
        );
    }
    Ok(())
}

fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

/// In a fresh process: RSS before and after a balancer with `n` health-checked proxies.
async fn memory_one(n: usize) -> Result<()> {
    let ports = listeners(n).await?;
    let yaml = pool_yaml(&ports, "{method: tcp, interval: 1}");
    // The engine, its compiled built-ins and the runtime are fixed costs: measure from
    // a one-proxy balancer that already has them.
    let warm = balancer(&pool_yaml(&ports[..1], "{method: tcp, interval: 1}"))?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = rss_kib()?;
    let bal = balancer(&yaml)?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Touch the pick path so the strategy instance holds the whole candidate set.
    let (pool, sel) = proxypool::testing::pool(&bal, "default.http").context("pool")?;
    let ctx = PickContext::first("x", Transport::Http);
    for _ in 0..1000 {
        drop(sel.pick(&pool, ctx)?);
    }
    let after = rss_kib()?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "{n:>6} proxies: +{} KiB, {per:.0} bytes per proxy",
        after.saturating_sub(before)
    );
    drop((warm, bal));
    Ok(())
}

fn memory() -> Result<()> {
    println!("memory: resident set growth for one pool with health checks running");
    let me = std::env::current_exe()?;
    for n in [10, 100, 1_000, 10_000] {
        let out = std::process::Command::new(&me)
            .args(["memory-one", &n.to_string()])
            .output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

async fn false_positives(total: usize) -> Result<()> {
    println!("false positives: {total} handshake probes against 10 healthy microsocks");
    let target = TargetServer::start().await;
    let mut proxies = Vec::new();
    for _ in 0..10 {
        proxies.push(microsocks(None).await.context("microsocks")?);
    }
    let yaml = format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://127.0.0.1:1'], \
         health_check: {{method: handshake, target: '{}'}}}}}}}}",
        target.addr()
    );
    let config = ConfigBuilder::new().yaml_str(&yaml).build()?;
    let hc = config
        .pools()
        .next()
        .context("pool")?
        .1
        .health_check
        .clone();
    let probe = Arc::new(DialProbe::new(Dialer::new(), &hc));
    let verdict = Arc::new(Threshold::new(hc.rise, hc.fall));
    let urls: Vec<proxypool::ProxyUrl> = proxies
        .iter()
        .map(|p| proxypool::ProxyUrl::parse(&format!("socks5://{}", p.addr)))
        .collect::<Result<_, _>>()?;
    let urls = Arc::new(urls);
    let (failed, downs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let workers: Vec<_> = (0..10)
        .map(|w| {
            let (probe, verdict, urls) = (probe.clone(), verdict.clone(), urls.clone());
            let (failed, downs) = (failed.clone(), downs.clone());
            tokio::spawn(async move {
                for _ in 0..total / 10 {
                    let ok = probe.probe(&urls[w], hc.timeout).await;
                    if let Err(e) = &ok {
                        eprintln!("probe failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    if verdict.observe(w as u32, ok.is_ok(), Duration::ZERO) == Health::Unhealthy {
                        downs.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    println!(
        "  {total} probes in {:?}: {} failed, {} verdicts of down",
        started.elapsed(),
        failed.load(Ordering::Relaxed),
        downs.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return Ok(()); // `cargo test --benches` and `cargo bench -- --list` probe with these
    }
    if std::env::var_os("BENCH_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let which = args.first().map(String::as_str).unwrap_or("all");
    rt.block_on(async {
        match which {
            "memory-one" => memory_one(args.get(1).context("n")?.parse()?).await,
            "failover" => failover(5).await,
            "pick" => pick(1_000).await,
            "memory" => memory(),
            "false-positives" => false_positives(100_000).await,
            _ => {
                failover(5).await?;
                pick(1_000).await?;
                memory()?;
                false_positives(100_000).await
            }
        }
    })
}
