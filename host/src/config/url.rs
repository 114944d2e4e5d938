//! Proxy URLs: parsing with cryptofeed's rules and messages, and redaction.

use std::fmt;

use percent_encoding::percent_decode_str;

/// The schemes a proxy URL may use, matched case-insensitively.
pub const SUPPORTED_SCHEMES: &str = "http, https, socks4, socks4a, socks5, socks5h";

/// What replaces the userinfo of a URL wherever it is shown.
pub const REDACTED: &str = "***";

/// The protocol spoken to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// HTTP CONNECT over plain TCP.
    Http,
    /// HTTP CONNECT over TLS to the proxy (as curl does).
    Https,
    /// SOCKS4; the destination is resolved locally (IPv4 only).
    Socks4,
    /// SOCKS4a; the proxy resolves the destination name.
    Socks4a,
    /// SOCKS5; the destination is resolved locally.
    Socks5,
    /// SOCKS5; the proxy resolves the destination name.
    Socks5h,
}

impl Scheme {
    /// The lowercase name used in URLs and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Socks4 => "socks4",
            Scheme::Socks4a => "socks4a",
            Scheme::Socks5 => "socks5",
            Scheme::Socks5h => "socks5h",
        }
    }

    /// Whether the proxy, not this host, resolves the destination name.
    pub fn resolves_remotely(self) -> bool {
        !matches!(self, Scheme::Socks4 | Scheme::Socks5)
    }

    fn parse(s: &str) -> Option<Scheme> {
        Some(match s.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "socks4" => Scheme::Socks4,
            "socks4a" => Scheme::Socks4a,
            "socks5" => Scheme::Socks5,
            "socks5h" => Scheme::Socks5h,
            _ => return None,
        })
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a proxy URL was rejected. The messages are cryptofeed's, and none of them
/// repeats the URL, so none can carry a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Rule 1: no `://`.
    #[error("Proxy URL must include scheme ({SUPPORTED_SCHEMES})")]
    MissingScheme,
    /// Rule 2: a scheme outside the supported set.
    #[error("Unsupported proxy scheme: {0}")]
    UnsupportedScheme(String),
    /// Rule 3: no hostname.
    #[error("Proxy URL must include hostname")]
    MissingHost,
    /// Rule 4: no port, or port 0.
    #[error("Proxy URL must include port")]
    MissingPort,
    /// Rule 4: a port that is not a number from 1 to 65535.
    #[error("Proxy URL port out of range 1-65535")]
    PortOutOfRange,
}

/// A user name and password taken from a URL's userinfo, percent-decoded.
///
/// Neither `Debug` nor any other formatting shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials from plain (already decoded) strings.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The user name, for the handshake only.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password, for the handshake only.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A validated proxy URL. `Display` and `Debug` redact the userinfo:
/// `socks5://***@proxy.example:1080`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    scheme: Scheme,
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

impl ProxyUrl {
    /// What makes a member the same member across a reload: scheme, host (any
    /// case), port and user name. The password is not part of it, so a changed
    /// password keeps the member's health and breaker.
    pub fn same_member(&self, other: &ProxyUrl) -> bool {
        self.scheme == other.scheme
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
            && self.credentials.as_ref().map(Credentials::username)
                == other.credentials.as_ref().map(Credentials::username)
    }

    /// Parses `s` with cryptofeed's rules, in cryptofeed's order; the first rule that
    /// fails is the error. A path or query is accepted and ignored.
    pub fn parse(s: &str) -> Result<ProxyUrl, UrlError> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(UrlError::MissingScheme);
        };
        let Some(scheme_parsed) = Scheme::parse(scheme) else {
            // Only a well-formed scheme is echoed: anything else may be a mangled credential.
            let shown = if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                scheme.to_owned()
            } else {
                "(not a scheme name)".to_owned()
            };
            return Err(UrlError::UnsupportedScheme(shown));
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        // Like Python's urlsplit, the last '@' ends the userinfo.
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            match bracketed.split_once(']') {
                Some((h, after)) => (h, after.strip_prefix(':')),
                None => return Err(UrlError::MissingHost),
            }
        } else {
            // As urlsplit: the first ':' ends the host, so `h:1:2` has a bad port.
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        let port = match port {
            None | Some("") => return Err(UrlError::MissingPort),
            Some(p) => match p.parse::<u32>() {
                Ok(0) => return Err(UrlError::MissingPort),
                Ok(n) => u16::try_from(n).map_err(|_| UrlError::PortOutOfRange)?,
                Err(_) => return Err(UrlError::PortOutOfRange),
            },
        };
        let credentials = userinfo.map(|ui| {
            let (user, pass) = ui.split_once(':').unwrap_or((ui, ""));
            Credentials::new(decode(user), decode(pass))
        });
        Ok(ProxyUrl {
            scheme: scheme_parsed,
            host: host.to_ascii_lowercase(),
            port,
            credentials,
        })
    }

    /// The protocol spoken to the proxy.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The proxy's host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The credentials from the userinfo, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// `host:port` with no userinfo (`[v6]:port` for IPv6), as in cryptofeed's log line.
    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint(self)
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `host:port` of a proxy, formatted without allocation.
#[derive(Clone, Copy)]
pub struct Endpoint<'a>(&'a ProxyUrl);

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.host.contains(':') {
            write!(f, "[{}]:{}", self.0.host, self.0.port)
        } else {
            write!(f, "{}:{}", self.0.host, self.0.port)
        }
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let userinfo = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        write!(f, "{}://{}{}", self.scheme, userinfo, self.endpoint())
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl(\"{self}\")")
    }
}

/// Where a URL's authority ends in free text: where [`ProxyUrl::parse`] ends it
/// (`/ ? #`), and at a line break. Every other character (sub-delims, `%`, `:`,
/// quotes, brackets, even spaces) may be part of a password the parser accepts, so
/// none of them ends it: reading too far only redacts more.
fn ends_authority(c: char) -> bool {
    "/?#\n\r".contains(c)
}

/// Characters that stop the run taken before a lone `@`: the above, whitespace, and
/// what RFC 3986 allows in no userinfo (`"`, `<`, `>`, `\`, `^`, a backtick, braces, `|`,
/// brackets).
fn ends_userinfo_run(c: char) -> bool {
    ends_authority(c) || c.is_whitespace() || c == '@' || "\"<>\\^`{|}[]".contains(c)
}

/// The byte ranges of `text` that may hold userinfo, sorted and disjoint:
/// - for every `scheme://`, what lies between it and the last `@` of its authority;
///   an authority cut off by the end of the text (a cropped quote) with no `@` is taken
///   whole unless it reads as a plain `host:port`, since its `@` may be what was cut;
/// - before every other `@`, the run of characters a userinfo may hold, so that a URL
///   whose `://` is mistyped or cut away still loses its credential.
pub(crate) fn userinfo_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    userinfo_ranges_in(text, false)
}

/// As [`userinfo_ranges`]; with `continues`, the text is one line of a longer one
/// (a line of a file), so an authority cut off at its end is taken whole even when
/// it reads as a `host:port`: the rest of it may be on the next line.
pub(crate) fn userinfo_ranges_in(text: &str, continues: bool) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let start = from + i + 3;
        let tail = &text[start..];
        let end = tail.find(ends_authority).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                if at > 0 {
                    ranges.push(start..start + at);
                }
                from = start + at;
            }
            None => {
                let cut =
                    end == tail.len() || authority.ends_with("...") || authority.ends_with('…');
                let plain = !continues && plain_host_port(authority);
                if cut && !authority.is_empty() && !plain {
                    ranges.push(start..start + end);
                }
                from = start;
            }
        }
    }
    for (at, _) in text.match_indices('@') {
        let run = text[..at]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| !ends_userinfo_run(c))
            .last()
            .map(|(i, _)| i);
        if let Some(start) = run {
            ranges.push(start..at);
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<std::ops::Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// `host`, `host:port` or `[v6]:port`, with nothing a credential would need.
fn plain_host_port(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
        _ => (s, None),
    };
    port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
}

/// Replaces the userinfo of every `scheme://user:pass@host` in free text with `***`
/// A URL's authority is taken to end only where [`ProxyUrl::parse`] ends it (`/ ? #`)
/// or at a line break, so every sub-delim stays inside a password; the run of
/// userinfo characters before any other `@` is redacted too.
///
/// Used on text that did not come from this crate (parser messages, serde messages)
/// before it is shown anywhere. Redact a whole line before cropping it: a crop can cut
/// a URL's `scheme://` or its `@` away, and then nothing marks the credential.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for r in userinfo_ranges(text) {
        out.push_str(&text[last..r.start]);
        out.push_str(REDACTED);
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_userinfo_ipv6_and_ignores_path() {
        let u = ProxyUrl::parse("SOCKS5://us%40er:p%3Ass@[::1]:1080/x?y=1").unwrap();
        assert_eq!(u.scheme(), Scheme::Socks5);
        assert_eq!(u.host(), "::1");
        assert_eq!(u.port(), 1080);
        let c = u.credentials().unwrap();
        assert_eq!((c.username(), c.password()), ("us@er", "p:ss"));
        assert_eq!(u.to_string(), "socks5://***@[::1]:1080");
    }

    #[test]
    fn a_second_colon_makes_the_port_bad_not_the_host_longer() {
        assert_eq!(
            ProxyUrl::parse("socks5://127.0.0.1:127.1.0.1:1080"),
            Err(UrlError::PortOutOfRange)
        );
        assert_eq!(
            ProxyUrl::parse("socks5://::1:1080"),
            Err(UrlError::MissingHost)
        );
    }

    #[test]
    fn redact_text_hides_every_userinfo() {
        let t = "a socks5://u:secret@h:1 and 'http://x:y@z', or socks5:/typo:secret@h";
        let r = redact_text(t);
        assert!(!r.contains("secret") && !r.contains("x:y"), "{r}");
        assert!(
            r.contains("socks5://***@h:1") && r.contains("http://***@z"),
            "{r}"
        );
        // Any `@` marks what comes before it: over-redacting an address is harmless.
        assert!(r.contains("socks5:/***@h"), "{r}");
        assert_eq!(
            redact_text("mailto:a@b, http://h/p@q"),
            "***@b, http://h/***@q"
        );
    }

    #[test]
    fn every_sub_delim_in_a_password_is_redacted() {
        for pass in ["a,b", "a;b", "a)b", "a'b", "a!$&()*+,;=b", "p%40ss:w:rd"] {
            let t = format!("x: [socks5://user:{pass}@h:1, 'http://u:{pass}@[::1]:2']");
            let r = redact_text(&t);
            assert!(!r.contains(pass) && !r.contains("user"), "{t} → {r}");
            assert_eq!(r.matches(REDACTED).count(), 2, "{r}");
        }
    }

    #[test]
    fn a_url_cut_off_before_its_at_sign_is_redacted_whole() {
        assert_eq!(
            redact_text("url: socks5://trader:hunt"),
            "url: socks5://***"
        );
        assert_eq!(redact_text("'socks5://trader:hu..."), "'socks5://***");
        // A plain endpoint at the end stays readable.
        assert_eq!(
            redact_text("via socks5://h.example:1080"),
            "via socks5://h.example:1080"
        );
        assert_eq!(
            redact_text("via socks5://[::1]:1080"),
            "via socks5://[::1]:1080"
        );
    }
}
