//! Each active probe method detects a failure and a recovery, against real proxies.

use proxypool::Balancer;
use proxypool::config::ConfigBuilder;
use proxypool_tests::assert_eventually;
use proxypool_tests::servers::microsocks;
use proxypool_tests::target::{HttpStatusServer, TargetServer};

use crate::failover::balancer;

const ROUTE: &str = "default.http";

fn healthy(b: &Balancer) -> bool {
    let s = &proxypool::testing::pool(b, ROUTE).unwrap().0.status()[0];
    s.healthy && s.probed
}

fn down(b: &Balancer) -> bool {
    !proxypool::testing::pool(b, ROUTE).unwrap().0.status()[0].healthy
}

/// Fast knobs so that a test sees transitions within a second or two.
const FAST: &str =
    "interval: 1, fast_interval_ms: 100, timeout_seconds: 1, retry_count: 1, rise: 2, fall: 2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_probe_detects_a_dead_proxy_and_its_return() {
    let Some(mut p) = microsocks(None).await else {
        return;
    };
    let b = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}'], health_check: {{method: tcp, {FAST}}}}}}}}}",
        p.addr
    ));
    assert_eventually!(healthy(&b), "the first check");
    p.kill().await;
    assert_eventually!(down(&b), "tcp probes to fail");
    p.restart().await;
    assert_eventually!(healthy(&b), "tcp probes to succeed again");
}

/// A stopped proxy still accepts TCP: a `tcp` probe calls it up; the default probe
/// (greeting) waits for its answer, and finds it down, with no target named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_probe_finds_a_stopped_proxy_down_and_tcp_does_not() {
    let Some(p) = microsocks(None).await else {
        return;
    };
    let pool = |method: &str| {
        format!(
            "{{pool: ['socks5://{}'], health_check: {{{method}{FAST}}}}}",
            p.addr
        )
    };
    let b = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {}, websocket: {}}}}}",
        pool(""),
        pool("method: tcp, ")
    ));
    let up = |route: &str| {
        let s = &proxypool::testing::pool(&b, route).unwrap().0.status()[0];
        s.healthy && s.probed
    };
    assert_eventually!(
        up("default.http") && up("default.websocket"),
        "the first checks"
    );
    p.pause(true);
    assert_eventually!(down(&b), "the greeting to go unanswered");
    assert!(up("default.websocket"), "a tcp probe still calls it up");
    p.pause(false);
    assert_eventually!(healthy(&b), "greetings answered again");
}

/// A connect that finds a proxy silent counts against its health at once, so a hung
/// proxy is down after one failed probe less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_finds_a_proxy_silent_counts_against_its_health() {
    let (Some(hung), Some(good)) = (microsocks(None).await, microsocks(None).await) else {
        return;
    };
    let target = TargetServer::start().await;
    // fall 1, and probes that take 30 s to say anything: only the connect can tell.
    let b = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}', 'socks5://{}'], \
         failover: {{hedge_min_ms: 50, hedge_max_ms: 50}}, health_check: {{interval: 1, \
         fast_interval_ms: 100, timeout_seconds: 30, retry_count: 1, rise: 1, fall: 1}}}}}}}}",
        hung.addr, good.addr
    ));
    assert_eventually!(healthy(&b), "the first check");
    hung.pause(true);
    let to = target.addr().into();
    crate::failover::connect(&b, None, &to)
        .await
        .expect("the hedge carries it");
    assert_eventually!(down(&b), "the silence to count");
    hung.pause(false);
}

/// A tunnel whose upstream stops answering its client counts against that upstream's
/// health at once, where probes that take 30 s to say anything could not tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_that_goes_silent_counts_against_its_upstream() {
    use proxypool::gateway::Settings;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(hung) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let yaml = format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}'], health_check: {{interval: 1, \
         fast_interval_ms: 100, timeout_seconds: 30, retry_count: 1, rise: 1, fall: 1}}}}}}}}",
        hung.addr
    );
    let settings = Settings {
        silent_tunnel: std::time::Duration::from_millis(300),
        ..Settings::default()
    };
    let gw = crate::gateway::Gateway::start_with(&yaml, None, "127.0.0.1:0", settings).await;
    let b = &gw.balancer;
    assert_eventually!(healthy(b), "the first check");
    let mut tunnel = tokio_socks::tcp::Socks5Stream::connect(gw.addr, target.addr())
        .await
        .expect("a tunnel");
    let mut greeting = [0u8; proxypool_tests::target::GREETING.len()];
    tunnel.read_exact(&mut greeting).await.unwrap();
    hung.pause(true);
    tunnel.write_all(b"anyone there?").await.unwrap();
    assert_eventually!(down(b), "the silence to count");
    hung.pause(false);
    // Answered again: back in, and the tunnel was never cut.
    assert_eventually!(healthy(b), "a probe answered");
    let mut echo = [0u8; 13];
    tunnel.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"anyone there?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_probe_detects_a_dead_proxy_and_its_return() {
    let Some(mut p) = microsocks(None).await else {
        return;
    };
    let target = TargetServer::start().await;
    let b = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}'], \
         health_check: {{method: handshake, target: '{}', {FAST}}}}}}}}}",
        p.addr,
        target.addr()
    ));
    assert_eventually!(healthy(&b), "the first check");
    assert_eventually!(
        !target.peer_ips().is_empty(),
        "a handshake through the proxy to the target"
    );
    assert!(
        target.peer_ips().iter().all(|ip| *ip == p.egress),
        "through the proxy only"
    );
    p.kill().await;
    assert_eventually!(down(&b), "handshake probes to fail");
    p.restart().await;
    assert_eventually!(healthy(&b), "handshake probes to succeed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probe_checks_the_status_through_the_proxy() {
    let Some(p) = microsocks(None).await else {
        return;
    };
    let web = HttpStatusServer::start(204).await;
    let b = balancer(&format!(
        "proxy: {{enabled: true, default: {{http: {{pool: ['socks5://{}'], \
         health_check: {{method: http, url: 'http://{}/health', expected_status: ['200-299'], {FAST}}}}}}}}}",
        p.addr,
        web.addr()
    ));
    assert_eventually!(healthy(&b), "the first check");
    web.set_status(503);
    assert_eventually!(down(&b), "a 503 to count as failure");
    let reason = proxypool::testing::pool(&b, ROUTE).unwrap().0.status()[0]
        .reason
        .clone();
    assert!(reason.contains("HTTP status 503"), "{reason}");
    web.set_status(200);
    assert_eventually!(healthy(&b), "a 200 to count as success");
    let checker_metrics = b.metrics().render();
    assert!(
        checker_metrics.contains(
            "proxypool_probes_total{pool=\"default.http\",method=\"http\",result=\"failed\"}"
        ),
        "{checker_metrics}"
    );
}

/// Ping needs the machine's permission (`net.ipv4.ping_group_range`), which is a
/// global setting: this one test checks both sides, in order, and puts it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_refused_at_validation_where_forbidden_and_probes_where_allowed() {
    const RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";
    const IGNORE: &str = "/proc/sys/net/ipv4/icmp_echo_ignore_all";
    let yaml = "proxy: {enabled: true, default: {http: {pool: ['socks5://127.0.0.1:1080'], \
                health_check: {method: ping, interval: 1, fast_interval_ms: 100, timeout_seconds: 1, \
                retry_count: 1, rise: 2, fall: 2}}}}";
    let Ok(original) = std::fs::read_to_string(RANGE) else {
        eprintln!("skipped: no {RANGE} on this system");
        return;
    };
    let refused = |text: &str| {
        text.contains("health_check.method: ping needs unprivileged ICMP sockets")
            && text.contains("ping_group_range")
    };
    if std::fs::write(RANGE, "1 0").is_err() {
        // Not root: check whichever side this machine is on, without changing it.
        match ConfigBuilder::new().yaml_str(yaml).build() {
            Err(e) => assert!(refused(&e.to_string()), "{e}"),
            Ok(_) => eprintln!("ping allowed here and {RANGE} not writable: refusal not checked"),
        }
        return;
    }
    let restore = scopeguard(|| {
        let _ = std::fs::write(RANGE, &original);
        let _ = std::fs::write(IGNORE, "0");
    });

    let err = ConfigBuilder::new().yaml_str(yaml).build().unwrap_err();
    assert!(refused(&err.to_string()), "{err}");

    std::fs::write(RANGE, "0 2147483647").unwrap();
    let b = balancer(yaml);
    assert_eventually!(healthy(&b), "echo replies from 127.0.0.1");
    std::fs::write(IGNORE, "1").unwrap();
    assert_eventually!(down(&b), "missing echo replies");
    std::fs::write(IGNORE, "0").unwrap();
    assert_eventually!(healthy(&b), "echo replies again");
    let probes = b.metrics().render();
    assert!(probes.contains("method=\"ping\",result=\"ok\""), "{probes}");
    drop(restore);
}

/// Runs `f` when dropped, so a failed assertion still restores global settings.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
