//! SOCKS4 and SOCKS4a, sans-IO: `VN CD DSTPORT DSTIP USERID NUL [HOST NUL]`. A
//! DSTIP of `0.0.0.x` (x ≠ 0) means 4a: the name follows the user id.

use std::net::{Ipv4Addr, SocketAddr};

use super::parse::{Destination, Parse};

/// The version byte of a request.
pub const VERSION: u8 = 4;
/// The only command served.
pub const CMD_CONNECT: u8 = 1;
/// The longest user id or host name accepted, NUL included.
const MAX_FIELD: usize = 256;

/// A SOCKS4 request.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// 1 CONNECT, 2 BIND; only CONNECT is served.
    pub command: u8,
    /// Where to.
    pub destination: Destination,
    /// The user id (the exchange to route by, when set); never shown.
    pub user_id: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("command", &self.command)
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

/// Parses a request from the bytes read so far.
pub fn parse_request(buf: &[u8]) -> Parse<Request> {
    if buf.first().is_some_and(|&v| v != VERSION) {
        return Parse::Invalid("not SOCKS4");
    }
    if buf.len() < 8 {
        return Parse::Partial;
    }
    let command = buf[1];
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
    let Some((user_id, after_user)) = nul_terminated(&buf[8..]) else {
        return if buf.len() - 8 >= MAX_FIELD {
            Parse::Invalid("user id too long")
        } else {
            Parse::Partial
        };
    };
    let mut end = 8 + after_user;
    let is_4a = ip.octets()[..3] == [0, 0, 0] && ip.octets()[3] != 0;
    let destination = if is_4a {
        let Some((host, after_host)) = nul_terminated(&buf[end..]) else {
            return if buf.len() - end >= MAX_FIELD {
                Parse::Invalid("host name too long")
            } else {
                Parse::Partial
            };
        };
        end += after_host;
        if host.is_empty() {
            return Parse::Invalid("empty host name");
        }
        Destination::Name(host, port)
    } else {
        Destination::Ip(SocketAddr::from((ip, port)))
    };
    Parse::Complete(
        Request {
            command,
            destination,
            user_id,
        },
        end,
    )
}

/// The text before the first NUL (lossy UTF-8), and the length taken with the NUL.
fn nul_terminated(buf: &[u8]) -> Option<(String, usize)> {
    let i = buf.iter().take(MAX_FIELD).position(|&b| b == 0)?;
    Some((String::from_utf8_lossy(&buf[..i]).into_owned(), i + 1))
}

/// `VN(0) CD DSTPORT DSTIP`: 0x5A granted, 0x5B rejected or failed.
pub fn reply(granted: bool) -> [u8; 8] {
    [0, if granted { 0x5a } else { 0x5b }, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks4_and_4a_requests_parse_at_every_cut() {
        let v4 = [&[4u8, 1, 0, 80, 127, 0, 0, 1][..], b"binance\0"].concat();
        for cut in 0..v4.len() {
            assert_eq!(parse_request(&v4[..cut]), Parse::Partial, "{cut}");
        }
        let Parse::Complete(r, n) = parse_request(&v4) else {
            panic!("complete");
        };
        assert_eq!(n, v4.len());
        assert_eq!(r.user_id, "binance");
        assert_eq!(
            r.destination,
            Destination::Ip("127.0.0.1:80".parse().unwrap())
        );
        assert!(!format!("{r:?}").contains("binance"));

        let v4a = [&[4u8, 1, 1, 187, 0, 0, 0, 9][..], b"\0api.binance.com\0"].concat();
        let Parse::Complete(r, n) = parse_request(&v4a) else {
            panic!("4a");
        };
        assert_eq!(n, v4a.len());
        assert_eq!(
            r.destination,
            Destination::Name("api.binance.com".into(), 443)
        );
        assert!(matches!(parse_request(&[5, 1]), Parse::Invalid(_)));
        let long = [&[4u8, 1, 0, 80, 1, 2, 3, 4][..], &[b'a'; 300]].concat();
        assert!(matches!(parse_request(&long), Parse::Invalid(_)));
    }
}
