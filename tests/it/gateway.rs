//! The gateway with real clients: curl through SOCKS5, SOCKS4a, HTTP CONNECT and
//! plain forwarding, each landing on the intended pool.

use std::net::SocketAddr;
use std::sync::Arc;

use proxypool::gateway::{self, Listener, Settings};
use proxypool_tests::servers::{RealProxy, microsocks, pool_yaml};
use proxypool_tests::target::TargetServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A gateway over `yaml`'s routes on 127.0.0.1:0, with its admin endpoint on
/// another (and the file's `gateway.admin_token`, if any); stops when dropped.
pub(crate) struct Gateway {
    pub(crate) addr: SocketAddr,
    /// The admin endpoint.
    pub(crate) admin: SocketAddr,
    pub(crate) balancer: Arc<proxypool::Balancer>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub(crate) async fn start(yaml: &str) -> Gateway {
        Self::start_with_auth(yaml, None).await
    }

    async fn start_with_auth(yaml: &str, auth: Option<proxypool::config::ClientAuth>) -> Gateway {
        Self::start_with(yaml, auth, "127.0.0.1:0", Settings::default()).await
    }

    /// On `bind` (its port 0 resolved in `addr`, and the address clients use made
    /// loopback), with `settings`. The socket is bound here, so that a test may
    /// listen where `serve` would refuse to.
    pub(crate) async fn start_with(
        yaml: &str,
        auth: Option<proxypool::config::ClientAuth>,
        bind: &str,
        settings: Settings,
    ) -> Gateway {
        let balancer = Arc::new(crate::failover::balancer(yaml));
        let socket = TcpListener::bind(bind).await.unwrap();
        let mut addr = socket.local_addr().unwrap();
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let token = balancer.config().gateway().admin_token.clone();
        let gateway = gateway::Gateway::builder(balancer.clone())
            .settings(settings)
            .socket(Listener {
                socket,
                transport: proxypool::config::ListenTransport::Auto,
                auth,
            })
            .admin("127.0.0.1:0".parse().unwrap())
            .admin_token(token)
            .bind()
            .await
            .expect("the gateway binds");
        let admin = gateway.admin_addr().expect("an admin endpoint");
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(gateway.run(rx));
        Gateway {
            addr,
            admin,
            balancer,
            stop,
            task,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

pub(crate) async fn curl(args: &[&str]) -> (bool, String, String) {
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

/// A mistyped exchange in the user name is named, with the likely one, in what
/// requests, aiohttp and httpx show their user; curl over SOCKS5 with a local
/// resolve (`socks5://`) lands on the websocket pool when the user name says `.ws`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_exchange_is_named_and_the_user_name_can_carry_the_transport() {
    let (Some(rest), Some(stream)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let Some(python) = python() else {
        return;
    };
    let target = TargetServer::start_http().await;
    let yaml = format!(
        "proxy: {{enabled: true, exchanges: {{binance: {{\
         http: {{pool: ['socks5://{}'], health_check: {{enabled: false}}}}, \
         websocket: {{pool: ['socks5://{}'], health_check: {{enabled: false}}}}}}}}}}",
        rest.addr, stream.addr
    );
    let gw = Gateway::start(&yaml).await;
    for (user, egress) in [
        ("binance.ws", stream.egress),
        ("binance.http", rest.egress),
        ("binance.ws+session=s1", stream.egress),
    ] {
        let before = target.peer_ips().len();
        let proxy = format!("socks5://{user}:x@{}", gw.addr);
        let (ok, _, err) = curl(&["-x", &proxy, &format!("http://{}/", target.addr())]).await;
        assert!(ok, "{user}: {err}");
        assert_eq!(target.peer_ips()[before..], [egress], "{user}");
    }
    let proxy = format!("http://binanse:x@{}", gw.addr);
    let script = format!(
        r#"
import asyncio, aiohttp, httpx, requests
proxy = "{proxy}"
url = "https://exchange.invalid/api/v3/time"
try:
    requests.get(url, proxies={{"https": proxy}}, timeout=10)
except Exception as e:
    print("requests:", e)
async def main():
    async with aiohttp.ClientSession() as s:
        try:
            await s.get(url, proxy=proxy)
        except Exception as e:
            print("aiohttp:", e)
asyncio.run(main())
try:
    httpx.get(url, proxy=proxy, timeout=10)
except Exception as e:
    print("httpx:", e)
"#
    );
    let out = tokio::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    for client in ["requests:", "aiohttp:", "httpx:"] {
        let line = said
            .lines()
            .find(|l| l.starts_with(client))
            .unwrap_or_else(|| {
                panic!(
                    "{client} raised nothing: {said}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(
            line.contains("binanse") && line.contains("did you mean"),
            "{line}"
        );
    }
}

/// A default http pool of `default` and an http pool of `binance` for binance, probes off.
pub(crate) fn two_pools(binance: &RealProxy, default: &RealProxy) -> String {
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
    let target = TargetServer::start_http().await;
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
    // Bytes both ways, per upstream, once the tunnels have closed.
    let (pool, _) = proxypool::testing::pool(&gw.balancer, "exchanges.binance.http").unwrap();
    proxypool_tests::assert_eventually!(
        {
            let (up, down) = pool.members()[0].bytes();
            up > 0 && down > 0
        },
        "bytes counted for binance's proxy"
    );
    let metrics = gw.balancer.metrics().render();
    assert!(
        metrics.contains("proxypool_proxy_bytes_total{"),
        "{metrics}"
    );
}

/// Forwarded requests keep the client's connection and the origin's: curl sends three
/// requests on one connection to the gateway, which sends them in origin form on one
/// tunnel through one upstream (hop-by-hop headers: `http::tests`); a request for
/// another exchange on the same connection goes through that exchange's pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_keep_alive_on_both_sides_and_route_each_request() {
    let (Some(binance), Some(default)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start_http().await;
    let gw = Gateway::start(&two_pools(&binance, &default)).await;
    let proxy = format!("http://{}", gw.addr);
    let urls: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|p| format!("http://{}/{p}", target.addr()))
        .collect();
    let (ok, body, err) = curl(&[
        "-v",
        "-x",
        &proxy,
        "-H",
        "Connection: keep-alive, X-Hop",
        "-H",
        "X-Hop: secret-hop",
        &urls[0],
        &urls[1],
        &urls[2],
    ])
    .await;
    assert!(ok, "{err}");
    for p in ["GET /a HTTP/1.1", "GET /b HTTP/1.1", "GET /c HTTP/1.1"] {
        assert!(body.contains(p), "{p} in {body}");
    }
    assert_eq!(
        target.peer_ips(),
        [default.egress],
        "one tunnel to the origin for three requests"
    );
    assert!(
        err.contains("Re-using existing") || err.contains("Reusing existing"),
        "curl kept its connection to the gateway: {err}"
    );
    assert!(
        err.to_ascii_lowercase()
            .contains("< proxypool-upstream: default.http/0"),
        "{err}"
    );
    let metrics = gw.balancer.metrics().render();
    assert!(
        metrics.contains("proxypool_gateway_accepted_total{listener=")
            && metrics.contains("protocol=\"http\"} 1"),
        "one client connection: {metrics}"
    );
    // Another user name on the same connection: its own pool, its own tunnel.
    let before = target.peer_ips().len();
    let (ok, _, err) = curl(&[
        "-x",
        &proxy,
        &urls[0],
        "--next",
        "-x",
        &format!("http://binance:x@{}", gw.addr),
        &urls[1],
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        target.peer_ips()[before..],
        [default.egress, binance.egress]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_protocol_errors_and_the_gateway_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(default) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start_http().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_host_pattern_picks_the_exchange_without_a_user_name() {
    let (Some(binance), Some(default)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start_http().await;
    let yaml = format!(
        "{}\ngateway: {{routes: {{binance: ['localhost', '*.binance.invalid']}}}}\n",
        two_pools(&binance, &default)
    );
    let gw = Gateway::start(&yaml).await;
    let proxy = format!("socks5h://{}", gw.addr);
    let port = target.addr().port();
    for (host, egress) in [("localhost", binance.egress), ("127.0.0.1", default.egress)] {
        let before = target.peer_ips().len();
        let (ok, _, err) = curl(&["-x", &proxy, &format!("http://{host}:{port}/")]).await;
        assert!(ok, "{host}: {err}");
        assert_eq!(target.peer_ips()[before..], [egress], "{host}");
    }
}

#[test]
fn the_gateway_section_is_validated_with_paths_and_every_problem_at_once() {
    use proxypool::config::{ConfigBuilder, ListenTransport};
    let ok = ConfigBuilder::new()
        .yaml_str(
            "proxy: {enabled: true}\ngateway:\n  listen: [{addr: '127.0.0.1:0', transport: websocket}]\n  \
             routes: {Binance: ['*.binance.com']}\n  drain_seconds: 5\n",
        )
        .build()
        .unwrap();
    let g = ok.gateway();
    assert_eq!(g.listen[0].transport, ListenTransport::Websocket);
    assert_eq!(g.route_for("stream.binance.com"), Some("binance"));
    assert_eq!(g.drain, std::time::Duration::from_secs(5));
    let e = ConfigBuilder::new()
        .yaml_str(
            "gateway:\n  listen: [{addr: '0.0.0.0:1080'}, {addr: nowhere}, {addr: '127.0.0.1:1', transport: udp}]\n  \
             routes: {kraken: ['bad host!']}\n  max_connections: 0\n  bogus: 1\n",
        )
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `bogus`"), "{e}");
    let e = ConfigBuilder::new()
        .yaml_str(
            "gateway:\n  listen: [{addr: '0.0.0.0:1080'}, {addr: nowhere}, {addr: '127.0.0.1:1', transport: udp}]\n  \
             routes: {kraken: ['bad host!']}\n  max_connections: 0\n  admin: '0.0.0.0:9090'\n",
        )
        .build()
        .unwrap_err()
        .to_string();
    for path in [
        "gateway.admin: 0.0.0.0:9090 is not a loopback address: set gateway.admin_token",
        "gateway.listen[0].addr: 0.0.0.0:1080 is not a loopback address",
        "gateway.listen[1].addr: must be an IP address and port",
        "gateway.listen[2].transport: unknown transport \"udp\"",
        "gateway.routes.kraken[0]: \"bad host!\" is not a host name",
        "gateway.max_connections: must be between 1 and 1000000",
    ] {
        assert!(e.contains(path), "{path} in {e}");
    }
    // Without a section: one loopback listener on the SOCKS port, admin on 9090.
    let none = ConfigBuilder::new().build().unwrap();
    let g = none.gateway();
    assert_eq!(g.listen.len(), 1);
    assert_eq!(g.listen[0].addr, "127.0.0.1:1080".parse().unwrap());
    assert_eq!(g.listen[0].transport, ListenTransport::Auto);
    assert_eq!(g.admin, "127.0.0.1:9090".parse().unwrap());
    let open = ConfigBuilder::new()
        .yaml_str("gateway: {listen: [{addr: '0.0.0.0:1080'}], allow_open: true}")
        .build()
        .unwrap();
    assert!(!open.gateway().listen[0].addr.ip().is_loopback());
    let e = ConfigBuilder::new()
        .yaml_str("gateway: {admin: '0.0.0.0:9090', admin_token: short}")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gateway.admin_token: must be at least 16 characters"),
        "{e}"
    );
    let token = "0123456789abcdef-token";
    let guarded = ConfigBuilder::new()
        .yaml_str(&format!(
            "gateway: {{admin: '0.0.0.0:9090', admin_token: '{token}'}}"
        ))
        .build()
        .unwrap();
    let g = guarded.gateway();
    assert!(
        g.admin_token
            .as_ref()
            .unwrap()
            .accepts_header(&format!("Bearer {token}"))
    );
    let shown = format!("{g:?} {guarded:?}");
    assert!(!shown.contains("abcdef-token"), "{shown}");
}

/// The Python environment `scripts/install-test-deps` makes, or `None` after a skip
/// notice (a failure under CI).
pub(crate) fn python() -> Option<std::path::PathBuf> {
    venv_python("py", "Python clients")
}

/// The interpreter of the venv `target/DIR` that `scripts/install-test-deps` makes
/// (for `what`), or `None` after a skip notice (a failure under CI).
pub(crate) fn venv_python(dir: &str, what: &str) -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let py = root.join(dir).join("bin/python");
    if py.is_file() {
        return Some(py);
    }
    assert!(
        !proxypool_tests::in_ci(),
        "{} is missing; .ci/run makes it",
        py.display()
    );
    eprintln!("SKIP: no {what} (scripts/install-test-deps makes target/{dir})");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiohttp_requests_and_websockets_reach_local_servers_through_the_gateway() {
    let (Some(binance), Some(default)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let Some(python) = python() else {
        return;
    };
    let target = TargetServer::start_http().await;
    let gw = Gateway::start(&two_pools(&binance, &default)).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/gateway_clients.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(gw.addr.port().to_string())
        .arg(format!("http://{}/aiohttp", target.addr()))
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("no_proxy")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for (line, path) in [(lines[0], "/aiohttp"), (lines[1], "/requests")] {
        assert!(
            line.contains(r#""status": 200"#) && line.contains(&format!("GET {path} HTTP/1.1")),
            "{stdout}"
        );
    }
    assert_eq!(
        target.peer_ips(),
        [binance.egress, binance.egress],
        "aiohttp and requests went through binance's pool"
    );
    for (line, said) in [(lines[2], "hello"), (lines[3], "from env")] {
        assert!(
            line.contains(&format!("{said} via {}", binance.egress)),
            "websockets went through binance's pool: {stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_a_client_without_the_password_is_rejected() {
    let Some(default) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start_http().await;
    let gw = Gateway::start_with_auth(
        &two_pools(&default, &default),
        Some(proxypool::config::ClientAuth::new("correct horse")),
    )
    .await;
    let url = format!("http://{}/", target.addr());
    let a = gw.addr;
    for (name, proxy, ok) in [
        ("socks5 without", format!("socks5h://{a}"), false),
        ("socks5 wrong", format!("socks5h://binance:nope@{a}"), false),
        ("socks4", format!("socks4a://binance@{a}"), false),
        ("http without", format!("http://{a}"), false),
        ("http wrong", format!("http://binance:nope@{a}"), false),
        (
            "socks5 right",
            format!("socks5h://binance:correct%20horse@{a}"),
            true,
        ),
        (
            "http right",
            format!("http://binance:correct%20horse@{a}"),
            true,
        ),
    ] {
        let (success, body, err) = curl(&["-f", "-x", &proxy, &url]).await;
        assert_eq!(success, ok, "{name}: {err}");
        assert_eq!(body.starts_with("hello from target"), ok, "{name}: {body}");
    }
    let (_, _, err) = curl(&["-v", "-x", &format!("http://{a}"), &url]).await;
    assert!(err.contains("407"), "{err}");
    assert_eq!(
        target.peer_ips().len(),
        2,
        "only the two with the password got through"
    );
}

/// Acceptance 4 of the gateway: a loop of 300 curl requests, one of three upstreams
/// killed partway, and then the same with a blackholed upstream: no failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_curl_requests_survive_a_killed_and_a_blackholed_upstream() {
    use proxypool_tests::faults::{Fault, FaultProxy};
    let (Some(mut a), Some(b), Some(c)) = (
        microsocks(None).await,
        microsocks(None).await,
        microsocks(None).await,
    ) else {
        return;
    };
    let hole = FaultProxy::start(Fault::Blackhole).await;
    let target = TargetServer::start_http().await;
    let pool = |urls: [String; 3]| {
        format!(
            "proxy: {{enabled: true, default: {{http: {{pool: ['{}', '{}', '{}'], \
             failover: {{hedge_min_ms: 50, hedge_max_ms: 200}}, \
             health_check: {{method: tcp, interval: 1, fast_interval_ms: 200, rise: 2, fall: 2}}}}}}}}",
            urls[0], urls[1], urls[2]
        )
    };
    let url = format!("http://{}/", target.addr());
    let s = |p: &RealProxy| format!("socks5://{}", p.addr);
    let gw = Gateway::start(&pool([s(&a), s(&b), s(&c)])).await;
    let proxy = format!("socks5h://{}", gw.addr);
    for i in 0..300 {
        if i == 100 {
            a.kill().await;
        }
        let (ok, body, err) = curl(&["-f", "-x", &proxy, &url]).await;
        assert!(
            ok && body.starts_with("hello from target"),
            "request {i}: {err}"
        );
    }
    drop(gw);
    let gw = Gateway::start(&pool([hole.url("socks5"), s(&b), s(&c)])).await;
    let proxy = format!("socks5h://{}", gw.addr);
    for i in 0..300 {
        let (ok, _, err) = curl(&["-f", "-x", &proxy, &url]).await;
        assert!(ok, "blackhole, request {i}: {err}");
    }
    assert!(hole.accepted() >= 1, "the blackhole was tried");
}

/// Out of file descriptors: the accept loop backs off and keeps serving once some
/// are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emfile_storm_does_not_end_the_accept_loop() {
    use tokio::io::AsyncBufReadExt;
    let Some(proxy) = microsocks(None).await else {
        return;
    };
    let (Some(prlimit), Some(curl_bin)) = (
        proxypool_tests::require_binary("prlimit"),
        proxypool_tests::require_binary("curl"),
    ) else {
        return;
    };
    let target = TargetServer::start_http().await;
    // 64 descriptors: the runtime, the listener and a few strategies' files fit; a
    // burst of 100 idle clients does not.
    let mut child = tokio::process::Command::new(prlimit)
        .args(["--nofile=64:64", "--"])
        .arg(proxypool_tests::proxypool_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CRYPTOFEED_PROXY_ENABLED", "true")
        .env(
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__URL",
            format!("socks5://{}", proxy.addr),
        )
        .env("PROXYPOOL_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = proxypool_tests::line_after(&mut lines, "listening on ").await;
    let addr: SocketAddr = listening.split(' ').next().unwrap().parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            idle.push(s);
        }
    }
    let saw_emfile = tokio::time::timeout(proxypool_tests::wait::DEFAULT_DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("accept failed") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(saw_emfile, Ok(true)),
        "the gateway ran out of descriptors"
    );
    drop(idle);
    // Served again once the clients are gone.
    let deadline = std::time::Instant::now() + proxypool_tests::wait::DEFAULT_DEADLINE;
    loop {
        let out = tokio::process::Command::new(&curl_bin)
            .args(["-sf", "--max-time", "5", "-x"])
            .arg(format!("socks5h://{addr}"))
            .arg(format!("http://{}/", target.addr()))
            .output()
            .await
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never served again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "still running");
}

/// Without a user name, cryptofeed's own hosts pick their exchange and, on an `auto`
/// listener, their transport: each request lands on the proxy of the intended route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cryptofeeds_hosts_pick_their_exchange_and_transport_by_the_builtin_table() {
    use proxypool_tests::faults::{Fault, FaultProxy};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Each answers "host unreachable": the request fails, but says which proxy got it.
    let [ws, rest, default] = [
        FaultProxy::start(Fault::Socks5Reply(0x04)).await,
        FaultProxy::start(Fault::Socks5Reply(0x04)).await,
        FaultProxy::start(Fault::Socks5Reply(0x04)).await,
    ];
    let one = |p: &FaultProxy| {
        format!(
            "{{pool: ['{}'], health_check: {{enabled: false}}}}",
            p.url("socks5")
        )
    };
    let gw = Gateway::start(&format!(
        "proxy: {{enabled: true, default: {{http: {}}}, exchanges: {{binance: {{http: {}, websocket: {}}}}}}}",
        one(&default),
        one(&rest),
        one(&ws)
    ))
    .await;
    for (host, proxy) in [
        ("stream.binance.com", &ws),
        ("api.binance.com", &rest),
        ("ws.example.com", &default),
    ] {
        let before = [ws.accepted(), rest.accepted(), default.accepted()];
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let mut req = vec![5, 1, 0, 5, 1, 0, 3, host.len() as u8];
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(&443u16.to_be_bytes());
        s.write_all(&req).await.unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply).await;
        assert_eq!(
            &reply[2..4],
            [5, 0x04],
            "{host}: host unreachable, as the proxy said"
        );
        let after = [ws.accepted(), rest.accepted(), default.accepted()];
        let got: Vec<usize> = (0..3).map(|i| after[i] - before[i]).collect();
        let want: Vec<usize> = [&ws, &rest, &default]
            .iter()
            .map(|p| usize::from(std::ptr::eq(*p, proxy)))
            .collect();
        assert_eq!(got, want, "{host}");
    }
}

#[tokio::test]
async fn status_json_names_members_by_redacted_labels() {
    let b = crate::failover::balancer(
        "proxy: {enabled: true, default: {http: {pool: ['socks5://trader:hunter2secret@127.0.0.1:9', \
         'socks5://other:hunter2secret@127.0.0.1:9'], health_check: {enabled: false}}}}",
    );
    let json = proxypool::testing::status_json(&b, true);
    assert!(
        !json.contains("hunter2secret") && !json.contains("trader"),
        "{json}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ready"], false);
    let members = &v["pools"][0]["members"];
    assert_eq!(members[0]["proxy"], "socks5://***@127.0.0.1:9");
    assert_eq!(members[1]["proxy"], "socks5://***@127.0.0.1:9#2");
    assert_eq!(v["pools"][0]["eligible"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_a_local_tls_server_through_connect() {
    let Some(default) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start_http().await;
    let (tls, _, pem) = proxypool_tests::tls::terminator_with_pem(target.addr()).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), pem).unwrap();
    let gw = Gateway::start(&two_pools(&default, &default)).await;
    let (ok, body, err) = curl(&[
        "--cacert",
        ca.path().to_str().unwrap(),
        "-x",
        &format!("http://{}", gw.addr),
        &format!("https://localhost:{}/secure", tls.port()),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(body.contains("GET /secure HTTP/1.1"), "{body}");
}

/// tokio-tungstenite over tokio-socks through the gateway, with the exchange as the
/// SOCKS5 user, against a local WebSocket echo server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_tungstenite_talks_to_a_websocket_server_through_the_gateway() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (Some(binance), Some(default)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = server.local_addr().unwrap();
    let peer = Arc::new(std::sync::Mutex::new(None));
    let seen = peer.clone();
    tokio::spawn(async move {
        let (s, from) = server.accept().await.unwrap();
        *seen.lock().unwrap() = Some(from.ip());
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if m.is_text() && ws.send(m).await.is_err() {
                return;
            }
        }
    });
    let gw = Gateway::start(&two_pools(&binance, &default)).await;
    let tunnel = tokio_socks::tcp::Socks5Stream::connect_with_password(
        gw.addr,
        ("127.0.0.1", ws_addr.port()),
        "binance",
        "x",
    )
    .await
    .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{ws_addr}/"), tunnel)
        .await
        .unwrap();
    ws.send(Message::text("ticker")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ticker");
    assert_eq!(
        *peer.lock().unwrap(),
        Some(binance.egress),
        "through binance's pool"
    );
}

/// A client learns the upstream from the CONNECT answer's `Proxypool-Upstream`
/// header and reports a ban for it through `POST /report`: the ban then works as in
/// the library (that exchange skips that proxy; others keep it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_reported_through_the_admin_endpoint_moves_that_exchange_off_the_upstream() {
    let (Some(a), Some(b)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start_http().await;
    let gw = Gateway::start(&pool_yaml(&[&a, &b], "")).await;
    let admin = gw.admin;
    let url = format!("http://{}/", target.addr());
    let proxy = format!("http://binance:x@{}", gw.addr);
    let (ok, _, err) = curl(&["-v", "-p", "-x", &proxy, &url]).await;
    assert!(ok, "{err}");
    let upstream = err
        .lines()
        .find_map(|l| l.strip_prefix("< Proxypool-Upstream: "))
        .unwrap_or_else(|| panic!("no upstream header: {err}"))
        .trim()
        .to_owned();
    assert_eq!(
        upstream, "default.http/0",
        "round robin starts with the first"
    );
    let body = format!(
        r#"{{"upstream": "{upstream}", "exchange": "binance", "outcome": "banned", "retry_after_seconds": 600}}"#
    );
    let (ok, _, err) = curl(&[
        "-f",
        "-X",
        "POST",
        "--data",
        &body,
        &format!("http://{admin}/report"),
    ])
    .await;
    assert!(ok, "{err}");
    let status = proxypool::testing::status_json(&gw.balancer, false);
    assert!(
        status.contains(r#""exchange":"binance","reason":"banned""#),
        "{status}"
    );
    // Binance skips member 0 now; another exchange still uses it.
    for _ in 0..4 {
        let before = target.peer_ips().len();
        let (ok, _, err) = curl(&[
            "-f",
            "-x",
            &format!("socks5h://binance:x@{}", gw.addr),
            &url,
        ])
        .await;
        assert!(ok, "{err}");
        assert_eq!(target.peer_ips()[before..], [b.egress]);
    }
    let before = target.peer_ips().len();
    for _ in 0..2 {
        curl(&["-f", "-x", &format!("socks5h://kraken:x@{}", gw.addr), &url]).await;
    }
    assert!(
        target.peer_ips()[before..].contains(&a.egress),
        "kraken still uses it"
    );
    // A bad report is refused with a reason.
    let (ok, _, _) = curl(&[
        "-f",
        "-X",
        "POST",
        "--data",
        "{}",
        &format!("http://{admin}/report"),
    ])
    .await;
    assert!(!ok);
}

/// A ban reported by session key (`{"session": KEY}`) bans the upstream that session
/// sticks to: the session's next connection moves, and sticks to its new upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_reported_by_session_key_moves_the_session() {
    let (Some(a), Some(b)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start_http().await;
    let gw = Gateway::start(&pool_yaml(&[&a, &b], "")).await;
    let admin = gw.admin;
    let url = format!("http://{}/", target.addr());
    let sticky = format!("socks5h://binance+session=acct-7:x@{}", gw.addr);
    let egress = || async {
        let before = target.peer_ips().len();
        let (ok, _, err) = curl(&["-f", "-x", &sticky, &url]).await;
        assert!(ok, "{err}");
        target.peer_ips()[before]
    };
    let first = egress().await;
    assert_eq!(egress().await, first, "sticks");
    let report = |body: &'static str| {
        let url = format!("http://{admin}/report");
        async move {
            let args = ["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"];
            let (ok, code, err) = curl(&[&args[..], &["--data", body, &url]].concat()).await;
            assert!(ok, "{err}");
            code
        }
    };
    assert_eq!(
        report(r#"{"session": "nosuch", "exchange": "binance", "outcome": "banned"}"#).await,
        "404",
        "an unknown session is a clear error"
    );
    let answer = report(
        r#"{"session": "acct-7", "exchange": "binance", "outcome": "rate_limited", "retry_after_seconds": 600}"#,
    )
    .await;
    assert_eq!(answer, "204");
    let moved = egress().await;
    assert_ne!(moved, first, "the banned upstream is skipped");
    assert_eq!(egress().await, moved, "and the session sticks again");
    let status = proxypool::testing::status_json(&gw.balancer, false);
    assert!(
        status.contains(r#""exchange":"binance","reason":"rate_limited""#),
        "{status}"
    );
}

/// With `gateway.admin_token`, a write route takes `Authorization: Bearer TOKEN`:
/// none or a wrong one gets 401 and changes nothing; read routes stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_write_routes() {
    let Some(a) = microsocks(None).await else {
        return;
    };
    let token = "s3cret-admin-token-0123";
    let yaml = format!(
        "{}\ngateway: {{admin_token: '{token}'}}\n",
        pool_yaml(&[&a], "")
    );
    let gw = Gateway::start(&yaml).await;
    let admin = gw.admin;
    let body = r#"{"upstream": "default.http/0", "exchange": "binance", "outcome": "banned"}"#;
    let report = format!("http://{admin}/report");
    for auth in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("Basic czNjcmV0"),
    ] {
        let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"];
        let header;
        if let Some(a) = auth {
            header = format!("Authorization: {a}");
            args.extend(["-H", &header]);
        }
        args.extend(["--data", body, &report]);
        let (_, code, _) = curl(&args).await;
        assert_eq!(code, "401", "{auth:?}");
    }
    assert!(
        gw.balancer.status()[0].1[0].bans.is_empty(),
        "nothing changed"
    );
    let header = format!("Authorization: Bearer {token}");
    let (_, code, _) = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        &header,
        "--data",
        body,
        &report,
    ])
    .await;
    assert_eq!(code, "204");
    assert_eq!(gw.balancer.status()[0].1[0].bans.len(), 1);
    let (ok, text, err) = curl(&["-f", &format!("http://{admin}/metrics")]).await;
    assert!(ok && text.contains("proxypool_bans_total"), "{err}");
}

/// `binance+session=KEY` sticks to one upstream across 20 connections, and moves
/// (once, and then sticks again) when that upstream is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_key_sticks_to_one_upstream_and_moves_when_it_dies() {
    let Some(mut proxies) = crate::failover::three_microsocks().await else {
        return;
    };
    let target = TargetServer::start_http().await;
    let gw = Gateway::start(&pool_yaml(&[&proxies[0], &proxies[1], &proxies[2]], "")).await;
    let url = format!("http://{}/", target.addr());
    let sticky = format!("socks5h://binance+session=book-1:x@{}", gw.addr);
    let plain = format!("socks5h://binance:x@{}", gw.addr);
    // Other traffic turns the round robin between the session's connections.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let before = target.peer_ips().len();
        let (ok, _, err) = curl(&["-f", "-x", &sticky, &url]).await;
        assert!(ok, "{err}");
        seen.push(target.peer_ips()[before]);
        let (ok, _, err) = curl(&["-f", "-x", &plain, &url]).await;
        assert!(ok, "{err}");
    }
    assert!(
        seen.iter().all(|ip| *ip == seen[0]),
        "one upstream: {seen:?}"
    );
    let first = proxies.iter().position(|p| p.egress == seen[0]).unwrap();
    proxies[first].kill().await;
    let mut after = Vec::new();
    for _ in 0..10 {
        let before = target.peer_ips().len();
        let (ok, _, err) = curl(&["-f", "-x", &sticky, &url]).await;
        assert!(
            ok,
            "no failed request when the session's upstream dies: {err}"
        );
        after.push(*target.peer_ips()[before..].last().unwrap());
    }
    assert!(
        !after.contains(&seen[0]),
        "moved off the dead upstream: {after:?}"
    );
    assert!(
        after.iter().all(|ip| *ip == after[0]),
        "and sticks again: {after:?}"
    );
}

/// `/metrics` parses with the official Python client's parser and has a family for
/// each area; the histograms saw the connect; no label or value carries a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_prometheus_client_and_carry_no_credential() {
    use tokio::io::AsyncWriteExt;
    let Some(proxy) = microsocks(Some(("trader", "hunter2secret"))).await else {
        return;
    };
    let Some(python) = python() else {
        return;
    };
    let target = TargetServer::start_http().await;
    let gw = Gateway::start(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://trader:hunter2secret@{}'], \
         health_check: {{method: tcp, interval: 1, fast_interval_ms: 100}}}}}}}}",
        proxy.addr
    ))
    .await;
    let url = format!("http://{}/", target.addr());
    let (ok, _, err) = curl(&["-f", "-x", &format!("socks5h://{}", gw.addr), &url]).await;
    assert!(ok, "{err}");
    let (ok, _, _) = curl(&[
        "-f",
        "-x",
        &format!("http://{}", gw.addr),
        "http://nosuchhost.invalid/",
    ])
    .await;
    assert!(!ok, "a refused connection, for the counter");
    let (pool, _) = proxypool::testing::pool(&gw.balancer, "default.http").unwrap();
    proxypool_tests::assert_eventually!(pool.status()[0].probed, "a probe result");
    let text = gw.balancer.metrics().render();
    assert!(
        !text.contains("hunter2secret") && !text.contains("trader"),
        "{text}"
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/parse_metrics.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The parser names counters without their `_total`.
    // One family for every area the admin endpoint covers.
    for family in [
        "proxypool_proxy_up",
        "proxypool_proxy_breaker_state",
        "proxypool_proxy_active_leases",
        "proxypool_proxy_picks",
        "proxypool_proxy_bans",
        "proxypool_bans",
        "proxypool_proxy_bytes",
        "proxypool_probes",
        "proxypool_connects",
        "proxypool_failovers",
        "proxypool_hedges",
        "proxypool_strategy_generation",
        "proxypool_strategy_reloads",
        "proxypool_strategy_faults",
        "proxypool_pick_duration_seconds",
        "proxypool_connect_duration_seconds",
        "proxypool_gateway_accepted",
        "proxypool_gateway_rejected",
        "proxypool_gateway_tunnels",
        "proxypool_gateway_active_tunnels",
        "proxypool_runtime_alive_tasks",
        "process_open_fds",
        "process_resident_memory_bytes",
    ] {
        assert!(
            families.get(family).is_some(),
            "{family} missing: {families}"
        );
    }
    assert_eq!(families["proxypool_gateway_tunnels"]["type"], "counter");
    assert_eq!(
        families["proxypool_connect_duration_seconds"]["type"],
        "histogram"
    );
    // Two picks (the refused request failed at the destination), one tunnel.
    for (histogram, n) in [("pick", 2), ("connect", 1)] {
        let count =
            format!("proxypool_{histogram}_duration_seconds_count{{pool=\"default.http\"}} {n}\n");
        assert!(text.contains(&count), "{count} in {text}");
    }
    assert!(
        text.contains("proxypool_gateway_rejected_total{listener=")
            && text.contains("protocol=\"http\"} 1"),
        "{text}"
    );
    // The process gauges are the process's own: a live runtime, sockets, memory.
    for gauge in [
        "proxypool_runtime_alive_tasks",
        "process_open_fds",
        "process_resident_memory_bytes",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(gauge)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{gauge} in {text}"))
            .parse()
            .unwrap();
        assert!(value >= 1.0, "{gauge} = {value}");
    }
}
