//! The admin endpoint: `GET /metrics` (Prometheus text), `GET /status` (JSON),
//! `GET /healthz`, `GET /readyz` (not ready once shutdown starts), and `POST /report`
//! (a ban reported by a client, JSON). Plain HTTP/1.1, one request per connection,
//! parsed with `httparse`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::balancer::Balancer;

/// An admin request's head larger than this is refused.
const MAX_HEAD: usize = 8 * 1024;
/// A `POST /report` body larger than this is refused.
const MAX_BODY: usize = 4 * 1024;
/// A client that has not sent its request in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin endpoint on `listener` until `shutdown` turns true; `/readyz`
/// answers 503 from then on while the gateway drains (the caller keeps it running).
pub async fn run(
    listener: TcpListener,
    balancer: Arc<Balancer>,
    draining: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
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
        let (balancer, draining) = (balancer.clone(), draining.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, serve(client, &balancer, &draining)).await;
        });
    }
}

async fn serve(
    mut client: TcpStream,
    balancer: &Balancer,
    draining: &watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let (method, path, head_len, body_len) = loop {
        let mut chunk = [0u8; 1024];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let body_len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                break (
                    req.method.unwrap_or("").to_owned(),
                    req.path.unwrap_or("").to_owned(),
                    head_len,
                    body_len,
                );
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
            _ => return respond(&mut client, 400, "text/plain", b"bad request\n").await,
        }
    };
    if method == "POST" && path == "/report" {
        if body_len > MAX_BODY {
            return respond(&mut client, 413, "text/plain", b"body too large\n").await;
        }
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = &buf[head_len..(head_len + body_len).min(buf.len())];
        let (status, text) = match report(balancer, body) {
            Ok(()) => (204, String::new()),
            Err((status, why)) => (status, format!("{why}\n")),
        };
        return respond(&mut client, status, "text/plain", text.as_bytes()).await;
    }
    let path = path.split('?').next().unwrap_or("");
    if method != "GET" {
        if path == "/report" {
            return respond(&mut client, 405, "text/plain", b"POST only\n").await;
        }
        return respond(&mut client, 405, "text/plain", b"GET only\n").await;
    }
    match path {
        "/report" => respond(&mut client, 405, "text/plain", b"POST only\n").await,
        "/healthz" => respond(&mut client, 200, "text/plain", b"ok\n").await,
        "/readyz" if *draining.borrow() => {
            respond(&mut client, 503, "text/plain", b"draining\n").await
        }
        "/readyz" => respond(&mut client, 200, "text/plain", b"ready\n").await,
        "/metrics" => {
            let text = balancer.metrics().render();
            respond(
                &mut client,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.as_bytes(),
            )
            .await
        }
        "/status" => {
            let body = status_json(balancer, *draining.borrow());
            respond(&mut client, 200, "application/json", body.as_bytes()).await
        }
        _ => respond(&mut client, 404, "text/plain", b"not found\n").await,
    }
}

/// `POST /report`: `{"upstream": "exchanges.binance.http/1", "exchange": "binance",
/// "outcome": "rate_limited" | "banned" | "geo_blocked", "retry_after_seconds": 30}`.
fn report(balancer: &Balancer, body: &[u8]) -> Result<(), (u16, String)> {
    use crate::pool::Outcome;
    let bad = |why: &str| (400, why.to_owned());
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("the body is not JSON"))?;
    let upstream = v["upstream"]
        .as_str()
        .ok_or_else(|| bad("upstream: missing"))?;
    let (route, id) = upstream
        .rsplit_once('/')
        .and_then(|(r, id)| Some((r, id.parse::<u32>().ok()?)))
        .ok_or_else(|| {
            bad("upstream: expected route/id, as the Proxypool-Upstream header gives it")
        })?;
    let exchange = v["exchange"]
        .as_str()
        .ok_or_else(|| bad("exchange: missing"))?;
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
    balancer
        .report(route, id, exchange, outcome)
        .map_err(|e| (404, e.to_string()))
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
    serde_json::json!({ "ready": !draining, "pools": pools }).to_string()
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
        413 => "Content Too Large",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body).await?;
    client.shutdown().await
}
