//! The gateway's inbound parsers (SOCKS5, SOCKS4/4a, HTTP): never a panic, a whole
//! message within the input, the same message from exactly its own bytes, and more
//! bytes after it change nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxypool::gateway::{Parse, http, socks4, socks5};

fn check<T: PartialEq + std::fmt::Debug>(data: &[u8], parse: impl Fn(&[u8]) -> Parse<T>) {
    if let Parse::Complete(msg, n) = parse(data) {
        assert!(n <= data.len());
        assert_eq!(parse(&data[..n]), Parse::Complete(msg, n));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, socks5::parse_greeting);
    check(data, socks5::parse_user_pass);
    check(data, socks5::parse_request);
    check(data, socks4::parse_request);
    check(data, http::parse_request);
});
