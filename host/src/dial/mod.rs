//! Dialing: a stream to `host:port` through one upstream proxy.
//!
//! socks5/socks5h and socks4/socks4a go through tokio-socks; http and https proxies
//! get an HTTP CONNECT, with TLS to the proxy for https (as curl does). The proxy's
//! `timeout_seconds` bounds the TCP connect, TLS and handshake together. Every
//! failure carries a [`FaultClass`].

mod error;
mod guard;
mod http_connect;
mod probe;
mod stream;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_socks::tcp::{Socks4Stream, Socks5Stream};

pub use error::{DialError, FaultClass};
pub use guard::{DestinationGuard, Forbidden, canonical};
pub use http_connect::{ConnectReply, parse_connect_reply};
pub use probe::DialProbe;
pub use stream::{ProxyStream, Replay};

use crate::config::{ProxyUrl, Scheme, Transport};
use error::{Fault, classify_socks};

/// The target of a log line that cryptofeed users grep for.
pub(crate) const LOG_TARGET: &str = "proxypool::dial";

/// A destination `host:port`. IPv6 literals are written `[::1]:443`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    host: String,
    port: u16,
}

/// Why a `host:port` is not a target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid target {shown:?}: {reason}")]
pub struct TargetParseError {
    /// The input, cropped and redacted.
    shown: String,
    reason: &'static str,
}

impl TargetParseError {
    fn new(input: &str, reason: &'static str) -> Self {
        let cropped: String = input.chars().take(80).collect();
        TargetParseError {
            shown: crate::config::redact_text(&cropped),
            reason,
        }
    }
}

impl Target {
    /// A target from its parts (an IPv6 host with or without brackets). Refuses an
    /// empty or over-long host, whitespace and control characters (CR, LF, NUL), and
    /// port 0.
    pub fn try_new(host: impl Into<String>, port: u16) -> Result<Self, TargetParseError> {
        let host = host.into();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map(str::to_owned)
            .unwrap_or(host);
        if let Some(reason) = crate::config::host_problem(&host) {
            return Err(TargetParseError::new(&host, reason));
        }
        if port == 0 {
            return Err(TargetParseError::new(&host, "port 0"));
        }
        Ok(Target { host, port })
    }

    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::str::FromStr for Target {
    type Err = TargetParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TargetParseError::new(s, "expected host:port");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            (h, p)
        } else {
            s.rsplit_once(':').ok_or_else(bad)?
        };
        if host.is_empty() || (host.contains(':') && !s.starts_with('[')) {
            return Err(bad());
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(bad)?;
        Target::try_new(host, port).map_err(|e| TargetParseError::new(s, e.reason))
    }
}

impl From<SocketAddr> for Target {
    /// An address is always a valid host; port 0 is kept as given (a dial to it
    /// fails as the OS says).
    fn from(a: SocketAddr) -> Self {
        Target {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Who a dial is for: the fields of cryptofeed's log line.
#[derive(Clone, Copy, Debug)]
pub struct DialContext<'a> {
    /// The exchange, or `None` for the default (logged as `exchange=default`).
    pub exchange: Option<&'a str>,
    /// The transport.
    pub transport: Transport,
}

/// Opens tunnels through proxies. Cheap to clone.
#[derive(Clone)]
pub struct Dialer {
    tls: TlsConnector,
    /// Where direct dials may go; shared by every clone, set by a gateway.
    guard: Arc<arc_swap::ArcSwapOption<DestinationGuard>>,
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialer").finish_non_exhaustive()
    }
}

impl Default for Dialer {
    fn default() -> Self {
        Self::new()
    }
}

impl Dialer {
    /// A dialer that trusts the webpki roots for https proxies.
    pub fn new() -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// A dialer that trusts `roots` for https proxies (a private CA, say).
    pub fn with_roots(roots: rustls::RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Dialer {
            tls: TlsConnector::from(Arc::new(config)),
            guard: Arc::default(),
        }
    }

    /// Limits where direct dials (of this dialer and every clone) may go, checked
    /// on each resolved address; `None` lifts the limit.
    pub fn set_guard(&self, guard: Option<DestinationGuard>) {
        self.guard.store(guard.map(Arc::new));
    }

    /// The guard direct dials are checked against, if any.
    pub fn guard(&self) -> Option<Arc<DestinationGuard>> {
        self.guard.load_full()
    }

    /// Opens a tunnel to `target` through `proxy`, bounded by `timeout`, and logs
    /// cryptofeed's line `proxy: transport=… exchange=… scheme=… endpoint=…`.
    pub async fn dial(
        &self,
        proxy: &ProxyUrl,
        timeout: Duration,
        target: &Target,
        ctx: DialContext<'_>,
    ) -> Result<ProxyStream, DialError> {
        tracing::info!(
            target: LOG_TARGET,
            "proxy: transport={} exchange={} scheme={} endpoint={}",
            ctx.transport,
            ctx.exchange.unwrap_or("default"),
            proxy.scheme(),
            proxy.endpoint()
        );
        self.tunnel(proxy, timeout, target).await
    }

    /// [`Dialer::dial`] without the log line (for probes, which are not logged one by one).
    pub(crate) async fn tunnel(
        &self,
        proxy: &ProxyUrl,
        timeout: Duration,
        target: &Target,
    ) -> Result<ProxyStream, DialError> {
        match tokio::time::timeout(timeout, self.dial_unbounded(proxy, target)).await {
            Ok(r) => r,
            Err(_) => Err(DialError::Timeout {
                proxy: proxy.clone(),
                after: timeout,
            }),
        }
    }

    async fn dial_unbounded(
        &self,
        proxy: &ProxyUrl,
        target: &Target,
    ) -> Result<ProxyStream, DialError> {
        let tcp = TcpStream::connect((proxy.host(), proxy.port()))
            .await
            .map_err(|source| DialError::ProxyUnreachable {
                proxy: proxy.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let fault = |f: Fault| f.into_error(proxy, target);
        match proxy.scheme() {
            Scheme::Http => {
                let mut tcp = tcp;
                let early = http_connect::handshake(&mut tcp, target, proxy.credentials())
                    .await
                    .map_err(fault)?;
                Ok(ProxyStream::tcp(tcp, early))
            }
            Scheme::Https => {
                let name = rustls::pki_types::ServerName::try_from(proxy.host().to_owned())
                    .map_err(|e| {
                        fault(Fault::Config(format!("proxy host is not a TLS name: {e}")))
                    })?;
                let mut tls = self.tls.connect(name, tcp).await.map_err(|e| {
                    fault(Fault::Proxy(format!(
                        "TLS handshake with the proxy failed: {e}"
                    )))
                })?;
                let early = http_connect::handshake(&mut tls, target, proxy.credentials())
                    .await
                    .map_err(fault)?;
                Ok(ProxyStream::tls(tls, early))
            }
            Scheme::Socks5 | Scheme::Socks5h => {
                let addr = socks_target(proxy.scheme(), target).await?;
                let r = match proxy.credentials() {
                    Some(c) => {
                        Socks5Stream::connect_with_password_and_socket(
                            tcp,
                            addr.as_pair(),
                            c.username(),
                            c.password(),
                        )
                        .await
                    }
                    None => Socks5Stream::connect_with_socket(tcp, addr.as_pair()).await,
                };
                let s = r.map_err(|e| fault(classify_socks(e, false)))?;
                Ok(ProxyStream::tcp(s.into_inner(), Vec::new()))
            }
            Scheme::Socks4 | Scheme::Socks4a => {
                let addr = socks_target(proxy.scheme(), target).await?;
                let r = match proxy.credentials() {
                    Some(c) => {
                        Socks4Stream::connect_with_userid_and_socket(
                            tcp,
                            addr.as_pair(),
                            c.username(),
                        )
                        .await
                    }
                    None => Socks4Stream::connect_with_socket(tcp, addr.as_pair()).await,
                };
                let s = r.map_err(|e| fault(classify_socks(e, true)))?;
                Ok(ProxyStream::tcp(s.into_inner(), Vec::new()))
            }
        }
    }

    /// Connects directly, for a route that says direct. Never called as a fallback.
    pub async fn dial_direct(
        &self,
        target: &Target,
        timeout: Duration,
    ) -> Result<ProxyStream, DialError> {
        let failed = |source: std::io::Error| DialError::Direct {
            target: target.to_string(),
            source,
        };
        let connect = async {
            let Some(guard) = self.guard.load_full() else {
                return TcpStream::connect((target.host(), target.port()))
                    .await
                    .map_err(failed);
            };
            // Resolved here, so that each address is checked before it is used.
            let (mut refused, mut last) = (None, None);
            let addrs = tokio::net::lookup_host((target.host(), target.port()))
                .await
                .map_err(failed)?;
            for addr in addrs {
                if let Err(why) = guard.check(addr) {
                    refused.get_or_insert(why);
                    continue;
                }
                match TcpStream::connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(match (last, refused) {
                (Some(e), _) => failed(e),
                (None, Some(why)) => DialError::Forbidden {
                    target: target.to_string(),
                    why,
                },
                (None, None) => failed(std::io::ErrorKind::NotFound.into()),
            })
        };
        let tcp = match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r?,
            Err(_) => return Err(failed(std::io::ErrorKind::TimedOut.into())),
        };
        let _ = tcp.set_nodelay(true);
        Ok(ProxyStream::tcp(tcp, Vec::new()))
    }
}

/// What the SOCKS request names: the host itself where the proxy resolves, else an
/// address resolved here (IPv4 for SOCKS4).
enum SocksAddr<'a> {
    Name(&'a str, u16),
    Addr(SocketAddr),
}

impl SocksAddr<'_> {
    fn as_pair(&self) -> tokio_socks::TargetAddr<'_> {
        match self {
            SocksAddr::Name(h, p) => tokio_socks::TargetAddr::Domain((*h).into(), *p),
            SocksAddr::Addr(a) => tokio_socks::TargetAddr::Ip(*a),
        }
    }
}

async fn socks_target(scheme: Scheme, target: &Target) -> Result<SocksAddr<'_>, DialError> {
    if let Ok(ip) = target.host().parse::<IpAddr>() {
        return Ok(SocksAddr::Addr(SocketAddr::new(ip, target.port())));
    }
    if scheme.resolves_remotely() {
        return Ok(SocksAddr::Name(target.host(), target.port()));
    }
    let resolve_err = |detail: String| DialError::Resolve {
        target: target.to_string(),
        detail,
    };
    let addrs = tokio::net::lookup_host((target.host(), target.port()))
        .await
        .map_err(|e| resolve_err(e.to_string()))?;
    let want_v4 = scheme == Scheme::Socks4;
    addrs
        .into_iter()
        .find(|a| !want_v4 || a.is_ipv4())
        .map(SocksAddr::Addr)
        .ok_or_else(|| resolve_err("no usable address (SOCKS4 needs IPv4)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parsing() {
        let t: Target = "[::1]:443".parse().unwrap();
        assert_eq!((t.host(), t.port()), ("::1", 443));
        assert_eq!(t.to_string(), "[::1]:443");
        assert!("example.com".parse::<Target>().is_err());
        assert!("::1:443".parse::<Target>().is_err());
        assert!("h:0".parse::<Target>().is_err());
    }
}
