//! The `gateway:` section, beside `proxy:` (not inside it, so that cryptofeed can
//! still read a shared file): listeners, host-pattern routes and limits of
//! `proxypool serve`. Read from YAML only, validated with paths like `proxy:`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::raw::Scalar;
use super::validate::Checker;

/// Where `proxypool serve` listens without a `gateway.listen`: loopback, the SOCKS
/// port clients expect.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1080";
/// Where the admin endpoint listens without `gateway.admin`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9090";
/// Client connections at once: far below the fd limits a gateway is given, far above
/// what one feed handler opens.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// From accept to an open tunnel: a client that has not finished its handshake in
/// this time is not coming (the upstream connect has its own bound).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(35);
/// A tunnel with no bytes either way for this long is closed: an exchange's
/// WebSocket sends pings far more often, so only dead tunnels reach it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A tunnel whose upstream sends nothing back for this long after the client sent
/// bytes makes that upstream suspect (a probe at once): an exchange answers a
/// request, a TLS hello or a subscription well within it, a stopped proxy never does.
pub const DEFAULT_SILENT_TUNNEL: Duration = Duration::from_secs(5);
/// How long live tunnels may run on after a shutdown signal.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);
/// Connections from one client address in handshake at once: a feed handler that
/// opens all its streams at start stays far below it, and one address cannot take
/// every permit of `max_connections` with handshakes it never finishes.
pub(super) const DEFAULT_MAX_HANDSHAKES_PER_CLIENT: usize = 256;

/// Whether serving `addr` would let anyone who can reach it in: a non-loopback
/// address with nothing (client auth, an admin token) guarding it.
pub fn exposed(addr: SocketAddr, guarded: bool) -> bool {
    !addr.ip().is_loopback() && !guarded
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub listen: Option<Vec<RawListen>>,
    pub admin: Option<Scalar>,
    pub admin_token: Option<Scalar>,
    pub routes: Option<BTreeMap<String, Vec<Scalar>>>,
    pub max_connections: Option<Scalar>,
    pub handshake_timeout_ms: Option<Scalar>,
    pub idle_timeout_seconds: Option<Scalar>,
    pub silent_tunnel_ms: Option<Scalar>,
    pub drain_seconds: Option<Scalar>,
    pub allow_open: Option<Scalar>,
    pub allow_private_destinations: Option<Scalar>,
    pub max_handshakes_per_client: Option<Scalar>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub addr: Scalar,
    pub transport: Option<Scalar>,
    pub auth: Option<RawAuth>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub password: Scalar,
}

/// Client authentication of a listener: every client must send this password (the
/// SOCKS5 password or the `Proxy-Authorization` password; the user name still names
/// the exchange). Never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientAuth {
    password: String,
}

impl ClientAuth {
    /// Auth by `password`.
    pub fn new(password: impl Into<String>) -> ClientAuth {
        ClientAuth {
            password: password.into(),
        }
    }

    /// Whether `given` is the password, compared in time independent of where they
    /// differ.
    pub fn accepts(&self, given: &str) -> bool {
        let (a, b) = (self.password.as_bytes(), given.as_bytes());
        let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAuth(***)")
    }
}

/// The token the admin endpoint's write routes (`POST /report`) take, as
/// `Authorization: Bearer TOKEN`. Never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(ClientAuth);

impl AdminToken {
    /// The least length of a token.
    pub const MIN_LEN: usize = 16;

    /// A token.
    pub fn new(token: impl Into<String>) -> AdminToken {
        AdminToken(ClientAuth::new(token))
    }

    /// Whether an `Authorization` header value carries the token.
    pub fn accepts_header(&self, value: &str) -> bool {
        let given = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or("");
        self.0.accepts(given.trim())
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// Which route of an exchange a listener's clients take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListenTransport {
    /// The exchange's `http` route.
    Http,
    /// The exchange's `websocket` route.
    Websocket,
    /// Told per connection from the destination; `http` when nothing tells.
    #[default]
    Auto,
}

impl ListenTransport {
    /// The YAML name.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenTransport::Http => "http",
            ListenTransport::Websocket => "websocket",
            ListenTransport::Auto => "auto",
        }
    }
}

/// One listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// The address to bind (port 0 picks one).
    pub addr: SocketAddr,
    /// Which route its clients take.
    pub transport: ListenTransport,
    /// The password clients must send, if any.
    pub auth: Option<ClientAuth>,
}

impl Listen {
    /// A listener on `addr` for every transport (`auto`), with no client auth.
    pub fn new(addr: SocketAddr) -> Listen {
        Listen {
            addr,
            transport: ListenTransport::Auto,
            auth: None,
        }
    }

    /// [`Listen::new`] on 127.0.0.1, on a port the system picks.
    pub fn loopback() -> Listen {
        Listen::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

/// A destination host pattern: `api.binance.com`, or `*.binance.com` for every
/// subdomain (not the bare domain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// A host name (`api.binance.com`) or a `*.domain` pattern, any case, of ASCII
    /// letters, digits, dots and hyphens; `None` for anything else.
    pub fn parse(text: &str) -> Option<HostPattern> {
        let text = text.trim().to_ascii_lowercase();
        let host = text.strip_prefix("*.").unwrap_or(&text);
        let ok = !host.is_empty()
            && super::host_problem(host).is_none()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        ok.then_some(HostPattern(text))
    }

    /// Whether `host` (any case) matches.
    /// Works on bytes: `host` is a client's, and may hold any UTF-8, where a byte
    /// index need not be a character boundary.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.as_bytes();
        match self.0.strip_prefix("*.") {
            Some(suffix) => {
                let suffix = suffix.as_bytes();
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && host[host.len() - suffix.len() - 1] == b'.'
            }
            None => host.eq_ignore_ascii_case(self.0.as_bytes()),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `gateway:` section, validated, with every default applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// The listeners.
    pub listen: Vec<Listen>,
    /// The admin endpoint's address.
    pub admin: SocketAddr,
    /// The token its write routes take; required when `admin` is not loopback.
    pub admin_token: Option<AdminToken>,
    /// Exchange (lowercase) → destination host patterns, in file order.
    pub routes: Vec<(String, Vec<HostPattern>)>,
    /// Client connections at once.
    pub max_connections: usize,
    /// From accept to an open tunnel.
    pub handshake_timeout: Duration,
    /// A tunnel idle this long is closed.
    pub idle_timeout: Duration,
    /// An upstream silent this long after its client spoke is suspect; zero: never.
    pub silent_tunnel: Duration,
    /// How long live tunnels may run on after a shutdown signal.
    pub drain: Duration,
    /// Whether a listener may bind a non-loopback address with no client auth.
    pub allow_open: bool,
    /// Whether clients of a gateway with a non-loopback listener may reach
    /// loopback, link-local and private addresses (a loopback-only gateway always
    /// may). The gateway's own addresses are refused whatever this says.
    pub allow_private_destinations: bool,
    /// Connections from one client address in handshake at once.
    pub max_handshakes_per_client: usize,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            listen: vec![Listen {
                addr: DEFAULT_LISTEN.parse().expect("a socket address"),
                transport: ListenTransport::Auto,
                auth: None,
            }],
            admin: DEFAULT_ADMIN.parse().expect("a socket address"),
            admin_token: None,
            routes: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            silent_tunnel: DEFAULT_SILENT_TUNNEL,
            drain: DEFAULT_DRAIN,
            allow_open: false,
            allow_private_destinations: false,
            max_handshakes_per_client: DEFAULT_MAX_HANDSHAKES_PER_CLIENT,
        }
    }
}

impl Gateway {
    /// The exchange whose patterns match `host`, first route first.
    pub fn route_for(&self, host: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|(_, patterns)| patterns.iter().any(|p| p.matches(host)))
            .map(|(exchange, _)| exchange.as_str())
    }
}

impl Checker<'_> {
    pub(crate) fn gateway(&mut self, raw: Option<RawGateway>) -> Gateway {
        let d = Gateway::default();
        let Some(raw) = raw else {
            return d;
        };
        let allow_open = match &raw.allow_open {
            Some(v) => self.bool("gateway.allow_open", v).unwrap_or(false),
            None => false,
        };
        let listen = self.listeners(raw.listen, allow_open, &d);
        let admin = match &raw.admin {
            Some(a) => self.socket_addr("gateway.admin", a).unwrap_or(d.admin),
            None => d.admin,
        };
        let admin_token = raw.admin_token.as_ref().and_then(|t| self.admin_token(t));
        if exposed(admin, raw.admin_token.is_some()) {
            self.fail(
                "gateway.admin",
                format!("{admin} is not a loopback address: set gateway.admin_token, which its write routes then take"),
            );
        }
        let routes = self.routes(raw.routes);
        // Each bounded number of the section: key, value, least, most, default.
        #[rustfmt::skip]
        let numbers = [
            ("max_connections", &raw.max_connections, 1, 1_000_000, d.max_connections as u64),
            ("handshake_timeout_ms", &raw.handshake_timeout_ms, 100, 300_000, d.handshake_timeout.as_millis() as u64),
            ("idle_timeout_seconds", &raw.idle_timeout_seconds, 1, 86_400, d.idle_timeout.as_secs()),
            ("silent_tunnel_ms", &raw.silent_tunnel_ms, 0, 600_000, d.silent_tunnel.as_millis() as u64),
            ("drain_seconds", &raw.drain_seconds, 0, 3_600, d.drain.as_secs()),
            ("max_handshakes_per_client", &raw.max_handshakes_per_client, 1, 1_000_000, d.max_handshakes_per_client as u64),
        ];
        let [
            max_connections,
            handshake,
            idle,
            silent,
            drain,
            max_handshakes,
        ] = numbers.map(|(key, v, lo, hi, dflt)| {
            self.opt_whole("gateway", key, v, lo, hi, dflt as i64)
                .map_or(dflt, |n| n as u64)
        });
        let allow_private_destinations = match &raw.allow_private_destinations {
            Some(v) => self
                .bool("gateway.allow_private_destinations", v)
                .unwrap_or(false),
            None => false,
        };
        Gateway {
            listen,
            admin,
            admin_token,
            routes,
            max_connections: max_connections as usize,
            handshake_timeout: Duration::from_millis(handshake),
            idle_timeout: Duration::from_secs(idle),
            silent_tunnel: Duration::from_millis(silent),
            drain: Duration::from_secs(drain),
            allow_open,
            allow_private_destinations,
            max_handshakes_per_client: max_handshakes as usize,
        }
    }

    /// `gateway.listen`: the default listener if absent; at least one if given.
    fn listeners(
        &mut self,
        listen: Option<Vec<RawListen>>,
        allow_open: bool,
        d: &Gateway,
    ) -> Vec<Listen> {
        match listen {
            None => d.listen.clone(),
            Some(list) if list.is_empty() => {
                self.fail("gateway.listen", "needs at least one listener");
                Vec::new()
            }
            Some(list) => list
                .into_iter()
                .enumerate()
                .filter_map(|(i, l)| self.listen(&format!("gateway.listen[{i}]"), l, allow_open))
                .collect(),
        }
    }

    /// `gateway.admin_token`: long enough, with no space around it.
    fn admin_token(&mut self, t: &Scalar) -> Option<AdminToken> {
        let token = self.string("gateway.admin_token", t)?;
        if token.trim().len() < AdminToken::MIN_LEN || token.trim() != token {
            self.fail(
                "gateway.admin_token",
                format!(
                    "must be at least {} characters, with no space around it",
                    AdminToken::MIN_LEN
                ),
            );
            return None;
        }
        Some(AdminToken::new(token))
    }

    /// `gateway.routes`: exchange → host patterns, in file order.
    fn routes(
        &mut self,
        raw: Option<BTreeMap<String, Vec<Scalar>>>,
    ) -> Vec<(String, Vec<HostPattern>)> {
        let mut routes = Vec::new();
        for (exchange, patterns) in raw.into_iter().flatten() {
            let path = format!("gateway.routes.{exchange}");
            if patterns.is_empty() {
                self.fail(&path, "needs at least one host pattern");
            }
            let parsed = patterns
                .iter()
                .enumerate()
                .filter_map(|(i, p)| self.host_pattern(&format!("{path}[{i}]"), p))
                .collect();
            routes.push((exchange.to_ascii_lowercase(), parsed));
        }
        routes
    }

    fn listen(&mut self, path: &str, l: RawListen, allow_open: bool) -> Option<Listen> {
        let addr = self.socket_addr(&format!("{path}.addr"), &l.addr);
        let transport = match &l.transport {
            None => Some(ListenTransport::Auto),
            Some(t) => {
                let name = self.string(&format!("{path}.transport"), t)?;
                let all = [
                    ListenTransport::Http,
                    ListenTransport::Websocket,
                    ListenTransport::Auto,
                ];
                let found = all
                    .into_iter()
                    .find(|t| t.as_str() == name.to_ascii_lowercase());
                if found.is_none() {
                    self.fail(
                        &format!("{path}.transport"),
                        format!("unknown transport {name:?} (expected http, websocket or auto)"),
                    );
                }
                found
            }
        };
        let auth = match l.auth {
            None => Some(None),
            Some(a) => {
                let p = self.string(&format!("{path}.auth.password"), &a.password);
                match p {
                    Some(p) if p.len() >= 8 => Some(Some(ClientAuth::new(p))),
                    Some(_) => {
                        self.fail(
                            &format!("{path}.auth.password"),
                            "must be at least 8 characters",
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let addr = addr?;
        let auth = auth?;
        if exposed(addr, auth.is_some()) && !allow_open {
            self.fail(
                &format!("{path}.addr"),
                format!(
                    "{addr} is not a loopback address: set {path}.auth, or gateway.allow_open: true to serve it with no client authentication"
                ),
            );
            return None;
        }
        Some(Listen {
            addr,
            transport: transport?,
            auth,
        })
    }

    fn socket_addr(&mut self, path: &str, s: &Scalar) -> Option<SocketAddr> {
        let text = self.string(path, s)?;
        match text.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.fail(path, "must be an IP address and port, as 127.0.0.1:1080");
                None
            }
        }
    }

    fn host_pattern(&mut self, path: &str, s: &Scalar) -> Option<HostPattern> {
        let text = self.string(path, s)?;
        let pattern = HostPattern::parse(&text);
        if pattern.is_none() {
            self.fail(
                path,
                format!(
                    "{:?} is not a host name or a *.domain pattern",
                    text.trim().to_ascii_lowercase()
                ),
            );
        }
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_hosts_and_subdomains() {
        let exact = HostPattern("api.binance.com".into());
        let wild = HostPattern("*.binance.com".into());
        assert!(exact.matches("API.Binance.com"));
        assert!(!exact.matches("fapi.binance.com"));
        assert!(wild.matches("stream.binance.com") && wild.matches("a.b.binance.com"));
        assert!(!wild.matches("binance.com") && !wild.matches("evilbinance.com"));
    }

    #[test]
    fn patterns_take_any_utf8_host_without_panicking() {
        let wild = HostPattern::parse("*.binance.com").unwrap();
        // 'é' is two bytes: the byte before the suffix is inside it.
        assert!(!wild.matches("aéinance.com"));
        assert!(!wild.matches("éé.binance.coé"));
        assert!(wild.matches("é.binance.com"));
        let exact = HostPattern::parse("api.binance.com").unwrap();
        assert!(!exact.matches("api.binance.cöm"));
        for host in ["", "é", "ééééééééééééééé", ".binance.com", "x.BINANCE.COM"] {
            let _ = (wild.matches(host), exact.matches(host));
        }
    }
}
