//! The CONNECT reply parser: never a panic, a header block within the input, and a
//! prefix of a complete reply is partial or the same reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxypool::testing::{ConnectReply, parse_connect_reply};

fuzz_target!(|data: &[u8]| {
    match parse_connect_reply(data) {
        ConnectReply::Complete { status, consumed } => {
            assert!((100..600).contains(&status));
            assert!(consumed <= data.len());
            assert!(data[..consumed].ends_with(b"\r\n\r\n"));
            // More bytes after a complete header block belong to the tunnel.
            let mut more = data.to_vec();
            more.extend_from_slice(b"tunnel");
            assert_eq!(
                parse_connect_reply(&more),
                ConnectReply::Complete { status, consumed }
            );
        }
        ConnectReply::Partial => assert!(!data.windows(4).any(|w| w == b"\r\n\r\n")),
        ConnectReply::Invalid(why) => assert!(!why.is_empty()),
    }
});
