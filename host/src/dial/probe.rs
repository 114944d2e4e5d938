//! The active probe methods, implementing [`health::Probe`](crate::health::Probe):
//! `tcp` (connect to the proxy), `handshake` (a full proxy handshake to a target),
//! `http` (GET a URL through the proxy and check the status) and `ping` (ICMP echo to
//! the proxy's host over an unprivileged datagram socket).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::{Dialer, Target};
use crate::config::{HealthCheck, ProbeMethod, ProxyUrl};
use crate::health::{BoxFuture, Probe};

/// A probe of one configured method.
#[derive(Debug)]
pub struct DialProbe {
    dialer: Dialer,
    method: Method,
}

#[derive(Debug)]
enum Method {
    Tcp,
    Greeting,
    Handshake(Target),
    Http {
        tls: bool,
        target: Target,
        path: String,
        expected: Vec<(u16, u16)>,
    },
    Ping,
}

impl DialProbe {
    /// A probe for `hc.method`. The config layer has validated the method's fields.
    pub fn new(dialer: Dialer, hc: &HealthCheck) -> DialProbe {
        let method = match &hc.method {
            ProbeMethod::Handshake { target } => match target.parse() {
                Ok(t) => Method::Handshake(t),
                Err(_) => Method::Tcp,
            },
            ProbeMethod::Http { url } => {
                let (tls, target, path) = split_url(url);
                Method::Http {
                    tls,
                    target,
                    path,
                    expected: hc.expected_status.clone(),
                }
            }
            ProbeMethod::Ping => Method::Ping,
            ProbeMethod::Greeting => Method::Greeting,
            _ => Method::Tcp,
        };
        DialProbe { dialer, method }
    }

    async fn run(&self, proxy: &ProxyUrl, timeout: Duration) -> Result<(), String> {
        match &self.method {
            Method::Tcp => match tokio::time::timeout(timeout, connect(proxy)).await {
                Ok(r) => r.map(drop),
                Err(_) => Err(format!("no connect within {timeout:?}")),
            },
            Method::Greeting => match tokio::time::timeout(timeout, self.greet(proxy)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer to the greeting within {timeout:?}")),
            },
            Method::Handshake(target) => self
                .dialer
                .tunnel(proxy, timeout, target)
                .await
                .map(drop)
                .map_err(|e| opinion(&e)),
            Method::Http {
                tls,
                target,
                path,
                expected,
            } => {
                let work = async {
                    let stream = self
                        .dialer
                        .tunnel(proxy, timeout, target)
                        .await
                        .map_err(|e| opinion(&e))?;
                    let status = if *tls {
                        let tls = self.tls(target.host(), stream).await?;
                        get_status(tls, target, path).await?
                    } else {
                        get_status(stream, target, path).await?
                    };
                    if expected.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
                        Ok(())
                    } else {
                        Err(format!("HTTP status {status} is not an expected one"))
                    }
                };
                match tokio::time::timeout(timeout, work).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            }
            Method::Ping => match tokio::time::timeout(timeout, ping(proxy.host())).await {
                Ok(r) => r,
                Err(_) => Err(format!("no echo reply within {timeout:?}")),
            },
        }
    }

    /// Connects and makes the proxy protocol's first exchange, which needs no target.
    async fn greet(&self, proxy: &ProxyUrl) -> Result<(), String> {
        use crate::config::Scheme;
        let tcp = connect(proxy).await?;
        let _ = tcp.set_nodelay(true);
        match proxy.scheme() {
            Scheme::Socks5 | Scheme::Socks5h => {
                socks5_greeting(tcp, proxy.credentials().is_some()).await
            }
            Scheme::Http => http_greeting(tcp, proxy).await,
            Scheme::Https => http_greeting(self.tls(proxy.host(), tcp).await?, proxy).await,
            // SOCKS4 has no exchange before a request; the connect is all there is.
            Scheme::Socks4 | Scheme::Socks4a => Ok(()),
        }
    }

    /// TLS to `host` over `stream`, with the dialer's roots.
    async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        host: &str,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, String> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("not a TLS name: {e}"))?;
        self.dialer
            .tls
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))
    }
}

/// A TCP connect to the proxy; a shortage of ours is no opinion of it.
async fn connect(proxy: &ProxyUrl) -> Result<TcpStream, String> {
    TcpStream::connect((proxy.host(), proxy.port()))
        .await
        .map_err(|e| {
            if super::error::is_local_shortage(&e) {
                format!("{}{e}", crate::health::NO_OPINION)
            } else {
                e.to_string()
            }
        })
}

/// SOCKS5 method negotiation (RFC 1928 §3): any answer of the protocol will do.
async fn socks5_greeting(mut s: TcpStream, with_password: bool) -> Result<(), String> {
    let greeting: &[u8] = if with_password {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    s.write_all(greeting).await.map_err(|e| e.to_string())?;
    let mut answer = [0u8; 2];
    s.read_exact(&mut answer)
        .await
        .map_err(|e| format!("no SOCKS5 method reply: {e}"))?;
    if answer[0] == 5 {
        Ok(())
    } else {
        Err(format!("not a SOCKS5 method reply: {answer:02x?}"))
    }
}

/// `OPTIONS *`, which every HTTP proxy answers with some status line (tinyproxy:
/// 400) without connecting anywhere.
async fn http_greeting<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    proxy: &ProxyUrl,
) -> Result<(), String> {
    let request = format!(
        "OPTIONS * HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        proxy.endpoint()
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 5];
    s.read_exact(&mut answer)
        .await
        .map_err(|e| format!("no HTTP answer: {e}"))?;
    if &answer == b"HTTP/" {
        Ok(())
    } else {
        Err("not an HTTP answer".to_owned())
    }
}

impl Probe for DialProbe {
    fn method(&self) -> &'static str {
        match self.method {
            Method::Tcp => "tcp",
            Method::Greeting => "greeting",
            Method::Handshake(_) => "handshake",
            Method::Http { .. } => "http",
            Method::Ping => "ping",
        }
    }

    fn probe<'a>(
        &'a self,
        proxy: &'a ProxyUrl,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Duration, String>> {
        Box::pin(async move {
            let start = Instant::now();
            self.run(proxy, timeout).await.map(|()| start.elapsed())
        })
    }
}

/// `http[s]://host[:port][/path]` → (tls, host:port, path). Validated upstream.
fn split_url(url: &str) -> (bool, Target, String) {
    let tls = url[..5].eq_ignore_ascii_case("https");
    let rest = &url[if tls { 8 } else { 7 }..];
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let default_port = if tls { 443 } else { 80 };
    // Validation checked the host; an unparsable one fails the probe's dial instead.
    let target = authority.parse().unwrap_or_else(|_| Target {
        host: authority.trim_matches(['[', ']']).to_owned(),
        port: default_port,
    });
    (tls, target, path)
}

async fn get_status<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    target: &Target,
    path: &str,
) -> Result<u16, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: proxypool-probe\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // Bounded: a status line is short, and garbage must not fill memory.
    let mut buf = Vec::new();
    BufReader::new(s.take(1024))
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.trim_end()))
}

/// One ICMP echo to `host` (its first IPv4 address) and its reply.
async fn ping(host: &str) -> Result<(), String> {
    let ip = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip,
        Ok(IpAddr::V6(_)) => return Err("ping supports IPv4 proxies only".into()),
        Err(_) => tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .find_map(|a| match a.ip() {
                IpAddr::V4(ip) => Some(ip),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| format!("{host} has no IPv4 address"))?,
    };
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::ICMPV4),
    )
    .map_err(|e| format!("cannot open an ICMP socket: {e}"))?;
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    let socket =
        UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(|e| e.to_string())?;
    socket
        .connect(SocketAddr::new(IpAddr::V4(ip), 0))
        .await
        .map_err(|e| e.to_string())?;
    // Echo request: type 8, code 0; the kernel sets the identifier and checksum.
    let seq: u16 = rand_seq();
    let mut packet = [8u8, 0, 0, 0, 0, 0, 0, 0, b'p', b'p'];
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    socket.send(&packet).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 128];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Echo reply with our sequence number (other replies can reach this socket).
        if n >= 8 && buf[0] == 0 && buf[6..8] == seq.to_be_bytes() {
            return Ok(());
        }
    }
}

fn rand_seq() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos >> 8) as u16
}

/// A dial error as a probe's reason: marked as no opinion when it was our shortage.
fn opinion(e: &super::DialError) -> String {
    if e.class() == super::FaultClass::Local {
        format!("{}{e}", crate::health::NO_OPINION)
    } else {
        e.to_string()
    }
}
