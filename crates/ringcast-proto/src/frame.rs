//! The authenticated datagram format (DESIGN section 3, "Frames").
//!
//! Every datagram is a fixed-width big-endian header, a body, and a tag:
//!
//! ```text
//! magic "RC" (2) | version (1) | cluster (4) | config_version (4) | sender (4)
//! | incarnation (8) | key_id (1) | counter (8) | part (2) | parts (2)
//! | body ... | tag (16)
//! ```
//!
//! The tag is HMAC-SHA256 under the cluster key over header and body,
//! truncated to 16 bytes. Bodies longer than one datagram are split into parts
//! with consecutive counters, so a message is named by `counter - part`.
//! [`Sealer`] builds frames, [`Opener`] checks them (length, magic, version,
//! cluster, sender, key, tag, part numbers, replay) and reassembles parts.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::{ClusterId, Incarnation, KeyId, NodeId};
use crate::replay::ReplayWindow;

pub mod fragment;
mod header;

use fragment::Reassembly;
pub use header::{
    overhead, FrameError, Header, HEADER_LEN, MAGIC, MAX_DATAGRAM, MAX_PARTS, OVERHEAD, TAG_LEN,
    VERSION,
};

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
struct ClusterKey {
    id: KeyId,
    mac: HmacSha256,
}

impl ClusterKey {
    fn new(id: KeyId, key: [u8; 32]) -> Self {
        let mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length");
        ClusterKey { id, mac }
    }
}

/// The cluster keys a node accepts (at most two, during a rotation) and the
/// one it seals with.
///
/// Key rotation: a key is rotated without downtime in three stages (see
/// [`Rotation`]); each stage starts only once every node runs the previous
/// one, so two nodes are never more than one stage apart and every frame
/// any node seals is accepted by every other node.
#[derive(Clone)]
pub struct Keyring {
    sending: ClusterKey,
    other: Option<ClusterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("sending", &self.sending.id)
            .field("other", &self.other.as_ref().map(|k| k.id))
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring that accepts and seals with one key.
    pub fn new(id: KeyId, key: [u8; 32]) -> Self {
        Keyring {
            sending: ClusterKey::new(id, key),
            other: None,
        }
    }

    /// Accepts a second key besides the sending one, replacing any previous
    /// second key. A key with the sending key's id replaces the sending key.
    pub fn accept(&mut self, id: KeyId, key: [u8; 32]) {
        let key = ClusterKey::new(id, key);
        if id == self.sending.id {
            self.sending = key;
        } else {
            self.other = Some(key);
        }
    }

    /// Seals with key `id` from now on; the previous sending key stays accepted.
    pub fn send_with(&mut self, id: KeyId) -> Result<(), FrameError> {
        if id == self.sending.id {
            return Ok(());
        }
        match self.other.take() {
            Some(other) if other.id == id => {
                let previous = core::mem::replace(&mut self.sending, other);
                self.other = Some(previous);
                Ok(())
            }
            kept => {
                self.other = kept;
                Err(FrameError::UnknownKey(id))
            }
        }
    }

    /// Stops accepting key `id`. The sending key cannot be retired; returns
    /// whether a key was dropped.
    pub fn retire(&mut self, id: KeyId) -> bool {
        if self.other.as_ref().is_some_and(|k| k.id == id) {
            self.other = None;
            return true;
        }
        false
    }

    /// The key new frames are sealed with.
    pub fn sending_key_id(&self) -> KeyId {
        self.sending.id
    }

    /// The ids of every key accepted, the sending key's first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        core::iter::once(&self.sending)
            .chain(self.other.as_ref())
            .map(|k| k.id)
            .collect()
    }

    /// Key rotation: the keyring of a node at `stage` of the rotation from `old`
    /// to `new` (each a key id and its 32 bytes).
    pub fn at_stage(stage: Rotation, old: (KeyId, [u8; 32]), new: (KeyId, [u8; 32])) -> Keyring {
        let (seal, also) = match stage {
            Rotation::Before => (old, None),
            Rotation::AcceptNew => (old, Some(new)),
            Rotation::SendNew => (new, Some(old)),
            Rotation::Done => (new, None),
        };
        let mut keyring = Keyring::new(seal.0, seal.1);
        if let Some((id, key)) = also {
            keyring.accept(id, key);
        }
        keyring
    }

    /// Whether frames sealed with key `id` are accepted.
    pub fn accepts(&self, id: KeyId) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: KeyId) -> Option<&ClusterKey> {
        core::iter::once(&self.sending)
            .chain(self.other.as_ref())
            .find(|k| k.id == id)
    }
}

/// Key rotation: the stages of a key rotation without downtime, in order. A node
/// moves to the next stage only once every node of the cluster runs the
/// current one (the node crate applies a stage by reloading its key file on
/// `SIGHUP` or when it sees a newer configuration version).
///
/// | stage | seals with | accepts |
/// | --- | --- | --- |
/// | `Before` | old | old |
/// | `AcceptNew` | old | old and new |
/// | `SendNew` | new | new and old |
/// | `Done` | new | new |
///
/// Nodes one stage apart accept each other's frames; nodes two stages apart
/// would not (a `Before` node refuses a `SendNew` node's frames), which is
/// why a stage must be complete before the next one starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rotation {
    /// Every node seals with and accepts only the old key.
    Before,
    /// Stage 1: every node accepts the new key and still seals with the old one.
    AcceptNew,
    /// Stage 2: every node seals with the new key and still accepts the old one.
    SendNew,
    /// Stage 3: the old key is dropped; its frames are refused (`unknown_key`).
    Done,
}

impl Rotation {
    /// Every stage, in order.
    pub const ALL: [Rotation; 4] = [
        Rotation::Before,
        Rotation::AcceptNew,
        Rotation::SendNew,
        Rotation::Done,
    ];
}

/// Tags `header || body` with `key` and returns the whole frame.
fn seal_frame(key: &ClusterKey, header: &Header, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(OVERHEAD + body.len());
    header.write_to(&mut frame);
    frame.extend_from_slice(body);
    let mut mac = key.mac.clone();
    mac.update(&frame);
    let tag = mac.finalize().into_bytes();
    frame.extend_from_slice(&tag[..TAG_LEN]);
    frame
}

/// Builds the frames of one node: numbers them, splits long bodies into parts
/// and tags them with the keyring's sending key.
#[derive(Clone, Debug)]
pub struct Sealer {
    cluster: ClusterId,
    config_version: u32,
    sender: NodeId,
    incarnation: Incarnation,
    next_counter: u64,
    mtu: usize,
}

impl Sealer {
    /// The sealer of node `sender` in its life `incarnation`. `mtu` is the
    /// largest datagram to build, clamped to `OVERHEAD + 1..=MAX_DATAGRAM`.
    pub fn new(
        cluster: ClusterId,
        config_version: u32,
        sender: NodeId,
        incarnation: Incarnation,
        mtu: usize,
    ) -> Self {
        Sealer {
            cluster,
            config_version,
            sender,
            incarnation,
            next_counter: 0,
            mtu: mtu.clamp(OVERHEAD + 1, MAX_DATAGRAM),
        }
    }

    /// Starts a new life of the node; counters start again from 0, which
    /// receivers accept because the incarnation grew. It must not go backwards.
    pub fn set_incarnation(&mut self, incarnation: Incarnation) {
        if incarnation != self.incarnation {
            self.incarnation = incarnation;
            self.next_counter = 0;
        }
    }

    /// Announces a new configuration version in the frames sealed from now on.
    pub fn set_config_version(&mut self, config_version: u32) {
        self.config_version = config_version;
    }

    /// The largest datagram this sealer builds.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Seals `body` into one frame, or into up to [`MAX_PARTS`] frames of at
    /// most the MTU each when it does not fit one.
    pub fn seal(&mut self, keyring: &Keyring, body: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let chunks = self.split(body)?;
        let parts = u16::try_from(chunks.len())
            .map_err(|_| FrameError::MessageTooLong { len: body.len() })?;
        let first = self.take_counters(u64::from(parts))?;
        let frames = (0..parts)
            .zip(chunks)
            .map(|(part, chunk)| {
                let header = self.header(
                    keyring.sending_key_id(),
                    first + u64::from(part),
                    part,
                    parts,
                );
                seal_frame(&keyring.sending, &header, chunk)
            })
            .collect();
        Ok(frames)
    }

    /// The body's parts, each fitting one frame.
    fn split<'b>(&self, body: &'b [u8]) -> Result<Vec<&'b [u8]>, FrameError> {
        let room = self.mtu - OVERHEAD;
        if body.len().div_ceil(room) > usize::from(MAX_PARTS) {
            return Err(FrameError::MessageTooLong { len: body.len() });
        }
        if body.is_empty() {
            return Ok(vec![body]);
        }
        Ok(body.chunks(room).collect())
    }

    /// Reserves `n` consecutive counters and returns the first.
    fn take_counters(&mut self, n: u64) -> Result<u64, FrameError> {
        let first = self.next_counter;
        self.next_counter = first.checked_add(n).ok_or(FrameError::CounterExhausted)?;
        Ok(first)
    }

    fn header(&self, key_id: KeyId, counter: u64, part: u16, parts: u16) -> Header {
        Header {
            cluster: self.cluster,
            config_version: self.config_version,
            sender: self.sender,
            incarnation: self.incarnation,
            key_id,
            counter,
            part,
            parts,
        }
    }
}

/// A whole message taken out of one or more frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The header of the message's part 0 (for a multi-part message: the
    /// completing frame's header with `part` 0 and `counter` of part 0).
    pub header: Header,
    /// The message body.
    pub body: Vec<u8>,
}

/// A datagram cut into its body and tag (the header is read by [`Header::read`]).
struct RawFrame<'a> {
    body: &'a [u8],
    /// Header and body: what the tag covers.
    tagged: &'a [u8],
    tag: &'a [u8],
}

impl<'a> RawFrame<'a> {
    fn cut(datagram: &'a [u8]) -> Result<Self, FrameError> {
        let len = datagram.len();
        if len > MAX_DATAGRAM {
            return Err(FrameError::TooLong { len });
        }
        let too_short = FrameError::TooShort { len };
        let tag_at = len.checked_sub(TAG_LEN).ok_or(too_short.clone())?;
        let (tagged, tag) = datagram.split_at_checked(tag_at).ok_or(too_short.clone())?;
        let body = tagged.get(HEADER_LEN..).ok_or(too_short)?;
        Ok(RawFrame { body, tagged, tag })
    }
}

/// Checks the frames a node receives and puts multi-part messages together.
#[derive(Debug)]
pub struct Opener {
    cluster: ClusterId,
    me: NodeId,
    windows: BTreeMap<NodeId, ReplayWindow>,
    reassembly: Reassembly,
}

impl Opener {
    /// The opener of node `me` in cluster `cluster`.
    pub fn new(cluster: ClusterId, me: NodeId) -> Self {
        Opener {
            cluster,
            me,
            windows: BTreeMap::new(),
            reassembly: Reassembly::new(),
        }
    }

    /// Checks one datagram and returns the message it completes, if any.
    /// `Ok(None)` means a part of a message that still misses parts.
    /// `is_known_sender` tells whether a node id belongs to the cluster.
    pub fn open(
        &mut self,
        keyring: &Keyring,
        datagram: &[u8],
        is_known_sender: impl Fn(NodeId) -> bool,
    ) -> Result<Option<Opened>, FrameError> {
        let raw = RawFrame::cut(datagram)?;
        let header = Header::read(datagram)?;
        self.check_origin(&header, is_known_sender)?;
        verify_tag(keyring, &header, &raw)?;
        check_parts(&header)?;
        self.check_replay(&header)?;
        if header.parts == 1 {
            return Ok(Some(Opened {
                header,
                body: raw.body.to_vec(),
            }));
        }
        let body = self.reassembly.insert(&header, raw.body)?;
        Ok(body.map(|body| Opened {
            header: Header {
                counter: header.message_id(),
                part: 0,
                ..header
            },
            body,
        }))
    }

    /// The life carried by an authentic frame of this opener's own node id
    /// (refused by [`Opener::open`] as `from_self`): another process holds
    /// the same id. Claim 5: a sub-cluster's seat moves between machines, and
    /// while two hold it at once each hears the other. `None` for a frame
    /// that is not authentic, not of this cluster, or not of this id.
    pub fn own_id_life(&self, keyring: &Keyring, datagram: &[u8]) -> Option<Incarnation> {
        let raw = RawFrame::cut(datagram).ok()?;
        let header = Header::read(datagram).ok()?;
        if header.cluster != self.cluster || header.sender != self.me {
            return None;
        }
        verify_tag(keyring, &header, &raw).ok()?;
        Some(header.incarnation)
    }

    /// The incomplete multi-part messages this opener holds.
    pub fn reassembly(&self) -> &Reassembly {
        &self.reassembly
    }

    fn check_origin(
        &self,
        header: &Header,
        is_known_sender: impl Fn(NodeId) -> bool,
    ) -> Result<(), FrameError> {
        if header.cluster != self.cluster {
            return Err(FrameError::WrongCluster {
                expected: self.cluster,
                got: header.cluster,
            });
        }
        if header.sender == self.me {
            return Err(FrameError::FromSelf);
        }
        if !is_known_sender(header.sender) {
            return Err(FrameError::UnknownSender(header.sender));
        }
        Ok(())
    }

    fn check_replay(&mut self, header: &Header) -> Result<(), FrameError> {
        match self.windows.entry(header.sender) {
            Entry::Vacant(slot) => {
                slot.insert(ReplayWindow::new(header.incarnation, header.counter));
                Ok(())
            }
            Entry::Occupied(mut slot) => Ok(slot
                .get_mut()
                .check_and_record(header.incarnation, header.counter)?),
        }
    }
}

/// Checks the frame's tag in constant time with the key its header names.
fn verify_tag(keyring: &Keyring, header: &Header, raw: &RawFrame<'_>) -> Result<(), FrameError> {
    let key = keyring
        .key(header.key_id)
        .ok_or(FrameError::UnknownKey(header.key_id))?;
    let mut mac = key.mac.clone();
    mac.update(raw.tagged);
    mac.verify_truncated_left(raw.tag)
        .map_err(|_| FrameError::BadTag)
}

/// Checks that the part number and count describe a possible message.
fn check_parts(header: &Header) -> Result<(), FrameError> {
    let possible = header.parts != 0
        && header.parts <= MAX_PARTS
        && header.part < header.parts
        && header.counter >= u64::from(header.part);
    if possible {
        Ok(())
    } else {
        Err(FrameError::BadPart {
            part: header.part,
            parts: header.parts,
        })
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests;
