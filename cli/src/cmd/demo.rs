//! `proxypool demo`: the whole system on nothing of the user's own. Three upstream
//! SOCKS5 proxies run in this process (one flaky, one slow, one that dies partway and
//! comes back), with a local HTTP server and a WebSocket echo server as destinations,
//! and the real gateway in front of them. HTTP and WebSocket clients load it while a
//! view shows picks, tunnels, health, breakers, failovers and hedges; halfway the pool's
//! strategy file is swapped from round_robin to least_connections through the real
//! file-swap path. It ends with a summary.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proxypool::balancer::MemberStatus;
use proxypool::config::{BuiltinStrategy, ConfigBuilder, Transport};
use proxypool::gateway::socks5;
use proxypool::gateway::{Destination, Parse};
use proxypool::{Balancer, Dialer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How each upstream misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Resets every third connection after the greeting.
    Flaky,
    /// Answers the CONNECT 120 ms late.
    Slow,
    /// Fine, until it is stopped partway and started again.
    Mortal,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Flaky => "flaky",
            Kind::Slow => "slow",
            Kind::Mortal => "dies and returns",
        }
    }
}

/// One in-process upstream proxy.
struct Upstream {
    kind: Kind,
    addr: SocketAddr,
    alive: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

impl Upstream {
    async fn start(kind: Kind) -> anyhow::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (alive, accepted) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        tokio::spawn(serve_upstream(
            listener,
            kind,
            alive.clone(),
            accepted.clone(),
        ));
        Ok(Upstream {
            kind,
            addr,
            alive,
            accepted,
        })
    }
}

/// Accepts while `alive`; closed (connection refused) while not, its live tunnels
/// left running, as a proxy process that stopped accepting.
async fn serve_upstream(
    mut listener: TcpListener,
    kind: Kind,
    alive: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
) {
    let addr = listener.local_addr().ok();
    loop {
        if !alive.load(Ordering::Relaxed) {
            drop(listener);
            while !alive.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let Some(addr) = addr else { return };
            match TcpListener::bind(addr).await {
                Ok(l) => listener = l,
                Err(_) => return,
            }
        }
        let accept = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        let Ok(Ok((client, _))) = accept else {
            continue;
        };
        let n = accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = socks5_serve(client, kind, n).await;
        });
    }
}

/// A minimal SOCKS5 server: no auth, CONNECT, then a relay.
async fn socks5_serve(mut client: TcpStream, kind: Kind, n: u64) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let _greeting = read_until(&mut client, &mut buf, socks5::parse_greeting).await?;
    client
        .write_all(&socks5::method_reply(socks5::NO_AUTH))
        .await?;
    if kind == Kind::Flaky && n % 3 == 2 {
        return Ok(()); // a reset in the middle of the handshake
    }
    let request = read_until(&mut client, &mut buf, socks5::parse_request).await?;
    if kind == Kind::Slow {
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let upstream = match request.destination {
        Destination::Ip(addr) => TcpStream::connect(addr).await,
        Destination::Name(host, port) => TcpStream::connect((host.as_str(), port)).await,
    };
    let Ok(mut upstream) = upstream else {
        client
            .write_all(&socks5::reply(socks5::Reply::HostUnreachable))
            .await?;
        return Ok(());
    };
    client
        .write_all(&socks5::reply(socks5::Reply::Succeeded))
        .await?;
    let _ = upstream.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn read_until<T>(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Parse<T>,
) -> std::io::Result<T> {
    loop {
        match parse(buf) {
            Parse::Complete(msg, used) => {
                buf.drain(..used);
                return Ok(msg);
            }
            Parse::Invalid(why) => return Err(std::io::Error::other(why)),
            Parse::Partial => {
                let mut chunk = [0u8; 512];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// An HTTP server that answers every request `200 OK`, one per connection.
async fn http_target() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    )
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A WebSocket server that echoes every message.
async fn ws_target() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Client-side counts.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
}

async fn http_client(gateway: SocketAddr, target: SocketAddr, load: Arc<Load>, end: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(40));
    // A steady rate: a slow stretch is not made up for with a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        let result = async {
            let mut s = tokio_socks::tcp::Socks5Stream::connect(gateway, target).await?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
                .await?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await?;
            anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200"), "not a 200");
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(10), result).await {
            Ok(Ok(())) => load.ok.fetch_add(1, Ordering::Relaxed),
            _ => load.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// One WebSocket session after another, a message every 100 ms; a session ends
/// after 20 messages, so that sessions open through every upstream over time.
async fn ws_client(gateway: SocketAddr, target: SocketAddr, load: Arc<Load>, end: Instant) {
    while Instant::now() < end {
        let session = async {
            let stream = tokio_socks::tcp::Socks5Stream::connect(gateway, target).await?;
            let url = format!("ws://{target}/");
            let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream).await?;
            for i in 0..20 {
                if Instant::now() >= end {
                    break;
                }
                let text = format!("tick {i}");
                ws.send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
                    .await?;
                match ws.next().await {
                    Some(Ok(m)) if m.to_text().ok() == Some(text.as_str()) => {
                        load.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => anyhow::bail!("no echo"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = ws.close(None).await;
            anyhow::Ok(())
        };
        if tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .map_or(true, |r| r.is_err())
        {
            load.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How long the summary waits past the end for a strategy swap still compiling.
const SWAP_WAIT: Duration = Duration::from_secs(30);

/// Runs the demo for `duration`.
pub fn run(duration: Duration) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(duration))
}

async fn demo(duration: Duration) -> anyhow::Result<ExitCode> {
    let terminal = std::io::stdout().is_terminal();
    let dir = tempfile_dir()?;
    let strategy = dir.join("strategy.wasm");
    std::fs::write(
        &strategy,
        proxypool::strategy::builtin_bytes(BuiltinStrategy::RoundRobin),
    )?;
    let mut upstreams = Vec::new();
    for kind in [Kind::Flaky, Kind::Slow, Kind::Mortal] {
        upstreams.push(Upstream::start(kind).await?);
    }
    let (http, ws) = (http_target().await?, ws_target().await?);
    let members: Vec<String> = upstreams
        .iter()
        .map(|u| format!("'socks5://{}'", u.addr))
        .collect();
    let pool = format!(
        "{{pool: [{}], strategy: '{}', health_check: {{method: tcp, interval_seconds: 1, fast_interval_ms: 200}}}}",
        members.join(", "),
        strategy.display()
    );
    let config = ConfigBuilder::new()
        .yaml_str(&format!(
            "proxy: {{enabled: true, default: {{http: {pool}, websocket: {pool}}}}}"
        ))
        .build()?;
    let balancer = Arc::new(
        tokio::task::spawn_blocking(move || Balancer::try_new(config, Dialer::new())).await??,
    );
    balancer.start(&tokio::runtime::Handle::current());
    let (gateway, _stop) = proxypool::gateway::Gateway::builder(balancer.clone())
        .listen(proxypool::config::Listen::loopback())
        .spawn()
        .await?;
    println!(
        "proxypool demo: gateway on {gateway}, 3 upstreams (flaky, slow, one that dies and returns), {}s",
        duration.as_secs()
    );

    let start = Instant::now();
    let end = start + duration;
    let load = Arc::new(Load::default());
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        clients.spawn(http_client(gateway, http, load.clone(), end));
    }
    for _ in 0..2 {
        clients.spawn(ws_client(gateway, ws, load.clone(), end));
    }

    let mortal = upstreams
        .iter()
        .position(|u| u.kind == Kind::Mortal)
        .unwrap_or(2) as u32;
    let (kill_at, swap_at, back_at) = (
        start + duration.mul_f64(0.3),
        start + duration.mul_f64(0.5),
        start + duration.mul_f64(0.7),
    );
    let (mut killed, mut swapped, mut restored) = (None::<Instant>, None::<Duration>, false);
    let mut swap_started = None::<(Instant, u64)>;
    let mut last_dead_pick = None::<Duration>;
    let mut dead_picks = 0;
    let mut events: Vec<String> = Vec::new();
    let mut next_frame = start;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = Instant::now();
        if killed.is_none() && now >= kill_at {
            upstreams[mortal as usize]
                .alive
                .store(false, Ordering::Relaxed);
            killed = Some(now);
            dead_picks = picks(&pool_members(&balancer), mortal as usize);
            events.push(format!(
                "{:>5.1}s  upstream {} stopped",
                secs(start, now),
                mortal + 1
            ));
        }
        if let Some(k) = killed
            && !restored
        {
            let p = picks(&pool_members(&balancer), mortal as usize);
            if p != dead_picks {
                dead_picks = p;
                last_dead_pick = Some(now - k);
            }
        }
        if swap_started.is_none() && now >= swap_at {
            let generation = generation(&balancer);
            let tmp = dir.join(".strategy.wasm.tmp");
            std::fs::write(
                &tmp,
                proxypool::strategy::builtin_bytes(BuiltinStrategy::LeastConnections),
            )?;
            std::fs::rename(&tmp, &strategy)?;
            swap_started = Some((Instant::now(), generation));
            events.push(format!(
                "{:>5.1}s  strategy file replaced: least_connections",
                secs(start, now)
            ));
        }
        if let (Some((at, before)), None) = (swap_started, swapped)
            && generation(&balancer) > before
        {
            swapped = Some(at.elapsed());
            events.push(format!(
                "{:>5.1}s  strategy swapped in after {:.1?}",
                secs(start, now),
                at.elapsed()
            ));
        }
        if !restored && now >= back_at {
            upstreams[mortal as usize]
                .alive
                .store(true, Ordering::Relaxed);
            restored = true;
            events.push(format!(
                "{:>5.1}s  upstream {} back",
                secs(start, now),
                mortal + 1
            ));
        }
        if now >= next_frame {
            next_frame = now
                + if terminal {
                    Duration::from_millis(250)
                } else {
                    Duration::from_secs(1)
                };
            frame(
                &balancer,
                &upstreams,
                &load,
                &events,
                secs(start, now),
                terminal,
            );
        }
    }
    while clients.join_next().await.is_some() {}
    // On a loaded machine the new module may still be compiling: the summary waits for
    // it (bounded) rather than reporting a swap that was only slow.
    if let (Some((at, before)), None) = (swap_started, swapped) {
        let give_up = Instant::now() + SWAP_WAIT;
        while Instant::now() < give_up {
            if generation(&balancer) > before {
                swapped = Some(at.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let totals = balancer.counters();
    let (ok, failed) = (
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    println!();
    println!("summary");
    println!("  requests: {} made, {failed} failed", ok + failed);
    println!(
        "  failovers: {} (hedges: {})",
        totals.failovers, totals.hedges
    );
    match last_dead_pick {
        Some(d) => println!(
            "  kill to the last pick of the dead upstream: {:.0} ms",
            d.as_secs_f64() * 1e3
        ),
        None => {
            println!("  kill to the last pick of the dead upstream: 0 ms (no pick after the kill)")
        }
    }
    match swapped {
        Some(d) => println!(
            "  strategy swap round_robin -> least_connections: {:.1} ms",
            d.as_secs_f64() * 1e3
        ),
        None => println!("  strategy swap round_robin -> least_connections: not completed"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if failed == 0 && swapped.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn secs(start: Instant, now: Instant) -> f64 {
    (now - start).as_secs_f64()
}

/// Both default pools' members, one list per pool.
fn pool_members(balancer: &Balancer) -> Vec<Vec<MemberStatus>> {
    [Transport::Http, Transport::Websocket]
        .iter()
        .filter_map(|t| balancer.members(&format!("default.{t}")))
        .collect()
}

fn picks(pools: &[Vec<MemberStatus>], id: usize) -> u64 {
    pools.iter().map(|p| p[id].picks).sum()
}

fn generation(balancer: &Balancer) -> u64 {
    balancer
        .strategy_stats("default.http")
        .map_or(0, |s| s.generation)
}

/// One view: redrawn in place on a terminal, a line otherwise.
fn frame(
    balancer: &Balancer,
    upstreams: &[Upstream],
    load: &Load,
    events: &[String],
    t: f64,
    terminal: bool,
) {
    let totals = balancer.counters();
    let (ok, failed) = (
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    let pools = pool_members(balancer);
    let strategy = generation(balancer);
    if !terminal {
        let picks: Vec<String> = (0..upstreams.len())
            .map(|i| picks(&pools, i).to_string())
            .collect();
        println!(
            "t={t:.1}s requests={} failed={failed} failovers={} hedges={} picks=[{}] strategy_generation={strategy}",
            ok + failed,
            totals.failovers,
            totals.hedges,
            picks.join(",")
        );
        return;
    }
    print!("\x1b[H\x1b[2J");
    println!("proxypool demo  t={t:.1}s  strategy generation {strategy}");
    println!();
    println!(
        "{:<4} {:<18} {:<22} {:<6} {:<10} {:>6} {:>7} {:>9}",
        "", "upstream", "kind", "health", "breaker", "active", "picks", "accepted"
    );
    for (i, u) in upstreams.iter().enumerate() {
        let (mut healthy, mut breaker, mut active) = (true, "closed", 0);
        for pool in &pools {
            let s = &pool[i];
            healthy &= s.healthy;
            if s.breaker.as_str() != "closed" {
                breaker = s.breaker.as_str();
            }
            active += s.active;
        }
        println!(
            "{:<4} {:<18} {:<22} {:<6} {:<10} {:>6} {:>7} {:>9}",
            i + 1,
            u.addr.to_string(),
            u.kind.name(),
            if healthy { "up" } else { "down" },
            breaker,
            active,
            picks(&pools, i),
            u.accepted.load(Ordering::Relaxed)
        );
    }
    println!();
    println!(
        "requests {}  failed {failed}  failovers {}  hedges raced {} (the hedge won {})",
        ok + failed,
        totals.failovers,
        totals.hedges,
        totals.hedges_won
    );
    println!();
    for e in events.iter().rev().take(6).rev() {
        println!("{e}");
    }
}

/// A fresh directory for the demo's strategy file.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("proxypool-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
