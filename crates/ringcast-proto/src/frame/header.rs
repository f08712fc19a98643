//! The fixed-width frame header, its limits, and why a frame is refused
//! (DESIGN section 3, "Frames").

use thiserror::Error;

use crate::ids::{ClusterId, Incarnation, KeyId, NodeId};
use crate::replay::ReplayError;

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"RC";
/// The frame format version this code speaks.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 36;
/// Bytes of the authentication tag that ends every frame.
pub const TAG_LEN: usize = 16;
/// Bytes every frame spends besides its body: header and tag.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Most parts one message may be split into.
pub const MAX_PARTS: u16 = 64;
/// The largest UDP payload over IPv4, and so the largest frame.
pub const MAX_DATAGRAM: usize = 65_507;

/// Bytes every frame spends besides its body: header and tag.
pub fn overhead() -> usize {
    OVERHEAD
}

/// Why a datagram was refused, or a message could not be sealed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The datagram cannot even hold a header and a tag.
    #[error("datagram of {len} bytes is shorter than a frame header and tag ({OVERHEAD} bytes)")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// The datagram is longer than any UDP datagram.
    #[error("datagram of {len} bytes is longer than the largest frame ({MAX_DATAGRAM} bytes)")]
    TooLong {
        /// The datagram's length.
        len: usize,
    },
    /// The datagram does not start with [`MAGIC`]: it is not a ringcast frame.
    #[error("datagram does not start with the ringcast magic bytes")]
    BadMagic,
    /// The frame uses a format version this node does not speak.
    #[error("frame version {0} is not supported (this node speaks version {VERSION})")]
    UnknownVersion(u8),
    /// The frame belongs to another cluster.
    #[error("frame belongs to cluster {got}, not to this node's cluster {expected}")]
    WrongCluster {
        /// This node's cluster.
        expected: ClusterId,
        /// The cluster the frame names.
        got: ClusterId,
    },
    /// The frame was sent by this node (multicast loops a node's frames back).
    #[error("frame was sent by this node itself")]
    FromSelf,
    /// The frame's sender is not a node this node knows of.
    #[error("frame sender {0} is not a known node of this cluster")]
    UnknownSender(NodeId),
    /// The frame was sealed with a key this node does not accept.
    #[error("frame is sealed with key {0}, which this node does not accept")]
    UnknownKey(KeyId),
    /// The frame's tag does not authenticate its header and body.
    #[error("frame authentication tag does not match its contents")]
    BadTag,
    /// The frame's part number or part count is impossible, or disagrees with
    /// the message's other parts.
    #[error("frame part {part} of {parts} does not fit its message")]
    BadPart {
        /// The frame's part number.
        part: u16,
        /// The frame's part count.
        parts: u16,
    },
    /// The frame's counter was already accepted from its sender.
    #[error("frame counter was already seen or is older than the replay window")]
    Replayed,
    /// The frame comes from an older life of its sender than one already seen.
    #[error("frame comes from an older incarnation of its sender than one already seen")]
    StaleIncarnation,
    /// The body needs more than [`MAX_PARTS`] frames at the sealer's MTU.
    #[error("message body of {len} bytes needs more than {MAX_PARTS} frames at this MTU")]
    MessageTooLong {
        /// The body's length.
        len: usize,
    },
    /// The sealer has used every counter of its incarnation; a new incarnation is needed.
    #[error(
        "every frame counter of this incarnation is used; the node must start a new incarnation"
    )]
    CounterExhausted,
}

impl FrameError {
    /// A short snake_case label, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::TooShort { .. } => "too_short",
            FrameError::TooLong { .. } => "too_long",
            FrameError::BadMagic => "bad_magic",
            FrameError::UnknownVersion(_) => "unknown_version",
            FrameError::WrongCluster { .. } => "wrong_cluster",
            FrameError::FromSelf => "from_self",
            FrameError::UnknownSender(_) => "unknown_sender",
            FrameError::UnknownKey(_) => "unknown_key",
            FrameError::BadTag => "bad_tag",
            FrameError::BadPart { .. } => "bad_part",
            FrameError::Replayed => "replayed",
            FrameError::StaleIncarnation => "stale_incarnation",
            FrameError::MessageTooLong { .. } => "message_too_long",
            FrameError::CounterExhausted => "counter_exhausted",
        }
    }
}

impl From<ReplayError> for FrameError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed => FrameError::Replayed,
            ReplayError::StaleIncarnation => FrameError::StaleIncarnation,
        }
    }
}

/// One cluster key, ready to tag frames.
/// The fixed header every frame starts with (after magic and version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The cluster the frame belongs to.
    pub cluster: ClusterId,
    /// The sender's configuration version; a newer one than the receiver's
    /// tells it to refetch its configuration.
    pub config_version: u32,
    /// The node that sealed the frame.
    pub sender: NodeId,
    /// The sender's life.
    pub incarnation: Incarnation,
    /// The key that sealed the frame.
    pub key_id: KeyId,
    /// The sender's frame counter, unique within its incarnation.
    pub counter: u64,
    /// Which part of its message this frame carries, from 0.
    pub part: u16,
    /// How many parts the message has.
    pub parts: u16,
}

impl Header {
    /// The message this frame is a part of: the counter of its part 0.
    pub fn message_id(&self) -> u64 {
        self.counter.saturating_sub(u64::from(self.part))
    }

    /// Appends the wire form, magic and version included.
    pub(super) fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.cluster.0.to_be_bytes());
        out.extend_from_slice(&self.config_version.to_be_bytes());
        out.extend_from_slice(&self.sender.0.to_be_bytes());
        out.extend_from_slice(&self.incarnation.0.to_be_bytes());
        out.push(self.key_id.0);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.part.to_be_bytes());
        out.extend_from_slice(&self.parts.to_be_bytes());
    }

    /// Reads the header at the front of `datagram`, checking magic and version.
    pub(super) fn read(datagram: &[u8]) -> Result<Header, FrameError> {
        let too_short = FrameError::TooShort {
            len: datagram.len(),
        };
        let mut r = Reader(datagram);
        if r.take::<2>().ok_or(too_short.clone())? != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let [version] = r.take::<1>().ok_or(too_short.clone())?;
        if version != VERSION {
            return Err(FrameError::UnknownVersion(version));
        }
        r.fields().ok_or(too_short)
    }
}

/// Reads big-endian fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (first, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*first)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }

    /// The header fields after magic and version.
    fn fields(&mut self) -> Option<Header> {
        Some(Header {
            cluster: ClusterId(self.u32()?),
            config_version: self.u32()?,
            sender: NodeId(self.u32()?),
            incarnation: Incarnation(self.u64()?),
            key_id: KeyId(self.take::<1>()?[0]),
            counter: self.u64()?,
            part: self.u16()?,
            parts: self.u16()?,
        })
    }
}
