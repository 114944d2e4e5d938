//! A destination server that records where each connection came from.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The first line a target sends to every connection, before echoing.
pub const GREETING: &[u8] = b"hello from target\n";

/// A destination on 127.0.0.1:0: an echo server ([`TargetServer::start`]) or an HTTP
/// one ([`TargetServer::start_http`]). Each connection's source address is recorded,
/// so a test can tell which proxy (each binds its own 127.0.0.x) carried it.
pub struct TargetServer {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl TargetServer {
    /// Starts the echo server.
    pub async fn start() -> TargetServer {
        Self::serve(echo).await
    }

    /// Starts an HTTP server for clients such as curl instead: every request gets
    /// `200 OK` with a body of [`GREETING`] and the request line it received (so a
    /// test can see the origin form a proxy sent), on kept-alive connections.
    /// Connections are recorded alike.
    pub async fn start_http() -> TargetServer {
        Self::serve(http_ok).await
    }

    async fn serve<F, Fut>(handle: F) -> TargetServer
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = peers.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, peer)) = listener.accept().await else {
                    return;
                };
                seen.lock().unwrap().push(peer);
                tokio::spawn(handle(s));
            }
        });
        TargetServer { addr, peers, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Source IPs of the connections so far, in order.
    pub fn peer_ips(&self) -> Vec<IpAddr> {
        self.peers.lock().unwrap().iter().map(|p| p.ip()).collect()
    }
}

impl Drop for TargetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain HTTP server that answers every request with the status it is set to, for
/// the `http` probe. Counts the requests it answered.
pub struct HttpStatusServer {
    addr: SocketAddr,
    status: Arc<std::sync::atomic::AtomicU16>,
    task: JoinHandle<()>,
}

impl HttpStatusServer {
    /// Starts one on 127.0.0.1:0 answering `status`.
    pub async fn start(status: u16) -> HttpStatusServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(std::sync::atomic::AtomicU16::new(status));
        let current = status.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let code = current.load(std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        HttpStatusServer { addr, status, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for HttpStatusServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Greets, then echoes until the client half-closes, then closes.
async fn echo(mut s: TcpStream) {
    if s.write_all(GREETING).await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown().await;
}

/// Answers each request head with `200 OK`, [`GREETING`] and its request line, and
/// keeps the connection open for the next unless the request says `Connection:
/// close` (request bodies are not expected).
async fn http_ok(mut s: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        head.drain(..end);
        let line = text.lines().next().unwrap_or("").to_owned();
        let close = text
            .lines()
            .any(|l| l.to_ascii_lowercase().replace(' ', "") == "connection:close");
        let body = format!("{}{line}\n", String::from_utf8_lossy(GREETING));
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        if s.write_all(reply.as_bytes()).await.is_err() || close {
            break;
        }
    }
    let _ = s.shutdown().await;
}
