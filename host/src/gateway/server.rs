//! The accept loop, shaped like mini-redis's `run`: it takes bound listeners, holds
//! a semaphore on connections, spawns one task per client, and on shutdown stops
//! accepting and gives live tunnels the drain time.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::conn::{self, ConnLimits};
use crate::balancer::Balancer;
use crate::config::{ClientAuth, Gateway, ListenTransport};

/// The first pause after an accept error (EMFILE and the like); it doubles to 1 s.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(5);

/// One listener and the transport of its routes.
#[derive(Debug)]
pub struct Listener {
    /// The bound socket.
    pub socket: TcpListener,
    /// Which route of an exchange its clients take (`auto`: by the destination).
    pub transport: ListenTransport,
    /// The password its clients must send, if any.
    pub auth: Option<ClientAuth>,
}

/// Settings of a running gateway.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Client connections at once.
    pub max_connections: usize,
    /// From accept to an open tunnel.
    pub handshake_timeout: Duration,
    /// How long live tunnels may run on after shutdown starts.
    pub drain: Duration,
    /// A tunnel with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from(&Gateway::default())
    }
}

impl From<&Gateway> for Settings {
    fn from(g: &Gateway) -> Self {
        Settings {
            max_connections: g.max_connections,
            handshake_timeout: g.handshake_timeout,
            drain: g.drain,
            idle_timeout: g.idle_timeout,
        }
    }
}

/// Serves every listener until `shutdown` turns true, then stops accepting, lets
/// live tunnels run for the drain time, and closes the rest. `sessions` is shared
/// with the admin endpoint, which takes bans by session key.
pub async fn run(
    listeners: Vec<Listener>,
    balancer: Arc<Balancer>,
    sessions: Arc<super::session::Sessions>,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let mut accepts = JoinSet::new();
    for l in listeners {
        let (balancer, permits, shutdown) = (balancer.clone(), permits.clone(), shutdown.clone());
        let sessions = sessions.clone();
        accepts.spawn(accept_loop(
            l, balancer, permits, settings, sessions, shutdown,
        ));
    }
    // Each accept loop hands its connection tasks back when it stops.
    let _ = shutdown.wait_for(|s| *s).await;
    let mut tunnels = Vec::new();
    while let Some(done) = accepts.join_next().await {
        if let Ok(set) = done {
            tunnels.push(set);
        }
    }
    let drained = tokio::time::timeout(settings.drain, async {
        for set in &mut tunnels {
            while set.join_next().await.is_some() {}
        }
    });
    if drained.await.is_err() {
        let open: usize = tunnels.iter().map(JoinSet::len).sum();
        tracing::info!(target: "proxypool::gateway", open, "drain time over: closing the tunnels left");
    }
    // Dropping the sets aborts what is left: those tunnels close.
}

async fn accept_loop(
    listener: Listener,
    balancer: Arc<Balancer>,
    permits: Arc<Semaphore>,
    settings: Settings,
    sessions: Arc<super::session::Sessions>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let shown = listener
        .socket
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    let metrics = Arc::new(super::metrics::ListenerMetrics::new(shown));
    balancer.metrics().register(metrics.clone());
    let limits = ConnLimits {
        handshake: settings.handshake_timeout,
        transport: listener.transport,
        idle: settings.idle_timeout,
        auth: listener.auth.map(Arc::new),
        sessions,
        metrics,
    };
    let mut tasks = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.socket.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((client, _peer)) => {
                backoff = ACCEPT_BACKOFF;
                let (balancer, limits) = (balancer.clone(), limits.clone());
                // Reap finished ones as we go: the set holds live tunnels only.
                while tasks.try_join_next().is_some() {}
                tasks.spawn(async move {
                    conn::serve(client, &balancer, limits).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, never stop serving.
                tracing::warn!(target: "proxypool::gateway", "accept failed, retrying in {backoff:?}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    tasks
}
