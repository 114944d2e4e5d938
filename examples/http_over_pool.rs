//! An HTTP/1.1 request with hyper over a connection from a pool.
//!
//! `cargo run -p proxypool --example http_over_pool -- socks5://127.0.0.1:1080 example.com:80`
//!
//! Prints the status line, which upstream carried it, and the body.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use proxypool::config::{ConfigBuilder, ProxyEntry, Transport};
use proxypool::{Balancer, Dialer, Target};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(proxy), Some(target)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: http_over_pool PROXY_URL HOST:PORT");
    };
    let config = ConfigBuilder::new()
        .enabled(true)
        .default_proxy(Transport::Http, ProxyEntry::pool([proxy]))
        .build()?;
    let balancer = Balancer::try_new(config, Dialer::new())?;
    balancer.start(&tokio::runtime::Handle::current());
    let target: Target = target.parse()?;
    let tunnel = balancer.connect(None, Transport::Http, &target).await?;
    let upstream = tunnel.upstream();
    // The tunnel counts against its proxy for as long as hyper holds it.
    let io = hyper_util::rt::TokioIo::new(tunnel);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/")
        .header(hyper::header::HOST, target.to_string())
        .body(Empty::<Bytes>::new())?;
    let response =
        tokio::time::timeout(Duration::from_secs(30), sender.send_request(request)).await??;
    println!("status {}", response.status());
    println!("upstream {}", upstream.as_deref().unwrap_or("direct"));
    let body = response.into_body().collect().await?.to_bytes();
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
