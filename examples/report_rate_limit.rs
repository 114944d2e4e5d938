//! An exchange-style client: a 429 with Retry-After through one upstream is
//! reported, and the next connects for that exchange avoid that upstream (other
//! exchanges still use it).
//!
//! `cargo run -p proxypool --example report_rate_limit -- socks5://127.0.0.1:1080 socks5://127.0.0.1:1081 127.0.0.1:8080`
//!
//! Prints the upstream of each request and the status it got.

use std::time::Duration;

use proxypool::balancer::Outcome;
use proxypool::config::{ConfigBuilder, ProxyEntry, Transport};
use proxypool::{Balancer, Dialer, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One GET over `stream`: the status and the Retry-After header, if any.
async fn get(
    stream: &mut proxypool::Tunnel,
    host: &str,
) -> anyhow::Result<(u16, Option<Duration>)> {
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not HTTP: {text}"))?;
    let retry_after = text
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs);
    Ok((status, retry_after))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b, target] = &args[..] else {
        anyhow::bail!("usage: report_rate_limit PROXY_A PROXY_B HOST:PORT");
    };
    let config = ConfigBuilder::new()
        .enabled(true)
        .exchange_proxy(
            "binance",
            Transport::Http,
            ProxyEntry::pool([a.clone(), b.clone()]),
        )
        .build()?;
    let balancer = Balancer::try_new(config, Dialer::new())?;
    let target: Target = target.parse()?;
    for attempt in 1..=4 {
        let mut tunnel = balancer
            .connect(Some("binance"), Transport::Http, &target)
            .await?;
        let upstream = tunnel.upstream().unwrap_or_default();
        let (status, retry_after) = get(&mut tunnel, &target.to_string()).await?;
        println!("request {attempt}: {upstream} {status}");
        if status == 429 || status == 418 {
            // Binance skips this proxy until Retry-After; other exchanges keep it.
            tunnel.report(Outcome::RateLimited { retry_after });
            println!("reported {upstream} rate-limited for {retry_after:?}");
        }
    }
    Ok(())
}
