//! Which protocol a client speaks, from its first byte (as shadowsocks-rust and
//! glider tell them apart): 0x05 SOCKS5, 0x04 SOCKS4, an ASCII letter HTTP.

/// An inbound protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SOCKS5 (RFC 1928), with RFC 1929 user/password.
    Socks5,
    /// SOCKS4 and 4a.
    Socks4,
    /// An HTTP proxy request: CONNECT or absolute-URI forwarding.
    Http,
}

impl Protocol {
    /// The name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Socks5 => "socks5",
            Protocol::Socks4 => "socks4",
            Protocol::Http => "http",
        }
    }
}

/// The protocol a first byte starts, if any.
pub fn sniff(first: u8) -> Option<Protocol> {
    match first {
        0x05 => Some(Protocol::Socks5),
        0x04 => Some(Protocol::Socks4),
        b'A'..=b'Z' | b'a'..=b'z' => Some(Protocol::Http),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_tells_the_protocol() {
        assert_eq!(sniff(5), Some(Protocol::Socks5));
        assert_eq!(sniff(4), Some(Protocol::Socks4));
        assert_eq!(sniff(b'C'), Some(Protocol::Http));
        assert_eq!(sniff(b'g'), Some(Protocol::Http));
        for b in [0u8, 1, 3, 6, 0x16, b' ', b'0', 0xff] {
            assert_eq!(sniff(b), None, "{b:#x}");
        }
    }
}
