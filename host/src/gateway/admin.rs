//! The admin endpoint: `GET /metrics` (Prometheus text), `GET /status` (JSON),
//! `GET /healthz`, `GET /readyz` (not ready once shutdown starts), `POST /report`
//! (a ban reported by a client, JSON) and `POST /reload` (read the configuration
//! again). Plain HTTP/1.1, one request per connection,
//! parsed with `httparse`. With a token configured, write routes take it as
//! `Authorization: Bearer TOKEN`; without one the endpoint is loopback only (the
//! configuration refuses anything else).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::session::Sessions;
use crate::balancer::Balancer;
use crate::config::AdminToken;

/// An admin request's head larger than this is refused.
const MAX_HEAD: usize = 8 * 1024;
/// A `POST /report` body larger than this is refused.
const MAX_BODY: usize = 4 * 1024;
/// A `POST /plan` body (a configuration file) larger than this is refused.
const MAX_PLAN: usize = 1024 * 1024;
/// A client that has not sent its request in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once; more wait in the kernel's backlog. Scrapers
/// and operators need a handful.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// What the admin endpoint serves from.
#[derive(Debug)]
pub(crate) struct Admin {
    /// The pools.
    pub balancer: Arc<Balancer>,
    /// The gateway's sticky sessions, for a ban reported by session key.
    pub sessions: Arc<Sessions>,
    /// The token write routes take, if any.
    pub token: Option<AdminToken>,
    /// True once shutdown starts: `/readyz` then answers 503.
    pub draining: watch::Receiver<bool>,
    /// What `POST /reload` runs; without it the route answers 404.
    pub reloader: Option<Arc<super::reload::Reloader>>,
}

/// Serves the admin endpoint on `listener` until `stop` turns true (the caller keeps
/// it running through the drain, so that `/readyz` can say so).
pub(crate) async fn run(listener: TcpListener, admin: Arc<Admin>, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((client, _)) = accepted else {
            // Out of descriptors and the like: the gateway's own accept loop backs
            // off; here a short pause is enough.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, serve(client, &admin)).await;
            drop(permit);
        });
    }
}

/// One request's head.
struct Head {
    method: String,
    path: String,
    authorization: Option<String>,
    len: usize,
    body_len: usize,
}

async fn read_head(client: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Head>> {
    loop {
        let mut chunk = [0u8; 1024];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                let body_len = header("content-length")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0usize);
                return Ok(Some(Head {
                    method: req.method.unwrap_or("").to_owned(),
                    path: req.path.unwrap_or("").to_owned(),
                    authorization: header("authorization").map(str::to_owned),
                    len,
                    body_len,
                }));
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
            _ => return Err(std::io::ErrorKind::InvalidData.into()),
        }
    }
}

async fn serve(mut client: TcpStream, admin: &Admin) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = match read_head(&mut client, &mut buf).await {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(()),
        Err(_) => return respond(&mut client, 400, "text/plain", b"bad request\n").await,
    };
    let path = head.path.split('?').next().unwrap_or("");
    // `/plan` changes nothing, but its body is a configuration, credentials and all.
    let write_route = matches!(path, "/report" | "/reload" | "/plan");
    match (head.method.as_str(), path) {
        ("POST", "/report" | "/reload" | "/plan") => {}
        (_, "/report" | "/reload" | "/plan") => {
            return respond(&mut client, 405, "text/plain", b"POST only\n").await;
        }
        ("GET", _) => {}
        _ => return respond(&mut client, 405, "text/plain", b"GET only\n").await,
    }
    if write_route
        && let Some(token) = &admin.token
        && !head
            .authorization
            .as_deref()
            .is_some_and(|v| token.accepts_header(v))
    {
        return respond(
            &mut client,
            401,
            "text/plain",
            b"this route takes Authorization: Bearer TOKEN (gateway.admin_token)\n",
        )
        .await;
    }
    if write_route {
        return serve_write(&mut client, admin, path, &head, buf).await;
    }
    serve_read(&mut client, admin, path).await
}

/// A write route, authorised: `/reload`, `/plan` or `/report`.
async fn serve_write(
    client: &mut TcpStream,
    admin: &Admin,
    path: &str,
    head: &Head,
    mut buf: Vec<u8>,
) -> std::io::Result<()> {
    if path == "/reload" {
        let Some(reloader) = &admin.reloader else {
            return respond(client, 404, "text/plain", b"no configuration to reload\n").await;
        };
        let (status, text) = match reloader.reload("POST /reload").await {
            Ok(report) => (200, format!("{report}\n")),
            Err(why) => (
                422,
                format!("rejected, the running configuration keeps serving: {why}\n"),
            ),
        };
        return respond(client, status, "text/plain", text.as_bytes()).await;
    }
    let limit = if path == "/plan" { MAX_PLAN } else { MAX_BODY };
    if head.body_len > limit {
        return respond(client, 413, "text/plain", b"body too large\n").await;
    }
    while buf.len() < head.len + head.body_len {
        let mut chunk = [0u8; 1024];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head.len..(head.len + head.body_len).min(buf.len())];
    if path == "/plan" {
        let (status, text) = plan(&admin.balancer, body);
        return respond(client, status, "text/plain", text.as_bytes()).await;
    }
    let (status, text) = match report(admin, body) {
        Ok(()) => (204, String::new()),
        Err((status, why)) => (status, format!("{why}\n")),
    };
    respond(client, status, "text/plain", text.as_bytes()).await
}

/// A read route: health, readiness, metrics and status.
async fn serve_read(client: &mut TcpStream, admin: &Admin, path: &str) -> std::io::Result<()> {
    let draining = *admin.draining.borrow();
    match path {
        "/healthz" => respond(client, 200, "text/plain", b"ok\n").await,
        "/readyz" if draining => respond(client, 503, "text/plain", b"draining\n").await,
        "/readyz" => respond(client, 200, "text/plain", b"ready\n").await,
        "/metrics" => {
            let text = admin.balancer.metrics().render();
            let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
            respond(client, 200, content_type, text.as_bytes()).await
        }
        "/status" => {
            let body = status_json(&admin.balancer, draining);
            respond(client, 200, "application/json", body.as_bytes()).await
        }
        _ => respond(client, 404, "text/plain", b"not found\n").await,
    }
}

/// `POST /report`: `{"exchange": "binance", "outcome": "rate_limited" | "banned" |
/// "geo_blocked", "retry_after_seconds": 30}` with either `"upstream":
/// "exchanges.binance.http/1"` (as the `Proxypool-Upstream` header gives it) or
/// `"session": "KEY"` (the upstreams that session of that exchange sticks to).
fn report(admin: &Admin, body: &[u8]) -> Result<(), (u16, String)> {
    use crate::balancer::Outcome;
    let bad = |why: &str| (400, why.to_owned());
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("the body is not JSON"))?;
    let exchange = v["exchange"]
        .as_str()
        .ok_or_else(|| bad("exchange: missing"))?;
    // Bans are kept per exchange: only names the gateway knows, so that reports
    // cannot grow the ban list with names of their own.
    if !super::route::known_exchange(&admin.balancer, &exchange.to_ascii_lowercase()) {
        return Err(bad(
            "exchange: not one the configuration, gateway.routes or cryptofeed's hosts name",
        ));
    }
    let retry_after = match &v["retry_after_seconds"] {
        serde_json::Value::Null => None,
        n => Some(Duration::from_secs(
            n.as_u64()
                .ok_or_else(|| bad("retry_after_seconds: a whole number"))?,
        )),
    };
    let outcome = match v["outcome"].as_str() {
        Some("rate_limited") => Outcome::RateLimited { retry_after },
        Some("banned") => Outcome::Banned { retry_after },
        Some("geo_blocked") => Outcome::GeoBlocked,
        _ => return Err(bad("outcome: rate_limited, banned or geo_blocked")),
    };
    let upstreams = match (v["upstream"].as_str(), v["session"].as_str()) {
        (Some(upstream), None) => vec![upstream.to_owned()],
        (None, Some(key)) => {
            let found = admin.sessions.upstreams(exchange, key);
            if found.is_empty() {
                return Err((
                    404,
                    format!("session: no live session {key:?} for exchange {exchange:?}"),
                ));
            }
            found
        }
        _ => return Err(bad("give either upstream (route/id) or session (its key)")),
    };
    for upstream in upstreams {
        let upstream: crate::config::UpstreamRef = upstream.parse().map_err(|why| {
            bad(&format!(
                "upstream: {why}, as the Proxypool-Upstream header gives it"
            ))
        })?;
        admin
            .balancer
            .report(&upstream.route.to_string(), upstream.id, exchange, outcome)
            .map_err(|e| (404, e.to_string()))?;
    }
    Ok(())
}

/// `POST /plan`: what a reload to the configuration in the body (YAML, with this
/// process's environment over it, as at start) would change.
fn plan(balancer: &Balancer, body: &[u8]) -> (u16, String) {
    let Ok(yaml) = std::str::from_utf8(body) else {
        return (400, "the body is not UTF-8\n".into());
    };
    match crate::config::ConfigBuilder::new()
        .yaml_str(yaml)
        .process_env()
        .build()
    {
        Ok(config) => (200, format!("{}\n", balancer.plan(&config))),
        Err(e) => (422, format!("{e}\n")),
    }
}

/// Every pool's members, as `/status` shows them: names are the redacted labels.
pub fn status_json(balancer: &Balancer, draining: bool) -> String {
    let pools: Vec<serde_json::Value> = balancer
        .status()
        .into_iter()
        .map(|(route, members)| {
            let members: Vec<serde_json::Value> = members
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "id": m.id,
                        "proxy": m.label,
                        "eligible": m.eligible,
                        "enabled": m.enabled,
                        "healthy": m.healthy,
                        "probed": m.probed,
                        "breaker": m.breaker.as_str(),
                        "misconfigured": m.misconfigured,
                        "active": m.active,
                        "picks": m.picks,
                        "handshake_p50_ms": m.handshake_p50.map(|d| d.as_secs_f64() * 1e3),
                        "reason": if m.eligible { "" } else { m.reason.as_str() },
                        "bans": m.bans.iter().map(|(exchange, reason)| serde_json::json!({
                            "exchange": exchange,
                            "reason": reason.as_str(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let eligible = members.iter().filter(|m| m["eligible"] == true).count();
            serde_json::json!({ "route": route, "eligible": eligible, "members": members })
        })
        .collect();
    let last_reload = balancer.last_reload().map(|r| {
        let at =
            r.at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
        serde_json::json!({ "at_unix": at, "ok": r.ok, "summary": r.summary })
    });
    serde_json::json!({
        "ready": !draining,
        "generation": balancer.generation(),
        "last_reload": last_reload,
        "pools": pools,
    })
    .to_string()
}

async fn respond(
    client: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let phrase = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body).await?;
    client.shutdown().await
}
