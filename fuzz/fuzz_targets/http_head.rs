//! The node's own HTTP/1.x request head parser for stream connections:
//! `ringcast_files::stream::RequestHead::parse`, then the `Range` parser on
//! every `Range` field it yields, as the stream server does.
//!
//! Checks: no panic; a complete head took at most the buffer; its path starts
//! with `/` (or is `*`), its minor version is 0 or 1, header names are
//! lowercase and values trimmed; a prefix of a complete head is incomplete
//! or refused, never a different complete head.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast_files::stream::{HeadError, RequestHead};

fuzz_target!(|data: &[u8]| {
    match RequestHead::parse(data) {
        Ok(Some((head, used))) => {
            assert!(used > 0 && used <= data.len());
            assert!(head.path.starts_with('/') || head.path == "*", "path {:?}", head.path);
            assert!(head.minor_version <= 1);
            for (name, value) in &head.headers {
                assert_eq!(*name, name.to_ascii_lowercase());
                assert_eq!(value.trim(), value);
            }
            let _ = head.wants_keep_alive();
            for value in head.headers_named("range") {
                let _ = ringcast_files::range::parse_range(value, 1 << 20);
            }
            // The same head followed by anything parses the same.
            let mut longer = data[..used].to_vec();
            longer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(RequestHead::parse(&longer), Ok(Some((head.clone(), used))));
            // A strict prefix is never complete.
            if used > 1 {
                match RequestHead::parse(&data[..used - 1]) {
                    Ok(Some((other, n))) => {
                        panic!("prefix of {used} bytes parsed as a complete head of {n}: {other:?}")
                    }
                    Ok(None) | Err(HeadError::Malformed) | Err(HeadError::TooLarge) => {}
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
