//! Each fault proxy yields the right fault class.

use std::time::Duration;

use proxypool::config::{ProxyUrl, Transport};
use proxypool::testing::DialContext;
use proxypool::{DialError, Dialer, FaultClass, Target};
use proxypool_tests::faults::{Fault, FaultProxy};

const CTX: DialContext<'static> = DialContext {
    exchange: Some("binance"),
    transport: Transport::Http,
};

async fn dial_fault(fault: Fault, scheme: &str, timeout: Duration) -> DialError {
    let proxy = FaultProxy::start(fault).await;
    let url = ProxyUrl::parse(&proxy.url(scheme)).unwrap();
    // The destination is never reached: the fault proxies never connect anywhere.
    let target = Target::try_new("127.0.0.1", 9).unwrap();
    let r = Dialer::new().dial(&url, timeout, &target, CTX).await;
    match r {
        Ok(_) => panic!("{fault:?} over {scheme} must fail"),
        Err(e) => e,
    }
}

async fn class_of(fault: Fault, scheme: &str) -> FaultClass {
    dial_fault(fault, scheme, Duration::from_secs(10))
        .await
        .class()
}

#[tokio::test]
async fn refused_connection_is_a_proxy_fault() {
    for scheme in ["socks5", "socks4", "http"] {
        let e = dial_fault(Fault::Refuse, scheme, Duration::from_secs(10)).await;
        assert!(
            matches!(e, DialError::ProxyUnreachable { .. }),
            "{scheme}: {e}"
        );
        assert!(e.is_retryable());
    }
}

#[tokio::test(start_paused = true)]
async fn blackholed_proxy_fails_at_timeout_seconds() {
    for scheme in ["socks5h", "socks4a", "http"] {
        let timeout = Duration::from_secs(7);
        let start = tokio::time::Instant::now();
        let e = dial_fault(Fault::Blackhole, scheme, timeout).await;
        let took = start.elapsed();
        assert!(matches!(e, DialError::Timeout { .. }), "{scheme}: {e}");
        assert_eq!(e.class(), FaultClass::Proxy);
        // Paused clock: the bound is exact, not a race with a real timer.
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(50),
            "{took:?}"
        );
    }
}

#[tokio::test]
async fn reset_mid_handshake_is_a_proxy_fault() {
    for scheme in ["socks5", "socks4", "http"] {
        assert_eq!(
            class_of(Fault::ResetMidHandshake, scheme).await,
            FaultClass::Proxy,
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn garbage_reply_is_a_proxy_fault() {
    for scheme in ["socks5", "socks4", "http"] {
        assert_eq!(
            class_of(Fault::Garbage, scheme).await,
            FaultClass::Proxy,
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn each_socks5_reply_code_has_its_class() {
    let cases = [
        (0x01, FaultClass::Destination), // general failure (microsocks: no such name)
        (0x02, FaultClass::Destination), // not allowed by ruleset (for this target)
        (0x03, FaultClass::Destination), // network unreachable
        (0x04, FaultClass::Destination), // host unreachable
        (0x05, FaultClass::Destination), // connection refused
        (0x06, FaultClass::Destination), // TTL expired
        (0x07, FaultClass::Config),      // command not supported
        (0x08, FaultClass::Destination), // address type not supported (this target's)
        (0x42, FaultClass::Proxy),       // not a reply code at all
    ];
    for (code, want) in cases {
        assert_eq!(
            class_of(Fault::Socks5Reply(code), "socks5").await,
            want,
            "reply {code:#04x}"
        );
    }
}

#[tokio::test]
async fn socks5_auth_rejection_is_a_config_fault() {
    let e = dial_fault(Fault::Socks5AuthReject, "socks5", Duration::from_secs(10)).await;
    assert_eq!(e.class(), FaultClass::Config, "{e}");
}

#[tokio::test]
async fn socks5_without_credentials_when_proxy_demands_them_is_a_config_fault() {
    let proxy = FaultProxy::start(Fault::Socks5AuthReject).await;
    let url = ProxyUrl::parse(&proxy.url("socks5")).unwrap();
    let e = Dialer::new()
        .dial(
            &url,
            Duration::from_secs(10),
            &Target::try_new("127.0.0.1", 9).unwrap(),
            CTX,
        )
        .await
        .unwrap_err();
    assert_eq!(e.class(), FaultClass::Config, "{e}");
}

#[tokio::test]
async fn socks4_reject_is_a_destination_fault_and_identd_failures_are_config() {
    assert_eq!(
        class_of(Fault::Socks4Reply(0x5B), "socks4").await,
        FaultClass::Destination
    );
    assert_eq!(
        class_of(Fault::Socks4Reply(0x5C), "socks4").await,
        FaultClass::Config
    );
    assert_eq!(
        class_of(Fault::Socks4Reply(0x5D), "socks4a").await,
        FaultClass::Config
    );
}

#[tokio::test]
async fn connect_status_codes_have_their_class() {
    let cases = [
        (407, FaultClass::Config),
        (403, FaultClass::Destination), // a port or host the proxy's rules deny
        (405, FaultClass::Config),
        (502, FaultClass::Destination),
        (503, FaultClass::Destination),
        (504, FaultClass::Destination),
        (500, FaultClass::Proxy),
    ];
    for (status, want) in cases {
        assert_eq!(
            class_of(Fault::HttpStatus(status), "http").await,
            want,
            "{status}"
        );
    }
}

#[tokio::test]
async fn only_proxy_faults_are_retryable() {
    assert!(
        dial_fault(Fault::Garbage, "socks5", Duration::from_secs(10))
            .await
            .is_retryable()
    );
    assert!(
        !dial_fault(Fault::HttpStatus(502), "http", Duration::from_secs(10))
            .await
            .is_retryable()
    );
    assert!(
        !dial_fault(Fault::HttpStatus(407), "http", Duration::from_secs(10))
            .await
            .is_retryable()
    );
}
