//! proxypool: pools of upstream proxies for market-data feed handlers, with
//! selection strategies that run as WebAssembly components.
//!
//! Embedding it: a configuration (cryptofeed's `proxy:` schema, extended with pools),
//! a [`Balancer`] over it, and tunnels by exchange and transport. What the exchange
//! says about a proxy goes back to its pool, which keeps that proxy away from that
//! exchange for a while.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use proxypool::balancer::Outcome;
//! use proxypool::{Balancer, ConfigBuilder, Dialer, Target, Transport};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn feed() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ConfigBuilder::new()
//!     .yaml_str(
//!         "proxy: {enabled: true, exchanges: {binance: {http: {pool: \
//!          ['socks5h://10.0.0.1:1080', 'socks5h://10.0.0.2:1080']}}}}",
//!     )
//!     .process_env() // CRYPTOFEED_PROXY_* win over the YAML, as in cryptofeed
//!     .build()?;
//! let balancer = Balancer::try_new(config, Dialer::new())?;
//! balancer.start(&tokio::runtime::Handle::current()); // probes and breaker timers
//!
//! let target = Target::try_new("api.binance.com", 443)?;
//! let mut tunnel = balancer.connect(Some("binance"), Transport::Http, &target).await?;
//! tunnel.write_all(b"...").await?; // TLS and HTTP go over the tunnel
//! // Binance answered 429: this proxy sits out for binance alone.
//! tunnel.report(Outcome::RateLimited { retry_after: Some(Duration::from_secs(60)) });
//! # Ok(())
//! # }
//! ```
//!
//! Layers, each using only those to its left; the facade is the one door the
//! gateway and the `proxypool` command (crate `proxypool-cli`) use:
//!
//! ```text
//! config  →  pool  →  health  →  strategy (wasm)  →  dial  →  balancer (the facade)  →  gateway
//! ```
//!
//! - [`config`] reads cryptofeed's proxy schema (YAML, `CRYPTOFEED_PROXY_*`, code) and
//!   resolves `(exchange, transport)` to a route. It knows nothing about sockets.
//! - `pool` holds each route's live proxy state: one `ArcSwap` snapshot of the
//!   eligible set and bans, RAII leases that count active connections, and a
//!   circuit breaker per proxy.
//! - `health` schedules active probes on background tasks and flips the pool's health
//!   cells through a pluggable verdict; it defines what a probe is, and
//!   `dial` implements the methods.
//! - [`strategy`] runs selection strategies and health verdicts as WebAssembly
//!   components (with native fallbacks) and picks from a pool's snapshot.
//! - `dial` opens a stream to a target through one proxy and classifies every failure
//!   as a proxy, destination, config or local fault; it also holds the probe methods.
//! - [`balancer`] is the facade: it builds pools, strategies and health checks from a
//!   config, and opens tunnels by route with failover, hedging and the all-down policy.
//!   Background work (probes, breaker timers) starts with [`Balancer::start`], on the
//!   runtime the caller names, never as a side effect of construction.
//! - [`gateway`] serves a balancer to any client as a local SOCKS5, SOCKS4 and HTTP
//!   proxy: [`gateway::Gateway::builder`].
//! - [`metrics`] is a pull-model registry every layer reports into.
//!
//! Credentials in proxy URLs never reach `Debug`, `Display`, errors or logs: see
//! [`config::ProxyUrl`] and [`config::redact_text`].

#![warn(unreachable_pub)]

pub mod balancer;
pub mod config;
mod dial;
pub mod gateway;
mod health;
pub mod metrics;
mod pool;
pub mod strategy;
mod sync;
#[doc(hidden)]
pub mod testing;

pub use balancer::{Balancer, BalancerError, ConnectError, Tunnel};
pub use balancer::{DialError, Dialer, FaultClass, ProxyStream, Target};
pub use config::{Config, ConfigBuilder, ConfigError, ProxyUrl, Transport};
