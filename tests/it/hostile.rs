//! Hostile input against the gateway: no client may take the pool down, reach the
//! gateway itself, or hold what it should not. Each test failed before its fix.

use std::sync::atomic::Ordering;
use std::time::Duration;

use proxypool::balancer::BreakerState;
use proxypool::balancer::DestinationGuard;
use proxypool::gateway::Settings;
use proxypool::{DialError, Dialer, Target};
use proxypool_tests::assert_eventually;
use proxypool_tests::faults::{Fault, FaultProxy};
use proxypool_tests::servers::{microsocks, pool_yaml};
use proxypool_tests::target::TargetServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::gateway::{Gateway, curl};

const ROUTE: &str = "default.http";

fn breaker_opens(gw: &Gateway) -> u64 {
    let (pool, _) = proxypool::testing::pool(&gw.balancer, ROUTE).unwrap();
    pool.counters().breaker_opened.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_bad_name_opens_no_breaker_and_costs_other_clients_nothing() {
    let (Some(a), Some(b), Some(c)) = (
        microsocks(None).await,
        microsocks(None).await,
        microsocks(None).await,
    ) else {
        return;
    };
    let target = TargetServer::start_http().await;
    let gw = Gateway::start(&pool_yaml(&[&a, &b, &c], "")).await;
    let socks = format!("socks5h://{}", gw.addr);
    let http = format!("http://{}", gw.addr);
    let good = format!("http://{}/ok", target.addr());
    for i in 0..12 {
        // microsocks answers 0x01 for a name it cannot resolve.
        let (ok, _, err) = curl(&["-x", &socks, "http://no-such-host.invalid/"]).await;
        assert!(!ok && err.contains("SOCKS5"), "{i}: {err}");
        let (ok, _, err) = curl(&["-p", "-x", &http, "http://no-such-host.invalid/"]).await;
        assert!(
            !ok && err.contains("502"),
            "{i}: a destination error: {err}"
        );
        let (ok, body, err) = curl(&["-x", &socks, &good]).await;
        assert!(
            ok && body.contains("GET /ok"),
            "{i}: the other client failed: {err}"
        );
    }
    assert_eq!(breaker_opens(&gw), 0, "no breaker opened");
    for (route, members) in gw.balancer.status() {
        for m in members {
            assert!(
                m.eligible && m.breaker == BreakerState::Closed,
                "{route}: {m}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_fails_targets_others_reach_is_charged_on_the_second_target() {
    let Some(good) = microsocks(None).await else {
        return;
    };
    let bad = FaultProxy::start(Fault::Socks5Reply(0x01)).await;
    let (t1, t2) = (TargetServer::start().await, TargetServer::start().await);
    let bal = crate::failover::balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}', 'socks5://{}'], \
         health_check: {{enabled: false}}}}}}}}",
        bad.url("socks5"),
        good.addr
    ));
    let (pool, _) = proxypool::testing::pool(&bal, ROUTE).unwrap();
    crate::failover::connect(&bal, None, &t1.addr().into())
        .await
        .expect("the second proxy reaches it");
    assert_eq!(
        pool.members()[0].breaker(),
        BreakerState::Closed,
        "one target proves nothing"
    );
    // Round robin brings the bad one back within two connects.
    crate::failover::connect(&bal, None, &t2.addr().into())
        .await
        .unwrap();
    crate::failover::connect(&bal, None, &t2.addr().into())
        .await
        .unwrap();
    assert!(
        matches!(pool.members()[0].breaker(), BreakerState::Open { .. }),
        "failed a second target the other proxy reached: {}",
        pool.status()[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_loser_that_was_only_slow_keeps_its_breaker_closed() {
    let Some(fast) = microsocks(None).await else {
        return;
    };
    // Its first handshake is slow, as a loaded machine makes one; the rest are not.
    let slow_once = FaultProxy::start(Fault::SlowFirst(Duration::from_secs(2))).await;
    let target = TargetServer::start().await;
    let bal = crate::failover::balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}', 'socks5://{}'], \
         failover: {{hedge_min_ms: 50, hedge_max_ms: 50}}, health_check: {{enabled: false}}}}}}}}",
        slow_once.url("socks5"),
        fast.addr
    ));
    let (pool, _) = proxypool::testing::pool(&bal, ROUTE).unwrap();
    let to: Target = target.addr().into();
    let first = crate::failover::connect(&bal, None, &to).await.unwrap();
    assert_eq!(
        first.via().unwrap().to_string(),
        format!("socks5://{}", fast.addr),
        "the hedge won"
    );
    // Meanwhile the slow proxy serves others at once.
    for _ in 0..4 {
        crate::failover::connect(&bal, None, &to).await.unwrap();
    }
    // The loser is judged once its grace is over and its lease goes.
    assert_eventually!(pool.members()[0].active() == 0, "the loser to be judged");
    assert_eq!(
        pool.counters().breaker_opened.load(Ordering::Relaxed),
        0,
        "{}",
        pool.status()[0]
    );
    assert_eq!(pool.members()[0].breaker(), BreakerState::Closed);
}

/// Writes `request` raw and returns the first line of the answer.
async fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_addresses_are_refused_and_loops_are_cut() {
    let target = TargetServer::start_http().await;
    let gw = Gateway::start("proxy: {enabled: false}").await;
    let admin = gw.admin;
    // The admin endpoint of this test's gateway is another listener; refuse it too,
    // once the gateway has set its own guard.
    assert_eventually!(
        gw.balancer.destination_guard().is_some(),
        "the gateway's guard"
    );
    gw.balancer
        .set_destination_guard(Some(DestinationGuard::new(vec![gw.addr, admin], true)));
    let http = format!("http://{}", gw.addr);
    for own in [gw.addr, admin] {
        let (ok, _, err) = curl(&["-p", "-x", &http, &format!("http://{own}/status")]).await;
        assert!(!ok && err.contains("403"), "{own}: {err}");
        let (ok, _, err) = curl(&[
            "-x",
            &format!("socks5h://{}", gw.addr),
            &format!("http://{own}/status"),
        ])
        .await;
        assert!(!ok, "{own} over SOCKS5: {err}");
    }
    let spelled = format!("http://127.1:{}/", gw.addr.port());
    let (ok, _, err) = curl(&["-p", "-x", &http, &spelled]).await;
    assert!(!ok && err.contains("403"), "another spelling: {err}");
    // 400 nested CONNECTs in one write: the first to the gateway itself is refused.
    let one = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", gw.addr);
    let answer = raw_status(gw.addr, one.repeat(400).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let (ok, body, err) = curl(&["-x", &http, &format!("http://{}/fine", target.addr())]).await;
    assert!(ok && body.contains("GET /fine"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_listener_refuses_private_destinations_unless_allowed() {
    let target = TargetServer::start_http().await;
    let url = format!("http://{}/private", target.addr());
    let via_localhost = format!("http://localhost:{}/private", target.addr().port());
    for allow in [false, true] {
        let settings = Settings {
            allow_private: allow,
            ..Settings::default()
        };
        let gw = Gateway::start_with("proxy: {enabled: false}", None, "0.0.0.0:0", settings).await;
        let http = format!("http://{}", gw.addr);
        for dest in [&url, &via_localhost] {
            let (ok, body, err) = curl(&["-p", "-x", &http, dest]).await;
            if allow {
                assert!(ok && body.contains("GET /private"), "{dest}: {err}");
            } else {
                assert!(!ok && err.contains("403"), "{dest}: {err}");
            }
        }
    }
    // On a direct route the check is made after resolution.
    let dialer = Dialer::new();
    dialer.set_guard(Some(DestinationGuard::new(Vec::new(), false)));
    let e = dialer
        .dial_direct(
            &Target::try_new("localhost", target.addr().port()).unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, DialError::Forbidden { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_multibyte_characters_gets_a_reply_not_a_panic() {
    let Some(p) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start_http().await;
    let yaml = format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}'], health_check: {{enabled: false}}}}}}}}\n\
         gateway: {{routes: {{binance: ['*.binance.com']}}}}\n",
        p.addr
    );
    let gw = Gateway::start(&yaml).await;
    for _ in 0..3 {
        let r = tokio_socks::tcp::Socks5Stream::connect(gw.addr, ("aéinance.com", 80)).await;
        let e = r.expect_err("no such host");
        assert!(
            !matches!(e, tokio_socks::Error::Io(_)),
            "a SOCKS reply, not a dropped connection: {e}"
        );
    }
    let (ok, _, err) = curl(&[
        "-x",
        &format!("socks5h://{}", gw.addr),
        &format!("http://{}/", target.addr()),
    ])
    .await;
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_spellings_route_as_the_host_they_spell() {
    let (Some(binance), Some(default)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start_http().await;
    let yaml = format!(
        "{}\ngateway: {{routes: {{binance: ['127.0.0.1', 'localhost']}}}}\n",
        crate::gateway::two_pools(&binance, &default)
    );
    let gw = Gateway::start(&yaml).await;
    let port = target.addr().port();
    let socks = format!("socks5h://{}", gw.addr);
    for host in ["127.1", "0x7f.0.0.1", "localhost.", "127.0.0.1"] {
        let before = target.peer_ips().len();
        let (ok, _, err) = curl(&["-x", &socks, &format!("http://{host}:{port}/")]).await;
        assert!(ok, "{host}: {err}");
        assert_eq!(
            target.peer_ips()[before..],
            [binance.egress],
            "{host} took the binance route"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_key_longer_than_64_bytes_is_refused_with_the_reason() {
    let Some(p) = microsocks(None).await else {
        return;
    };
    let gw = Gateway::start(&pool_yaml(&[&p], "")).await;
    let target = TargetServer::start_http().await;
    let long = "k".repeat(65);
    let proxy = format!("http://binance+session={long}:x@{}", gw.addr);
    let (ok, _, err) = curl(&[
        "-p",
        "-v",
        "-x",
        &proxy,
        &format!("http://{}/", target.addr()),
    ])
    .await;
    assert!(!ok && err.contains("400"), "{err}");
    assert!(err.contains("session key longer than 64 bytes"), "{err}");
    let fits = format!("http://binance+session={}:x@{}", "k".repeat(64), gw.addr);
    let (ok, _, err) = curl(&["-p", "-x", &fits, &format!("http://{}/", target.addr())]).await;
    assert!(ok, "{err}");
}

/// An origin that answers any request with an endless body, and says when the
/// gateway's side of it closed.
async fn endless_origin() -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 1024];
        let _ = s.read(&mut head).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
            .await;
        let chunk = vec![b'x'; 64 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
        let _ = tx.send(());
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_response_nobody_reads_is_closed_at_the_idle_time() {
    let (origin, closed) = endless_origin().await;
    let settings = Settings {
        idle_timeout: Duration::from_secs(1),
        ..Settings::default()
    };
    let gw = Gateway::start_with("proxy: {enabled: false}", None, "127.0.0.1:0", settings).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!("GET http://{origin}/big HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    client.write_all(req.as_bytes()).await.unwrap();
    // The client never reads.
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the gateway let go of the stuck response")
        .unwrap();
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_waits_the_handshake_timeout_for_its_next_head() {
    let target = TargetServer::start_http().await;
    let settings = Settings {
        handshake_timeout: Duration::from_millis(300),
        ..Settings::default()
    };
    let gw = Gateway::start_with("proxy: {enabled: false}", None, "127.0.0.1:0", settings).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    let t = target.addr();
    let req = format!("GET http://{t}/one HTTP/1.1\r\nHost: {t}\r\n\r\n");
    client.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = client.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle is 600 s; the wait for the next head is the handshake timeout.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    closed
        .await
        .expect("closed at the handshake timeout, not the idle time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_handshakes_than_its_cap() {
    let target = TargetServer::start_http().await;
    let settings = Settings {
        max_handshakes_per_client: 4,
        ..Settings::default()
    };
    let gw = Gateway::start_with("proxy: {enabled: false}", None, "127.0.0.1:0", settings).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        // One byte: in handshake, and accepted for sure before the next.
        s.write_all(&[5]).await.unwrap();
        idle.push(s);
    }
    let mut fifth = TcpStream::connect(gw.addr).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), fifth.read(&mut b))
        .await
        .expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    drop(idle);
    let http = format!("http://{}", gw.addr);
    let deadline = std::time::Instant::now() + proxypool_tests::wait::DEFAULT_DEADLINE;
    while !curl(&["-x", &http, &format!("http://{}/", target.addr())])
        .await
        .0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never served once the handshakes went"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_past_the_handshake_timeout_is_answered_not_closed() {
    let hole = FaultProxy::start(Fault::Blackhole).await;
    let yaml = format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}'], timeout_seconds: 30, \
         failover: {{hedge: false}}, health_check: {{enabled: false}}}}}}}}",
        hole.url("socks5")
    );
    let settings = Settings {
        handshake_timeout: Duration::from_millis(300),
        ..Settings::default()
    };
    let gw = Gateway::start_with(&yaml, None, "127.0.0.1:0", settings).await;
    let answer = raw_status(
        gw.addr,
        b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    let e = tokio_socks::tcp::Socks5Stream::connect(gw.addr, ("192.0.2.1", 443))
        .await
        .expect_err("no tunnel");
    assert!(
        matches!(e, tokio_socks::Error::TtlExpired),
        "SOCKS5 0x06: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_socks5_gets_the_reply_its_step_allows() {
    let gw = Gateway::start("proxy: {enabled: false}").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&[5, 0]).await.unwrap();
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await.expect("a method reply");
    assert_eq!(reply, [5, 0xff], "no acceptable method");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // A good greeting, then a request with an address type that does not exist.
    s.write_all(&[5, 1, 0]).await.unwrap();
    s.read_exact(&mut reply).await.unwrap();
    s.write_all(&[5, 1, 0, 9, 1, 2, 3, 4, 0, 80]).await.unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head)
        .await
        .expect("a reply to the request");
    assert_eq!(head[0], 5);
    assert_ne!(head[1], 0, "a failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_sent_to_clients_name_no_upstream() {
    let refuse = FaultProxy::start(Fault::Refuse).await;
    let gw = Gateway::start(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['{}'], health_check: {{enabled: false}}}}}}}}",
        refuse.url("socks5")
    ))
    .await;
    let (ok, _, err) = curl(&[
        "-p",
        "-v",
        "-x",
        &format!("http://{}", gw.addr),
        "http://192.0.2.1/",
    ])
    .await;
    assert!(!ok && err.contains("503"), "{err}");
    let port = refuse.addr().port().to_string();
    assert!(
        !err.contains(&format!(":{port}")),
        "the upstream's address: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_name_only_known_exchanges() {
    let Some(p) = microsocks(None).await else {
        return;
    };
    let gw = Gateway::start(&pool_yaml(&[&p], "")).await;
    let admin = gw.admin;
    let post = |body: String| async move {
        let mut s = TcpStream::connect(admin).await.unwrap();
        let req = format!(
            "POST /report HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let answer = post(
        r#"{"exchange": "no-such-exchange-1", "outcome": "banned", "upstream": "default.http/0"}"#
            .into(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = post(
        r#"{"exchange": "binance", "outcome": "banned", "upstream": "default.http/0"}"#.into(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_ends_the_old_ones_use_on_kept_alive_connections() {
    let target = TargetServer::start_http().await;
    let yaml = |pw: &str| {
        format!(
            "proxy: {{enabled: false}}\ngateway: {{admin: '127.0.0.1:0', listen: [{{addr: '127.0.0.1:0', auth: {{password: '{pw}'}}}}]}}\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, yaml("old-password")).unwrap();
    let balancer = std::sync::Arc::new(crate::failover::balancer(&yaml("old-password")));
    let gateway = proxypool::gateway::Gateway::builder(balancer.clone())
        .configured(balancer.config().gateway())
        .reload_from(Some(file.clone()))
        .bind()
        .await
        .unwrap();
    let addr = gateway.local_addrs()[0].0;
    let reloader = gateway.reloader().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(gateway.run(stopped));
    // "default:old-password" in Basic.
    let t = target.addr();
    let request = format!(
        "GET http://{t}/again HTTP/1.1\r\nHost: {t}\r\nProxy-Authorization: Basic ZGVmYXVsdDpvbGQtcGFzc3dvcmQ=\r\n\r\n"
    );
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let mut ask = async |client: &mut TcpStream| {
        client.write_all(request.as_bytes()).await.unwrap();
        let n = client.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let first = ask(&mut client).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    std::fs::write(&file, yaml("new-password")).unwrap();
    reloader.reload("test").await.unwrap();
    let deadline = std::time::Instant::now() + proxypool_tests::wait::DEFAULT_DEADLINE;
    loop {
        let status = ask(&mut client).await;
        if status.starts_with("HTTP/1.1 407") {
            break;
        }
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(
            std::time::Instant::now() < deadline,
            "the old password kept working"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_get_keeps_its_chunked_body() {
    // An origin that answers with the bytes of the body it was sent.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The head, then a chunked body to its last chunk if the head says so.
        let done = |got: &[u8]| {
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                return false;
            };
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            !head.contains("transfer-encoding: chunked") || got.ends_with(b"0\r\n\r\n")
        };
        while !done(&got) {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", got.len());
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&got).await;
    });
    let gw = Gateway::start("proxy: {enabled: false}").await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET http://{origin}/search HTTP/1.1\r\nHost: {origin}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    client.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(5).any(|w| w == b"hello") {
        let n = tokio::time::timeout(Duration::from_secs(20), client.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
}

/// One `serve` under `nofile=64` over a pool of two, tunnels opened one by one until
/// the descriptors run out, after `prelude` idle clients (so that both parities of
/// the last free descriptors are met): the SOCKS replies seen, and the breakers that
/// opened.
async fn exhaust_descriptors(prelude: usize) -> Option<(usize, u64)> {
    use tokio::io::AsyncBufReadExt;
    let (Some(a), Some(b)) = (microsocks(None).await, microsocks(None).await) else {
        return None;
    };
    let prlimit = proxypool_tests::require_binary("prlimit")?;
    let target = TargetServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pool.yaml");
    std::fs::write(
        &file,
        format!(
            "{}\ngateway: {{listen: [{{addr: '127.0.0.1:0'}}], admin: '127.0.0.1:0'}}\n",
            pool_yaml(&[&a, &b], "")
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(prlimit)
        .args(["--nofile=64:64", "--"])
        .arg(proxypool_tests::proxypool_bin())
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .env("PROXYPOOL_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = proxypool_tests::line_after(&mut lines, "listening on ").await;
    let addr: std::net::SocketAddr = listening.split(' ').next().unwrap().parse().unwrap();
    let admin: std::net::SocketAddr = proxypool_tests::line_after(&mut lines, "admin on ")
        .await
        .parse()
        .unwrap();
    // The admin connection, opened now, while there are descriptors for it.
    let mut scrape = TcpStream::connect(admin).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..prelude {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[5]).await.unwrap();
        held.push(s);
    }
    let mut tunnels = Vec::new();
    let mut refused = 0;
    for _ in 0..64 {
        let open = tokio_socks::tcp::Socks5Stream::connect(addr, target.addr());
        match tokio::time::timeout(Duration::from_secs(3), open).await {
            Ok(Ok(t)) => tunnels.push(t),
            // Accepted, but no descriptor left for the upstream: a reply.
            Ok(Err(tokio_socks::Error::GeneralSocksServerFailure)) => {
                refused += 1;
                break;
            }
            // Not even accepted, or closed: out of descriptors at accept.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    // A scrape needs no new descriptor on the gateway's side: it was accepted already.
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), scrape.read_to_string(&mut text)).await;
    let opened = text
        .lines()
        .filter(|l| l.starts_with("proxypool_breaker_opened_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(text.contains("proxypool_breaker_opened_total"), "{text}");
    drop((tunnels, held));
    Some((refused, opened))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_opens_no_breaker() {
    let mut refused = 0;
    for prelude in [0, 1] {
        let Some((r, opened)) = exhaust_descriptors(prelude).await else {
            return;
        };
        assert_eq!(
            opened, 0,
            "a breaker opened on our own shortage (prelude {prelude})"
        );
        refused += r;
    }
    assert!(refused > 0, "no connect ever met the shortage at dial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_serves_64_connections_at_once() {
    let gw = Gateway::start("proxy: {enabled: false}").await;
    let admin = gw.admin;
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(admin).await.unwrap());
    }
    let mut next = TcpStream::connect(admin).await.unwrap();
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    // The 64 that say nothing hold every place (for their 10 s read timeout): the
    // 65th waits in the backlog. Half a second of silence shows it waits.
    let early = tokio::time::timeout(Duration::from_millis(500), next.read(&mut buf)).await;
    assert!(early.is_err(), "answered past the cap: {early:?}");
    drop(idle.pop());
    let n = tokio::time::timeout(Duration::from_secs(20), next.read(&mut buf))
        .await
        .expect("served once a place is free")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
}
