//! SOCKS5 (RFC 1928) and its user/password sub-negotiation (RFC 1929), sans-IO:
//! functions from the bytes read so far to a [`Parse`], and reply builders. The
//! connection task does the reading, the writing and the timeouts.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::parse::{Destination, Parse};

/// The version byte of every SOCKS5 message but the RFC 1929 ones.
pub const VERSION: u8 = 5;
/// Method: no authentication.
pub const NO_AUTH: u8 = 0x00;
/// Method: user name and password (RFC 1929).
pub const USER_PASS: u8 = 0x02;
/// Method reply: none of the offered methods is acceptable.
pub const NO_ACCEPTABLE: u8 = 0xff;
/// The only command served.
pub const CMD_CONNECT: u8 = 0x01;

/// The client's greeting: which methods it offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// It offers no authentication.
    pub no_auth: bool,
    /// It offers user/password.
    pub user_pass: bool,
}

/// An RFC 1929 user name and password (raw: neither is shown anywhere).
#[derive(Clone, PartialEq, Eq)]
pub struct UserPass {
    /// The user name.
    pub user: String,
    /// The password.
    pub pass: String,
}

impl std::fmt::Debug for UserPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserPass(***)")
    }
}

/// A request: its command and destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE; only CONNECT is served.
    pub command: u8,
    /// Where to.
    pub destination: Destination,
}

/// `VER NMETHODS METHODS…`.
pub fn parse_greeting(buf: &[u8]) -> Parse<Greeting> {
    let [ver, n, ..] = *buf else {
        return if buf.first().is_some_and(|&v| v != VERSION) {
            Parse::Invalid("not SOCKS5")
        } else {
            Parse::Partial
        };
    };
    if ver != VERSION {
        return Parse::Invalid("not SOCKS5");
    }
    if n == 0 {
        return Parse::Invalid("no authentication method offered");
    }
    let end = 2 + n as usize;
    let Some(methods) = buf.get(2..end) else {
        return Parse::Partial;
    };
    Parse::Complete(
        Greeting {
            no_auth: methods.contains(&NO_AUTH),
            user_pass: methods.contains(&USER_PASS),
        },
        end,
    )
}

/// RFC 1929: `VER(1) ULEN UNAME PLEN PASSWD`.
pub fn parse_user_pass(buf: &[u8]) -> Parse<UserPass> {
    let Some(&ver) = buf.first() else {
        return Parse::Partial;
    };
    if ver != 1 {
        return Parse::Invalid("bad user/password sub-negotiation version");
    }
    let Some(&ulen) = buf.get(1) else {
        return Parse::Partial;
    };
    let u_end = 2 + ulen as usize;
    let Some(&plen) = buf.get(u_end) else {
        return Parse::Partial;
    };
    let p_end = u_end + 1 + plen as usize;
    if buf.len() < p_end {
        return Parse::Partial;
    }
    let (Ok(user), Ok(pass)) = (
        std::str::from_utf8(&buf[2..u_end]),
        std::str::from_utf8(&buf[u_end + 1..p_end]),
    ) else {
        return Parse::Invalid("user name or password is not UTF-8");
    };
    Parse::Complete(
        UserPass {
            user: user.to_owned(),
            pass: pass.to_owned(),
        },
        p_end,
    )
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT`.
pub fn parse_request(buf: &[u8]) -> Parse<Request> {
    if buf.len() < 4 {
        return match buf.first() {
            Some(&v) if v != VERSION => Parse::Invalid("not SOCKS5"),
            _ => Parse::Partial,
        };
    }
    if buf[0] != VERSION {
        return Parse::Invalid("not SOCKS5");
    }
    let command = buf[1];
    let atyp = buf[3];
    let addr_end = match atyp {
        1 => 8,
        4 => 20,
        3 => match buf.get(4) {
            None => return Parse::Partial,
            Some(0) => return Parse::Invalid("empty domain name"),
            Some(&len) => 5 + len as usize,
        },
        _ => return Parse::Invalid("unknown address type"),
    };
    let end = addr_end + 2;
    if buf.len() < end {
        return Parse::Partial;
    }
    let port = u16::from_be_bytes([buf[addr_end], buf[addr_end + 1]]);
    let destination = match atyp {
        1 => {
            let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
            Destination::Ip(SocketAddr::from((ip, port)))
        }
        4 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&buf[4..20]);
            Destination::Ip(SocketAddr::from((Ipv6Addr::from(octets), port)))
        }
        _ => match std::str::from_utf8(&buf[5..addr_end]) {
            Ok(name) => Destination::Name(name.to_owned(), port),
            Err(_) => return Parse::Invalid("domain name is not UTF-8"),
        },
    };
    Parse::Complete(
        Request {
            command,
            destination,
        },
        end,
    )
}

/// A reply code (RFC 1928 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    /// Succeeded.
    Succeeded = 0x00,
    /// General SOCKS server failure.
    GeneralFailure = 0x01,
    /// Connection not allowed by ruleset (an unknown exchange, say).
    NotAllowed = 0x02,
    /// Network unreachable.
    NetworkUnreachable = 0x03,
    /// Host unreachable.
    HostUnreachable = 0x04,
    /// Connection refused.
    ConnectionRefused = 0x05,
    /// TTL expired (a timeout).
    TtlExpired = 0x06,
    /// Command not supported.
    CommandNotSupported = 0x07,
    /// Address type not supported.
    AddressNotSupported = 0x08,
}

/// The method selection: `VER METHOD`.
pub fn method_reply(method: u8) -> [u8; 2] {
    [VERSION, method]
}

/// The RFC 1929 status: `VER(1) STATUS`, 0 for success.
pub fn user_pass_reply(ok: bool) -> [u8; 2] {
    [1, if ok { 0 } else { 1 }]
}

/// A reply with the bound address 0.0.0.0:0 (clients ignore it for CONNECT).
pub fn reply(code: Reply) -> [u8; 10] {
    [VERSION, code as u8, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_parse_whole_and_partial() {
        assert_eq!(parse_greeting(&[5]), Parse::Partial);
        assert_eq!(parse_greeting(&[5, 2, 0]), Parse::Partial);
        assert_eq!(
            parse_greeting(&[5, 2, 0, 2, 9]),
            Parse::Complete(
                Greeting {
                    no_auth: true,
                    user_pass: true
                },
                4
            )
        );
        assert!(matches!(parse_greeting(&[4, 1, 0]), Parse::Invalid(_)));
        assert!(matches!(parse_greeting(&[5, 0]), Parse::Invalid(_)));
    }

    #[test]
    fn user_and_password_parse_at_every_cut() {
        let msg = [&[1u8, 7][..], b"binance", &[1], b"x"].concat();
        for cut in 0..msg.len() {
            assert_eq!(parse_user_pass(&msg[..cut]), Parse::Partial, "{cut}");
        }
        let Parse::Complete(up, n) = parse_user_pass(&msg) else {
            panic!("complete");
        };
        assert_eq!(
            (up.user.as_str(), up.pass.as_str(), n),
            ("binance", "x", msg.len())
        );
        assert_eq!(format!("{up:?}"), "UserPass(***)");
    }

    #[test]
    fn requests_parse_each_address_type() {
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x01, 0xbb];
        assert_eq!(
            parse_request(&v4),
            Parse::Complete(
                Request {
                    command: 1,
                    destination: Destination::Ip("127.0.0.1:443".parse().unwrap())
                },
                10
            )
        );
        let name = [&[5u8, 1, 0, 3, 15][..], b"api.binance.com", &[0x01, 0xbb]].concat();
        for cut in 0..name.len() {
            assert_eq!(parse_request(&name[..cut]), Parse::Partial, "{cut}");
        }
        assert_eq!(
            parse_request(&name),
            Parse::Complete(
                Request {
                    command: 1,
                    destination: Destination::Name("api.binance.com".into(), 443)
                },
                name.len()
            )
        );
        let mut v6 = vec![5, 2, 0, 4];
        v6.extend_from_slice(&[0; 15]);
        v6.extend_from_slice(&[1, 0, 80]);
        let Parse::Complete(r, 22) = parse_request(&v6) else {
            panic!("v6");
        };
        assert_eq!(r.command, 2, "BIND parses; the task refuses it");
        assert_eq!(r.destination, Destination::Ip("[::1]:80".parse().unwrap()));
        assert!(matches!(parse_request(&[5, 1, 0, 9, 0]), Parse::Invalid(_)));
        assert!(matches!(
            parse_request(&[5, 1, 0, 3, 0, 0, 80]),
            Parse::Invalid(_)
        ));
    }

    #[test]
    fn replies_are_protocol_bytes() {
        assert_eq!(reply(Reply::CommandNotSupported)[1], 0x07);
        assert_eq!(method_reply(NO_ACCEPTABLE), [5, 0xff]);
        assert_eq!(user_pass_reply(false), [1, 1]);
    }
}
