//! The gateway with real clients: curl through SOCKS5, SOCKS4a, HTTP CONNECT and
//! plain forwarding, each landing on the intended pool.

use std::net::SocketAddr;
use std::sync::Arc;

use proxypool::config::Transport;
use proxypool::gateway::{self, Listener, Settings};
use proxypool_tests::servers::{RealProxy, microsocks};
use proxypool_tests::target::HttpTarget;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A gateway over `yaml`'s routes on 127.0.0.1:0; stops when dropped.
struct Gateway {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    async fn start(yaml: &str) -> Gateway {
        let balancer = Arc::new(crate::failover::balancer(yaml));
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let listeners = vec![Listener {
            socket,
            transport: Transport::Http,
        }];
        let task = tokio::spawn(gateway::run(listeners, balancer, Settings::default(), rx));
        Gateway { addr, stop, task }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

async fn curl(args: &[&str]) -> (bool, String, String) {
    let Some(curl) = proxypool_tests::require_binary("curl") else {
        return (false, String::new(), "no curl".into());
    };
    let out = tokio::process::Command::new(curl)
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn two_pools(binance: &RealProxy, default: &RealProxy) -> String {
    format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}'], health_check: {{enabled: false}}}}}}, \
         exchanges: {{binance: {{http: {{pool: ['socks5://{}'], health_check: {{enabled: false}}}}}}}}}}",
        default.addr, binance.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_a_local_server_through_every_inbound_protocol() {
    let (Some(binance), Some(default)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = HttpTarget::start().await;
    let gw = Gateway::start(&two_pools(&binance, &default)).await;
    let url = format!("http://{}/where", target.addr());
    let socks5h = format!("socks5h://{}", gw.addr);
    let socks5h_user = format!("socks5h://binance:x@{}", gw.addr);
    let socks4a = format!("socks4a://{}", gw.addr);
    let http = format!("http://{}", gw.addr);
    let http_user = format!("http://binance:x@{}", gw.addr);
    let cases: [(&str, Vec<&str>, std::net::IpAddr, &str); 6] = [
        (
            "socks5h",
            vec!["-x", &socks5h],
            default.egress,
            "GET /where",
        ),
        (
            "socks5h as binance",
            vec!["-x", &socks5h_user],
            binance.egress,
            "GET /where",
        ),
        (
            "socks4a",
            vec!["-x", &socks4a],
            default.egress,
            "GET /where",
        ),
        (
            "CONNECT",
            vec!["-p", "-x", &http],
            default.egress,
            "GET /where",
        ),
        (
            "CONNECT as binance",
            vec!["-p", "-x", &http_user],
            binance.egress,
            "GET /where",
        ),
        (
            "forwarding",
            vec!["-x", &http],
            default.egress,
            "GET /where HTTP/1.1",
        ),
    ];
    for (name, args, egress, line) in cases {
        let before = target.peer_ips().len();
        let mut all = args.clone();
        all.push(&url);
        let (ok, body, err) = curl(&all).await;
        assert!(ok, "{name}: {err}");
        assert!(
            body.starts_with("hello from target") && body.contains(line),
            "{name}: {body}"
        );
        assert_eq!(
            target.peer_ips()[before..],
            [egress],
            "{name}: carried by its pool's proxy"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_protocol_errors_and_the_gateway_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(default) = microsocks(None).await else {
        return;
    };
    let target = HttpTarget::start().await;
    let gw = Gateway::start(&two_pools(&default, &default)).await;
    let exchange = |bytes: &'static [u8]| async move {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    };
    // SOCKS5 BIND: "command not supported".
    let bind = exchange(b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50").await;
    assert_eq!(&bind[..2], [5, 0], "no-auth chosen");
    assert_eq!(&bind[2..4], [5, 0x07], "{bind:?}");
    // An unknown exchange name is refused, not routed to the default.
    let bad_user =
        exchange(b"\x05\x01\x02\x01\x05bin/x\x01x\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50").await;
    assert_eq!(&bad_user[4..6], [5, 0x02], "not allowed: {bad_user:?}");
    // Garbage and a relative HTTP request.
    assert!(exchange(b"\x16\x03\x01\x02\x00").await.is_empty());
    let relative = String::from_utf8(exchange(b"GET /x HTTP/1.1\r\n\r\n").await).unwrap();
    assert!(relative.starts_with("HTTP/1.1 400 "), "{relative}");
    // SOCKS4 BIND: rejected.
    assert_eq!(
        exchange(b"\x04\x02\x00\x50\x7f\x00\x00\x01\x00").await,
        [0, 0x5b, 0, 0, 0, 0, 0, 0]
    );
    // And it still serves.
    let url = format!("http://{}/", target.addr());
    let proxy = format!("socks5h://{}", gw.addr);
    let (ok, body, err) = curl(&["-x", &proxy, &url]).await;
    assert!(ok && body.starts_with("hello from target"), "{err}");
}
