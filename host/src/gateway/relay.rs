//! Moving bytes between a client and its tunnel: both ways at once, half-closes
//! passed on, idle time bounded, bytes counted for the upstream's metrics.

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
}
