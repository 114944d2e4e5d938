//! The gateway: what `proxypool serve` runs, a local SOCKS5, SOCKS4 and HTTP
//! proxy in front of the balancer, for clients that cannot embed the library.
//!
//! [`Gateway::builder`] starts one. It serves its listeners: each client's first byte says its protocol, the
//! user name (SOCKS5 user, SOCKS4 user id, or `Proxy-Authorization` user) names the
//! exchange, and the tunnel opens through [`crate::Balancer::connect`] on the
//! listener's transport.
//!
//! The inbound protocols are sans-IO parsers, in the manner of
//! httparse: a function from the bytes read so far to [`Parse`] (`Complete(request,
//! consumed)`, `Partial` or `Invalid(reason)`), and functions that build each
//! protocol's replies. The connection task does the reading, the writing and
//! the timeouts; tests and fuzz targets need no socket. Which protocol a connection
//! speaks is told from its first byte.

pub(crate) mod admin;
mod builder;
mod conn;
mod exchange_hosts;
mod forward;
pub mod http;
pub(crate) mod metrics;
mod parse;
pub(crate) mod relay;
pub(crate) mod reload;
pub(crate) mod route;
pub(crate) mod server;
pub(crate) mod session;
pub(crate) mod sniff;
pub mod socks4;
pub mod socks5;

pub use builder::{Gateway, GatewayBuilder, GatewayError};
pub use parse::{Destination, Parse};
pub use server::{Listener, Settings};
pub use sniff::Protocol;
