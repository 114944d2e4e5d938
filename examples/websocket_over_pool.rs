//! A WebSocket session with tokio-tungstenite over a connection from a pool.
//!
//! `cargo run -p proxypool --example websocket_over_pool -- socks5://127.0.0.1:1080 ws://127.0.0.1:9001/`
//!
//! Sends one text message and prints the answer and which upstream carried it.

use futures_util::{SinkExt, StreamExt};
use proxypool::config::{ConfigBuilder, ProxyEntry, Transport};
use proxypool::{Balancer, Dialer, Target};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(proxy), Some(url)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: websocket_over_pool PROXY_URL ws://HOST:PORT/PATH");
    };
    let config = ConfigBuilder::new()
        .enabled(true)
        .default_proxy(Transport::Websocket, ProxyEntry::pool([proxy]))
        .build()?;
    let balancer = Balancer::try_new(config, Dialer::new())?;
    balancer.start(&tokio::runtime::Handle::current());
    let authority = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| anyhow::anyhow!("a ws:// URL with host:port"))?;
    let target: Target = authority.parse()?;
    let tunnel = balancer
        .connect(None, Transport::Websocket, &target)
        .await?;
    println!(
        "upstream {}",
        tunnel.upstream().as_deref().unwrap_or("direct")
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tunnel).await?;
    ws.send(Message::text("hello")).await?;
    match ws.next().await {
        Some(Ok(Message::Text(reply))) => println!("reply {reply}"),
        other => anyhow::bail!("no text reply: {other:?}"),
    }
    ws.close(None).await?;
    Ok(())
}
