//! Moving bytes between a client and its tunnel: both ways at once, half-closes
//! passed on, idle time bounded, bytes counted for the upstream's metrics.
//!
//! Between two plain TCP sockets on Linux, [`splice`] moves the bytes inside the
//! kernel (socket → pipe → socket, as HAProxy's `option splice-auto` does); any
//! other pair (a TLS hop, bytes replayed first) goes through [`relay`]'s buffers.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bytes moved by one relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Client → upstream.
    pub up: u64,
    /// Upstream → client.
    pub down: u64,
}

/// Relays until both sides have closed (an EOF on one side shuts the other's write
/// half down, so a half-close travels through), an error, or `idle` with no byte
/// either way.
pub async fn relay<A, B>(a: A, b: B, idle: Duration) -> Moved
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut moved = Moved::default();
    let (mut up_open, mut down_open) = (true, true);
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let mut deadline = Instant::now() + idle;
    while up_open || down_open {
        tokio::select! {
            r = ar.read(&mut up_buf), if up_open => match r {
                Ok(0) | Err(_) => {
                    up_open = false;
                    let _ = bw.shutdown().await;
                }
                Ok(n) => {
                    if bw.write_all(&up_buf[..n]).await.is_err() {
                        break;
                    }
                    moved.up += n as u64;
                    deadline = Instant::now() + idle;
                }
            },
            r = br.read(&mut down_buf), if down_open => match r {
                Ok(0) | Err(_) => {
                    down_open = false;
                    let _ = aw.shutdown().await;
                }
                Ok(n) => {
                    if aw.write_all(&down_buf[..n]).await.is_err() {
                        break;
                    }
                    moved.down += n as u64;
                    deadline = Instant::now() + idle;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(target: "proxypool::gateway", "tunnel idle for {idle:?}: closing");
                break;
            }
        }
    }
    moved
}

#[cfg(target_os = "linux")]
pub use self::splice::splice;

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::OwnedFd;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use nix::fcntl::{OFlag, SpliceFFlags};
    use tokio::io::Interest;
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::Moved;

    /// Bytes moved per splice: a pipe's default capacity.
    const CHUNK: usize = 64 * 1024;
    /// Empty pipes kept for the next transfer; more are closed.
    const POOL: usize = 256;

    /// Empty pipes, shared by every tunnel: a tunnel holds one only while bytes are
    /// in it, so idle tunnels cost no descriptors beyond their sockets.
    static PIPES: Mutex<Vec<(OwnedFd, OwnedFd)>> = Mutex::new(Vec::new());

    fn take_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        if let Some(p) = PIPES.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(p);
        }
        Ok(nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?)
    }

    fn give_pipe(p: (OwnedFd, OwnedFd)) {
        let mut pool = PIPES.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL {
            pool.push(p);
        }
    }

    /// As [`super::relay`], between two plain TCP sockets, with splice(2).
    pub async fn splice(a: TcpStream, b: TcpStream, idle: Duration) -> Moved {
        let start = Instant::now();
        let last = AtomicU64::new(0);
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let touch = || last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        let pumps = async {
            // The first failure ends both ways, as in `relay`.
            let both = tokio::try_join!(pump(&a, &b, &up, &touch), pump(&b, &a, &down, &touch));
            if let Err(e) = both {
                tracing::debug!(target: "proxypool::gateway", "tunnel ended: {e}");
            }
        };
        let idle_out = async {
            loop {
                let quiet = start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    return;
                }
                tokio::time::sleep(idle - quiet).await;
            }
        };
        tokio::select! {
            _ = pumps => {}
            _ = idle_out => {
                tracing::debug!(target: "proxypool::gateway", "tunnel idle for {idle:?}: closing");
            }
        }
        Moved {
            up: up.load(Ordering::Relaxed),
            down: down.load(Ordering::Relaxed),
        }
    }

    /// `src` → `dst` until `src` ends (then `dst`'s write half is shut down, so a
    /// half-close travels) or either fails.
    async fn pump(
        src: &TcpStream,
        dst: &TcpStream,
        moved: &AtomicU64,
        touch: &impl Fn(),
    ) -> io::Result<()> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            src.readable().await?;
            let (pipe_r, pipe_w) = take_pipe()?;
            let n = match src.try_io(Interest::READABLE, || {
                Ok(nix::fcntl::splice(src, None, &pipe_w, None, CHUNK, flags)?)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    give_pipe((pipe_r, pipe_w));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                give_pipe((pipe_r, pipe_w));
                let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
            let mut left = n;
            while left > 0 {
                dst.writable().await?;
                match dst.try_io(Interest::WRITABLE, || {
                    Ok(nix::fcntl::splice(&pipe_r, None, dst, None, left, flags)?)
                }) {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The pipe still holds bytes: it is closed, not pooled.
                    Err(e) => return Err(e),
                }
            }
            give_pipe((pipe_r, pipe_w));
            moved.fetch_add(n as u64, Ordering::Relaxed);
            touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bytes_are_counted_half_closes_pass_and_idle_tunnels_close() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let task = tokio::spawn(relay(client, upstream, Duration::from_secs(60)));
        client_peer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        upstream_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // The client half-closes: the upstream sees EOF and can still answer.
        client_peer.shutdown().await.unwrap();
        assert_eq!(upstream_peer.read(&mut got).await.unwrap(), 0);
        upstream_peer.write_all(b"pong!").await.unwrap();
        let mut answer = [0u8; 5];
        client_peer.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"pong!");
        // Then nothing for the idle time: the relay ends.
        tokio::time::advance(Duration::from_secs(61)).await;
        let moved = task.await.unwrap();
        assert_eq!(moved, Moved { up: 4, down: 5 });
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn splice_moves_bytes_passes_half_closes_and_ends_when_idle() {
        use tokio::net::{TcpListener, TcpStream};
        async fn pair() -> (TcpStream, TcpStream) {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            (c, l.accept().await.unwrap().0)
        }
        let (mut client_peer, client) = pair().await;
        let (upstream, mut upstream_peer) = pair().await;
        let task = tokio::spawn(splice(client, upstream, Duration::from_millis(300)));
        // More than a pipe holds, so that a transfer takes several splices.
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            client_peer.write_all(&sent).await.unwrap();
            client_peer.shutdown().await.unwrap();
            client_peer
        });
        let mut got = Vec::new();
        upstream_peer.read_to_end(&mut got).await.unwrap();
        assert!(
            got == big,
            "the upstream got every byte, then the half-close"
        );
        let mut client_peer = writer.await.unwrap();
        upstream_peer.write_all(b"pong!").await.unwrap();
        let mut answer = [0u8; 5];
        client_peer.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"pong!");
        // Nothing more either way: the idle bound ends it.
        let moved = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the idle bound ends the relay")
            .unwrap();
        assert_eq!(
            moved,
            Moved {
                up: big.len() as u64,
                down: 5
            }
        );
    }
}
