//! What goes into a node besides datagrams and time ([`LocalEvent`]) and what
//! comes out of it ([`Transmit`], [`Event`]).

use core::time::Duration;
use std::net::SocketAddr;

use crate::config::Capacity;
use crate::election::Reason;
use crate::ids::{Epoch, Incarnation, NodeId};
use crate::message::{DiskReport, MessageKind};
use crate::tables::Load;

/// Something the node's own host tells the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalEvent {
    /// The node's current load (claim 4), reported on the ring.
    Load(Load),
    /// Claim 13: the result of a disk probe.
    DiskProbe(DiskReport),
    /// Claim 19: the operator asked the node to leave.
    Leave,
    /// Claim 5: the node's streaming capacity changed: a sub-cluster's seat
    /// whose sub-cluster gained or lost a machine. The node announces it to
    /// its supervisor (again with a join request, until the tables show it).
    Capacity(Capacity),
    /// Claim 1: the configuration's priority list changed (a live reload);
    /// the node runs with the new one (see `node/reconfigure.rs`).
    Priority(Vec<NodeId>),
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Every node of the cluster, on the virtual multicast bus.
    Bus,
    /// One node, by unicast (the ring).
    Node {
        /// The receiving node.
        id: NodeId,
        /// Its ring address.
        addr: SocketAddr,
    },
}

/// One datagram for the runtime to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub destination: Destination,
    /// The sealed frame.
    pub payload: Vec<u8>,
    /// What it carries, for counters.
    pub kind: MessageKind,
}

/// Something that happened, for logs, metrics, the event stream and the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This node became the supervisor.
    BecameSupervisor {
        /// The epoch it started.
        epoch: Epoch,
        /// Why.
        reason: Reason,
    },
    /// This node stopped supervising in favour of another supervisor (claims 17, 22).
    StoppedSupervising {
        /// The supervisor it yielded to.
        successor: NodeId,
    },
    /// This node now follows another supervisor.
    SupervisorChanged {
        /// The new supervisor.
        supervisor: NodeId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// A notification listed this node: it has joined (claim 15).
    Joined {
        /// The supervisor that listed it.
        supervisor: NodeId,
    },
    /// The node left the cluster (claim 20); it sends nothing more.
    Left,
    /// As supervisor: a node joined (claim 14).
    NodeJoined {
        /// The node.
        node: NodeId,
    },
    /// As supervisor: a node left (claim 19).
    NodeLeft {
        /// The node.
        node: NodeId,
    },
    /// As supervisor: a node was marked failed (claim 9).
    NodeFailed {
        /// The failed node.
        node: NodeId,
        /// The node that declared it.
        declared_by: NodeId,
    },
    /// This node declared its upstream neighbour failed (claim 8).
    UpstreamDeclared {
        /// The upstream neighbour.
        node: NodeId,
    },
    /// This node found itself wrongly marked failed and rejoins with a new life.
    Refuted {
        /// The new life.
        incarnation: Incarnation,
    },
    /// This node's own timers ran late; the gap was not blamed on anyone.
    ClockSlipped {
        /// How late.
        gap: Duration,
    },
    /// As supervisor: a disk changed (claim 13): declared failed, recovered,
    /// or one node's path to it broke or works again.
    Disk(crate::tables::DiskChange),
    /// A frame carried a newer configuration version than this node's: refetch.
    ConfigOutdated {
        /// The version seen.
        version: u32,
    },
    /// As supervisor: another supervisor of this cluster that this node
    /// outranks is heard (a partition or a pause healed); it will yield.
    /// Claim 5: while both supervised, both may have held the cluster's
    /// seat in the parent, so the machine takes its seat again with a newer life.
    RivalSupervisor {
        /// The rival.
        rival: NodeId,
        /// The rival's epoch.
        epoch: Epoch,
    },
    /// An authentic frame of this node's own id with a newer life was
    /// heard: another process holds the id. For a leaf node that is a
    /// misconfiguration; claim 5: for a seat, another machine took it, and
    /// the machine takes it again with a life newer still.
    OwnIdHeard {
        /// The other process's life.
        incarnation: Incarnation,
    },
    /// A datagram was refused (bad tag, replayed counter, unknown sender,
    /// a body that is not a message, ...); the reason is also counted in
    /// the node's statistics.
    Rejected {
        /// Why, one of [`crate::stats::REJECT_REASONS`].
        reason: &'static str,
    },
    /// A message of this node could not be sent: its body needs more
    /// frames than the protocol carries at the node's MTU (`config check`
    /// refuses such clusters; see [`crate::sizes`]). Emitted once until
    /// that kind of message fits again.
    Unsent {
        /// Which message.
        kind: crate::message::MessageKind,
        /// Its body's size.
        bytes: usize,
        /// The MTU it had to fit.
        mtu: usize,
    },
}
