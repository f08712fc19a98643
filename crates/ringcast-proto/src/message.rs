//! The messages of the bus and the ring (DESIGN section 4), and their body encoding.
//!
//! Bodies are encoded with postcard; the frame layer (`frame`) authenticates
//! them and splits long ones into parts.

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::announce::{Change, Head, Row, RowKey};
use crate::config::{Capacity, NodeAddrs};
use crate::ids::{DiskId, Epoch, Incarnation, NodeId};
pub use crate::tables::DiskReport;
use crate::tables::Load;

/// Claims 10-11: the supervisor's periodic notification on the bus, as a
/// delta: who it is, which state it holds, and the changes from an
/// earlier version `base` (whose digest it names too). A member holding
/// `base` (or a version between `base` and the head's, of the same reign)
/// applies the changes and checks the digest; any other member pulls the
/// whole state ([`Pull`], answered by [`StatePart`]s). A quiet cluster's
/// notification carries no change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// The supervisor's addresses (claim 10).
    pub addrs: NodeAddrs,
    /// Who announces which state.
    pub head: Head,
    /// The version the changes start from.
    pub base: u64,
    /// The digest of the state at `base`.
    pub base_digest: u64,
    /// Every row changed after `base` up to the head's version, as it is now.
    pub changes: Vec<Change>,
}

/// Claim 11: a node that cannot complete the announced state (it missed
/// more than the repeats cover, restarted, just joined or follows another
/// reign) asks the supervisor for all of it, by unicast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pull {
    /// The asking node.
    pub node: NodeId,
    /// Where it is reached: the answer goes to its ring address.
    pub addrs: NodeAddrs,
}

/// Claim 11: one part of the whole state, answering a [`Pull`] by unicast.
/// Parts are independent lists of rows; the asker adopts the state once it
/// has every part of one version and the rows' digest is the head's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePart {
    /// The supervisor's addresses.
    pub addrs: NodeAddrs,
    /// Who announces which state.
    pub head: Head,
    /// This part's index, from 0.
    pub part: u16,
    /// How many parts the state is in.
    pub parts: u16,
    /// Some of its rows.
    pub rows: Vec<Row>,
}

/// Claim 12: posted once by a node that has just taken over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorUpdate {
    /// The new supervisor.
    pub supervisor: NodeId,
    /// Its addresses.
    pub addrs: NodeAddrs,
    /// The epoch it starts.
    pub epoch: Epoch,
    /// The supervisor it replaces.
    pub replaces: NodeId,
}

/// Claim 14: a node asking to join, repeated until a notification lists it (claim 15).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The joining node.
    pub node: NodeId,
    /// The life it joins with.
    pub incarnation: Incarnation,
    /// Its network addresses.
    pub addrs: NodeAddrs,
    /// Its disk access list, by disk id (claim 14).
    pub disks: Vec<DiskId>,
    /// Its streaming capacity (claim 4).
    pub capacity: Capacity,
    /// Claim 13: the streams it serves as it joins (a node that refutes a
    /// failure may still serve its players), so the supervisor never places
    /// on it as if it were empty before its first ring status arrives.
    pub load: Load,
}

/// Claim 19: a node leaving, repeated until a notification no longer lists it up (claim 20).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// The leaving node.
    pub node: NodeId,
    /// The life that leaves.
    pub incarnation: Incarnation,
    /// Its network addresses (claim 19).
    pub addrs: NodeAddrs,
}

/// Claim 8: a node's declaration that its upstream neighbour failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Declaration {
    /// The node declared failed.
    pub node: NodeId,
    /// The life of it that stopped answering.
    pub incarnation: Incarnation,
}

/// Claim 6: one node's processor status message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    /// Whose status this is.
    pub node: NodeId,
    /// Its life.
    pub incarnation: Incarnation,
    /// Grows with every status the node emits; the latest wins.
    pub seq: u64,
    /// Its load (claim 4, node usage).
    pub load: Load,
    /// Its disk reports (claim 13).
    pub disks: Vec<DiskReport>,
    /// Its failure declarations (claim 8).
    pub declarations: Vec<Declaration>,
}

impl StatusEntry {
    /// Whether `self` carries something `older` did not: a declaration or a disk
    /// report. Such news is forwarded at once instead of at the next period.
    pub fn has_news_over(&self, older: &StatusEntry) -> bool {
        self.incarnation != older.incarnation
            || self.declarations != older.declarations
            || self
                .disks
                .iter()
                .map(|d| (d.disk, d.ok))
                .ne(older.disks.iter().map(|d| (d.disk, d.ok)))
    }
}

/// Claims 6-7: the accumulated status passed around the ring, as a delta:
/// the entries the sender has not yet told this receiver, and a digest of
/// every entry it has told it, so a receiver that missed a status sees it
/// and asks for everything again ([`Resend`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The epoch of the map the sender follows.
    pub epoch: Epoch,
    /// The entries new to the receiver (every entry when `reset`), the
    /// sender's own among them when it changed.
    pub entries: Vec<StatusEntry>,
    /// The receiver forgets what this sender told it before: this status
    /// starts the telling afresh.
    pub reset: bool,
    /// Digest of every (node, life, sequence) the sender has told the
    /// receiver since the last reset, these entries included
    /// (`ring::Told`).
    pub told: [u8; 8],
}

/// Claims 6-7: a node whose digest of what its upstream told it disagrees
/// with the upstream's asks it, by unicast, to tell everything again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resend {
    /// The asking node (the sender's downstream).
    pub node: NodeId,
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Supervisor notification (bus).
    Notify(Notify),
    /// Supervisor update after a takeover (bus).
    SupervisorUpdate(SupervisorUpdate),
    /// Join request (bus).
    Join(JoinRequest),
    /// Leave (bus).
    Leave(Leave),
    /// Ring status (unicast to the downstream neighbour, as a delta).
    Status(Status),
    /// Ring: ask the upstream neighbour to tell everything again (unicast).
    Resend(Resend),
    /// Ask the supervisor for the whole state (unicast).
    Pull(Pull),
    /// A part of the whole state (unicast from the supervisor).
    State(StatePart),
    /// A part of the whole state on the bus, answering the pulls of
    /// several nodes at once.
    Repair(StatePart),
}

/// The path a message travels (DESIGN 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// The cluster's virtual multicast bus.
    Bus,
    /// Unicast to the downstream neighbour.
    Ring,
}

impl Channel {
    /// A short lowercase name, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Bus => "bus",
            Channel::Ring => "ring",
        }
    }
}

/// The kind of a message, for counters and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    /// [`Message::Notify`].
    Notify,
    /// [`Message::SupervisorUpdate`].
    SupervisorUpdate,
    /// [`Message::Join`].
    Join,
    /// [`Message::Leave`].
    Leave,
    /// [`Message::Status`].
    Status,
    /// [`Message::Resend`].
    Resend,
    /// [`Message::Pull`].
    Pull,
    /// [`Message::State`].
    State,
    /// [`Message::Repair`].
    Repair,
}

impl MessageKind {
    /// Every kind, in a fixed order.
    pub const ALL: [MessageKind; 9] = [
        MessageKind::Notify,
        MessageKind::SupervisorUpdate,
        MessageKind::Join,
        MessageKind::Leave,
        MessageKind::Status,
        MessageKind::Resend,
        MessageKind::Pull,
        MessageKind::State,
        MessageKind::Repair,
    ];

    /// The path messages of this kind travel: the unicast ones (status,
    /// resend, pull and state parts to one asker) on the ring, every other
    /// kind (state parts to several askers among them) on the bus.
    pub fn channel(self) -> Channel {
        match self {
            MessageKind::Status | MessageKind::Resend | MessageKind::Pull | MessageKind::State => {
                Channel::Ring
            }
            _ => Channel::Bus,
        }
    }

    /// A short lowercase name, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Notify => "notify",
            MessageKind::SupervisorUpdate => "supervisor_update",
            MessageKind::Join => "join",
            MessageKind::Leave => "leave",
            MessageKind::Status => "status",
            MessageKind::Resend => "resend",
            MessageKind::Pull => "pull",
            MessageKind::State => "state",
            MessageKind::Repair => "repair",
        }
    }
}

/// A body that is not a valid message.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed message body: {0}")]
pub struct DecodeError(String);

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Notify(_) => MessageKind::Notify,
            Message::SupervisorUpdate(_) => MessageKind::SupervisorUpdate,
            Message::Join(_) => MessageKind::Join,
            Message::Leave(_) => MessageKind::Leave,
            Message::Status(_) => MessageKind::Status,
            Message::Resend(_) => MessageKind::Resend,
            Message::Pull(_) => MessageKind::Pull,
            Message::State(_) => MessageKind::State,
            Message::Repair(_) => MessageKind::Repair,
        }
    }

    /// Encodes the message body.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("messages always serialize")
    }

    /// Decodes a message body; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let (msg, rest) =
            postcard::take_from_bytes::<Message>(bytes).map_err(|e| DecodeError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", rest.len())));
        }
        Ok(msg)
    }
}
