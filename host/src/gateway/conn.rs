//! One client connection: sniff the protocol, run its handshake with the parsers,
//! open the tunnel through the balancer, answer, relay. Every refusal maps to exactly
//! one reply of the client's protocol ([`Refusal`]).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::parse::{Destination, Parse};
use super::relay::Silence;
use super::route::{self, route};
use super::sniff::{Protocol, sniff};
use super::{http, socks4, socks5};
use crate::balancer::{Balancer, ConnectError, Tunnel};
use crate::balancer::{DialError, FaultClass, Forbidden, Replay, Target};
use crate::config::{ClientAuth, ListenTransport};

/// Why a client's request is not served; each protocol has one reply per kind.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The request is not the protocol, or breaks it.
    Malformed(&'static str),
    /// A command or method the gateway does not serve (SOCKS BIND, UDP).
    Unsupported(&'static str),
    /// The user name names no exchange the gateway knows: what to tell the client.
    UnknownExchange(String),
    /// The listener wants a password and got none, or a wrong one.
    AuthRequired,
    /// The destination is not a host a proxy can reach.
    BadDestination,
    /// The destination is the gateway itself, or private behind an open listener.
    Forbidden(Forbidden),
    /// No tunnel: what the balancer said.
    Dial(Box<ConnectError>),
    /// A forwarded request's origin failed it after the tunnel opened.
    Origin(&'static str),
    /// The handshake timeout passed while the tunnel was being opened.
    TimedOut,
}

impl Refusal {
    fn socks5(&self) -> socks5::Reply {
        use socks5::Reply;
        match self {
            Refusal::Malformed(_) => Reply::GeneralFailure,
            Refusal::Unsupported(_) => Reply::CommandNotSupported,
            Refusal::UnknownExchange(_) | Refusal::AuthRequired => Reply::NotAllowed,
            Refusal::BadDestination => Reply::AddressNotSupported,
            Refusal::Forbidden(_) => Reply::NotAllowed,
            Refusal::Origin(_) => Reply::GeneralFailure,
            Refusal::TimedOut => Reply::TtlExpired,
            Refusal::Dial(e) => match (e.class(), &**e) {
                (_, ConnectError::Deadline { .. })
                | (_, ConnectError::Dial(DialError::Timeout { .. })) => Reply::TtlExpired,
                (_, ConnectError::Dial(DialError::Forbidden { .. })) => Reply::NotAllowed,
                (FaultClass::Destination, _) => Reply::HostUnreachable,
                (FaultClass::Config, _) => Reply::NotAllowed,
                (FaultClass::Proxy | FaultClass::Local, _) => Reply::GeneralFailure,
            },
        }
    }

    pub(crate) fn http(&self) -> (u16, String) {
        match self {
            Refusal::Malformed(why) => (400, (*why).to_owned()),
            Refusal::Unsupported(why) => (405, (*why).to_owned()),
            Refusal::UnknownExchange(why) => (403, why.clone()),
            Refusal::AuthRequired => (407, "this listener needs the password".to_owned()),
            Refusal::BadDestination => (400, "bad destination host".to_owned()),
            Refusal::Forbidden(why) => (403, why.as_str().to_owned()),
            Refusal::Origin(why) => (502, (*why).to_owned()),
            Refusal::TimedOut => (
                504,
                "no tunnel within the handshake timeout (gateway.handshake_timeout_ms)".to_owned(),
            ),
            Refusal::Dial(e) => {
                let status = match (e.class(), &**e) {
                    (_, ConnectError::Deadline { .. })
                    | (_, ConnectError::Dial(DialError::Timeout { .. })) => 504,
                    (_, ConnectError::Dial(DialError::Forbidden { .. })) => 403,
                    (FaultClass::Destination, _) => 502,
                    _ => 503,
                };
                (status, client_text(e))
            }
        }
    }
}

/// What a client is told of a failed connect: the cause, never an upstream's
/// address (the log has those).
fn client_text(e: &ConnectError) -> String {
    let e = match e {
        ConnectError::AllDown { route, policy, .. } => {
            return format!("{route}: every proxy is out ({policy})");
        }
        ConnectError::Dial(e) => e,
        _ => return e.to_string(),
    };
    match e {
        DialError::Destination { target, detail, .. } => {
            format!("destination {target} failed: {detail}")
        }
        DialError::Timeout { after, .. } => {
            format!("no tunnel within {}s", after.as_secs_f64())
        }
        DialError::ProxyUnreachable { .. } if e.class() == FaultClass::Local => {
            "the gateway is out of local resources (file descriptors, buffers)".to_owned()
        }
        DialError::ProxyUnreachable { .. } => "the upstream proxy cannot be reached".to_owned(),
        DialError::ProxyProtocol { .. } => "the upstream proxy failed the handshake".to_owned(),
        DialError::Rejected { .. } => "the upstream proxy refused the request".to_owned(),
        _ => e.to_string(),
    }
}

/// The limits one connection runs under.
#[derive(Clone, Debug)]
pub(crate) struct ConnLimits {
    /// From accept to an open tunnel.
    pub handshake: Duration,
    /// Which route of an exchange the listener's clients take.
    pub transport: ListenTransport,
    /// A tunnel with no bytes either way for this long is closed.
    pub idle: Duration,
    /// An upstream silent this long after its client spoke is suspect; zero: never.
    pub silent: Duration,
    /// The password clients must send, if any.
    pub auth: Option<std::sync::Arc<ClientAuth>>,
    /// Sticky sessions, shared by every listener.
    pub sessions: std::sync::Arc<super::session::Sessions>,
    /// The listener's counters.
    pub metrics: std::sync::Arc<super::metrics::ListenerMetrics>,
    /// When the connect of the request being served must be done by, so that the
    /// client hears why rather than a bare close.
    pub deadline: Option<tokio::time::Instant>,
    /// The listener's settings now (a reload may have changed them since accept).
    pub listener: std::sync::Arc<arc_swap::ArcSwap<super::server::ListenerConf>>,
}

/// After the handshake timeout, the time a refusal has to reach the client.
const REPLY_GRACE: Duration = Duration::from_secs(1);

/// Serves one client to the end of its tunnel.
pub(crate) async fn serve(
    mut client: TcpStream,
    balancer: &Balancer,
    limits: ConnLimits,
    ticket: super::server::InHandshake,
) {
    let _ = client.set_nodelay(true);
    let mut limits = limits;
    limits.deadline = Some(tokio::time::Instant::now() + limits.handshake);
    // On the heap, so that the task a tunnel keeps for its life is the small relay,
    // not the largest state the handshake and its connect ever needed.
    let opened = tokio::time::timeout(
        limits.handshake + REPLY_GRACE,
        Box::pin(handshake(&mut client, balancer, limits.clone())),
    );
    let (protocol, outcome) = match opened.await {
        Ok(done) => done,
        Err(_) => {
            tracing::debug!(target: "proxypool::gateway", "handshake timed out");
            (None, Err(Refusal::Malformed("handshake timed out")))
        }
    };
    drop(ticket);
    limits.metrics.accepted(protocol);
    let (protocol, mut upstream, early) = match (protocol, outcome) {
        (Some(p), Ok(Opened::Tunnel(c, early))) => (p, c, early),
        (_, Ok(Opened::Forward(read))) => {
            super::forward::serve(Replay::new(read, client), balancer, limits).await;
            return;
        }
        (p, Err(refusal)) => {
            limits.metrics.refused(p);
            tracing::debug!(target: "proxypool::gateway", "refused: {refusal:?}");
            return;
        }
        // Cannot happen (no protocol, no tunnel); counted as refused all the same.
        (None, Ok(Opened::Tunnel(..))) => {
            limits.metrics.refused(None);
            return;
        }
    };
    let _active = limits.metrics.opened(protocol);
    if !early.is_empty() && upstream.write_all(&early).await.is_err() {
        return;
    }
    // Half-closes travel both ways; the lease lives as long as the tunnel.
    let (stream, lease) = upstream.into_parts();
    let suspect = || {
        if let Some(lease) = &lease {
            tracing::info!(
                target: "proxypool::gateway",
                "{} sent nothing back for {:?} after its client spoke: probing it",
                lease.url(),
                limits.silent
            );
            lease.suspect();
        }
    };
    let silence = (lease.is_some() && !limits.silent.is_zero()).then_some(Silence {
        after: limits.silent,
        report: &suspect,
    });
    let moved = relay(client, stream, limits.idle, silence).await;
    if let Some(lease) = &lease {
        lease.add_bytes(moved.up, moved.down);
    }
}

/// Relays in the kernel where both ends are plain sockets, else through buffers.
async fn relay(
    client: TcpStream,
    upstream: crate::balancer::ProxyStream,
    idle: Duration,
    silence: Option<Silence<'_>>,
) -> super::relay::Moved {
    #[cfg(target_os = "linux")]
    let upstream = match upstream.into_tcp() {
        Ok(tcp) => return super::relay::splice(client, tcp, idle, silence).await,
        Err(stream) => stream,
    };
    super::relay::relay(client, upstream, idle, silence).await
}

/// What a handshake opened.
enum Opened {
    /// A tunnel, and the bytes the client sent after its request (they belong to it).
    Tunnel(Box<Tunnel>, Vec<u8>),
    /// An HTTP request to forward: every byte read so far, that request first.
    Forward(Vec<u8>),
}

/// Reads until `parse` has a whole message; what came after it is kept in `buf`.
async fn read_message<T>(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Parse<T>,
) -> Result<T, Refusal> {
    let (msg, consumed) = peek_message(client, buf, parse).await?;
    buf.drain(..consumed);
    Ok(msg)
}

/// As [`read_message`], leaving the message in `buf` too: the message and its length.
async fn peek_message<T>(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Parse<T>,
) -> Result<(T, usize), Refusal> {
    loop {
        match parse(buf) {
            Parse::Complete(msg, consumed) => return Ok((msg, consumed)),
            Parse::Invalid(why) => return Err(Refusal::Malformed(why)),
            Parse::Partial => {
                let mut chunk = [0u8; 2048];
                let n = client
                    .read(&mut chunk)
                    .await
                    .map_err(|_| Refusal::Malformed("read failed"))?;
                if n == 0 {
                    return Err(Refusal::Malformed("closed during the handshake"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// The protocol told from the first byte, and the handshake's outcome.
type Handshake = (Option<Protocol>, Result<Opened, Refusal>);

/// The handshake of whatever protocol the client speaks, up to an open tunnel or a
/// request to forward.
async fn handshake(client: &mut TcpStream, balancer: &Balancer, limits: ConnLimits) -> Handshake {
    // The first read goes into the buffer every protocol parses from: no peek, one
    // system call fewer per connection.
    let mut buf = Vec::with_capacity(512);
    let Ok(n) = client.read_buf(&mut buf).await else {
        return (None, Err(Refusal::Malformed("read failed")));
    };
    let protocol = (n > 0).then(|| sniff(buf[0])).flatten();
    let tunnel =
        |r: Result<(Tunnel, Vec<u8>), Refusal>| r.map(|(c, e)| Opened::Tunnel(Box::new(c), e));
    let outcome = match protocol {
        Some(Protocol::Socks5) => {
            tunnel(socks5_handshake(client, &mut buf, balancer, limits).await)
        }
        Some(Protocol::Socks4) => {
            tunnel(socks4_handshake(client, &mut buf, balancer, limits).await)
        }
        Some(Protocol::Http) => http_handshake(client, &mut buf, balancer, limits).await,
        None => Err(Refusal::Malformed("not SOCKS5, SOCKS4 or HTTP")),
    };
    (protocol, outcome)
}

async fn socks5_handshake(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    balancer: &Balancer,
    limits: ConnLimits,
) -> Result<(Tunnel, Vec<u8>), Refusal> {
    // Every malformed message still gets the answer its step allows.
    let greeting = match read_message(client, buf, socks5::parse_greeting).await {
        Ok(g) => g,
        Err(r) => {
            let _ = client
                .write_all(&socks5::method_reply(socks5::NO_ACCEPTABLE))
                .await;
            return Err(r);
        }
    };
    // User/password when offered: the user name names the exchange. A listener
    // with auth takes nothing else.
    let method = if greeting.user_pass {
        socks5::USER_PASS
    } else if greeting.no_auth && limits.auth.is_none() {
        socks5::NO_AUTH
    } else {
        socks5::NO_ACCEPTABLE
    };
    write(client, &socks5::method_reply(method)).await?;
    if method == socks5::NO_ACCEPTABLE {
        return Err(Refusal::Unsupported("no acceptable authentication method"));
    }
    let mut user = None;
    if method == socks5::USER_PASS {
        let up = match read_message(client, buf, socks5::parse_user_pass).await {
            Ok(up) => up,
            Err(r) => {
                let _ = client.write_all(&socks5::user_pass_reply(false)).await;
                return Err(r);
            }
        };
        // Without client auth the password is ignored, but it must be accepted:
        // python-socks sends no user name without one.
        let ok = limits.auth.as_ref().is_none_or(|a| a.accepts(&up.pass));
        write(client, &socks5::user_pass_reply(ok)).await?;
        if !ok {
            return Err(Refusal::AuthRequired);
        }
        user = Some(up.user);
    }
    let request = match read_message(client, buf, socks5::parse_request).await {
        Ok(r) => r,
        Err(r) => {
            let _ = client.write_all(&socks5::reply(r.socks5())).await;
            return Err(r);
        }
    };
    let result = if request.command != socks5::CMD_CONNECT {
        Err(Refusal::Unsupported("only CONNECT is served"))
    } else {
        open(balancer, user.as_deref(), request.destination, limits).await
    };
    match result {
        Ok(c) => {
            write(client, &socks5::reply(socks5::Reply::Succeeded)).await?;
            Ok((c, std::mem::take(buf)))
        }
        Err(r) => {
            let _ = client.write_all(&socks5::reply(r.socks5())).await;
            Err(r)
        }
    }
}

async fn socks4_handshake(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    balancer: &Balancer,
    limits: ConnLimits,
) -> Result<(Tunnel, Vec<u8>), Refusal> {
    let request = match read_message(client, buf, socks4::parse_request).await {
        Ok(r) => r,
        Err(r) => {
            let _ = client.write_all(&socks4::reply(false)).await;
            return Err(r);
        }
    };
    let result = if limits.auth.is_some() {
        // SOCKS4 has no password to check.
        Err(Refusal::AuthRequired)
    } else if request.command != socks4::CMD_CONNECT {
        Err(Refusal::Unsupported("only CONNECT is served"))
    } else {
        let user = (!request.user_id.is_empty()).then_some(request.user_id.as_str());
        open(balancer, user, request.destination, limits).await
    };
    match result {
        Ok(c) => {
            write(client, &socks4::reply(true)).await?;
            Ok((c, std::mem::take(buf)))
        }
        Err(r) => {
            let _ = client.write_all(&socks4::reply(false)).await;
            Err(r)
        }
    }
}

async fn http_handshake(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    balancer: &Balancer,
    limits: ConnLimits,
) -> Result<Opened, Refusal> {
    let (request, consumed) = match peek_message(client, buf, http::parse_request).await {
        Ok(r) => r,
        Err(r) => {
            let (status, why) = r.http();
            let _ = client.write_all(&http::error_response(status, &why)).await;
            return Err(r);
        }
    };
    let (host, port) = match &request.target {
        http::Target::Connect { host, port } => (host, *port),
        // Forwarding serves this request and the ones after it, each on its own.
        http::Target::Forward { .. } => return Ok(Opened::Forward(std::mem::take(buf))),
    };
    buf.drain(..consumed);
    if let Some(need) = &limits.auth
        && !request.auth.as_ref().is_some_and(|a| need.accepts(&a.pass))
    {
        let r = Refusal::AuthRequired;
        let (status, why) = r.http();
        let _ = client.write_all(&http::error_response(status, &why)).await;
        return Err(r);
    }
    let user = request.auth.as_ref().map(|a| a.user.as_str());
    let destination = Destination::Name(host.clone(), port);
    match open(balancer, user, destination, limits).await {
        Ok(c) => {
            let answer = http::connect_established(c.upstream().as_deref());
            write(client, &answer).await?;
            Ok(Opened::Tunnel(Box::new(c), std::mem::take(buf)))
        }
        Err(r) => {
            let (status, why) = r.http();
            let _ = client.write_all(&http::error_response(status, &why)).await;
            Err(r)
        }
    }
}

/// The tunnel for a request, routed by [`route`]; the destination as the client
/// gave it.
pub(crate) async fn open(
    balancer: &Balancer,
    user: Option<&str>,
    destination: Destination,
    limits: ConnLimits,
) -> Result<Tunnel, Refusal> {
    let (user, session) = match user {
        Some(u) => {
            let (u, s) = super::session::split_user(u);
            (Some(u), s)
        }
        None => (None, None),
    };
    if session.is_some_and(|k| k.len() > super::session::MAX_SESSION_KEY) {
        return Err(Refusal::Malformed(
            "session key longer than 64 bytes (after +session=)",
        ));
    }
    let destination = route::normalize(destination);
    route::check(balancer.destination_guard().as_deref(), &destination)?;
    let (exchange, transport) = route(balancer, user, &destination, limits.transport)?;
    let target = match &destination {
        Destination::Ip(addr) => Target::from(*addr),
        Destination::Name(host, port) => {
            Target::try_new(host.as_str(), *port).map_err(|_| Refusal::BadDestination)?
        }
    };
    let session_exchange = exchange.as_deref().unwrap_or("default");
    let prefer = session.and_then(|key| limits.sessions.get(session_exchange, transport, key));
    let connect =
        balancer.connect_preferring(exchange.as_deref(), transport, &target, prefer.as_deref());
    let connected = match limits.deadline {
        Some(at) => tokio::time::timeout_at(at, connect)
            .await
            .map_err(|_| Refusal::TimedOut)?,
        None => connect.await,
    }
    .map_err(|e| Refusal::Dial(Box::new(e)))?;
    if let (Some(key), Some(upstream)) = (session, connected.upstream()) {
        if prefer.as_deref() != Some(upstream.as_str()) {
            tracing::debug!(target: "proxypool::gateway", upstream = %upstream, "session moved");
        }
        limits
            .sessions
            .put(session_exchange, transport, key, upstream);
    }
    Ok(connected)
}

async fn write(client: &mut TcpStream, bytes: &[u8]) -> Result<(), Refusal> {
    client
        .write_all(bytes)
        .await
        .map_err(|_| Refusal::Malformed("write failed"))
}
