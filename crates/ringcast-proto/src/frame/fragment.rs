//! Reassembly of messages that were split into several frames (DESIGN
//! section 3: "messages that can outgrow one datagram are split into numbered
//! parts").
//!
//! The parts of one message carry consecutive counters, so a message is named
//! by its sender, the sender's incarnation and the counter of its part 0
//! (`counter - part`). Memory is bounded: a few incomplete messages per
//! sender, a bounded number of senders, and each part stored once.

use std::collections::BTreeMap;

use super::header::{FrameError, Header, MAX_PARTS};
use crate::ids::{Incarnation, NodeId};

/// Most incomplete messages kept per sender; a newer one evicts the oldest.
pub const MAX_PENDING_PER_SENDER: usize = 2;

/// Most senders with incomplete messages; a new one evicts the least recently heard.
pub const MAX_PENDING_SENDERS: usize = 4096;

/// Incomplete multi-part messages, waiting for their missing parts.
#[derive(Debug, Default)]
pub struct Reassembly {
    senders: BTreeMap<NodeId, SenderParts>,
    /// Grows with every insert; orders senders by when they were last heard.
    clock: u64,
}

/// The incomplete messages of one sender.
#[derive(Debug)]
struct SenderParts {
    pending: Vec<Pending>,
    heard: u64,
}

/// One incomplete message.
#[derive(Debug)]
struct Pending {
    incarnation: Incarnation,
    message_id: u64,
    parts: u16,
    /// Bit `p` set: part `p` was received.
    received: u64,
    /// The received parts, in arrival order.
    pieces: Vec<(u16, Vec<u8>)>,
}

impl Pending {
    fn new(header: &Header, message_id: u64) -> Self {
        Pending {
            incarnation: header.incarnation,
            message_id,
            parts: header.parts,
            received: 0,
            pieces: Vec::new(),
        }
    }

    /// The order in which messages of one sender age: older lives first, then
    /// lower counters.
    fn age_key(&self) -> (Incarnation, u64) {
        (self.incarnation, self.message_id)
    }

    /// Stores a part unless it is already there.
    fn store(&mut self, part: u16, bytes: &[u8]) {
        let bit = 1u64 << part;
        if self.received & bit == 0 {
            self.received |= bit;
            self.pieces.push((part, bytes.to_vec()));
        }
    }

    fn is_complete(&self) -> bool {
        self.received == all_parts(self.parts)
    }

    /// The message body: the parts' bytes in part order.
    fn into_body(mut self) -> Vec<u8> {
        self.pieces.sort_unstable_by_key(|(part, _)| *part);
        let len = self.pieces.iter().map(|(_, bytes)| bytes.len()).sum();
        let mut body = Vec::with_capacity(len);
        for (_, bytes) in &self.pieces {
            body.extend_from_slice(bytes);
        }
        body
    }

    fn stored_bytes(&self) -> usize {
        self.pieces.iter().map(|(_, bytes)| bytes.len()).sum()
    }
}

/// The `received` bitmap of a message whose `parts` parts all arrived.
fn all_parts(parts: u16) -> u64 {
    if u32::from(parts) >= u64::BITS {
        u64::MAX
    } else {
        (1u64 << parts) - 1
    }
}

impl Reassembly {
    /// No incomplete messages.
    pub fn new() -> Self {
        Reassembly::default()
    }

    /// Adds one authenticated, replay-checked part of a multi-part message.
    /// Returns the whole body once every part arrived. A part whose part count
    /// disagrees with the parts already received drops that message and is
    /// refused as [`FrameError::BadPart`].
    pub fn insert(&mut self, header: &Header, bytes: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        let bad_part = FrameError::BadPart {
            part: header.part,
            parts: header.parts,
        };
        if header.parts == 0 || header.parts > MAX_PARTS || header.part >= header.parts {
            return Err(bad_part);
        }
        let Some(message_id) = header.counter.checked_sub(u64::from(header.part)) else {
            return Err(bad_part);
        };
        let sender = self.sender_entry(header.sender);
        sender
            .pending
            .retain(|p| p.incarnation >= header.incarnation);
        let result = add_part(&mut sender.pending, header, message_id, bytes);
        if sender.pending.is_empty() {
            self.senders.remove(&header.sender);
        }
        result.map_err(|()| bad_part)
    }

    /// How many incomplete messages are kept, over all senders.
    pub fn pending_messages(&self) -> usize {
        self.senders.values().map(|s| s.pending.len()).sum()
    }

    /// How many body bytes the incomplete messages hold.
    pub fn pending_bytes(&self) -> usize {
        self.senders
            .values()
            .flat_map(|s| &s.pending)
            .map(Pending::stored_bytes)
            .sum()
    }

    /// How many senders have incomplete messages.
    pub fn pending_senders(&self) -> usize {
        self.senders.len()
    }

    /// The state of `sender`, made room for and marked as just heard.
    fn sender_entry(&mut self, sender: NodeId) -> &mut SenderParts {
        self.clock += 1;
        if !self.senders.contains_key(&sender) && self.senders.len() >= MAX_PENDING_SENDERS {
            self.evict_least_recently_heard();
        }
        let entry = self.senders.entry(sender).or_insert(SenderParts {
            pending: Vec::new(),
            heard: 0,
        });
        entry.heard = self.clock;
        entry
    }

    fn evict_least_recently_heard(&mut self) {
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, s)| s.heard)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.senders.remove(&id);
        }
    }
}

/// Adds a part to a sender's incomplete messages. `Err(())` when the part
/// count disagrees with the message's earlier parts (the message is dropped).
fn add_part(
    pending: &mut Vec<Pending>,
    header: &Header,
    message_id: u64,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, ()> {
    let key = (header.incarnation, message_id);
    let index = match pending.iter().position(|p| p.age_key() == key) {
        Some(i) => i,
        None => {
            pending.push(Pending::new(header, message_id));
            pending.len() - 1
        }
    };
    if pending[index].parts != header.parts {
        pending.remove(index);
        return Err(());
    }
    pending[index].store(header.part, bytes);
    if pending[index].is_complete() {
        return Ok(Some(pending.remove(index).into_body()));
    }
    evict_oldest_beyond_limit(pending);
    Ok(None)
}

/// Keeps at most [`MAX_PENDING_PER_SENDER`] messages, dropping the oldest.
fn evict_oldest_beyond_limit(pending: &mut Vec<Pending>) {
    while pending.len() > MAX_PENDING_PER_SENDER {
        let oldest = pending
            .iter()
            .enumerate()
            .min_by_key(|(_, p)| p.age_key())
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                pending.remove(i);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClusterId, KeyId};

    fn part(sender: u32, incarnation: u64, message_id: u64, part: u16, parts: u16) -> Header {
        Header {
            cluster: ClusterId(1),
            config_version: 1,
            sender: NodeId(sender),
            incarnation: Incarnation(incarnation),
            key_id: KeyId(1),
            counter: message_id + u64::from(part),
            part,
            parts,
        }
    }

    #[test]
    fn parts_in_any_order_make_the_body_in_part_order() {
        let mut r = Reassembly::new();
        assert_eq!(r.insert(&part(1, 0, 10, 2, 3), b"ef"), Ok(None));
        assert_eq!(r.insert(&part(1, 0, 10, 0, 3), b"ab"), Ok(None));
        assert_eq!(
            r.insert(&part(1, 0, 10, 1, 3), b"cd"),
            Ok(Some(b"abcdef".to_vec()))
        );
        assert_eq!(r.pending_messages(), 0);
        assert_eq!(r.pending_senders(), 0);
    }

    #[test]
    fn a_duplicated_part_is_stored_once() {
        let mut r = Reassembly::new();
        assert_eq!(r.insert(&part(1, 0, 0, 0, 2), b"ab"), Ok(None));
        assert_eq!(r.insert(&part(1, 0, 0, 0, 2), b"ab"), Ok(None));
        assert_eq!(r.pending_bytes(), 2);
        assert_eq!(
            r.insert(&part(1, 0, 0, 1, 2), b"cd"),
            Ok(Some(b"abcd".to_vec()))
        );
    }

    #[test]
    fn a_disagreeing_part_count_drops_the_message() {
        let mut r = Reassembly::new();
        assert_eq!(r.insert(&part(1, 0, 0, 0, 3), b"ab"), Ok(None));
        assert_eq!(
            r.insert(&part(1, 0, 0, 1, 2), b"cd"),
            Err(FrameError::BadPart { part: 1, parts: 2 })
        );
        assert_eq!(r.pending_messages(), 0);
    }

    #[test]
    fn a_third_message_evicts_the_oldest_of_its_sender() {
        let mut r = Reassembly::new();
        assert_eq!(r.insert(&part(1, 0, 0, 0, 2), b"a"), Ok(None));
        assert_eq!(r.insert(&part(1, 0, 10, 0, 2), b"b"), Ok(None));
        assert_eq!(r.insert(&part(1, 0, 20, 0, 2), b"c"), Ok(None));
        assert_eq!(r.pending_messages(), MAX_PENDING_PER_SENDER);
        assert_eq!(r.insert(&part(1, 0, 0, 1, 2), b"x"), Ok(None));
        assert_eq!(
            r.insert(&part(1, 0, 20, 1, 2), b"d"),
            Ok(Some(b"cd".to_vec()))
        );
    }

    #[test]
    fn a_newer_incarnation_drops_the_older_lifes_messages() {
        let mut r = Reassembly::new();
        assert_eq!(r.insert(&part(1, 0, 0, 0, 2), b"a"), Ok(None));
        assert_eq!(r.insert(&part(1, 1, 0, 0, 2), b"b"), Ok(None));
        assert_eq!(r.pending_messages(), 1);
        assert_eq!(r.pending_bytes(), 1);
    }

    #[test]
    fn the_number_of_senders_is_bounded() {
        let mut r = Reassembly::new();
        let senders = u32::try_from(MAX_PENDING_SENDERS).unwrap_or(u32::MAX) + 10;
        for s in 0..senders {
            assert_eq!(r.insert(&part(s, 0, 0, 0, 2), b"a"), Ok(None));
        }
        assert_eq!(r.pending_senders(), MAX_PENDING_SENDERS);
        // The most recently heard senders are the ones kept.
        assert_eq!(
            r.insert(&part(senders - 1, 0, 0, 1, 2), b"b"),
            Ok(Some(b"ab".to_vec()))
        );
    }

    #[test]
    fn a_part_number_beyond_the_count_is_refused() {
        let mut r = Reassembly::new();
        assert_eq!(
            r.insert(&part(1, 0, 0, 2, 2), b"a"),
            Err(FrameError::BadPart { part: 2, parts: 2 })
        );
    }

    #[test]
    fn the_largest_message_completes() {
        let mut r = Reassembly::new();
        for p in 0..MAX_PARTS - 1 {
            assert_eq!(r.insert(&part(1, 0, 0, p, MAX_PARTS), &[1]), Ok(None));
        }
        let body = r.insert(&part(1, 0, 0, MAX_PARTS - 1, MAX_PARTS), &[1]);
        assert_eq!(body, Ok(Some(vec![1; usize::from(MAX_PARTS)])));
    }
}
