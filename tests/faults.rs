//! Small in-process proxies that fail on purpose, one way each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How a fault proxy misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Nothing listens: connections are refused.
    Refuse,
    /// Accepts and never says a word.
    Blackhole,
    /// Reads the first bytes of the handshake, then resets the connection.
    ResetMidHandshake,
    /// Answers the first bytes with bytes that are no proxy protocol.
    Garbage,
    /// A SOCKS5 proxy that accepts no-auth and answers CONNECT with this reply code.
    Socks5Reply(u8),
    /// A SOCKS5 proxy that asks for user/password and rejects it.
    Socks5AuthReject,
    /// A SOCKS4 proxy that answers CONNECT with this code (0x5B rejected).
    Socks4Reply(u8),
    /// An HTTP proxy that answers CONNECT with this status.
    HttpStatus(u16),
    /// A working no-auth SOCKS5 proxy that waits this long before its first answer.
    Slow(std::time::Duration),
    /// As `Slow` for its first connection only; later ones are answered at once
    /// (a healthy proxy one handshake of which a loaded machine delayed).
    SlowFirst(std::time::Duration),
}

/// A running fault proxy; stopped on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts one on 127.0.0.1:0.
    pub async fn start(fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        if let Fault::Refuse = fault {
            drop(listener);
            return FaultProxy {
                addr,
                accepted,
                task: None,
            };
        }
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                if let Fault::Blackhole = fault {
                    held.push(s);
                    continue;
                }
                let fault = match fault {
                    Fault::SlowFirst(d) if n == 0 => Fault::Slow(d),
                    Fault::SlowFirst(_) => Fault::Slow(std::time::Duration::ZERO),
                    f => f,
                };
                tokio::spawn(serve(s, fault));
            }
        });
        FaultProxy {
            addr,
            accepted,
            task: Some(task),
        }
    }

    /// Where it listens (or listened, for [`Fault::Refuse`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// A proxy URL for it with `scheme`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

async fn serve(mut s: TcpStream, fault: Fault) {
    let mut buf = [0u8; 1024];
    match fault {
        Fault::Refuse | Fault::Blackhole => {}
        Fault::ResetMidHandshake => {
            let _ = s.read(&mut buf).await;
            let _ = s.set_zero_linger();
            drop(s);
        }
        Fault::Garbage => {
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"\xde\xad\xbe\xef this is not a proxy\r\n\r\n")
                .await;
        }
        Fault::Socks5Reply(code) => {
            if socks5_greeting(&mut s, 0).await.is_none() {
                return;
            }
            if socks5_request(&mut s).await.is_none() {
                return;
            }
            let _ = s.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        }
        Fault::Socks5AuthReject => {
            if socks5_greeting(&mut s, 2).await.is_none() {
                return;
            }
            // RFC 1929: ver, ulen, user, plen, pass
            let mut head = [0u8; 2];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            let mut user = vec![0u8; head[1] as usize + 1];
            if s.read_exact(&mut user).await.is_err() {
                return;
            }
            let mut pass = vec![0u8; user[head[1] as usize] as usize];
            let _ = s.read_exact(&mut pass).await;
            let _ = s.write_all(&[1, 1]).await;
        }
        Fault::Socks4Reply(code) => {
            // VN CD DSTPORT DSTIP USERID NUL [HOST NUL for 4a]
            let mut req = Vec::new();
            loop {
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                req.extend_from_slice(&buf[..n]);
                let nuls = req.iter().skip(8).filter(|b| **b == 0).count();
                let is_4a = req.len() >= 8 && req[4..7] == [0, 0, 0] && req[7] != 0;
                if nuls >= if is_4a { 2 } else { 1 } {
                    break;
                }
            }
            let _ = s.write_all(&[0, code, 0, 0, 0, 0, 0, 0]).await;
        }
        Fault::Slow(delay) | Fault::SlowFirst(delay) => {
            if socks5_greeting_after(&mut s, 0, delay).await.is_none() {
                return;
            }
            let Some(dest) = socks5_connect_request(&mut s).await else {
                return;
            };
            let Ok(mut upstream) = TcpStream::connect(dest).await else {
                let _ = s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
                return;
            };
            if s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut s, &mut upstream).await;
            }
        }
        Fault::HttpStatus(status) => {
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s
                .write_all(
                    format!("HTTP/1.1 {status} Fault\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                )
                .await;
        }
    }
}

/// Reads the client's method list and selects `method`.
async fn socks5_greeting(s: &mut TcpStream, method: u8) -> Option<()> {
    socks5_greeting_after(s, method, std::time::Duration::ZERO).await
}

/// As [`socks5_greeting`], answering only after `delay`.
async fn socks5_greeting_after(
    s: &mut TcpStream,
    method: u8,
    delay: std::time::Duration,
) -> Option<()> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.ok()?;
    let mut methods = vec![0u8; head[1] as usize];
    s.read_exact(&mut methods).await.ok()?;
    tokio::time::sleep(delay).await;
    s.write_all(&[5, method]).await.ok()
}

/// Reads a SOCKS5 CONNECT request for an IPv4 address or a name: where to.
async fn socks5_connect_request(s: &mut TcpStream) -> Option<String> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.ok()?;
    let host = match head[3] {
        1 => {
            let mut ip = [0u8; 4];
            s.read_exact(&mut ip).await.ok()?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await.ok()?;
            let mut name = vec![0u8; l[0] as usize];
            s.read_exact(&mut name).await.ok()?;
            String::from_utf8(name).ok()?
        }
        _ => return None,
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await.ok()?;
    Some(format!("{host}:{}", u16::from_be_bytes(port)))
}

/// Reads a whole SOCKS5 request.
async fn socks5_request(s: &mut TcpStream) -> Option<()> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.ok()?;
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await.ok()?;
            l[0] as usize
        }
        _ => return None,
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).await.ok().map(drop)
}
