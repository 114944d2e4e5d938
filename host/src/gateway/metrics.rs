//! The gateway's own counters: client connections accepted, rejected, tunnelled and
//! active, by listener and protocol, read at scrape time through the balancer's
//! registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::sniff::Protocol;
use crate::metrics::families as F;
use crate::metrics::{Collect, Sample};

/// The protocols counted, with `unknown` for a first byte that is none of them.
const PROTOCOLS: [&str; 4] = ["socks5", "socks4", "http", "unknown"];

/// One listener's client connections.
#[derive(Debug)]
pub(crate) struct ListenerMetrics {
    listener: String,
    /// Per protocol: connections accepted (each ends rejected or tunnelled),
    /// tunnels opened, connections refused, tunnels open now.
    accepted: [AtomicU64; 4],
    opened: [AtomicU64; 4],
    refused: [AtomicU64; 4],
    active: [AtomicU64; 4],
}

fn index(p: Option<Protocol>) -> usize {
    match p {
        Some(Protocol::Socks5) => 0,
        Some(Protocol::Socks4) => 1,
        Some(Protocol::Http) => 2,
        None => 3,
    }
}

impl ListenerMetrics {
    /// Counters for the listener bound at `listener` (its address, as shown).
    pub(crate) fn new(listener: String) -> ListenerMetrics {
        ListenerMetrics {
            listener,
            accepted: Default::default(),
            opened: Default::default(),
            refused: Default::default(),
            active: Default::default(),
        }
    }

    /// A client connection whose first byte told its protocol (`None`: none).
    pub(crate) fn accepted(&self, p: Option<Protocol>) {
        self.accepted[index(p)].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection, or a forwarded request on a kept-alive one, refused.
    pub(crate) fn refused(&self, p: Option<Protocol>) {
        self.refused[index(p)].fetch_add(1, Ordering::Relaxed);
    }

    /// A tunnel opened (or a connection to an origin, for forwarded requests):
    /// counted, and active until the guard drops.
    pub(crate) fn opened(self: &Arc<Self>, p: Protocol) -> ActiveGuard {
        let i = index(Some(p));
        self.opened[i].fetch_add(1, Ordering::Relaxed);
        self.active[i].fetch_add(1, Ordering::Relaxed);
        ActiveGuard { m: self.clone(), i }
    }
}

/// Counts one active tunnel while alive.
#[derive(Debug)]
pub(crate) struct ActiveGuard {
    m: Arc<ListenerMetrics>,
    i: usize,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.m.active[self.i].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Collect for ListenerMetrics {
    fn collect(&self, out: &mut Vec<Sample>) {
        for (i, protocol) in PROTOCOLS.into_iter().enumerate() {
            let labels = || {
                vec![
                    ("listener", self.listener.clone()),
                    ("protocol", protocol.to_owned()),
                ]
            };
            let n = |v: &AtomicU64| v.load(Ordering::Relaxed);
            out.push(Sample::counter(
                &F::GATEWAY_ACCEPTED_TOTAL,
                labels(),
                n(&self.accepted[i]),
            ));
            out.push(Sample::counter(
                &F::GATEWAY_REJECTED_TOTAL,
                labels(),
                n(&self.refused[i]),
            ));
            out.push(Sample::counter(
                &F::GATEWAY_TUNNELS_TOTAL,
                labels(),
                n(&self.opened[i]),
            ));
            out.push(Sample::gauge(
                &F::GATEWAY_ACTIVE_TUNNELS,
                labels(),
                n(&self.active[i]) as f64,
            ));
        }
    }
}

/// The serving process itself: the runtime's live tasks, and on Linux its open file
/// descriptors and resident memory (the names Prometheus's process collectors use),
/// so that a soak can watch them stay flat.
#[derive(Debug)]
pub(crate) struct ProcessMetrics {
    runtime: tokio::runtime::Handle,
}

impl ProcessMetrics {
    /// Samples the runtime `runtime` and this process.
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> ProcessMetrics {
        ProcessMetrics { runtime }
    }
}

impl Collect for ProcessMetrics {
    fn collect(&self, out: &mut Vec<Sample>) {
        out.push(Sample::gauge(
            &F::RUNTIME_ALIVE_TASKS,
            Vec::new(),
            self.runtime.metrics().num_alive_tasks() as f64,
        ));
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            out.push(Sample::gauge(
                &F::PROCESS_OPEN_FDS,
                Vec::new(),
                fds.count() as f64,
            ));
        }
        // statm's second field is resident pages; 4 KiB pages on every Linux we run on.
        let resident = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
        if let Some(pages) = resident {
            out.push(Sample::gauge(
                &F::PROCESS_RESIDENT_MEMORY_BYTES,
                Vec::new(),
                (pages * 4096) as f64,
            ));
        }
    }
}
