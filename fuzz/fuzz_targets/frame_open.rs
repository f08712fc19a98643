//! Frame decoding: `ringcast_proto::frame::Opener::open` on hostile bytes.
//!
//! One input is used four ways:
//! 1. the whole input as one datagram;
//! 2. the input as a sequence of datagrams, each preceded by its length as
//!    two big-endian bytes (the rest, if the lengths run out, is the last
//!    one), all opened by one opener: real multi-part frames in the seed
//!    corpus reassemble this way;
//! 3. the same datagrams re-sealed with a valid tag whatever their header says
//!    (a peer holding the key): part numbers, counters, incarnations and
//!    senders are then the fuzzer's, and reach the replay window and reassembly;
//! 4. a round trip: a `Sealer` with a fuzzed MTU splits the input, and the
//!    parts opened in a fuzzed order (with duplicates) give back exactly the
//!    input once the last missing part arrives.
//!
//! Checks: no panic; every opened message is consistent with the frame(s) it
//! came from; reassembly memory stays within its documented bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast_fuzz::{key_bytes, keyring_rotating, seal_raw, CLUSTER};
use ringcast_proto::fragment::{MAX_PENDING_PER_SENDER, MAX_PENDING_SENDERS};
use ringcast_proto::frame::{
    FrameError, Header, Opener, Sealer, HEADER_LEN, MAX_DATAGRAM, MAX_PARTS, OVERHEAD, TAG_LEN,
};
use ringcast_proto::{ClusterId, Incarnation, KeyId, NodeId};

/// The opener's node: node 5 of cluster 1.
const ME: NodeId = NodeId(5);

fn known(n: NodeId) -> bool {
    (1..=7).contains(&n.0)
}

/// Splits `data` into length-prefixed datagrams.
fn datagrams(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() < 256 {
        if data.len() < 2 {
            if !data.is_empty() {
                out.push(data);
            }
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let n = len.min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

/// Checks what `open` returned for `datagram`.
fn check_opened(
    datagram: &[u8],
    result: &Result<Option<ringcast_proto::frame::Opened>, FrameError>,
    opener: &Opener,
) {
    if let Ok(Some(opened)) = result {
        let h = &opened.header;
        assert_eq!(h.cluster, CLUSTER);
        assert_ne!(h.sender, ME);
        assert!(known(h.sender));
        assert_eq!(h.part, 0, "an opened message is named by its part 0");
        assert!(h.parts >= 1 && h.parts <= MAX_PARTS);
        if h.parts == 1 {
            assert_eq!(
                opened.body.as_slice(),
                &datagram[HEADER_LEN..datagram.len() - TAG_LEN]
            );
        } else {
            assert!(opened.body.len() <= usize::from(h.parts) * (MAX_DATAGRAM - OVERHEAD));
        }
    }
    if let Ok(None) = result {
        // A part of a message still missing parts: it is kept.
        assert!(opener.reassembly().pending_messages() > 0);
    }
    let r = opener.reassembly();
    assert!(r.pending_senders() <= MAX_PENDING_SENDERS);
    assert!(r.pending_messages() <= r.pending_senders() * MAX_PENDING_PER_SENDER);
}

/// Re-seals `raw` as an authentic frame: cluster 1, a known-ish sender, a key
/// id 0..=2 (0 is not accepted), the fuzzer's everything else.
fn reseal(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < HEADER_LEN {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes(raw[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_be_bytes(raw[i..i + 8].try_into().unwrap());
    let u16_at = |i: usize| u16::from_be_bytes(raw[i..i + 2].try_into().unwrap());
    let header = Header {
        cluster: CLUSTER,
        config_version: u32_at(7),
        sender: NodeId(u32_at(11) % 8),
        // Small incarnations and counters keep frames of one sender together.
        incarnation: Incarnation(u64_at(15) % 4),
        key_id: KeyId(raw[23] % 3),
        counter: u64_at(24) % 256,
        part: u16_at(32) % (MAX_PARTS + 2),
        parts: u16_at(34) % (MAX_PARTS + 2),
    };
    Some(seal_raw(&key_bytes(header.key_id), &header, &raw[HEADER_LEN..]))
}

fuzz_target!(|data: &[u8]| {
    let keys = keyring_rotating();

    // 1. The whole input.
    let mut opener = Opener::new(CLUSTER, ME);
    let result = opener.open(&keys, data, known);
    check_opened(data, &result, &opener);
    if let Err(e) = &result {
        let _ = e.reason();
    }

    // 2. A sequence of datagrams through one opener (reassembly with real tags).
    let list = datagrams(data);
    let mut opener = Opener::new(CLUSTER, ME);
    for d in &list {
        let result = opener.open(&keys, d, known);
        check_opened(d, &result, &opener);
    }

    // 3. The same datagrams made authentic.
    let mut opener = Opener::new(CLUSTER, ME);
    for d in &list {
        if let Some(frame) = reseal(d) {
            let result = opener.open(&keys, &frame, known);
            check_opened(&frame, &result, &opener);
        }
    }

    // 4. Seal, shuffle, open: the body comes back whole, exactly once.
    if data.len() < 2 {
        return;
    }
    let mtu = OVERHEAD + 1 + usize::from(data[0]) * 8;
    let order = usize::from(data[1]);
    let body = &data[2..];
    let mut sealer = Sealer::new(CLUSTER, 1, NodeId(1), Incarnation(1), mtu);
    let frames = match sealer.seal(&keys, body) {
        Ok(frames) => frames,
        Err(FrameError::MessageTooLong { len }) => {
            assert_eq!(len, body.len());
            assert!(body.len().div_ceil(sealer.mtu() - OVERHEAD) > usize::from(MAX_PARTS));
            return;
        }
        Err(e) => panic!("sealing a body failed with {e:?}"),
    };
    assert!(!frames.is_empty() && frames.len() <= usize::from(MAX_PARTS));
    assert!(frames.iter().all(|f| f.len() <= sealer.mtu()));
    // A rotation of the parts, then the first part again (a duplicate).
    let n = frames.len();
    let mut opener = Opener::new(CLUSTER, ME);
    let mut whole = None;
    for k in 0..n {
        let frame = &frames[(order + k) % n];
        match opener.open(&keys, frame, known) {
            Ok(Some(opened)) => {
                assert_eq!(k, n - 1, "the message completed before its last part");
                assert_eq!(usize::from(opened.header.parts), n);
                whole = Some(opened.body);
            }
            Ok(None) => assert!(k < n - 1, "the last part did not complete the message"),
            Err(e) => panic!("part {k} of {n} of an honest message was refused: {e:?}"),
        }
    }
    assert_eq!(whole.as_deref(), Some(body));
    assert_eq!(opener.reassembly().pending_messages(), 0);
    assert_eq!(
        opener.open(&keys, &frames[order % n], known),
        Err(FrameError::Replayed)
    );
    // Another cluster never accepts it.
    let mut stranger = Opener::new(ClusterId(2), ME);
    assert!(stranger.open(&keys, &frames[0], known).is_err());
});
