//! The HTTP CONNECT handshake (RFC 9110 §9.3.6), over any byte stream.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Target;
use super::error::Fault;
use crate::config::Credentials;

/// A proxy's answer larger than this is not an HTTP header block.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Sends CONNECT and reads the answer. Returns bytes that arrived after the
/// header block: they already belong to the tunnel.
pub(crate) async fn handshake<S>(
    s: &mut S,
    target: &Target,
    credentials: Option<&Credentials>,
) -> Result<Vec<u8>, Fault>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            c.username(),
            c.password()
        ));
        req.push_str("Proxy-Authorization: Basic ");
        req.push_str(&token);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;

    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let (status, consumed) = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(Fault::Proxy(
                "proxy closed the connection before answering CONNECT".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_connect_reply(&buf) {
            ConnectReply::Complete { status, consumed } => break (status, consumed),
            ConnectReply::Partial => {}
            ConnectReply::Invalid(why) => return Err(Fault::Proxy(why.into())),
        }
    };
    let reason = reason_phrase(&buf[..consumed]);
    let early = buf[consumed..].to_vec();
    match status {
        200..=299 => Ok(early),
        407 => Err(Fault::Config(
            "407 Proxy Authentication Required (check the credentials)".into(),
        )),
        502..=504 => Err(Fault::Destination(format!("CONNECT answered {status}"))),
        // tinyproxy's answer when the destination refuses or does not resolve.
        500 if reason.eq_ignore_ascii_case("Unable to connect") => Err(Fault::Destination(
            "CONNECT answered 500 Unable to connect".into(),
        )),
        // The method itself is refused: no target would fare better.
        405 | 501 => Err(Fault::Config(format!("CONNECT answered {status}"))),
        // A refusal of this target (a port or host the proxy's rules deny): judged
        // like any target-tied failure, never as the proxy's misconfiguration.
        400..=499 => Err(Fault::Destination(format!("CONNECT answered {status}"))),
        _ => Err(Fault::Proxy(format!("CONNECT answered {status}"))),
    }
}

/// What the bytes of a proxy's answer to CONNECT hold so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectReply {
    /// A whole header block with this status; `consumed` bytes are its, the rest
    /// already belong to the tunnel.
    Complete {
        /// The status code, 100 to 599.
        status: u16,
        /// Length of the header block, its blank line included.
        consumed: usize,
    },
    /// No blank line yet: read more.
    Partial,
    /// Not an HTTP answer, or too long to be one.
    Invalid(&'static str),
}

/// Parses a proxy's answer to CONNECT from the bytes read so far, without I/O (so
/// that tests and fuzzers need no socket).
pub fn parse_connect_reply(buf: &[u8]) -> ConnectReply {
    let Some(i) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return ConnectReply::Invalid("CONNECT answer too long: not HTTP");
        }
        // A status line can be told wrong before the blank line arrives.
        if buf.len() >= 8 && !buf.starts_with(b"HTTP/1.") {
            return ConnectReply::Invalid("answered CONNECT with something that is not HTTP");
        }
        return ConnectReply::Partial;
    };
    let consumed = i + 4;
    if consumed > MAX_RESPONSE_HEAD {
        return ConnectReply::Invalid("CONNECT answer too long: not HTTP");
    }
    match parse_status(&buf[..consumed]) {
        Some((status, _)) => ConnectReply::Complete { status, consumed },
        None => ConnectReply::Invalid("answered CONNECT with something that is not HTTP"),
    }
}

fn reason_phrase(head: &[u8]) -> &str {
    parse_status(head).map_or("", |(_, r)| r)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.x NNN reason` → (NNN, reason).
fn parse_status(head: &[u8]) -> Option<(u16, &str)> {
    let line_end = find(head, b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    let reason = parts.next().unwrap_or("").trim();
    let code = (code.len() == 3)
        .then(|| code.parse().ok())
        .flatten()
        .filter(|c| (100..600).contains(c))?;
    Some((code, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parsing() {
        assert_eq!(
            parse_status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some((200, "Connection established"))
        );
        assert_eq!(parse_status(b"HTTP/1.0 407\r\n\r\n"), Some((407, "")));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 x\r\n\r\n"), None);
    }

    #[test]
    fn connect_replies_parse_whole_partial_and_invalid() {
        let whole = b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\ntunnel bytes";
        assert_eq!(
            parse_connect_reply(whole),
            ConnectReply::Complete {
                status: 200,
                consumed: whole.len() - b"tunnel bytes".len()
            }
        );
        for cut in 1..whole.len() - b"tunnel bytes".len() {
            assert_eq!(
                parse_connect_reply(&whole[..cut]),
                ConnectReply::Partial,
                "{cut}"
            );
        }
        assert!(matches!(
            parse_connect_reply(b"\xde\xad\xbe\xef this is not a proxy"),
            ConnectReply::Invalid(_)
        ));
        assert!(matches!(
            parse_connect_reply(&vec![b'H'; MAX_RESPONSE_HEAD + 1]),
            ConnectReply::Invalid(_)
        ));
    }
}
