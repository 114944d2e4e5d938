//! Hot swap: a strategy file is watched, and every new content that passes admission
//! goes live atomically; anything else is rejected with one log line and a counter,
//! and the current strategy keeps serving.
//!
//! Replace the file atomically (write a temporary file in the same directory, then
//! rename it over the old one): a file caught half-written is rejected like any
//! broken one, and the complete one is picked up by the event that follows.

use crate::sync::Locked as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use super::{Selector, StrategyEngine, StrategyError};

/// What the watcher has done so far.
#[derive(Debug, Default)]
pub struct SwapCounters {
    /// New strategies that went live.
    pub installed: AtomicU64,
    /// Contents that failed to read, compile or pass admission.
    pub rejected: AtomicU64,
}

/// Watches one strategy file for a selector; stops when dropped.
pub struct StrategyWatch {
    _watcher: notify::RecommendedWatcher,
    counters: Arc<SwapCounters>,
}

impl std::fmt::Debug for StrategyWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrategyWatch")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl StrategyWatch {
    /// Starts watching `path` (its directory, so that a rename over it is seen).
    /// Compilation and admission run on the watcher's own thread, never on the
    /// async runtime.
    pub fn start(
        engine: StrategyEngine,
        selector: Arc<Selector>,
        path: impl AsRef<Path>,
    ) -> Result<StrategyWatch, StrategyError> {
        let seen = selector.strategy_hash();
        Self::start_with(path, Some(seen), move |bytes| {
            selector.install(engine.admit(bytes)?);
            Ok(())
        })
    }

    /// Watches `path` and hands each new content (other than `seen`) to `install`,
    /// which admits and installs it or says why not. The same logging and counters as
    /// for strategies; used for health-verdict files too.
    pub fn start_with(
        path: impl AsRef<Path>,
        seen: Option<[u8; 32]>,
        install: impl Fn(&[u8]) -> Result<(), StrategyError> + Send + 'static,
    ) -> Result<StrategyWatch, StrategyError> {
        let path = path.as_ref().to_path_buf();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let counters = Arc::new(SwapCounters::default());
        let file_name = path.file_name().map(ToOwned::to_owned);
        let last_seen: Mutex<Option<[u8; 32]>> = Mutex::new(seen);
        let c = counters.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access()
                    || !event
                        .paths
                        .iter()
                        .any(|p| p.file_name() == file_name.as_deref())
                {
                    return;
                }
                reload(&install, &path, &last_seen, &c);
            })
            .map_err(|e| watch_error(&dir, e))?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| watch_error(&dir, e))?;
        Ok(StrategyWatch {
            _watcher: watcher,
            counters,
        })
    }

    /// Installed and rejected counts.
    pub fn counters(&self) -> &SwapCounters {
        &self.counters
    }
}

fn watch_error(dir: &Path, e: notify::Error) -> StrategyError {
    StrategyError::Read {
        path: dir.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Reads, admits and installs the file's current content, once per distinct content.
fn reload(
    install: &dyn Fn(&[u8]) -> Result<(), StrategyError>,
    path: &PathBuf,
    last_seen: &Mutex<Option<[u8; 32]>>,
    counters: &SwapCounters,
) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        // Gone between the event and the read (mid-rename): the next event has it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(source) => {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            let err = StrategyError::Read {
                path: path.display().to_string(),
                source,
            };
            tracing::warn!(target: "proxypool::strategy", "{} rejected: {err}; the previous one keeps serving", path.display());
            return;
        }
    };
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    {
        let mut seen = last_seen.locked();
        if *seen == Some(hash) {
            return;
        }
        *seen = Some(hash);
    }
    match install(&bytes) {
        Ok(()) => {
            counters.installed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "proxypool::strategy", "{} installed", path.display());
        }
        Err(err) => {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "proxypool::strategy",
                "{} rejected: {err}; the previous one keeps serving",
                path.display()
            );
        }
    }
}
