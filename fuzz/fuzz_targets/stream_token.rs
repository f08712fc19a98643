//! Stream tokens: `ringcast_proto::token::StreamToken::verify(text, key, now)`
//! on any text, and sign-then-verify of any token.
//!
//! Input: everything up to the first newline is the token text to verify
//! (seeds hold real signed tokens); the rest drives an `Arbitrary` token and
//! clock. Checks: no panic; an accepted text is unexpired at `now` and is
//! exactly the text signing its token gives; a signed token verifies to
//! itself until it expires, and `Expired` after; another key, or any one
//! character changed, is refused.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringcast_proto::token::{StreamToken, TokenError, MAX_TOKEN_LEN};
use ringcast_proto::{DiskId, NodeId};

const KEY: [u8; 32] = ringcast_fuzz::KEY_1;
const OTHER_KEY: [u8; 32] = ringcast_fuzz::KEY_2;

#[derive(Arbitrary, Debug)]
struct Plan {
    /// The clock for verifying the text.
    now: u64,
    title: String,
    disk: u32,
    node: u32,
    stream: u64,
    expires: u64,
    /// The clock for the round trip, relative to `expires`.
    skew: i16,
    /// Where to change one character, and to what.
    flip_at: u16,
    flip_to: u8,
}

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let Ok(plan) = Plan::arbitrary(&mut Unstructured::new(rest)) else {
        return;
    };

    // Any text.
    let text = String::from_utf8_lossy(text);
    match StreamToken::verify(&text, &KEY, plan.now) {
        Ok(token) => {
            assert!(plan.now <= token.expires);
            assert_eq!(token.sign(&KEY), text, "two texts verify to one token");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = StreamToken::verify(&text, &OTHER_KEY, plan.now);

    // Sign, then verify.
    let token = StreamToken {
        title: plan.title,
        disk: DiskId(plan.disk),
        node: NodeId(plan.node),
        stream: plan.stream,
        expires: plan.expires,
    };
    let signed = token.sign(&KEY);
    let now = token.expires.saturating_add_signed(i64::from(plan.skew));
    let verified = StreamToken::verify(&signed, &KEY, now);
    if signed.len() > MAX_TOKEN_LEN {
        assert_eq!(verified, Err(TokenError::Malformed));
        return;
    }
    if now > token.expires {
        assert_eq!(verified, Err(TokenError::Expired(Box::new(token.clone()))));
    } else {
        assert_eq!(verified.as_ref(), Ok(&token));
    }
    assert_eq!(
        StreamToken::verify(&signed, &OTHER_KEY, now),
        Err(TokenError::BadSignature)
    );
    // One character changed: never accepted.
    let mut bytes = signed.clone().into_bytes();
    let i = usize::from(plan.flip_at) % bytes.len();
    if bytes[i] != plan.flip_to {
        bytes[i] = plan.flip_to;
        let altered = String::from_utf8_lossy(&bytes);
        assert!(
            StreamToken::verify(&altered, &KEY, 0).is_err(),
            "an altered token verified: {altered:?}"
        );
    }
});
