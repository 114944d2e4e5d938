//! The facade's errors: building a balancer ([`BalancerError`]) and opening a
//! tunnel through it ([`ConnectError`]).

use std::time::Duration;

use crate::config::ProxyUrl;
use crate::dial::{DialError, FaultClass};
use crate::strategy::StrategyError;

/// Why a balancer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BalancerError {
    /// A pool's strategy could not be loaded or failed admission.
    #[error("{pool}: strategy {strategy}: {source}")]
    Strategy {
        /// The pool's route (`exchanges.binance.http`).
        pool: String,
        /// The configured strategy.
        strategy: String,
        /// Why.
        source: StrategyError,
    },
    /// No pool serves this route path.
    #[error("no pool at {route}")]
    NoPool {
        /// The route path asked for.
        route: String,
    },
    /// The pool has no member with this id.
    #[error("{route} has no member {id}")]
    NoMember {
        /// The route path.
        route: String,
        /// The id asked for.
        id: u32,
    },
}

/// Why a connect found no tunnel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The route names a pool with no enabled member.
    #[error("{route}: the pool has no enabled proxy")]
    NoProxy {
        /// The route, as `exchanges.binance.http`.
        route: String,
    },
    /// No proxy of the pool may be used, and its policy says fail.
    #[error("{route}: every proxy is out ({policy}): {why}")]
    AllDown {
        /// The route, as `exchanges.binance.http`.
        route: String,
        /// The pool's `when_all_down` policy that applied.
        policy: &'static str,
        /// Each proxy (redacted) and why it is out.
        why: String,
    },
    /// The whole connect, retries included, ran past the pool's deadline.
    #[error("{route}: no tunnel within {}s over {attempts} attempt(s)", after.as_secs_f64())]
    Deadline {
        /// The route.
        route: String,
        /// The deadline.
        after: Duration,
        /// Proxies tried.
        attempts: usize,
    },
    /// The last dial failed: the proxy's, the destination's or our own fault.
    #[error(transparent)]
    Dial(#[from] DialError),
}

impl ConnectError {
    /// Whose fault it was: a pool with nothing to offer is a proxy fault, one with
    /// no enabled member a configuration fault.
    pub fn class(&self) -> FaultClass {
        match self {
            ConnectError::AllDown { .. } | ConnectError::Deadline { .. } => FaultClass::Proxy,
            ConnectError::NoProxy { .. } => FaultClass::Config,
            ConnectError::Dial(e) => e.class(),
        }
    }

    /// The proxy involved, if the last dial had one.
    pub fn proxy(&self) -> Option<&ProxyUrl> {
        match self {
            ConnectError::Dial(e) => e.proxy(),
            _ => None,
        }
    }

    /// The dial's error, if a dial is what failed.
    pub fn dial(&self) -> Option<&DialError> {
        match self {
            ConnectError::Dial(e) => Some(e),
            _ => None,
        }
    }
}
