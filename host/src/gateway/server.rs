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
use crate::config::{ClientAuth, Gateway, Listen, ListenTransport};
use arc_swap::ArcSwap;

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
    shutdown: watch::Receiver<bool>,
) {
    let listeners = listeners.into_iter().map(|l| (None, l)).collect();
    serve(listeners, balancer, sessions, settings, shutdown, None).await;
}

/// As [`run`], following the configuration's `gateway.listen` through reloads:
/// each time `generations` moves, a listener whose address is gone stops accepting
/// (its live tunnels go on), a new address is bound, and a listener whose address
/// stays takes its new transport and auth for the connections it accepts next.
/// Each listener comes with the entry of `gateway.listen` it was bound for.
pub async fn run_following(
    listeners: Vec<(Listen, Listener)>,
    balancer: Arc<Balancer>,
    sessions: Arc<super::session::Sessions>,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
    generations: watch::Receiver<u64>,
) {
    let listeners = listeners.into_iter().map(|(s, l)| (Some(s), l)).collect();
    serve(
        listeners,
        balancer,
        sessions,
        settings,
        shutdown,
        Some(generations),
    )
    .await;
}

/// What a listener applies to the connections it accepts; swapped by a reload.
#[derive(Debug)]
struct ListenerConf {
    transport: ListenTransport,
    auth: Option<Arc<ClientAuth>>,
}

/// One serving listener.
struct Slot {
    /// The `gateway.listen` address it was bound for (port 0 stays 0 here).
    spec_addr: Option<std::net::SocketAddr>,
    conf: Arc<ArcSwap<ListenerConf>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<JoinSet<()>>,
}

struct Shared {
    balancer: Arc<Balancer>,
    permits: Arc<Semaphore>,
    settings: Settings,
    sessions: Arc<super::session::Sessions>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn spawn(&self, spec_addr: Option<std::net::SocketAddr>, l: Listener) -> Slot {
        let conf = Arc::new(ArcSwap::from_pointee(ListenerConf {
            transport: l.transport,
            auth: l.auth.map(Arc::new),
        }));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            l.socket,
            conf.clone(),
            self.balancer.clone(),
            self.permits.clone(),
            self.settings,
            self.sessions.clone(),
            self.shutdown.clone(),
            stopped,
        ));
        Slot {
            spec_addr,
            conf,
            stop,
            task,
        }
    }
}

async fn serve(
    listeners: Vec<(Option<Listen>, Listener)>,
    balancer: Arc<Balancer>,
    sessions: Arc<super::session::Sessions>,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    mut generations: Option<watch::Receiver<u64>>,
) {
    let shared = Shared {
        balancer,
        permits: Arc::new(Semaphore::new(settings.max_connections)),
        settings,
        sessions,
        shutdown: shutdown.clone(),
    };
    let process: Arc<dyn crate::metrics::Collect> = Arc::new(super::metrics::ProcessMetrics::new(
        tokio::runtime::Handle::current(),
    ));
    shared.balancer.metrics().register(process.clone());
    let mut slots: Vec<Slot> = listeners
        .into_iter()
        .map(|(spec, l)| shared.spawn(spec.map(|s| s.addr), l))
        .collect();
    // Listeners a reload removed: no longer accepting, their tunnels still running.
    let mut retired = Vec::new();
    loop {
        // The guard `wait_for` returns is not `Send`: drop it inside.
        let stopping = async {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        tokio::select! {
            _ = stopping => break,
            changed = async { generations.as_mut().expect("guarded").changed().await },
                if generations.is_some() => {
                if changed.is_err() {
                    generations = None;
                    continue;
                }
                let wanted = shared.balancer.config().gateway().listen.clone();
                retired.extend(follow(&shared, &mut slots, wanted).await);
            }
        }
    }
    // Each accept loop hands its connection tasks back when it stops.
    let mut tunnels = Vec::new();
    for task in slots.into_iter().map(|s| s.task).chain(retired) {
        if let Ok(set) = task.await {
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
    shared.balancer.metrics().unregister(&process);
    // Dropping the sets aborts what is left: those tunnels close.
}

/// Brings the listeners to `wanted`; returns the tasks of the ones it stopped.
async fn follow(
    shared: &Shared,
    slots: &mut Vec<Slot>,
    wanted: Vec<Listen>,
) -> Vec<tokio::task::JoinHandle<JoinSet<()>>> {
    let mut stopped = Vec::new();
    let mut kept = Vec::new();
    for slot in std::mem::take(slots) {
        match wanted.iter().find(|w| Some(w.addr) == slot.spec_addr) {
            Some(w) => {
                let conf = slot.conf.load();
                if conf.transport != w.transport || conf.auth.as_deref() != w.auth.as_ref() {
                    slot.conf.store(Arc::new(ListenerConf {
                        transport: w.transport,
                        auth: w.auth.clone().map(Arc::new),
                    }));
                    tracing::info!(target: "proxypool::gateway", addr = %w.addr, "listener now transport {}", w.transport.as_str());
                }
                kept.push(slot);
            }
            None => {
                let _ = slot.stop.send(true);
                tracing::info!(target: "proxypool::gateway", addr = ?slot.spec_addr, "listener stopped; its tunnels go on");
                stopped.push(slot.task);
            }
        }
    }
    for w in wanted {
        if kept.iter().any(|s| s.spec_addr == Some(w.addr)) {
            continue;
        }
        match TcpListener::bind(w.addr).await {
            Ok(socket) => {
                let shown = socket
                    .local_addr()
                    .map_or_else(|_| w.addr.to_string(), |a| a.to_string());
                tracing::info!(target: "proxypool::gateway", "listening on {shown} (transport {})", w.transport.as_str());
                let listener = Listener {
                    socket,
                    transport: w.transport,
                    auth: w.auth.clone(),
                };
                kept.push(shared.spawn(Some(w.addr), listener));
            }
            Err(e) => {
                tracing::warn!(target: "proxypool::gateway", "cannot listen on {}: {e}; the other listeners keep serving", w.addr);
            }
        }
    }
    *slots = kept;
    stopped
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    socket: TcpListener,
    conf: Arc<ArcSwap<ListenerConf>>,
    balancer: Arc<Balancer>,
    permits: Arc<Semaphore>,
    settings: Settings,
    sessions: Arc<super::session::Sessions>,
    mut shutdown: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let shown = socket
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    let metrics = Arc::new(super::metrics::ListenerMetrics::new(shown));
    let source: Arc<dyn crate::metrics::Collect> = metrics.clone();
    balancer.metrics().register(source.clone());
    let first = conf.load();
    let mut limits = ConnLimits {
        handshake: settings.handshake_timeout,
        transport: first.transport,
        idle: settings.idle_timeout,
        auth: first.auth.clone(),
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
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = socket.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((client, _peer)) => {
                backoff = ACCEPT_BACKOFF;
                let now = conf.load();
                limits.transport = now.transport;
                limits.auth = now.auth.clone();
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
    // A stopped listener's series go; its tunnels' bytes still reach their upstreams.
    balancer.metrics().unregister(&source);
    tasks
}
