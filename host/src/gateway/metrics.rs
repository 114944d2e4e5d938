//! The gateway's own counters: client connections accepted, refused and active, by
//! listener and protocol, read at scrape time through the balancer's registry.

use std::sync::atomic::{AtomicU64, Ordering};

use super::sniff::Protocol;
use crate::metrics::{Collect, Kind, Sample};

/// The protocols counted, with `unknown` for a first byte that is none of them.
const PROTOCOLS: [&str; 4] = ["socks5", "socks4", "http", "unknown"];

/// One listener's client connections.
#[derive(Debug)]
pub struct ListenerMetrics {
    listener: String,
    /// Per protocol: tunnels opened, connections refused, tunnels open now.
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
    pub fn new(listener: String) -> ListenerMetrics {
        ListenerMetrics {
            listener,
            opened: Default::default(),
            refused: Default::default(),
            active: Default::default(),
        }
    }

    pub(crate) fn refused(&self, p: Option<Protocol>) {
        self.refused[index(p)].fetch_add(1, Ordering::Relaxed);
    }

    /// A tunnel opened: counted, and active until the guard drops.
    pub(crate) fn opened(&self, p: Protocol) -> ActiveGuard<'_> {
        let i = index(Some(p));
        self.opened[i].fetch_add(1, Ordering::Relaxed);
        self.active[i].fetch_add(1, Ordering::Relaxed);
        ActiveGuard { m: self, i }
    }
}

/// Counts one active tunnel while alive.
pub(crate) struct ActiveGuard<'a> {
    m: &'a ListenerMetrics,
    i: usize,
}

impl Drop for ActiveGuard<'_> {
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
            for (name, help, kind, v) in [
                (
                    "proxypool_gateway_tunnels_total",
                    "Client connections that got a tunnel, by listener and protocol.",
                    Kind::Counter,
                    &self.opened[i],
                ),
                (
                    "proxypool_gateway_refused_total",
                    "Client connections refused (bad request, auth, unknown exchange, no tunnel).",
                    Kind::Counter,
                    &self.refused[i],
                ),
                (
                    "proxypool_gateway_active_tunnels",
                    "Tunnels open now, by listener and protocol.",
                    Kind::Gauge,
                    &self.active[i],
                ),
            ] {
                out.push(Sample {
                    name,
                    help,
                    kind,
                    labels: labels(),
                    value: v.load(Ordering::Relaxed) as f64,
                });
            }
        }
    }
}
