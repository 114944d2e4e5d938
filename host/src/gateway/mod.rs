//! The gateway: what `proxypool serve` will run, a local SOCKS5, SOCKS4 and HTTP
//! proxy in front of the balancer, for clients that cannot embed the library.
//!
//! This first part holds the inbound protocols as sans-IO parsers, in the manner of
//! httparse: a function from the bytes read so far to [`Parse`] (`Complete(request,
//! consumed)`, `Partial` or `Invalid(reason)`), and functions that build each
//! protocol's replies. The connection task (to come) does the reading, the writing and
//! the timeouts; tests and fuzz targets need no socket. Which protocol a connection
//! speaks is told from its first byte ([`sniff::sniff`]).

pub mod http;
mod parse;
pub mod sniff;
pub mod socks4;
pub mod socks5;

pub use parse::{Destination, Parse};
pub use sniff::{Protocol, sniff};
