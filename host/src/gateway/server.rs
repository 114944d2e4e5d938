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
    /// The admin endpoint's address, refused as a destination like the listeners'.
    pub admin: Option<std::net::SocketAddr>,
    /// Whether private destinations are allowed behind a non-loopback listener.
    pub allow_private: bool,
    /// Connections from one client address in handshake at once.
    pub max_handshakes_per_client: usize,
    /// Client connections at once.
    pub max_connections: usize,
    /// From accept to an open tunnel.
    pub handshake_timeout: Duration,
    /// How long live tunnels may run on after shutdown starts.
    pub drain: Duration,
    /// A tunnel with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// An upstream that sends nothing back this long after its client spoke is
    /// suspect (its health task probes at once); zero turns the watch off.
    pub silent_tunnel: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from(&Gateway::default())
    }
}

impl From<&Gateway> for Settings {
    fn from(g: &Gateway) -> Self {
        Settings {
            admin: Some(g.admin),
            allow_private: g.allow_private_destinations,
            max_handshakes_per_client: g.max_handshakes_per_client,
            max_connections: g.max_connections,
            handshake_timeout: g.handshake_timeout,
            drain: g.drain,
            idle_timeout: g.idle_timeout,
            silent_tunnel: g.silent_tunnel,
        }
    }
}

/// What a listener applies to the connections it accepts; swapped by a reload.
#[derive(Debug)]
pub(crate) struct ListenerConf {
    pub(crate) transport: ListenTransport,
    /// Checked again by every request of a kept-alive connection, so that a
    /// rotated password ends the old one's use at once.
    pub(crate) auth: Option<Arc<ClientAuth>>,
}

/// One serving listener.
struct Slot {
    /// The address it is bound to.
    bound: Option<std::net::SocketAddr>,
    /// The `gateway.listen` address it was bound for (port 0 stays 0 here).
    spec_addr: Option<std::net::SocketAddr>,
    conf: Arc<ArcSwap<ListenerConf>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<JoinSet<()>>,
}

/// What every listener of one gateway shares.
#[derive(Clone)]
struct Shared {
    balancer: Arc<Balancer>,
    permits: Arc<Semaphore>,
    gate: Arc<HandshakeGate>,
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
        let bound = l.socket.local_addr().ok();
        let task = tokio::spawn(accept_loop(l.socket, conf.clone(), self.clone(), stopped));
        Slot {
            bound,
            spec_addr,
            conf,
            stop,
            task,
        }
    }
}

/// Serves every listener until `shutdown` turns true, then stops accepting, lets
/// live tunnels run for the drain time, and closes the rest. With `following`, each
/// time its generation moves, a listener whose `gateway.listen` address is gone
/// stops accepting (its live tunnels go on), a new address is bound (or taken from
/// what the reload bound), and a listener whose address stays takes its new
/// transport and auth for the connections it accepts next.
pub(super) async fn serve(
    listeners: Vec<(Option<Listen>, Listener)>,
    balancer: Arc<Balancer>,
    sessions: Arc<super::session::Sessions>,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    following: Option<(watch::Receiver<u64>, Option<Arc<super::reload::Prebound>>)>,
) {
    let (mut generations, prebound) = match following {
        Some((g, p)) => (Some(g), p),
        None => (None, None),
    };
    let shared = Shared {
        balancer,
        permits: Arc::new(Semaphore::new(settings.max_connections)),
        gate: Arc::new(HandshakeGate::new(settings.max_handshakes_per_client)),
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
    guard_destinations(&shared, &slots);
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
                retired.extend(follow(&shared, &mut slots, wanted, prebound.as_deref()).await);
                guard_destinations(&shared, &slots);
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

/// Refuses the gateway's own addresses as destinations, and private ones too when
/// a listener is open to the network (unless the settings allow them).
fn guard_destinations(shared: &Shared, slots: &[Slot]) {
    let own: Vec<std::net::SocketAddr> = slots
        .iter()
        .filter_map(|s| s.bound)
        .chain(shared.settings.admin)
        .collect();
    let all_loopback = slots
        .iter()
        .filter_map(|s| s.bound)
        .all(|a| a.ip().is_loopback());
    let allow_private = shared.settings.allow_private || all_loopback;
    shared
        .balancer
        .set_destination_guard(Some(crate::balancer::DestinationGuard::new(
            own,
            allow_private,
        )));
}

/// Counts each client address's connections in handshake, in a fixed table of
/// atomics (addresses that share a slot share its count): no lock on accept.
#[derive(Debug)]
pub(crate) struct HandshakeGate {
    cap: u32,
    slots: Box<[std::sync::atomic::AtomicU32]>,
}

/// A connection's place in the gate; it leaves on drop.
#[derive(Debug)]
pub(crate) struct InHandshake {
    gate: Arc<HandshakeGate>,
    slot: usize,
}

impl HandshakeGate {
    const SLOTS: usize = 4096;

    fn new(cap: usize) -> HandshakeGate {
        HandshakeGate {
            cap: cap.min(u32::MAX as usize) as u32,
            slots: (0..Self::SLOTS)
                .map(|_| std::sync::atomic::AtomicU32::new(0))
                .collect(),
        }
    }

    /// A place for a connection from `ip`, or `None` if that address has its cap.
    fn enter(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<InHandshake> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let slot =
            BuildHasherDefault::<DefaultHasher>::default().hash_one(ip) as usize % Self::SLOTS;
        let cell = &self.slots[slot];
        let mut now = cell.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            if now >= self.cap {
                return None;
            }
            match cell.compare_exchange_weak(
                now,
                now + 1,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(InHandshake {
                        gate: self.clone(),
                        slot,
                    });
                }
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for InHandshake {
    fn drop(&mut self) {
        self.gate.slots[self.slot].fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A warning said at most once a second; the ones held back are counted and said
/// with the next. Atomics, so that one can be a `static` shared by connections.
#[derive(Debug, Default)]
pub(crate) struct Limited {
    /// When it was last said, in milliseconds since the Unix epoch (0: never).
    last_ms: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
}

impl Limited {
    pub(crate) const fn new() -> Limited {
        Limited {
            last_ms: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

pub(crate) fn warn_limited(state: &Limited, say: impl FnOnce()) {
    use std::sync::atomic::Ordering::Relaxed;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let last = state.last_ms.load(Relaxed);
    if (last != 0 && now.saturating_sub(last) < 1000)
        || state
            .last_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
    {
        state.held.fetch_add(1, Relaxed);
        return;
    }
    let held = state.held.swap(0, Relaxed);
    if held > 0 {
        tracing::warn!(target: "proxypool::gateway", "{held} more such warnings in the last second");
    }
    say();
}

/// Brings the listeners to `wanted`; returns the tasks of the ones it stopped.
async fn follow(
    shared: &Shared,
    slots: &mut Vec<Slot>,
    wanted: Vec<Listen>,
    prebound: Option<&super::reload::Prebound>,
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
        let bound = match prebound.and_then(|p| p.take(w.addr)) {
            Some(socket) => TcpListener::from_std(socket),
            None => TcpListener::bind(w.addr).await,
        };
        match bound {
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

/// The limits a listener's connections start under; transport and auth are
/// refreshed at each accept, as a reload may change them.
fn limits_for(
    settings: &Settings,
    conf: &Arc<ArcSwap<ListenerConf>>,
    sessions: Arc<super::session::Sessions>,
    metrics: Arc<super::metrics::ListenerMetrics>,
) -> ConnLimits {
    let first = conf.load();
    ConnLimits {
        handshake: settings.handshake_timeout,
        transport: first.transport,
        idle: settings.idle_timeout,
        silent: settings.silent_tunnel,
        auth: first.auth.clone(),
        sessions,
        metrics,
        deadline: None,
        listener: conf.clone(),
    }
}

/// Accepts on `socket` until shutdown or `stop`, each connection under a permit of
/// `max_connections` and a ticket of its address's handshake allowance, with the
/// listener's settings of the moment.
async fn accept_loop(
    socket: TcpListener,
    conf: Arc<ArcSwap<ListenerConf>>,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let Shared {
        balancer,
        permits,
        gate,
        settings,
        sessions,
        mut shutdown,
    } = shared;
    let shown = socket
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    let metrics = Arc::new(super::metrics::ListenerMetrics::new(shown));
    let source: Arc<dyn crate::metrics::Collect> = metrics.clone();
    balancer.metrics().register(source.clone());
    let mut limits = limits_for(&settings, &conf, sessions, metrics);
    let mut tasks = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF;
    let (accept_warned, over_cap_warned) = (Limited::new(), Limited::new());
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
        let (client, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait, never stop serving,
                // and say so once a second at most, with how many were not said.
                warn_limited(&accept_warned, || {
                    tracing::warn!(target: "proxypool::gateway", "accept failed, retrying in {backoff:?}: {e}");
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF;
        let Some(ticket) = gate.enter(peer.ip()) else {
            limits.metrics.refused(None);
            drop(client);
            warn_limited(&over_cap_warned, || {
                tracing::warn!(target: "proxypool::gateway", client = %peer.ip(), "too many handshakes from one address (gateway.max_handshakes_per_client): connection closed");
            });
            continue;
        };
        let now = conf.load();
        limits.transport = now.transport;
        limits.auth = now.auth.clone();
        let (balancer, limits) = (balancer.clone(), limits.clone());
        // Reap finished ones as we go: the set holds live tunnels only.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            conn::serve(client, &balancer, limits, ticket).await;
            drop(permit);
        });
    }
    // A stopped listener's series go; its tunnels' bytes still reach their upstreams.
    balancer.metrics().unregister(&source);
    tasks
}
