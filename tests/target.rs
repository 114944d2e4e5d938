//! A destination server that records where each connection came from.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The first line a target sends to every connection, before echoing.
pub const GREETING: &[u8] = b"hello from target\n";

/// An echo server on 127.0.0.1:0. It greets, then echoes until the client
/// half-closes, then closes. Each connection's source address is recorded, so a test
/// can tell which proxy (each binds its own 127.0.0.x) carried it.
pub struct TargetServer {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl TargetServer {
    /// Starts the server.
    pub async fn start() -> TargetServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = peers.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, peer)) = listener.accept().await else {
                    return;
                };
                seen.lock().unwrap().push(peer);
                tokio::spawn(async move {
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
                });
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
