//! A [`Tunnel`] owns what a connect hands out: the stream and the lease that counts it
//! against its proxy, so that neither outlives the other by accident.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::ProxyUrl;
use crate::dial::ProxyStream;
use crate::pool::{Lease, Outcome};

/// A tunnel opened through a route: read and write it as the stream to the target.
///
/// While it lives, it counts as one active connection on its proxy (what
/// `least_connections` balances by); dropping it ends that.
#[derive(Debug)]
pub struct Tunnel {
    stream: ProxyStream,
    lease: Option<Lease>,
    via: Option<ProxyUrl>,
    handshake: Duration,
    exchange: String,
}

impl Tunnel {
    pub(super) fn new(
        stream: ProxyStream,
        lease: Option<Lease>,
        handshake: Duration,
        exchange: String,
    ) -> Self {
        let via = lease.as_ref().map(|l| l.url().clone());
        Self::through(stream, via, lease, handshake, exchange)
    }

    pub(super) fn through(
        stream: ProxyStream,
        via: Option<ProxyUrl>,
        lease: Option<Lease>,
        handshake: Duration,
        exchange: String,
    ) -> Self {
        Self {
            stream,
            lease,
            via,
            handshake,
            exchange,
        }
    }

    /// The proxy that carried it, or `None` for a direct connection.
    pub fn via(&self) -> Option<&ProxyUrl> {
        self.via.as_ref()
    }

    /// Time from the start of the connect to an open tunnel, retries included.
    pub fn handshake(&self) -> Duration {
        self.handshake
    }

    /// The exchange the tunnel is for (lowercase), or "default".
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Whether a pool's member carries it (a lease counts it), as opposed to a
    /// direct connection or a route's single proxy.
    pub fn pooled(&self) -> bool {
        self.lease.is_some()
    }

    /// The upstream that carried it, as `route/id` (`exchanges.binance.http/2`), or
    /// `None` for a tunnel that did not come from a pool.
    pub fn upstream(&self) -> Option<String> {
        // A pool's name is its route as `RoutePath` shows it: this is `UpstreamRef`'s
        // form, without parsing the name back on every tunnel.
        let lease = self.lease.as_ref()?;
        Some(format!("{}/{}", lease.pool().name(), lease.id()))
    }

    /// Tells the pool what the exchange said through this proxy: it is then skipped
    /// for this exchange alone until the ban ends (see the pool's `bans` settings).
    /// No-op for a direct connection.
    pub fn report(&self, outcome: Outcome) {
        if let Some(lease) = &self.lease {
            lease.report(&self.exchange, outcome);
        }
    }

    /// Takes the tunnel apart, for a relay that needs the stream itself (a splice
    /// between sockets). Keep the lease as long as the stream: it is the count.
    pub fn into_parts(self) -> (ProxyStream, Option<Lease>) {
        (self.stream, self.lease)
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
