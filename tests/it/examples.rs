//! The library examples in `examples/`, each run against local servers.

use std::path::PathBuf;

use proxypool_tests::servers::microsocks;
use proxypool_tests::target::TargetServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An example binary `cargo test` built beside the proxypool binary.
fn example(name: &str) -> PathBuf {
    let bin = proxypool_tests::proxypool_bin();
    let path = bin.parent().unwrap().join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test --workspace` builds it",
        path.display()
    );
    path
}

async fn run(name: &str, args: &[String]) -> String {
    let out = tokio::process::Command::new(example(name))
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_over_pool_gets_a_page_through_the_pool_with_hyper() {
    let Some(proxy) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start_http().await;
    let out = run(
        "http_over_pool",
        &[
            format!("socks5://{}", proxy.addr),
            target.addr().to_string(),
        ],
    )
    .await;
    assert!(out.contains("status 200 OK"), "{out}");
    assert!(out.contains("upstream default.http/0"), "{out}");
    assert!(out.contains("GET / HTTP/1.1"), "{out}");
    assert_eq!(target.peer_ips(), [proxy.egress]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_pool_talks_to_an_echo_server_through_the_pool() {
    use futures_util::{SinkExt, StreamExt};
    let Some(proxy) = microsocks(None).await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, peer) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        if let Some(Ok(m)) = ws.next().await {
            let text = format!("{} via {}", m.to_text().unwrap(), peer.ip());
            ws.send(tokio_tungstenite::tungstenite::Message::text(text))
                .await
                .unwrap();
        }
    });
    let out = run(
        "websocket_over_pool",
        &[format!("socks5://{}", proxy.addr), format!("ws://{addr}/")],
    )
    .await;
    assert!(out.contains("upstream default.websocket/0"), "{out}");
    assert!(
        out.contains(&format!("reply hello via {}", proxy.egress)),
        "{out}"
    );
    server.await.unwrap();
}

/// The first answer is a 429 with Retry-After: the example reports it, and its next
/// connects for that exchange go through the other upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_rate_limit_moves_the_next_connects_off_the_limited_upstream() {
    let (Some(a), Some(b)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let answer: &[u8] = if std::mem::take(&mut first) {
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = s.write_all(answer).await;
        }
    });
    let out = run(
        "report_rate_limit",
        &[
            format!("socks5://{}", a.addr),
            format!("socks5://{}", b.addr),
            addr.to_string(),
        ],
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "request 1: exchanges.binance.http/0 429",
            "reported exchanges.binance.http/0 rate-limited for Some(120s)",
            "request 2: exchanges.binance.http/1 200",
            "request 3: exchanges.binance.http/1 200",
            "request 4: exchanges.binance.http/1 200",
        ],
        "{out}"
    );
}
