//! Plain-HTTP forwarding (`GET http://host/path` sent to the gateway), served by
//! hyper with keep-alive on both sides. Each request on the client's connection is
//! routed on its own (user name, host patterns, the built-in table) and goes to its
//! origin in origin form through a pooled tunnel; the connection keeps that tunnel
//! for the next request while it is for the same origin and user. Hop-by-hop
//! headers are dropped both ways (RFC 9110 §7.6.1), and the response names its
//! upstream in `Proxypool-Upstream`, as a CONNECT answer does.

use crate::sync::Locked as _;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::conn::{ConnLimits, Refusal, open};
use super::http;
use super::metrics::ActiveGuard;
use super::parse::Destination;
use super::sniff::Protocol;
use crate::balancer::Balancer;
use crate::balancer::{Lease, ProxyStream, Replay};

type Body = Either<Incoming, Empty<Bytes>>;

/// Who a request is for: the user name (the exchange) and the origin.
type OriginKey = (Option<String>, String, u16);

/// A tunnel to one origin, kept between requests.
struct Origin {
    key: OriginKey,
    sender: SendRequest<Incoming>,
    upstream: Option<HeaderValue>,
}

struct Forwarder<'a> {
    balancer: &'a Balancer,
    limits: ConnLimits,
    /// Taken while a request uses it, put back once its response head is in.
    origin: Mutex<Option<Origin>>,
    /// Shared with the client side's watch: origin bytes count as activity too.
    activity: Arc<Activity>,
}

/// Serves a client connection whose first request (replayed by `client`) asks to
/// forward, until the client closes it or it idles for the listener's idle time.
pub(crate) async fn serve(client: Replay<TcpStream>, balancer: &Balancer, limits: ConnLimits) {
    let (idle, heads) = (limits.idle, limits.handshake);
    let activity = Arc::new(Activity::new());
    let forwarder = Forwarder {
        balancer,
        limits,
        origin: Mutex::new(None),
        activity: activity.clone(),
    };
    let fwd = &forwarder;
    let service = hyper::service::service_fn(move |req| fwd.handle(req));
    let client = Watched {
        inner: client,
        activity: activity.clone(),
    };
    // Every head, the first and each later one, within the handshake timeout (it
    // also bounds the wait for the next request of a kept-alive connection).
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(heads)
        .serve_connection(TokioIo::new(client), service);
    // A body or response no side moves (a client that never reads) ends at the
    // idle time, as a tunnel does: nothing holds a permit for ever.
    tokio::select! {
        served = served => {
            if let Err(e) = served {
                tracing::debug!(target: "proxypool::gateway", "forwarding connection ended: {e}");
            }
        }
        _ = activity.idle_for(idle) => {
            tracing::debug!(target: "proxypool::gateway", "forwarding connection idle for {idle:?}: closed");
        }
    }
}

/// When bytes last moved on a forwarding connection, either side.
#[derive(Debug)]
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds from `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once no byte has moved for `idle`.
    async fn idle_for(&self, idle: std::time::Duration) {
        loop {
            let last =
                self.start + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if tokio::time::Instant::now() >= last + idle {
                return;
            }
            tokio::time::sleep_until(last + idle).await;
        }
    }
}

/// A stream that notes each read and write that moved bytes.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Forwarder<'_> {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        Ok(match self.forward(req).await {
            Ok(response) => response,
            Err(refusal) => {
                self.limits.metrics.refused(Some(Protocol::Http));
                tracing::debug!(target: "proxypool::gateway", "request refused: {refusal:?}");
                refusal_response(&refusal)
            }
        })
    }

    async fn forward(&self, mut req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
        let auth = match req.headers().get(PROXY_AUTHORIZATION) {
            Some(v) => Some(
                http::basic(v.as_bytes())
                    .ok_or(Refusal::Malformed("Proxy-Authorization is not Basic"))?,
            ),
            None => None,
        };
        // The listener's password now, not at accept: a reload that rotates it
        // ends the old one's use on kept-alive connections too.
        if let Some(need) = &self.limits.listener.load().auth
            && !auth.as_ref().is_some_and(|a| need.accepts(&a.pass))
        {
            return Err(Refusal::AuthRequired);
        }
        if req.method() == Method::CONNECT {
            return Err(Refusal::Unsupported(
                "CONNECT on a connection that forwards requests: open a new connection",
            ));
        }
        let uri = req.uri();
        if !uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http"))
        {
            return Err(Refusal::Malformed(
                "a proxy request needs an absolute http:// URI",
            ));
        }
        let authority = uri
            .authority()
            .ok_or(Refusal::Malformed("no host in the request URI"))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(Refusal::Malformed("credentials in a request URI"));
        }
        let (host, port) = http::split_host_port(authority.as_str())
            .ok_or(Refusal::Malformed("bad host in the request URI"))?;
        let key: OriginKey = (auth.map(|a| a.user), host, port.unwrap_or(80));
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = path
            .parse()
            .map_err(|_| Refusal::Malformed("bad request target"))?;
        // Transfer-Encoding is hop-by-hop and goes, but a body of unknown length
        // must still be sent chunked: hyper assumes a GET without it has none.
        let chunked = {
            use hyper::body::Body as _;
            !req.body().is_end_stream() && req.body().size_hint().exact().is_none()
        };
        strip_hop_by_hop_and_keep_host(&mut req, &authority);
        if chunked {
            req.headers_mut().insert(
                hyper::header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        let mut origin = match self.reuse(&key).await {
            Some(o) => o,
            None => self.connect(key).await?,
        };
        let response = origin.sender.send_request(req).await.map_err(|_| {
            Refusal::Origin("the origin closed the connection or sent a bad response")
        })?;
        let (mut parts, body) = response.into_parts();
        http::strip_hop_by_hop(&mut parts.headers);
        if let Some(u) = &origin.upstream {
            parts.headers.insert("proxypool-upstream", u.clone());
        }
        *self.origin.locked() = Some(origin);
        Ok(Response::from_parts(parts, Either::Left(body)))
    }

    /// The kept tunnel, if it goes to this origin for this user and is still open.
    async fn reuse(&self, key: &OriginKey) -> Option<Origin> {
        let kept = self.origin.locked().take();
        let mut origin = kept.filter(|o| o.key == *key)?;
        // Ready once the last response is done; an error once the origin closed.
        let ready = tokio::time::timeout(self.limits.handshake, origin.sender.ready()).await;
        matches!(ready, Ok(Ok(()))).then_some(origin)
    }

    async fn connect(&self, key: OriginKey) -> Result<Origin, Refusal> {
        let destination = Destination::Name(key.1.clone(), key.2);
        let mut limits = self.limits.clone();
        limits.deadline = Some(tokio::time::Instant::now() + limits.handshake);
        let connected = open(self.balancer, key.0.as_deref(), destination, limits).await?;
        let upstream = connected
            .upstream()
            .and_then(|u| HeaderValue::from_str(&u).ok());
        let (stream, lease) = connected.into_parts();
        let io = Counted {
            inner: Watched {
                inner: stream,
                activity: self.activity.clone(),
            },
            lease,
            up: 0,
            down: 0,
            _active: self.limits.metrics.opened(Protocol::Http),
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|_| Refusal::Origin("the HTTP handshake with the origin failed"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Origin {
            key,
            sender,
            upstream,
        })
    }
}

fn strip_hop_by_hop_and_keep_host(
    req: &mut Request<Incoming>,
    authority: &hyper::http::uri::Authority,
) {
    http::strip_hop_by_hop(req.headers_mut());
    if !req.headers().contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(HOST, host);
    }
}

/// The refusal as a response on the kept-alive connection, with the reason in
/// `Proxypool-Error` as [`http::error_response`] gives it.
fn refusal_response(refusal: &Refusal) -> Response<Body> {
    let (status, why) = refusal.http();
    let why = http::printable(&why);
    let mut response = Response::new(Either::Right(Empty::new()));
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.status_mut() = code;
    // The reason phrase says why, as a CONNECT refusal's does: clients show it.
    let phrase = format!("{}: {why}", code.canonical_reason().unwrap_or("Error"));
    if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(phrase.into_bytes()) {
        response.extensions_mut().insert(phrase);
    }
    if let Ok(v) = HeaderValue::from_str(&why) {
        response.headers_mut().insert("proxypool-error", v);
    }
    if status == 407 {
        response.headers_mut().insert(
            PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"proxypool\""),
        );
    }
    response
}

/// The tunnel to an origin, counting its bytes for the upstream's metrics (added
/// when it closes) and holding its lease and its active-tunnel count meanwhile.
struct Counted {
    inner: Watched<ProxyStream>,
    lease: Option<Lease>,
    up: u64,
    down: u64,
    _active: ActiveGuard,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(lease) = &self.lease {
            lease.add_bytes(self.up, self.down);
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.down += (buf.filled().len() - before) as u64;
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.up += n as u64;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
