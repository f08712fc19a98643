//! Unit tests of the frame layer.
use super::*;

const CLUSTER: ClusterId = ClusterId(7);
const ALICE: NodeId = NodeId(1);
const BOB: NodeId = NodeId(2);
const KEY_1: [u8; 32] = [1; 32];
const KEY_2: [u8; 32] = [2; 32];

fn keyring() -> Keyring {
    Keyring::new(KeyId(1), KEY_1)
}

fn sealer(mtu: usize) -> Sealer {
    Sealer::new(CLUSTER, 3, ALICE, Incarnation(1), mtu)
}

fn bob() -> Opener {
    Opener::new(CLUSTER, BOB)
}

fn anyone(_: NodeId) -> bool {
    true
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Seals one body that fits a single frame.
fn one_frame(sealer: &mut Sealer, keyring: &Keyring, body: &[u8]) -> Vec<u8> {
    let mut frames = sealer.seal(keyring, body).expect("the body fits");
    assert_eq!(frames.len(), 1);
    frames.remove(0)
}

#[test]
fn a_single_frame_round_trips() {
    let keys = keyring();
    let frame = one_frame(&mut sealer(1500), &keys, b"hello");
    assert_eq!(frame.len(), OVERHEAD + 5);
    let opened = bob().open(&keys, &frame, anyone).expect("valid frame");
    let opened = opened.expect("single-part messages complete at once");
    assert_eq!(opened.body, b"hello");
    assert_eq!(
        opened.header,
        Header {
            cluster: CLUSTER,
            config_version: 3,
            sender: ALICE,
            incarnation: Incarnation(1),
            key_id: KeyId(1),
            counter: 0,
            part: 0,
            parts: 1,
        }
    );
}

#[test]
fn an_empty_body_round_trips() {
    let keys = keyring();
    let frame = one_frame(&mut sealer(1500), &keys, b"");
    let opened = bob().open(&keys, &frame, anyone);
    assert_eq!(opened.map(|o| o.map(|o| o.body)), Ok(Some(Vec::new())));
}

#[test]
fn a_long_body_is_split_into_frames_that_fit_the_mtu_and_reassembles() {
    let keys = keyring();
    let long = body(5_000);
    let frames = sealer(256).seal(&keys, &long).expect("5 KB fits 64 parts");
    assert_eq!(frames.len(), 5_000usize.div_ceil(256 - OVERHEAD));
    assert!(frames.iter().all(|f| f.len() <= 256));
    let mut opener = bob();
    let (last, firsts) = frames.split_last().expect("several frames");
    for frame in firsts {
        assert_eq!(opener.open(&keys, frame, anyone), Ok(None));
    }
    let opened = opener
        .open(&keys, last, anyone)
        .expect("valid")
        .expect("complete");
    assert_eq!(opened.body, long);
    assert_eq!((opened.header.part, opened.header.counter), (0, 0));
    assert_eq!(usize::from(opened.header.parts), frames.len());
    assert_eq!(opener.reassembly().pending_messages(), 0);
}

#[test]
fn parts_delivered_out_of_order_and_duplicated_reassemble() {
    let keys = keyring();
    let long = body(1_000);
    let frames = sealer(256).seal(&keys, &long).expect("fits");
    assert_eq!(frames.len(), 5);
    let mut opener = bob();
    for i in [3, 0, 4] {
        assert_eq!(opener.open(&keys, &frames[i], anyone), Ok(None));
    }
    assert_eq!(
        opener.open(&keys, &frames[0], anyone),
        Err(FrameError::Replayed)
    );
    assert_eq!(opener.open(&keys, &frames[2], anyone), Ok(None));
    assert_eq!(
        opener.open(&keys, &frames[4], anyone),
        Err(FrameError::Replayed)
    );
    let opened = opener.open(&keys, &frames[1], anyone).expect("valid");
    assert_eq!(opened.map(|o| o.body), Some(long));
}

#[test]
fn consecutive_messages_get_consecutive_counters() {
    let keys = keyring();
    let mut sealer = sealer(256);
    let first = sealer.seal(&keys, &body(500)).expect("fits");
    let second = one_frame(&mut sealer, &keys, b"x");
    let opened = bob()
        .open(&keys, &second, anyone)
        .expect("valid")
        .expect("complete");
    assert_eq!(opened.header.counter, first.len() as u64);
}

#[test]
fn a_body_needing_too_many_parts_is_refused_without_using_counters() {
    let keys = keyring();
    let mut sealer = sealer(256);
    let room = 256 - OVERHEAD;
    let too_long = room * usize::from(MAX_PARTS) + 1;
    assert_eq!(
        sealer.seal(&keys, &body(too_long)),
        Err(FrameError::MessageTooLong { len: too_long })
    );
    let fits = sealer
        .seal(&keys, &body(too_long - 1))
        .expect("exactly 64 parts");
    assert_eq!(fits.len(), usize::from(MAX_PARTS));
    let opened = bob().open(&keys, &fits[0], anyone);
    assert_eq!(opened, Ok(None));
}

#[test]
fn a_frame_sealed_with_another_key_is_refused() {
    let frame = one_frame(&mut sealer(1500), &Keyring::new(KeyId(1), KEY_2), b"hi");
    assert_eq!(
        bob().open(&keyring(), &frame, anyone),
        Err(FrameError::BadTag)
    );
}

#[test]
fn a_frame_naming_a_key_not_accepted_is_refused() {
    let frame = one_frame(&mut sealer(1500), &Keyring::new(KeyId(9), KEY_1), b"hi");
    assert_eq!(
        bob().open(&keyring(), &frame, anyone),
        Err(FrameError::UnknownKey(KeyId(9)))
    );
}

#[test]
fn a_frame_of_another_cluster_is_refused() {
    let keys = keyring();
    let frame = one_frame(&mut sealer(1500), &keys, b"hi");
    let mut other = Opener::new(ClusterId(8), BOB);
    assert_eq!(
        other.open(&keys, &frame, anyone),
        Err(FrameError::WrongCluster {
            expected: ClusterId(8),
            got: CLUSTER
        })
    );
}

#[test]
fn a_replayed_datagram_is_refused() {
    let keys = keyring();
    let frame = one_frame(&mut sealer(1500), &keys, b"hi");
    let mut opener = bob();
    assert!(opener.open(&keys, &frame, anyone).is_ok());
    assert_eq!(
        opener.open(&keys, &frame, anyone),
        Err(FrameError::Replayed)
    );
}

#[test]
fn a_frame_of_an_older_incarnation_after_a_newer_one_is_stale() {
    let keys = keyring();
    let mut old = sealer(1500);
    let stale = one_frame(&mut old, &keys, b"old");
    let mut new = sealer(1500);
    new.set_incarnation(Incarnation(2));
    let fresh = one_frame(&mut new, &keys, b"new");
    let mut opener = bob();
    assert!(opener.open(&keys, &fresh, anyone).is_ok());
    assert_eq!(
        opener.open(&keys, &stale, anyone),
        Err(FrameError::StaleIncarnation)
    );
}

#[test]
fn a_new_incarnation_restarts_counters_and_is_accepted() {
    let keys = keyring();
    let mut sealer = sealer(1500);
    let mut opener = bob();
    for _ in 0..3 {
        let frame = one_frame(&mut sealer, &keys, b"a");
        assert!(opener.open(&keys, &frame, anyone).is_ok());
    }
    sealer.set_incarnation(Incarnation(2));
    let frame = one_frame(&mut sealer, &keys, b"b");
    let opened = opener
        .open(&keys, &frame, anyone)
        .expect("valid")
        .expect("complete");
    assert_eq!(
        (opened.header.incarnation, opened.header.counter),
        (Incarnation(2), 0)
    );
}

#[test]
fn a_truncated_datagram_is_refused() {
    let keys = keyring();
    let frame = one_frame(&mut sealer(1500), &keys, b"some body");
    for len in 0..frame.len() {
        let result = bob().open(&keys, &frame[..len], anyone);
        assert!(
            matches!(
                result,
                Err(FrameError::TooShort { .. } | FrameError::BadTag)
            ),
            "length {len}: {result:?}"
        );
    }
}

#[test]
fn a_datagram_longer_than_any_udp_datagram_is_refused() {
    let huge = vec![0; MAX_DATAGRAM + 1];
    assert_eq!(
        bob().open(&keyring(), &huge, anyone),
        Err(FrameError::TooLong {
            len: MAX_DATAGRAM + 1
        })
    );
}

#[test]
fn a_datagram_without_the_magic_is_refused() {
    let keys = keyring();
    let mut frame = one_frame(&mut sealer(1500), &keys, b"hi");
    frame[0] = b'X';
    assert_eq!(bob().open(&keys, &frame, anyone), Err(FrameError::BadMagic));
}

#[test]
fn an_unknown_version_is_refused() {
    let keys = keyring();
    let mut frame = one_frame(&mut sealer(1500), &keys, b"hi");
    frame[2] = 2;
    assert_eq!(
        bob().open(&keys, &frame, anyone),
        Err(FrameError::UnknownVersion(2))
    );
}

#[test]
fn a_frame_from_self_is_refused() {
    let keys = keyring();
    let frame = one_frame(&mut sealer(1500), &keys, b"hi");
    let mut alice = Opener::new(CLUSTER, ALICE);
    assert_eq!(alice.open(&keys, &frame, anyone), Err(FrameError::FromSelf));
}

#[test]
fn a_frame_from_an_unknown_sender_is_refused() {
    let keys = keyring();
    let frame = one_frame(&mut sealer(1500), &keys, b"hi");
    assert_eq!(
        bob().open(&keys, &frame, |n| n == BOB),
        Err(FrameError::UnknownSender(ALICE))
    );
}

#[test]
fn impossible_part_numbers_are_refused_even_when_authentic() {
    let keys = keyring();
    let mut opener = bob();
    for (counter, part, parts) in [(0, 0, 0), (5, 3, 3), (0, 0, MAX_PARTS + 1), (1, 2, 4)] {
        let header = Header {
            counter,
            part,
            parts,
            ..sealer(1500).header(KeyId(1), 0, 0, 1)
        };
        let frame = seal_frame(&keys.sending, &header, b"x");
        assert_eq!(
            opener.open(&keys, &frame, anyone),
            Err(FrameError::BadPart { part, parts })
        );
    }
}

#[test]
fn key_rotation_accepts_both_keys_until_one_is_retired() {
    let mut rotating = Keyring::new(KeyId(1), KEY_1);
    rotating.accept(KeyId(2), KEY_2);
    assert_eq!(rotating.send_with(KeyId(2)), Ok(()));
    assert_eq!(rotating.sending_key_id(), KeyId(2));
    let mut sealer = sealer(1500);
    let with_2 = one_frame(&mut sealer, &rotating, b"two");
    let with_1 = one_frame(&mut sealer, &keyring(), b"one");

    let mut receiver = Keyring::new(KeyId(1), KEY_1);
    receiver.accept(KeyId(2), KEY_2);
    let mut opener = bob();
    assert!(opener.open(&receiver, &with_2, anyone).is_ok());
    assert!(opener.open(&receiver, &with_1, anyone).is_ok());

    assert!(receiver.retire(KeyId(2)));
    let later = one_frame(&mut sealer, &rotating, b"two again");
    assert_eq!(
        opener.open(&receiver, &later, anyone),
        Err(FrameError::UnknownKey(KeyId(2)))
    );
}

/// Key rotation: the staged rotation. Between nodes at the same or adjacent
/// stages every frame is accepted both ways; two stages apart it would
/// not be (so each stage must be complete before the next); after the
/// last stage a frame under the old key is refused.
#[test]
fn a_staged_key_rotation_never_refuses_a_frame_between_adjacent_stages() {
    let old = (KeyId(1), KEY_1);
    let new = (KeyId(2), KEY_2);
    let accepted = |a: Rotation, b: Rotation| {
        let sender = Keyring::at_stage(a, old, new);
        let receiver = Keyring::at_stage(b, old, new);
        let frame = one_frame(&mut sealer(1500), &sender, b"status");
        bob().open(&receiver, &frame, anyone).is_ok()
    };
    for (i, &a) in Rotation::ALL.iter().enumerate() {
        for (j, &b) in Rotation::ALL.iter().enumerate() {
            if i.abs_diff(j) <= 1 {
                assert!(accepted(a, b), "{a:?} -> {b:?} refused");
            } else {
                assert!(
                    !accepted(a, b) || !accepted(b, a),
                    "{a:?} and {b:?} are two stages apart yet hear each other"
                );
            }
        }
    }
    // After stage 3, the old key's frames are refused before any other
    // check on the body, and the new key's accepted.
    let done = Keyring::at_stage(Rotation::Done, old, new);
    assert_eq!(done.key_ids(), vec![KeyId(2)]);
    let stale = one_frame(&mut sealer(1500), &Keyring::new(old.0, old.1), b"old");
    assert_eq!(
        bob().open(&done, &stale, anyone),
        Err(FrameError::UnknownKey(KeyId(1)))
    );
    let fresh = one_frame(&mut sealer(1500), &done, b"new");
    assert!(bob().open(&done, &fresh, anyone).is_ok());
    assert_eq!(
        Keyring::at_stage(Rotation::AcceptNew, old, new).key_ids(),
        vec![KeyId(1), KeyId(2)]
    );
    assert_eq!(
        Keyring::at_stage(Rotation::SendNew, old, new).key_ids(),
        vec![KeyId(2), KeyId(1)]
    );
}

#[test]
fn the_sending_key_cannot_be_retired_and_unknown_keys_cannot_send() {
    let mut keys = keyring();
    assert!(!keys.retire(KeyId(1)));
    assert!(keys.accepts(KeyId(1)));
    assert_eq!(
        keys.send_with(KeyId(3)),
        Err(FrameError::UnknownKey(KeyId(3)))
    );
    keys.accept(KeyId(2), KEY_2);
    keys.accept(KeyId(3), KEY_2);
    assert!(!keys.accepts(KeyId(2)), "a third key replaces the second");
    assert!(keys.accepts(KeyId(3)));
    assert_eq!(keys.sending_key_id(), KeyId(1));
}

#[test]
fn the_keyring_debug_output_shows_no_key_bytes() {
    let mut keys = Keyring::new(KeyId(1), [0xAB; 32]);
    keys.accept(KeyId(2), [0xCD; 32]);
    let shown = format!("{keys:?}");
    assert!(
        shown.contains("KeyId(1)") && shown.contains("KeyId(2)"),
        "{shown}"
    );
    assert!(
        !shown.contains("171") && !shown.to_lowercase().contains("ab, "),
        "{shown}"
    );
}

#[test]
fn every_error_has_a_distinct_reason() {
    let errors = [
        FrameError::TooShort { len: 0 },
        FrameError::TooLong { len: 0 },
        FrameError::BadMagic,
        FrameError::UnknownVersion(2),
        FrameError::WrongCluster {
            expected: CLUSTER,
            got: CLUSTER,
        },
        FrameError::FromSelf,
        FrameError::UnknownSender(ALICE),
        FrameError::UnknownKey(KeyId(1)),
        FrameError::BadTag,
        FrameError::BadPart { part: 0, parts: 0 },
        FrameError::Replayed,
        FrameError::StaleIncarnation,
        FrameError::MessageTooLong { len: 0 },
        FrameError::CounterExhausted,
    ];
    let reasons: std::collections::BTreeSet<_> = errors.iter().map(FrameError::reason).collect();
    assert_eq!(reasons.len(), errors.len());
    // /metrics exposes every reason from the start, so each must be listed.
    for r in &reasons {
        assert!(
            crate::stats::REJECT_REASONS.contains(r),
            "{r} is not listed"
        );
    }
}

#[test]
fn the_header_is_the_documented_width() {
    let mut out = Vec::new();
    sealer(1500).header(KeyId(1), 0, 0, 1).write_to(&mut out);
    assert_eq!(out.len(), HEADER_LEN);
    assert_eq!(overhead(), 52);
}
