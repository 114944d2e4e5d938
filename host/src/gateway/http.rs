//! HTTP proxy requests, sans-IO: a request head (CONNECT `host:port`, or an
//! absolute `http://` URI to forward) parsed with `httparse`, and reply builders.

use base64::Engine as _;

use super::parse::Parse;

/// A request head larger than this is refused (as the dialer bounds a reply).
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers per request at most.
const MAX_HEADERS: usize = 64;

/// What the client asks the proxy to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `CONNECT host:port`: a tunnel.
    Connect {
        /// The host (IPv6 without brackets).
        host: String,
        /// The port.
        port: u16,
    },
    /// `GET http://host[:port]/path`: forward the request to an origin.
    Forward {
        /// The host (IPv6 without brackets).
        host: String,
        /// The port (80 when the URI has none).
        port: u16,
        /// The origin-form target to send on: path and query, `/` at least.
        path: String,
    },
}

/// Basic `Proxy-Authorization`, decoded; never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name (the exchange to route by, when set).
    pub user: String,
    /// The password.
    pub pass: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BasicAuth(***)")
    }
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent.
    pub method: String,
    /// What it asks for.
    pub target: Target,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Every header but `Proxy-Authorization`, in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Decoded `Proxy-Authorization: Basic`, if sent.
    pub auth: Option<BasicAuth>,
}

/// Parses a request head from the bytes read so far.
pub fn parse_request(buf: &[u8]) -> Parse<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                Parse::Invalid("request head too large")
            } else {
                Parse::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Parse::Invalid("too many headers"),
        Err(_) => return Parse::Invalid("malformed HTTP request"),
    };
    if consumed > MAX_HEAD {
        return Parse::Invalid("request head too large");
    }
    let (Some(method), Some(uri), Some(version)) = (req.method, req.path, req.version) else {
        return Parse::Invalid("malformed HTTP request");
    };
    let target = if method.eq_ignore_ascii_case("CONNECT") {
        match split_host_port(uri) {
            Some((host, Some(port))) => Target::Connect { host, port },
            _ => return Parse::Invalid("CONNECT needs host:port"),
        }
    } else {
        let Some(rest) = strip_prefix_ignore_case(uri, "http://") else {
            return Parse::Invalid("a proxy request needs an absolute http:// URI");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Parse::Invalid("credentials in a request URI");
        }
        match split_host_port(authority) {
            Some((host, port)) => Target::Forward {
                host,
                port: port.unwrap_or(80),
                path,
            },
            None => return Parse::Invalid("bad host in the request URI"),
        }
    };
    let mut auth = None;
    let mut kept = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("proxy-authorization") {
            match basic(h.value) {
                Some(a) => auth = Some(a),
                None => return Parse::Invalid("Proxy-Authorization is not Basic"),
            }
        } else {
            kept.push((h.name.to_owned(), h.value.to_vec()));
        }
    }
    Parse::Complete(
        Request {
            method: method.to_owned(),
            target,
            version,
            headers: kept,
            auth,
        },
        consumed,
    )
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    // `get`, not indexing: the cut may fall inside a multi-byte character.
    s.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; a port must be 1–65535.
pub(crate) fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else if s.matches(':').count() > 1 {
        return None;
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || crate::config::host_problem(host).is_some() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((host.to_owned(), port))
}

pub(crate) fn basic(value: &[u8]) -> Option<BasicAuth> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':').unwrap_or((&decoded, ""));
    Some(BasicAuth {
        user: user.to_owned(),
        pass: pass.to_owned(),
    })
}

/// A complete response with no body, closing the connection: `407` also asks for
/// Basic credentials, and `reason` goes in a `Proxypool-Error` header too, so a
/// client library that hides the status line still shows why.
pub fn error_response(status: u16, reason: &str) -> Vec<u8> {
    let phrase = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let reason = printable(reason);
    let mut out = if reason.is_empty() {
        format!("HTTP/1.1 {status} {phrase}\r\n")
    } else {
        format!("HTTP/1.1 {status} {phrase}: {reason}\r\n")
    };
    if status == 407 {
        out.push_str("Proxy-Authenticate: Basic realm=\"proxypool\"\r\n");
    }
    out.push_str(&format!(
        "Proxypool-Error: {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    ));
    out.into_bytes()
}

/// A refusal's reason as a reason phrase and a header value take it: printable
/// ASCII only, at most 300 characters. Clients show the reason phrase (requests,
/// aiohttp and httpx put it in their exception).
pub(crate) fn printable(reason: &str) -> String {
    reason
        .chars()
        .take(300)
        .map(|c| {
            if c.is_ascii() && !c.is_control() {
                c
            } else {
                ' '
            }
        })
        .collect()
}

/// Headers that concern one hop only (RFC 9110 §7.6.1), dropped when forwarding,
/// with those the message's `Connection` header names. `Transfer-Encoding` goes
/// too: each hop frames the body itself.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Drops the hop-by-hop headers of a message being forwarded, in either direction.
pub fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// The answer to a CONNECT whose tunnel is open, naming the upstream that carries it
/// (`route/id`) for a client that reports bans through the admin endpoint.
pub fn connect_established(upstream: Option<&str>) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 Connection established\r\n".to_vec();
    if let Some(u) = upstream {
        out.extend_from_slice(format!("Proxypool-Upstream: {u}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_parses_with_basic_auth_and_at_every_cut() {
        let auth = base64::engine::general_purpose::STANDARD.encode("binance:x");
        let head = format!(
            "CONNECT api.binance.com:443 HTTP/1.1\r\nHost: api.binance.com:443\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
        );
        for cut in 0..head.len() {
            assert_eq!(
                parse_request(&head.as_bytes()[..cut]),
                Parse::Partial,
                "{cut}"
            );
        }
        let Parse::Complete(r, n) = parse_request(head.as_bytes()) else {
            panic!("complete");
        };
        assert_eq!(n, head.len());
        assert_eq!(
            r.target,
            Target::Connect {
                host: "api.binance.com".into(),
                port: 443
            }
        );
        let a = r.auth.as_ref().unwrap();
        assert_eq!((a.user.as_str(), a.pass.as_str()), ("binance", "x"));
        assert_eq!(r.headers.len(), 1, "Proxy-Authorization is not forwarded");
        assert!(!format!("{r:?}").contains("binance:x"));
    }

    #[test]
    fn absolute_uris_are_forwarded_and_others_refused() {
        let r = |s: &str| parse_request(s.as_bytes());
        let Parse::Complete(req, _) = r("GET http://[::1]:8080/a?b=1 HTTP/1.0\r\n\r\n") else {
            panic!("forward");
        };
        assert_eq!(
            req.target,
            Target::Forward {
                host: "::1".into(),
                port: 8080,
                path: "/a?b=1".into()
            }
        );
        assert_eq!(req.version, 0);
        let Parse::Complete(req, _) = r("GET http://h?x HTTP/1.1\r\n\r\n") else {
            panic!("query only");
        };
        assert!(matches!(req.target, Target::Forward { port: 80, ref path, .. } if path == "/?x"));
        for bad in [
            "GET /relative HTTP/1.1\r\n\r\n",
            "GET https://h/ HTTP/1.1\r\n\r\n",
            "CONNECT h HTTP/1.1\r\n\r\n",
            "CONNECT h:0 HTTP/1.1\r\n\r\n",
            "GET http://u:p@h/ HTTP/1.1\r\n\r\n",
            "\x16\x03\x01 not http\r\n\r\n",
            // Found by the fuzzer: a multi-byte character across the scheme's end.
            "CO NCTLEa\u{18d}''0 HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(r(bad), Parse::Invalid(_)), "{bad:?}");
        }
        assert!(matches!(
            parse_request(&vec![b'G'; MAX_HEAD + 1]),
            Parse::Invalid(_) | Parse::Partial
        ));
    }

    #[test]
    fn forwarded_messages_drop_hop_by_hop_headers() {
        let mut h = hyper::HeaderMap::new();
        for (name, value) in [
            ("host", "h:8080"),
            ("connection", "keep-alive, X-Hop"),
            ("x-hop", "1"),
            ("keep-alive", "5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eDp5"),
            ("transfer-encoding", "chunked"),
            ("accept", "*/*"),
        ] {
            h.append(name, value.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let mut kept: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["accept", "host"]);
    }

    #[test]
    fn error_responses_are_complete_http() {
        let r = String::from_utf8(error_response(407, "auth required\r\nX: é")).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 407 Proxy Authentication Required: auth required  X:  \r\n"),
            "the reason phrase says why, in printable ASCII: {r}"
        );
        assert!(r.contains("Proxy-Authenticate: Basic"));
        assert!(
            r.contains("Proxypool-Error: auth required  X:  \r\n"),
            "{r}"
        );
        assert!(
            r.ends_with("\r\n\r\nauth required  X:  \n"),
            "and the body: {r}"
        );
        let bare = String::from_utf8(error_response(502, "")).unwrap();
        assert!(bare.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{bare}");
    }
}
