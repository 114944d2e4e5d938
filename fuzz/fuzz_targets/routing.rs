//! Routing (patterns × hosts): never a panic, whatever bytes a client sends as a
//! host; a pattern matches exactly what a case-insensitive comparison of whole
//! labels says; normalising is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxypool::config::HostPattern;
use proxypool::gateway::Destination;
use proxypool::testing::normalize;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or("");
    for line in lines.take(16) {
        let Some(pattern) = HostPattern::parse(line) else {
            continue;
        };
        let text = pattern.to_string();
        let want = match text.strip_prefix("*.") {
            Some(suffix) => host
                .to_ascii_lowercase()
                .strip_suffix(suffix)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            None => host.eq_ignore_ascii_case(&text),
        };
        assert_eq!(pattern.matches(host), want, "{text} vs {host:?}");
    }
    let once = normalize(Destination::Name(host.to_owned(), 443));
    assert_eq!(normalize(once.clone()), once);
});
