//! Which addresses a gateway's clients may reach: never the gateway itself (that is
//! how a client with only the listener password would reach the loopback admin
//! endpoint, or tie the gateway in loops of CONNECTs to itself), and, behind a
//! listener open to the network, no loopback, link-local or private address unless
//! the configuration allows them (the SSRF rule of every open proxy).
//!
//! Checked on the address a connection would really go to: after resolution on
//! direct routes (so a name that resolves to 127.0.0.1 is caught too), and on the
//! literal address where a proxy resolves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The gateway's own addresses and whether private destinations are allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationGuard {
    own: Vec<SocketAddr>,
    allow_private: bool,
}

/// Why a destination is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// One of the gateway's own listeners or its admin endpoint.
    OwnAddress,
    /// Loopback, link-local, private or unspecified, behind a listener that is open.
    Private,
}

impl Forbidden {
    /// What the client is told.
    pub fn as_str(self) -> &'static str {
        match self {
            Forbidden::OwnAddress => "the gateway's own address is not a destination",
            Forbidden::Private => {
                "loopback, link-local and private destinations are refused on this gateway \
                 (gateway.allow_private_destinations)"
            }
        }
    }
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DestinationGuard {
    /// A guard for a gateway bound to `own` (listeners and admin, as bound: port 0
    /// resolved), refusing private destinations unless `allow_private`.
    pub fn new(own: Vec<SocketAddr>, allow_private: bool) -> DestinationGuard {
        DestinationGuard { own, allow_private }
    }

    /// Whether a connection to `addr` may go ahead.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Forbidden> {
        let ip = canonical(addr.ip());
        for own in &self.own {
            if own.port() != addr.port() {
                continue;
            }
            let own_ip = canonical(own.ip());
            if own_ip == ip || (own_ip.is_unspecified() && is_local(ip)) {
                return Err(Forbidden::OwnAddress);
            }
        }
        if !self.allow_private && is_private(ip) {
            return Err(Forbidden::Private);
        }
        Ok(())
    }

    /// As [`DestinationGuard::check`] for a host name that needs no resolver:
    /// `localhost` and its subdomains (RFC 6761) are loopback.
    pub fn check_name(&self, host: &str, port: u16) -> Result<(), Forbidden> {
        let lower = host.to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return self.check(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 as the IPv4 address it is; any other address as it stands.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An address of this host: loopback, unspecified (a connect to 0.0.0.0 reaches
/// the host itself), or one a socket can bind to.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Loopback, link-local, private (RFC 1918, RFC 6598, unique-local), unspecified
/// or broadcast.
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_gateways_own_addresses_are_refused_in_every_spelling() {
        let g = DestinationGuard::new(vec![addr("127.0.0.1:1080"), addr("0.0.0.0:9090")], true);
        assert_eq!(g.check(addr("127.0.0.1:1080")), Err(Forbidden::OwnAddress));
        assert_eq!(
            g.check(addr("[::ffff:127.0.0.1]:1080")),
            Err(Forbidden::OwnAddress)
        );
        // An unspecified listener is every local address.
        assert_eq!(g.check(addr("127.0.0.7:9090")), Err(Forbidden::OwnAddress));
        assert_eq!(g.check(addr("0.0.0.0:9090")), Err(Forbidden::OwnAddress));
        assert_eq!(g.check_name("LocalHost", 9090), Err(Forbidden::OwnAddress));
        assert_eq!(
            g.check(addr("127.0.0.1:1081")),
            Ok(()),
            "private allowed here"
        );
        assert_eq!(
            g.check(addr("192.0.2.1:9090")),
            Ok(()),
            "not a local address"
        );
    }

    #[test]
    fn private_ranges_are_refused_unless_allowed() {
        let g = DestinationGuard::new(Vec::new(), false);
        for a in [
            "127.0.0.2:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:10.0.0.1]:80",
        ] {
            assert_eq!(g.check(addr(a)), Err(Forbidden::Private), "{a}");
        }
        for a in ["203.0.113.9:443", "[2001:db8::1]:443", "172.32.0.1:80"] {
            assert_eq!(g.check(addr(a)), Ok(()), "{a}");
        }
        assert_eq!(g.check_name("a.localhost", 80), Err(Forbidden::Private));
        assert_eq!(g.check_name("api.binance.com", 443), Ok(()));
    }
}
