//! The one way to start a gateway: [`Gateway::builder`] names its listeners, its
//! admin endpoint and the file it reloads from; [`GatewayBuilder::bind`] binds them
//! all (or fails, having served nothing); [`Gateway::run`] serves until shutdown.
//! `proxypool serve`, `proxypool run`, the demo, the tests and the benches all start
//! their gateways here, so the wiring (sessions shared with the admin endpoint, the
//! reloader shared with it and with the listeners) is written once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admin::Admin;
use super::reload::{ConfigWatch, Reloader};
use super::server::{Listener, Settings};
use super::session::Sessions;
use crate::balancer::Balancer;
use crate::config::{self, AdminToken, Listen};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A listener or the admin endpoint would be open to the network.
    #[error("refusing to serve {what} on {addr}: {why}")]
    Exposed {
        /// `a listener` or `the admin endpoint`.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// What would guard it.
        why: &'static str,
    },
    /// An address could not be bound.
    #[error("cannot serve {what} on {addr}: {source}")]
    Bind {
        /// `a listener` or `the admin endpoint`.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// The bind's error.
        source: std::io::Error,
    },
    /// [`GatewayBuilder::spawn`] with no listener: nothing for a client to use.
    #[error("a gateway needs at least one listener")]
    NoListener,
    /// The configuration file could not be watched.
    #[error("cannot watch the configuration file: {0}")]
    Watch(std::io::Error),
}

/// What a gateway is to serve; see [`Gateway::builder`].
#[must_use]
pub struct GatewayBuilder {
    balancer: Arc<Balancer>,
    listen: Vec<Listen>,
    sockets: Vec<Listener>,
    admin: Option<SocketAddr>,
    admin_token: Option<AdminToken>,
    allow_open: bool,
    settings: Settings,
    reload: Option<Option<PathBuf>>,
    follow_listeners: bool,
}

impl GatewayBuilder {
    /// Everything the configuration's `gateway:` section says: its listeners, admin
    /// endpoint and token, the open-listener rule and the settings.
    pub fn configured(mut self, g: &config::Gateway) -> Self {
        self.listen = g.listen.clone();
        self.admin = Some(g.admin);
        self.admin_token = g.admin_token.clone();
        self.allow_open = g.allow_open;
        self.settings = Settings::from(g);
        self
    }

    /// Listens on `listen` too (port 0 picks a port: see [`Gateway::local_addrs`]).
    pub fn listen(mut self, listen: Listen) -> Self {
        self.listen.push(listen);
        self
    }

    /// Listens on these instead of the configuration's, for the whole run: a reload
    /// does not move them.
    pub fn listen_only(mut self, listen: Vec<Listen>) -> Self {
        self.listen = listen;
        self.follow_listeners = false;
        self
    }

    /// Serves a socket bound elsewhere (inherited, or bound by a test).
    pub fn socket(mut self, listener: Listener) -> Self {
        self.sockets.push(listener);
        self
    }

    /// Serves the admin endpoint on `addr` (none by default).
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// The token the admin endpoint's write routes take.
    pub fn admin_token(mut self, token: Option<AdminToken>) -> Self {
        self.admin_token = token;
        self
    }

    /// The connection limits, timeouts and destination rules.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Reloads from `path` (none: the environment alone) when the file changes and
    /// on `POST /reload`; the listeners follow the file's `gateway.listen` unless
    /// [`GatewayBuilder::listen_only`] fixed them.
    pub fn reload_from(mut self, path: Option<PathBuf>) -> Self {
        self.reload = Some(path);
        self
    }

    /// The one rule for what may face the network: a listener needs client auth
    /// (or `allow_open`), the admin endpoint a token.
    fn refuse_exposed(&self) -> Result<(), GatewayError> {
        for l in &self.listen {
            if config::exposed(l.addr, l.auth.is_some()) && !self.allow_open {
                return Err(GatewayError::Exposed {
                    what: "a listener",
                    addr: l.addr,
                    why: "not a loopback address, and no client authentication (set gateway.listen[].auth, or gateway.allow_open: true)",
                });
            }
        }
        if let Some(addr) = self.admin
            && config::exposed(addr, self.admin_token.is_some())
        {
            return Err(GatewayError::Exposed {
                what: "the admin endpoint",
                addr,
                why: "not a loopback address, and no gateway.admin_token for its write routes",
            });
        }
        Ok(())
    }

    /// Binds, then serves on a task of its own until the returned sender says stop
    /// or drops: where the first listener is bound, and that sender.
    pub async fn spawn(self) -> Result<(SocketAddr, watch::Sender<bool>), GatewayError> {
        let gateway = self.bind().await?;
        let (addr, _) = *gateway
            .local_addrs()
            .first()
            .ok_or(GatewayError::NoListener)?;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(gateway.run(stopped));
        Ok((addr, stop))
    }

    /// Binds every listener and the admin endpoint, and starts watching the file.
    /// Nothing is served until [`Gateway::run`]; a failure leaves nothing bound.
    pub async fn bind(self) -> Result<Gateway, GatewayError> {
        self.refuse_exposed()?;
        let (listeners, mut local) = bind_listeners(self.listen).await?;
        for s in &self.sockets {
            if let Ok(addr) = s.socket.local_addr() {
                local.push((addr, s.transport));
            }
        }
        let admin = match self.admin {
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| GatewayError::Bind {
                            what: "the admin endpoint",
                            addr,
                            source,
                        })?,
                )
            }
            None => None,
        };
        let mut settings = self.settings;
        settings.admin = admin.as_ref().and_then(|a| a.local_addr().ok());
        let (reloader, watch) = match self.reload {
            Some(path) => {
                let r = Reloader::new(path, self.balancer.clone());
                let r = Arc::new(if self.follow_listeners {
                    r.binding_listeners()
                } else {
                    r
                });
                let watch = r.watch().map_err(GatewayError::Watch)?;
                (Some(r), watch)
            }
            None => (None, None),
        };
        Ok(Gateway {
            balancer: self.balancer,
            listeners,
            sockets: self.sockets,
            local,
            admin,
            admin_token: self.admin_token,
            settings,
            sessions: Arc::new(Sessions::default()),
            reloader,
            follow_listeners: self.follow_listeners,
            _watch: watch,
        })
    }
}

/// Binds each of `listen`, in order: the listeners with their entries, and where
/// each is bound.
async fn bind_listeners(listen: Vec<Listen>) -> Result<Bound, GatewayError> {
    let mut listeners = Vec::new();
    let mut local = Vec::new();
    for l in listen {
        let socket = TcpListener::bind(l.addr)
            .await
            .map_err(|source| GatewayError::Bind {
                what: "a listener",
                addr: l.addr,
                source,
            })?;
        let bound = socket.local_addr().unwrap_or(l.addr);
        local.push((bound, l.transport));
        listeners.push((
            l.clone(),
            Listener {
                socket,
                transport: l.transport,
                auth: l.auth,
            },
        ));
    }
    Ok((listeners, local))
}

/// Bound listeners with their `gateway.listen` entries, and their addresses.
type Bound = (
    Vec<(Listen, Listener)>,
    Vec<(SocketAddr, config::ListenTransport)>,
);

/// A gateway with its sockets bound, ready to [`run`](Gateway::run).
pub struct Gateway {
    balancer: Arc<Balancer>,
    listeners: Vec<(Listen, Listener)>,
    sockets: Vec<Listener>,
    local: Vec<(SocketAddr, config::ListenTransport)>,
    admin: Option<TcpListener>,
    admin_token: Option<AdminToken>,
    settings: Settings,
    sessions: Arc<Sessions>,
    reloader: Option<Arc<Reloader>>,
    follow_listeners: bool,
    _watch: Option<ConfigWatch>,
}

impl Gateway {
    /// A gateway in front of `balancer`, with no listener yet.
    pub fn builder(balancer: Arc<Balancer>) -> GatewayBuilder {
        GatewayBuilder {
            balancer,
            listen: Vec::new(),
            sockets: Vec::new(),
            admin: None,
            admin_token: None,
            allow_open: false,
            settings: Settings::default(),
            reload: None,
            follow_listeners: true,
        }
    }

    /// Where each listener is bound, with its transport, in the order given.
    pub fn local_addrs(&self) -> &[(SocketAddr, config::ListenTransport)] {
        &self.local
    }

    /// Where the admin endpoint is bound, if it is served.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// What reloads it, when it reloads from a file: for SIGHUP, say.
    pub fn reloader(&self) -> Option<Arc<Reloader>> {
        self.reloader.clone()
    }

    /// The sticky sessions its listeners and admin endpoint share.
    pub fn sessions(&self) -> Arc<Sessions> {
        self.sessions.clone()
    }

    /// Serves until `shutdown` turns true, then drains live tunnels for the drain
    /// time; the admin endpoint answers (and says it is draining) until the end.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let (admin_stop, admin_stopped) = watch::channel(false);
        if let Some(socket) = self.admin {
            let state = Admin {
                balancer: self.balancer.clone(),
                sessions: self.sessions.clone(),
                token: self.admin_token,
                draining: shutdown.clone(),
                reloader: self.reloader.clone(),
            };
            tokio::spawn(super::admin::run(socket, Arc::new(state), admin_stopped));
        }
        let mut listeners: Vec<(Option<Listen>, Listener)> = self
            .listeners
            .into_iter()
            .map(|(spec, l)| (Some(spec), l))
            .collect();
        listeners.extend(self.sockets.into_iter().map(|l| (None, l)));
        let following = (self.reloader.as_ref())
            .filter(|_| self.follow_listeners)
            .map(|r| (r.subscribe(), r.prebound()));
        super::server::serve(
            listeners,
            self.balancer,
            self.sessions,
            self.settings,
            shutdown,
            following,
        )
        .await;
        let _ = admin_stop.send(true);
    }
}
