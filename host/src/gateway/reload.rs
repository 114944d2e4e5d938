//! What makes a running gateway reload its configuration: SIGHUP and `POST
//! /reload` call [`Reloader::reload`]; [`Reloader::watch`] does when the file
//! changes. Each reads the file and the environment again, as at start, and hands
//! the result to [`Balancer::reload`]: a file that does not parse or validate, or
//! whose strategy fails admission, changes nothing and is logged and counted once.

use crate::sync::Locked as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use crate::balancer::{Balancer, ReloadReport};
use crate::config::Config;

/// Events within this time of the first are one change: an editor's save, or a
/// write then a rename, reloads once.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(200);

/// Reloads one balancer from the file (and environment) it was started with.
#[derive(Debug)]
pub struct Reloader {
    path: Option<PathBuf>,
    balancer: Arc<Balancer>,
    /// The file content the last watch-triggered reload read, so that an event that
    /// changed nothing (a touch, a rewrite of the same bytes) does not reload.
    seen: Mutex<Option<[u8; 32]>>,
    /// The generation after each applied reload, for the listeners to follow.
    generations: tokio::sync::watch::Sender<u64>,
    /// Set when the listeners follow the file: new addresses are bound before a
    /// reload is applied, and handed to the listeners from here.
    listeners: Option<Arc<Prebound>>,
}

/// Listeners a reload bound before it was applied, by their `gateway.listen` address.
#[derive(Debug, Default)]
pub struct Prebound {
    sockets: Mutex<Vec<(std::net::SocketAddr, std::net::TcpListener)>>,
}

impl Prebound {
    /// The socket bound for `addr`, if a reload bound one.
    pub fn take(&self, addr: std::net::SocketAddr) -> Option<std::net::TcpListener> {
        let mut sockets = self.sockets.locked();
        let i = sockets.iter().position(|(a, _)| *a == addr)?;
        Some(sockets.swap_remove(i).1)
    }
}

impl Reloader {
    /// A reloader for `balancer`, built from `path` (none: the environment only).
    pub fn new(path: Option<PathBuf>, balancer: Arc<Balancer>) -> Reloader {
        let seen = path.as_deref().and_then(digest);
        let (generations, _) = tokio::sync::watch::channel(balancer.generation());
        Reloader {
            path,
            balancer,
            seen: Mutex::new(seen),
            generations,
            listeners: None,
        }
    }

    /// Binds each new `gateway.listen` address before a reload is applied (one that
    /// cannot be bound rejects the reload, and the old listeners keep serving);
    /// the listeners take the sockets from [`Reloader::prebound`].
    pub fn binding_listeners(mut self) -> Reloader {
        self.listeners = Some(Arc::default());
        self
    }

    /// Where the listeners find what a reload bound, when it binds them.
    pub fn prebound(&self) -> Option<Arc<Prebound>> {
        self.listeners.clone()
    }

    /// Binds the addresses `config` listens on that the running one does not.
    fn bind_new_listeners(&self, config: &Config) -> Result<(), String> {
        let Some(prebound) = &self.listeners else {
            return Ok(());
        };
        let running = self.balancer.config();
        let mut bound = Vec::new();
        for (i, l) in config.gateway().listen.iter().enumerate() {
            if running.gateway().listen.iter().any(|r| r.addr == l.addr) {
                continue;
            }
            let socket = std::net::TcpListener::bind(l.addr)
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .map_err(|e| {
                    format!("gateway.listen[{i}].addr: cannot listen on {}: {e}", l.addr)
                })?;
            bound.push((l.addr, socket));
        }
        *prebound.sockets.locked() = bound;
        Ok(())
    }

    /// Moves each time a reload is applied (to the new generation).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generations.subscribe()
    }

    /// Reads the configuration again and reloads; `trigger` names why, for the log.
    /// The error is the configuration's or the strategy's, redacted.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadReport, String> {
        tracing::info!(target: "proxypool::config", trigger, "reloading");
        let config = match Config::load(self.path.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                self.balancer.reload_rejected(&e, e.problems().len());
                return Err(e.to_string());
            }
        };
        // Bind first, then switch: a listener that cannot move keeps the old one.
        if let Err(why) = self.bind_new_listeners(&config) {
            self.balancer.reload_rejected(&why, 1);
            return Err(why);
        }
        let balancer = self.balancer.clone();
        let report = match tokio::task::spawn_blocking(move || balancer.reload(config)).await {
            Ok(r) => r.map_err(|e| e.to_string())?,
            Err(e) => return Err(format!("the reload task failed: {e}")),
        };
        if !report.is_unchanged() {
            self.generations.send_replace(report.generation);
        }
        Ok(report)
    }

    /// Watches the file (its directory, so that a rename over it is seen) and
    /// reloads, once per [`DEBOUNCE`], whenever its content changes. Stops when the
    /// returned watch drops. `None` without a file.
    pub fn watch(self: &Arc<Self>) -> std::io::Result<Option<ConfigWatch>> {
        let Some(path) = self.path.clone() else {
            return Ok(None);
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = path.file_name().map(ToOwned::to_owned);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if !event.kind.is_access()
                    && event.paths.iter().any(|p| p.file_name() == name.as_deref())
                {
                    let _ = tx.send(());
                }
            })
            .map_err(std::io::Error::other)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(std::io::Error::other)?;
        let me = self.clone();
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
                let now = digest(&path);
                let changed = {
                    let mut seen = me.seen.locked();
                    let changed = now.is_some() && now != *seen;
                    if changed {
                        *seen = now;
                    }
                    changed
                };
                // Gone mid-rename: the event that follows has the new file.
                if changed {
                    let _ = me.reload("file changed").await;
                }
            }
        });
        Ok(Some(ConfigWatch {
            _watcher: watcher,
            task,
        }))
    }
}

/// A running watch on the configuration file; stops when dropped.
#[derive(Debug)]
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}
