//! The name of a route, and of one upstream in it: the one place either is written
//! (`exchanges.binance.http`, `exchanges.binance.http/2`) or read back.

use std::fmt;
use std::str::FromStr;

use super::Transport;

/// A route: the default one or an exchange's (lowercase), and a transport. Shown
/// and parsed as `default.http` or `exchanges.binance.websocket`, the paths of the
/// configuration, status, metrics and reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutePath {
    exchange: Option<String>,
    transport: Transport,
}

impl RoutePath {
    /// The route of `exchange` (none: the default route) for `transport`.
    pub fn new(exchange: Option<&str>, transport: Transport) -> RoutePath {
        RoutePath {
            exchange: exchange.map(str::to_ascii_lowercase),
            transport,
        }
    }

    /// The default route for `transport`.
    pub fn default_route(transport: Transport) -> RoutePath {
        RoutePath::new(None, transport)
    }

    /// The exchange, or `None` for the default route.
    pub fn exchange(&self) -> Option<&str> {
        self.exchange.as_deref()
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }
}

impl fmt::Display for RoutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.exchange {
            Some(e) => write!(f, "exchanges.{e}.{}", self.transport),
            None => write!(f, "default.{}", self.transport),
        }
    }
}

impl FromStr for RoutePath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a route (default.http, exchanges.binance.websocket)");
        let (head, transport) = s.rsplit_once('.').ok_or_else(bad)?;
        let transport = transport.parse().map_err(|_| bad())?;
        let exchange = match head {
            "default" => None,
            _ => Some(
                head.strip_prefix("exchanges.")
                    .filter(|e| !e.is_empty())
                    .ok_or_else(bad)?,
            ),
        };
        Ok(RoutePath::new(exchange, transport))
    }
}

/// One upstream of a pool: its route and its id there, shown and parsed as
/// `exchanges.binance.http/2` (the `Proxypool-Upstream` header, `/report`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamRef {
    /// The pool's route.
    pub route: RoutePath,
    /// The member's id in it.
    pub id: u32,
}

impl fmt::Display for UpstreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.route, self.id)
    }
}

impl FromStr for UpstreamRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (route, id) = s
            .rsplit_once('/')
            .ok_or_else(|| format!("{s:?} is not route/id (exchanges.binance.http/2)"))?;
        Ok(UpstreamRef {
            route: route.parse()?,
            id: id
                .parse()
                .map_err(|_| format!("{id:?} in {s:?} is not a member id"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_upstreams_read_back_what_they_show() {
        for s in [
            "default.http",
            "default.websocket",
            "exchanges.binance.http",
            "exchanges.binance_futures.websocket",
        ] {
            assert_eq!(s.parse::<RoutePath>().unwrap().to_string(), s);
            let u = format!("{s}/3");
            assert_eq!(u.parse::<UpstreamRef>().unwrap().to_string(), u);
        }
        let r: RoutePath = "exchanges.Binance.ws".parse().unwrap();
        assert_eq!(r, RoutePath::new(Some("binance"), Transport::Websocket));
        for bad in [
            "",
            "default",
            "default.ftp",
            "exchanges..http",
            "binance.http",
            "exchanges.http",
        ] {
            assert!(bad.parse::<RoutePath>().is_err(), "{bad}");
        }
        for bad in ["default.http", "default.http/x", "nope/1"] {
            assert!(bad.parse::<UpstreamRef>().is_err(), "{bad}");
        }
    }
}
