//! Where a request goes: its destination normalised (so that `127.2`,
//! `0x7f.0.0.2` and `api.binance.com.` are seen as what a resolver makes of them),
//! checked against the gateway's [`DestinationGuard`], and mapped to an exchange and
//! a transport.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::conn::Refusal;
use super::exchange_hosts::EXCHANGE_HOSTS;
use super::parse::Destination;
use crate::balancer::Balancer;
use crate::balancer::{DestinationGuard, canonical};
use crate::config::{ListenTransport, Transport};

/// The destination as a resolver would take it: a name loses one trailing dot; a
/// name that is an IPv4 address in any spelling `inet_aton` takes (`127.2`,
/// `0x7f.0.0.2`, `017700000002`) or an IPv6 literal becomes that address; an
/// IPv4-mapped IPv6 address becomes IPv4.
pub fn normalize(destination: Destination) -> Destination {
    match destination {
        Destination::Ip(addr) => {
            Destination::Ip(SocketAddr::new(canonical(addr.ip()), addr.port()))
        }
        Destination::Name(host, port) => {
            let trimmed = host.trim_end_matches('.');
            if let Some(ip) = parse_inet_aton(trimmed) {
                return Destination::Ip(SocketAddr::new(ip.into(), port));
            }
            let bare = trimmed
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(trimmed);
            if let Ok(ip) = bare.parse::<IpAddr>() {
                return Destination::Ip(SocketAddr::new(canonical(ip), port));
            }
            if trimmed.len() == host.len() {
                Destination::Name(host, port)
            } else {
                Destination::Name(trimmed.to_owned(), port)
            }
        }
    }
}

/// An IPv4 address in the forms `inet_aton(3)` accepts: one to four parts, each
/// decimal, octal (leading `0`) or hex (`0x`), the last filling the bytes left.
pub(crate) fn parse_inet_aton(s: &str) -> Option<Ipv4Addr> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x' || b == b'X')
    {
        return None;
    }
    let mut parts = [0u64; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 || part.is_empty() {
            return None;
        }
        let value = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            if hex.is_empty() {
                0
            } else {
                u64::from_str_radix(hex, 16).ok()?
            }
        } else if part.len() > 1 && part.starts_with('0') {
            u64::from_str_radix(&part[1..], 8).ok()?
        } else {
            part.parse::<u64>().ok()?
        };
        parts[n] = value;
        n += 1;
    }
    let (head, last) = (&parts[..n - 1], parts[n - 1]);
    if head.iter().any(|&p| p > 0xff) || last >= 1u64 << (8 * (5 - n)) {
        return None;
    }
    let mut v: u64 = last;
    for (i, &p) in head.iter().enumerate() {
        v |= p << (8 * (3 - i));
    }
    Some(Ipv4Addr::from(v as u32))
}

/// Refuses a destination the guard forbids: its address if it is one, or a name
/// that is loopback by definition. Names a proxy resolves are checked there, and
/// names on direct routes after resolution, by the dialer.
pub(crate) fn check(
    guard: Option<&DestinationGuard>,
    destination: &Destination,
) -> Result<(), Refusal> {
    let Some(guard) = guard else {
        return Ok(());
    };
    let checked = match destination {
        Destination::Ip(addr) => guard.check(*addr),
        Destination::Name(host, port) => guard.check_name(host, *port),
    };
    checked.map_err(Refusal::Forbidden)
}

/// The exchange and transport of a request. The exchange: the user name (lowercase;
/// `default` for the default route), else the destination host by `gateway.routes`,
/// else by the built-in table of cryptofeed's hosts, else none (the default route).
/// The transport: a suffix of the user name (`binance.ws`, `binance.http`), else
/// the listener's, or with `auto` the table's for that host, else http.
pub(crate) fn route(
    balancer: &Balancer,
    user: Option<&str>,
    destination: &Destination,
    listen: ListenTransport,
) -> Result<(Option<String>, Transport), Refusal> {
    let config = balancer.config();
    let gateway = config.gateway();
    // An address routes by its text too: `gateway.routes` may name one.
    let ip_text;
    let host = match destination {
        Destination::Name(host, _) => Some(host.as_str()),
        Destination::Ip(addr) if !gateway.routes.is_empty() => {
            ip_text = addr.ip().to_string();
            Some(ip_text.as_str())
        }
        Destination::Ip(_) => None,
    };
    let known = host.and_then(builtin_host);
    let (user, named_transport) = match user {
        Some(u) => split_transport(balancer, u),
        None => (None, None),
    };
    let exchange = match user {
        Some(u) if !u.is_empty() => {
            let lower = u.to_ascii_lowercase();
            if lower == "default" {
                None
            } else if known_exchange(balancer, &lower) {
                Some(lower)
            } else {
                let why = unknown_exchange(balancer, &lower);
                warn_unknown(&why);
                return Err(Refusal::UnknownExchange(why));
            }
        }
        _ => host
            .and_then(|h| gateway.route_for(h))
            .or(known.map(|(e, _)| e))
            .map(str::to_owned),
    };
    let transport = match (named_transport, listen) {
        (Some(t), _) => t,
        (None, ListenTransport::Http) => Transport::Http,
        (None, ListenTransport::Websocket) => Transport::Websocket,
        (None, ListenTransport::Auto) => known.map_or(Transport::Http, |(_, t)| t),
    };
    Ok((exchange, transport))
}

/// The user name without a transport suffix, and that transport: `binance.ws` and
/// `binance.websocket` name the stream route, `binance.http` and `binance.rest` the
/// REST one. A client that resolves names itself (`socks5://`) sends only an
/// address, so the host cannot tell the transport; the user name still can. A name
/// that is an exchange as it stands keeps its dot.
fn split_transport<'a>(balancer: &Balancer, user: &'a str) -> (Option<&'a str>, Option<Transport>) {
    let Some((name, suffix)) = user.rsplit_once('.') else {
        return (Some(user), None);
    };
    let transport = match suffix.to_ascii_lowercase().as_str() {
        "ws" | "websocket" => Transport::Websocket,
        "http" | "rest" => Transport::Http,
        _ => return (Some(user), None),
    };
    if known_exchange(balancer, &user.to_ascii_lowercase()) {
        return (Some(user), None);
    }
    (Some(name), Some(transport))
}

/// What a client is told of a user name that names no exchange: the name, the
/// nearest known one if it looks like a typo, and the ones configured.
fn unknown_exchange(balancer: &Balancer, name: &str) -> String {
    let config = balancer.config();
    let mut configured: Vec<&str> = config
        .exchanges()
        .keys()
        .map(String::as_str)
        .chain(config.gateway().routes.iter().map(|(e, _)| e.as_str()))
        .collect();
    configured.sort_unstable();
    configured.dedup();
    let nearest = configured
        .iter()
        .copied()
        .chain(EXCHANGE_HOSTS.iter().map(|(_, e, _)| *e))
        .map(|e| (edit_distance(name, e), e))
        .filter(|(d, _)| *d <= 2)
        .min();
    let shown: String = name.chars().take(40).collect();
    let mut text = format!("unknown exchange {shown:?} in the user name");
    if let Some((_, e)) = nearest {
        text.push_str(&format!(" (did you mean {e:?}?)"));
    }
    if !configured.is_empty() {
        let list: Vec<&str> = configured.iter().copied().take(8).collect();
        text.push_str(&format!("; configured: {}", list.join(", ")));
        if configured.len() > 8 {
            text.push_str(&format!(" and {} more", configured.len() - 8));
        }
    }
    text.push_str("; `default` takes the default route");
    text
}

/// Says a refused exchange name at warn, once a second at most: a mistyped name in a
/// feed handler's settings repeats on every reconnect.
fn warn_unknown(why: &str) {
    static SAID: super::server::Limited = super::server::Limited::new();
    super::server::warn_limited(&SAID, || {
        tracing::warn!(target: "proxypool::gateway", "refused: {why}");
    });
}

/// Levenshtein distance over bytes, for short names only.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(x != y)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// The exchange and transport cryptofeed uses `host` for, if any.
fn builtin_host(host: &str) -> Option<(&'static str, Transport)> {
    let lower = host.to_ascii_lowercase();
    EXCHANGE_HOSTS
        .binary_search_by(|(h, _, _)| (*h).cmp(lower.as_str()))
        .ok()
        .map(|i| (EXCHANGE_HOSTS[i].1, EXCHANGE_HOSTS[i].2))
}

/// An exchange the configuration, the gateway's routes or cryptofeed names.
pub(crate) fn known_exchange(balancer: &Balancer, name: &str) -> bool {
    let config = balancer.config();
    config.exchanges().contains_key(name)
        || config.gateway().routes.iter().any(|(e, _)| e == name)
        || EXCHANGE_HOSTS.iter().any(|(_, e, _)| *e == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(d: Destination) -> Option<SocketAddr> {
        match d {
            Destination::Ip(a) => Some(a),
            Destination::Name(..) => None,
        }
    }

    #[test]
    fn typos_are_a_small_edit_distance_away() {
        assert_eq!(edit_distance("binanse", "binance"), 1);
        assert_eq!(edit_distance("kraken", "kraken"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert!(edit_distance("coinbase", "binance") > 2);
    }

    #[test]
    fn every_spelling_of_an_address_is_that_address() {
        let v4 = |s: &str| ip(normalize(Destination::Name(s.into(), 80)));
        let want = Some("127.0.0.2:80".parse().unwrap());
        for spelling in [
            "127.2",
            "0x7f.0.0.2",
            "0177.0.0.2",
            "2130706434",
            "0x7f000002",
            "127.0.0.2.",
            "127.0.2",
        ] {
            assert_eq!(v4(spelling), want, "{spelling}");
        }
        assert_eq!(v4("[::ffff:127.0.0.2]"), want);
        assert_eq!(v4("::1"), Some("[::1]:80".parse().unwrap()));
        for name in [
            "api.binance.com",
            "1e100.net",
            "256.1.1.1",
            "1.2.3.4.5",
            "08.1.1.1",
            "",
        ] {
            assert_eq!(v4(name), None, "{name}");
        }
        assert_eq!(
            normalize(Destination::Name("Api.Binance.com.".into(), 443)),
            Destination::Name("Api.Binance.com".into(), 443),
            "one trailing dot goes"
        );
        assert_eq!(
            normalize(Destination::Ip("[::ffff:10.0.0.1]:1".parse().unwrap())),
            Destination::Ip("10.0.0.1:1".parse().unwrap())
        );
    }

    #[test]
    fn the_builtin_table_knows_cryptofeeds_hosts_in_any_case() {
        assert_eq!(
            builtin_host("Stream.Binance.com"),
            Some(("binance", Transport::Websocket))
        );
        assert_eq!(
            builtin_host("api.binance.com"),
            Some(("binance", Transport::Http))
        );
        assert_eq!(
            builtin_host("fstream.binance.com"),
            Some(("binance_futures", Transport::Websocket))
        );
        assert_eq!(builtin_host("example.com"), None);
        assert!(
            EXCHANGE_HOSTS.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, for the binary search"
        );
    }
}
