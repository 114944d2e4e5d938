//! Bytes through real proxies: microsocks, tinyproxy, dante, and TLS to an https proxy.

use std::time::Duration;

use proxypool::config::{ConfigBuilder, ProxyEntry, ProxyUrl, Transport};
use proxypool::testing::DialContext;
use proxypool::{Dialer, FaultClass, ProxyStream, Target};
use proxypool_tests::servers::{RealProxy, dante, microsocks, tinyproxy};
use proxypool_tests::target::{GREETING, TargetServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(10);

fn ctx() -> DialContext<'static> {
    DialContext {
        exchange: Some("binance"),
        transport: Transport::Http,
    }
}

/// Reads the greeting, sends a line, reads its echo.
async fn exchange_bytes(mut s: ProxyStream) {
    let mut greeting = vec![0u8; GREETING.len()];
    s.read_exact(&mut greeting).await.expect("greeting");
    assert_eq!(greeting, GREETING);
    s.write_all(b"ping 123\n").await.unwrap();
    let mut echo = [0u8; 9];
    s.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"ping 123\n");
}

async fn dial_through(
    url: &str,
    target: &TargetServer,
) -> Result<ProxyStream, proxypool::DialError> {
    let url = ProxyUrl::parse(url).unwrap();
    Dialer::new()
        .dial(&url, TIMEOUT, &Target::from(target.addr()), ctx())
        .await
}

fn assert_carried_by(target: &TargetServer, proxy: &RealProxy) {
    assert_eq!(
        target.peer_ips(),
        [proxy.egress],
        "the target must see the proxy's egress address, not a direct connection"
    );
}

#[tokio::test]
async fn bytes_round_trip_through_microsocks_without_auth() {
    let Some(proxy) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let s = dial_through(&format!("socks5://{}", proxy.addr), &target)
        .await
        .unwrap();
    exchange_bytes(s).await;
    assert_carried_by(&target, &proxy);
}

#[tokio::test]
async fn bytes_round_trip_through_microsocks_with_user_and_password() {
    let Some(proxy) = microsocks(Some(("trader", "s3cret"))).await else {
        return;
    };
    let target = TargetServer::start().await;
    let s = dial_through(&format!("socks5://trader:s3cret@{}", proxy.addr), &target)
        .await
        .unwrap();
    exchange_bytes(s).await;
    assert_carried_by(&target, &proxy);
}

#[tokio::test]
async fn microsocks_wrong_password_is_a_config_fault() {
    let Some(proxy) = microsocks(Some(("trader", "s3cret"))).await else {
        return;
    };
    let target = TargetServer::start().await;
    let e = dial_through(&format!("socks5://trader:wrong@{}", proxy.addr), &target)
        .await
        .unwrap_err();
    assert_eq!(e.class(), FaultClass::Config, "{e}");
    assert!(target.peer_ips().is_empty());
}

#[tokio::test]
async fn socks5h_lets_the_proxy_resolve_the_name() {
    let Some(proxy) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let url = ProxyUrl::parse(&format!("socks5h://{}", proxy.addr)).unwrap();
    let s = Dialer::new()
        .dial(
            &url,
            TIMEOUT,
            &Target::try_new("localhost", target.addr().port()).unwrap(),
            ctx(),
        )
        .await
        .unwrap();
    exchange_bytes(s).await;
    assert_carried_by(&target, &proxy);
}

#[tokio::test]
async fn bytes_round_trip_through_tinyproxy_connect_with_basic_auth() {
    let Some(proxy) = tinyproxy("trader", "s3cret").await else {
        return;
    };
    let target = TargetServer::start().await;
    let s = dial_through(&format!("http://trader:s3cret@{}", proxy.addr), &target)
        .await
        .unwrap();
    exchange_bytes(s).await;
    assert_carried_by(&target, &proxy);
}

#[tokio::test]
async fn tinyproxy_without_credentials_is_a_407_config_fault() {
    let Some(proxy) = tinyproxy("trader", "s3cret").await else {
        return;
    };
    let target = TargetServer::start().await;
    let e = dial_through(&format!("http://{}", proxy.addr), &target)
        .await
        .unwrap_err();
    assert_eq!(e.class(), FaultClass::Config, "{e}");
    assert!(e.to_string().contains("407"), "{e}");
}

#[tokio::test]
async fn bytes_round_trip_through_dante_socks4_and_socks4a() {
    let Some(proxy) = dante().await else { return };
    let target = TargetServer::start().await;
    let s = dial_through(&format!("socks4://{}", proxy.addr), &target)
        .await
        .unwrap();
    exchange_bytes(s).await;
    // Dante answers SOCKS4a name requests with 0x5B here, so 4a gets an IP literal,
    // which goes out as plain SOCKS4; the name form is covered by the fault proxy.
    let s = dial_through(&format!("socks4a://{}", proxy.addr), &target)
        .await
        .unwrap();
    exchange_bytes(s).await;
    assert_eq!(target.peer_ips(), [proxy.egress, proxy.egress]);
}

#[tokio::test]
async fn bytes_round_trip_through_dante_socks5() {
    let Some(proxy) = dante().await else { return };
    let target = TargetServer::start().await;
    let s = dial_through(&format!("socks5://{}", proxy.addr), &target)
        .await
        .unwrap();
    exchange_bytes(s).await;
    assert_carried_by(&target, &proxy);
}

#[tokio::test]
async fn tinyproxy_refused_destination_is_a_destination_fault() {
    let Some(proxy) = tinyproxy("trader", "s3cret").await else {
        return;
    };
    let closed = proxypool_tests::servers::free_port();
    let url = ProxyUrl::parse(&format!("http://trader:s3cret@{}", proxy.addr)).unwrap();
    let e = Dialer::new()
        .dial(
            &url,
            TIMEOUT,
            &Target::try_new("127.0.0.1", closed).unwrap(),
            ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.class(), FaultClass::Destination, "{e}");
}

#[tokio::test]
async fn dante_socks4_refused_destination_is_a_destination_fault() {
    let Some(proxy) = dante().await else { return };
    // A port nothing listens on: the proxy answers 0x5B.
    let closed = proxypool_tests::servers::free_port();
    let url = ProxyUrl::parse(&format!("socks4://{}", proxy.addr)).unwrap();
    let e = Dialer::new()
        .dial(
            &url,
            TIMEOUT,
            &Target::try_new("127.0.0.1", closed).unwrap(),
            ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.class(), FaultClass::Destination, "{e}");
}

#[tokio::test]
async fn microsocks_refused_destination_is_a_destination_fault() {
    let Some(proxy) = microsocks(None).await else {
        return;
    };
    let closed = proxypool_tests::servers::free_port();
    let url = ProxyUrl::parse(&format!("socks5://{}", proxy.addr)).unwrap();
    let e = Dialer::new()
        .dial(
            &url,
            TIMEOUT,
            &Target::try_new("127.0.0.1", closed).unwrap(),
            ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.class(), FaultClass::Destination, "{e}");
}

/// An https proxy: TLS to the proxy (a local terminator with a fresh CA), then
/// CONNECT to tinyproxy behind it.
#[tokio::test]
async fn bytes_round_trip_through_an_https_proxy() {
    let Some(proxy) = tinyproxy("trader", "s3cret").await else {
        return;
    };
    let target = TargetServer::start().await;
    let (tls_addr, roots) = proxypool_tests::tls::terminator(proxy.addr).await;
    let dialer = Dialer::with_roots(roots);
    let url = ProxyUrl::parse(&format!(
        "https://trader:s3cret@localhost:{}",
        tls_addr.port()
    ))
    .unwrap();
    let s = dialer
        .dial(&url, TIMEOUT, &Target::from(target.addr()), ctx())
        .await
        .unwrap();
    exchange_bytes(s).await;
    assert_carried_by(&target, &proxy);
}

#[tokio::test]
async fn https_proxy_with_an_untrusted_certificate_is_a_proxy_fault() {
    let Some(proxy) = tinyproxy("trader", "s3cret").await else {
        return;
    };
    let target = TargetServer::start().await;
    let (tls_addr, _roots) = proxypool_tests::tls::terminator(proxy.addr).await;
    let url = ProxyUrl::parse(&format!("https://localhost:{}", tls_addr.port())).unwrap();
    let e = Dialer::new()
        .dial(&url, TIMEOUT, &Target::from(target.addr()), ctx())
        .await
        .unwrap_err();
    assert_eq!(e.class(), FaultClass::Proxy, "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[tokio::test]
async fn route_through_a_configured_pool_skips_a_dead_member() {
    let Some(proxy) = microsocks(None).await else {
        return;
    };
    let dead =
        proxypool_tests::faults::FaultProxy::start(proxypool_tests::faults::Fault::Refuse).await;
    let target = TargetServer::start().await;
    let config = ConfigBuilder::new()
        .enabled(true)
        .exchange_proxy(
            "binance",
            Transport::Websocket,
            ProxyEntry::pool([dead.url("socks5"), format!("socks5://{}", proxy.addr)]),
        )
        .build()
        .unwrap();
    let balancer = proxypool::Balancer::try_new(config, Dialer::new()).unwrap();
    let c = balancer
        .connect(
            Some("BINANCE"),
            Transport::Websocket,
            &Target::from(target.addr()),
        )
        .await
        .unwrap();
    assert_eq!(c.via().unwrap().port(), proxy.addr.port());
    let (stream, lease) = c.into_parts();
    let lease = lease.expect("a pooled connection holds a lease");
    let (pool, _) = proxypool::testing::pool(&balancer, "exchanges.binance.websocket").unwrap();
    assert_eq!(pool.members()[lease.id() as usize].active(), 1);
    exchange_bytes(stream).await;
    assert_carried_by(&target, &proxy);
    drop(lease);
    assert_eq!(pool.members()[1].active(), 0);
}

#[tokio::test]
async fn dial_logs_cryptofeeds_line() {
    let Some(proxy) = microsocks(Some(("trader", "s3cret"))).await else {
        return;
    };
    let target = TargetServer::start().await;
    let (logs, _guard) = proxypool_tests::capture_logs();
    let url = ProxyUrl::parse(&format!("socks5://trader:s3cret@{}", proxy.addr)).unwrap();
    let dialer = Dialer::new();
    let t = Target::from(target.addr());
    let _s = dialer.dial(&url, TIMEOUT, &t, ctx()).await.unwrap();
    let ctx_default = DialContext {
        exchange: None,
        transport: Transport::Websocket,
    };
    let _s = dialer.dial(&url, TIMEOUT, &t, ctx_default).await.unwrap();
    let out = logs.contents();
    let want = format!(
        "proxy: transport=http exchange=binance scheme=socks5 endpoint={}",
        proxy.addr
    );
    assert!(out.contains(&want), "{out}");
    assert!(out.contains(" INFO "), "{out}");
    let want = format!(
        "proxy: transport=websocket exchange=default scheme=socks5 endpoint={}",
        proxy.addr
    );
    assert!(out.contains(&want), "{out}");
}

#[test]
fn dial_future_is_send() {
    fn is_send<T: Send>(_: T) {}
    let (d, u, t) = (
        Dialer::new(),
        ProxyUrl::parse("socks5://h:1").unwrap(),
        Target::try_new("h", 1).unwrap(),
    );
    is_send(d.dial(&u, TIMEOUT, &t, ctx()));
}
