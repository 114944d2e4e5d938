//! The redactor, with the property tests' oracle: a credential written into a URL
//! inside any text never shows after redaction: no piece of six characters of it
//! survives.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use proxypool::config::redact_text;

/// RFC 3986 userinfo: unreserved, sub-delims, `:` (in the password) and `%XX`.
const ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=";

#[derive(Arbitrary, Debug)]
struct Case {
    before: String,
    scheme: u8,
    user: Vec<u8>,
    pass: Vec<u8>,
    host: String,
    after: String,
}

fn part(bytes: &[u8], colon: bool) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            250..=255 => format!("%{:02X}", b.wrapping_mul(37)),
            240..=249 if colon => ":".to_owned(),
            _ => (ALPHABET[b as usize % ALPHABET.len()] as char).to_string(),
        })
        .collect()
}

fuzz_target!(|case: Case| {
    let user = part(&case.user, false);
    let pass = part(&case.pass, true);
    if user.len() < 6 || pass.len() < 6 {
        return;
    }
    let scheme = ["socks5", "socks5h", "http", "https", "socks4"][case.scheme as usize % 5];
    // The host ends where a URL's authority may end, as a real one does.
    let host: String = case
        .host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .take(30)
        .collect();
    let text = format!(
        "{}{scheme}://{user}:{pass}@{host}:1080/{}",
        case.before, case.after
    );
    let pieces = |s: &str| -> Vec<String> {
        let chars: Vec<char> = s.chars().collect();
        chars.windows(6).map(|w| w.iter().collect()).collect()
    };
    let secret: Vec<String> = pieces(&user).into_iter().chain(pieces(&pass)).collect();
    // A piece that the text holds outside the credential proves nothing.
    let without = format!("{}{scheme}://***@{host}:1080/{}", case.before, case.after);
    if secret.iter().any(|p| without.contains(p.as_str())) {
        return;
    }
    let redacted = redact_text(&text);
    for p in &secret {
        assert!(!redacted.contains(p.as_str()), "{p:?} survives in {redacted:?}");
    }
});
