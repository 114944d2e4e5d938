//! Dial failures and their fault class: the only thing failover looks at.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::config::ProxyUrl;

/// Whose fault a failed dial was. Failover decides from this alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultClass {
    /// The proxy is down, slow, or spoke garbage: try another proxy.
    Proxy,
    /// The proxy spoke its protocol and answered that this destination failed
    /// (unreachable, refused, unresolvable, denied by its rules, or a SOCKS general
    /// failure). Tied to the target: it is the proxy's fault only if another proxy
    /// reaches the same target, so it is never charged on its own.
    Destination,
    /// The proxy works but refuses us (bad credentials, a method it does not
    /// serve): a configuration error, not a health failure.
    Config,
    /// Our own side ran short (EMFILE, ENFILE, ENOBUFS, ENOMEM, no free local
    /// port): no proxy is to blame and no other proxy would do better.
    Local,
}

impl fmt::Display for FaultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultClass::Proxy => "proxy fault",
            FaultClass::Destination => "destination fault",
            FaultClass::Config => "config fault",
            FaultClass::Local => "local resource fault",
        })
    }
}

/// Why a stream could not be opened. Proxy URLs in it are redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The TCP connect to the proxy failed (refused, unreachable, unresolvable).
    #[error("proxy {proxy}: cannot connect: {source}")]
    ProxyUnreachable {
        /// The proxy.
        proxy: ProxyUrl,
        /// Why.
        source: io::Error,
    },
    /// Connect plus handshake did not finish within the timeout.
    #[error("proxy {proxy}: no tunnel within {}s", after.as_secs_f64())]
    Timeout {
        /// The proxy.
        proxy: ProxyUrl,
        /// The bound that passed.
        after: Duration,
    },
    /// The proxy reset, closed, failed or answered something that is not its protocol.
    #[error("proxy {proxy}: {detail}")]
    ProxyProtocol {
        /// The proxy.
        proxy: ProxyUrl,
        /// What happened.
        detail: String,
    },
    /// The proxy works, but the destination could not be reached through it.
    #[error("proxy {proxy}: destination {target} failed: {detail}")]
    Destination {
        /// The proxy.
        proxy: ProxyUrl,
        /// The destination.
        target: String,
        /// The proxy's answer.
        detail: String,
    },
    /// The proxy refused us: credentials, or a request it does not support.
    #[error("proxy {proxy}: rejected: {detail}")]
    Rejected {
        /// The proxy.
        proxy: ProxyUrl,
        /// The proxy's answer.
        detail: String,
    },
    /// The destination name could not be resolved locally (socks4, socks5, direct).
    #[error("cannot resolve destination {target}: {detail}")]
    Resolve {
        /// The destination.
        target: String,
        /// Why.
        detail: String,
    },
    /// A direct connection (the route says direct) failed.
    #[error("direct connection to {target} failed: {source}")]
    Direct {
        /// The destination.
        target: String,
        /// Why.
        source: io::Error,
    },
    /// The destination is one a gateway's clients may not reach (see
    /// [`crate::dial::DestinationGuard`]).
    #[error("destination {target} refused: {why}")]
    Forbidden {
        /// The destination.
        target: String,
        /// Why.
        why: super::Forbidden,
    },
}

impl DialError {
    /// Whose fault it was.
    pub fn class(&self) -> FaultClass {
        match self {
            DialError::ProxyUnreachable { source, .. } if is_local_shortage(source) => {
                FaultClass::Local
            }
            DialError::Direct { source, .. } if is_local_shortage(source) => FaultClass::Local,
            DialError::ProxyUnreachable { .. }
            | DialError::Timeout { .. }
            | DialError::ProxyProtocol { .. } => FaultClass::Proxy,
            DialError::Destination { .. }
            | DialError::Resolve { .. }
            | DialError::Direct { .. }
            | DialError::Forbidden { .. } => FaultClass::Destination,
            DialError::Rejected { .. } => FaultClass::Config,
        }
    }

    /// Whether another proxy may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        self.class() == FaultClass::Proxy
    }

    /// The proxy involved, if any.
    pub fn proxy(&self) -> Option<&ProxyUrl> {
        match self {
            DialError::ProxyUnreachable { proxy, .. }
            | DialError::Timeout { proxy, .. }
            | DialError::ProxyProtocol { proxy, .. }
            | DialError::Destination { proxy, .. }
            | DialError::Rejected { proxy, .. } => Some(proxy),
            _ => None,
        }
    }
}

/// Whether an I/O error says that this process or host ran out of something, not
/// that the other side failed.
pub(crate) fn is_local_shortage(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::OutOfMemory | io::ErrorKind::AddrNotAvailable
    ) {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        if let Some(code) = e.raw_os_error() {
            return [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
                .contains(&Errno::from_raw(code));
        }
    }
    false
}

/// A handshake failure before the proxy is attached for context.
#[derive(Debug)]
pub(crate) enum Fault {
    Proxy(String),
    Destination(String),
    Config(String),
}

impl Fault {
    pub(crate) fn into_error(self, proxy: &ProxyUrl, target: &impl fmt::Display) -> DialError {
        let proxy = proxy.clone();
        match self {
            Fault::Proxy(detail) => DialError::ProxyProtocol { proxy, detail },
            Fault::Destination(detail) => DialError::Destination {
                proxy,
                target: target.to_string(),
                detail,
            },
            Fault::Config(detail) => DialError::Rejected { proxy, detail },
        }
    }
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Self {
        Fault::Proxy(format!("connection failed during handshake: {e}"))
    }
}

/// Maps tokio-socks errors to fault classes. SOCKS4's "rejected or failed" (0x5B)
/// arrives as the same variant as SOCKS5's general failure, so the version matters.
pub(crate) fn classify_socks(e: tokio_socks::Error, socks4: bool) -> Fault {
    use tokio_socks::Error as E;
    let detail = e.to_string();
    match e {
        E::GeneralSocksServerFailure if socks4 => {
            Fault::Destination("request rejected or failed (SOCKS4 0x5B)".into())
        }
        // microsocks answers 0x01 when the name does not resolve: a well-formed reply
        // about this target, so it is judged as one.
        E::GeneralSocksServerFailure => Fault::Destination("general failure (SOCKS5 0x01)".into()),
        E::NetworkUnreachable
        | E::HostUnreachable
        | E::ConnectionRefused
        | E::TtlExpired
        | E::ConnectionNotAllowedByRuleset
        | E::AddressTypeNotSupported => Fault::Destination(detail),
        E::NoAcceptableAuthMethods
        | E::PasswordAuthFailure(_)
        | E::AuthorizationRequired
        | E::InvalidAuthValues(_)
        | E::IdentdAuthFailure
        | E::InvalidUserIdAuthFailure
        | E::CommandNotSupported => Fault::Config(detail),
        E::InvalidTargetAddress(_) => Fault::Destination(detail),
        E::Io(io) => Fault::from(io),
        _ => Fault::Proxy(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortage_on_our_side_is_nobodys_fault() {
        let proxy = ProxyUrl::parse("socks5://127.0.0.1:1080").unwrap();
        let unreachable = |source| DialError::ProxyUnreachable {
            proxy: proxy.clone(),
            source,
        };
        #[cfg(target_os = "linux")]
        for errno in [
            nix::errno::Errno::EMFILE,
            nix::errno::Errno::ENFILE,
            nix::errno::Errno::ENOBUFS,
        ] {
            let e = unreachable(io::Error::from_raw_os_error(errno as i32));
            assert_eq!(e.class(), FaultClass::Local, "{e}");
            assert!(!e.is_retryable());
        }
        let e = unreachable(io::ErrorKind::AddrNotAvailable.into());
        assert_eq!(e.class(), FaultClass::Local, "no free local port");
        let e = unreachable(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(e.class(), FaultClass::Proxy, "{e}");
    }
}
