//! proxypool: pools of upstream proxies for market-data feed handlers, with
//! selection strategies that run as WebAssembly components.
//!
//! Layers, each using only those to its left:
//!
//! ```text
//! config  →  pool (snapshot, proxy state, leases, breakers)  →  health  →  strategy (wasm)  →  dial  →  gateway
//!                                                                                     facade: Balancer (wires, reloads)
//! ```
//!
//! - [`config`] reads cryptofeed's proxy schema (YAML, `CRYPTOFEED_PROXY_*`, code) and
//!   resolves `(exchange, transport)` to a route. It knows nothing about sockets.
//! - [`pool`] holds each route's live proxy state: one `ArcSwap` snapshot of the
//!   eligible set and bans, RAII [`pool::Lease`]s that count active connections, and a
//!   circuit breaker per proxy.
//! - [`health`] schedules active probes on background tasks and flips the pool's health
//!   cells through a pluggable [`health::Verdict`]; it defines what a probe is, and
//!   `dial` implements the methods.
//! - [`strategy`] runs selection strategies and health verdicts as WebAssembly
//!   components (with native fallbacks) and picks from a pool's snapshot.
//! - [`dial`] opens a stream to a target through one proxy and classifies every failure
//!   as a proxy, destination or config fault; it also holds the probe methods.
//! - [`balancer`] is the facade: it builds pools, strategies and health checks from a
//!   config, and opens tunnels by route with failover, hedging and the all-down policy.
//!   Background work (probes, breaker timers) starts with [`Balancer::start`], on the
//!   runtime the caller names, never as a side effect of construction.
//! - [`metrics`] is a pull-model registry every layer reports into.
//!
//! - [`gateway`] will serve the balancer to any client as a local SOCKS5, SOCKS4 and
//!   HTTP proxy; so far it holds the inbound protocols' parsers.
//!
//! Credentials in proxy URLs never reach `Debug`, `Display`, errors or logs: see
//! [`config::ProxyUrl`] and [`config::redact_text`].

pub mod balancer;
pub mod config;
pub mod dial;
pub mod gateway;
pub mod health;
pub mod metrics;
pub mod pool;
pub mod strategy;

pub use balancer::{Balancer, BalancerError, ConnectError, Connected};
pub use config::{Config, ConfigBuilder, ConfigError, ProxyUrl, Transport};
pub use balancer::{DialError, Dialer, FaultClass, ProxyStream, Target};
