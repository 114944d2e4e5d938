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
//! - [`dial`] opens a stream to a target through one proxy and classifies every failure
//!   as a proxy, destination or config fault.
//!
//! Pools, health checks, strategies and the gateway build on these.
//!
//! Credentials in proxy URLs never reach `Debug`, `Display`, errors or logs: see
//! [`config::ProxyUrl`] and [`config::redact_text`].

pub mod config;
pub mod dial;

pub use config::{Config, ConfigBuilder, ConfigError, ProxyUrl, Transport};
pub use dial::{DialError, Dialer, FaultClass, ProxyStream, Target};
pub mod strategy;
