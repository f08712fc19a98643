//! Claim 4: the cluster map: every node with its addresses and operational
//! status, the ring order, the supervisor, and the servers the cluster talks to.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::NodeAddrs;
use crate::ids::{Epoch, Incarnation, NodeId, Rank};

/// Claim 4: a node's operational status in the cluster map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Joined and alive as far as the supervisor knows.
    Up,
    /// Declared failed by the ring (claims 8-9) or by a takeover (claim 12).
    Failed,
    /// Left gracefully (claims 19-21).
    Left,
}

/// One node as the cluster map lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node.
    pub id: NodeId,
    /// Its life the status refers to.
    pub incarnation: Incarnation,
    /// Where it is reached.
    pub addrs: NodeAddrs,
    /// Up, failed or left.
    pub status: MemberStatus,
}

/// Claim 4: the cluster map the supervisor keeps and announces (claim 11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// The cluster supervising processor (claim 1).
    pub supervisor: NodeId,
    /// The epoch of the supervisor's reign (claim 12).
    pub epoch: Epoch,
    /// The supervisor's rank, so receivers order competing supervisors without a lookup.
    pub supervisor_rank: Rank,
    /// Grows with every change the supervisor makes within its reign.
    pub version: u64,
    /// Addresses of servers the cluster talks to (configuration service, parent bus).
    pub servers: Vec<SocketAddr>,
    /// Every node the supervisor knows, sorted by id.
    pub members: Vec<Member>,
    /// Claim 6: the ring order: the up members, in priority order.
    pub ring: Vec<NodeId>,
}

/// Claims 10-12: how maps compare, highest first: epoch, supervisor
/// priority, supervisor life, version (see [`ClusterMap::precedence`]).
pub type Precedence = (Epoch, core::cmp::Reverse<Rank>, Incarnation, u64);

impl ClusterMap {
    /// The member entry of `id`.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members
            .binary_search_by_key(&id, |m| m.id)
            .ok()
            .map(|i| &self.members[i])
    }

    /// The member entry of `id`, for the supervisor to change.
    pub fn member_mut(&mut self, id: NodeId) -> Option<&mut Member> {
        match self.members.binary_search_by_key(&id, |m| m.id) {
            Ok(i) => Some(&mut self.members[i]),
            Err(_) => None,
        }
    }

    /// Adds or replaces the entry of `member.id`, keeping members sorted.
    pub fn upsert(&mut self, member: Member) {
        match self.members.binary_search_by_key(&member.id, |m| m.id) {
            Ok(i) => self.members[i] = member,
            Err(i) => self.members.insert(i, member),
        }
    }

    /// Whether `id` is listed up.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.member(id)
            .is_some_and(|m| m.status == MemberStatus::Up)
    }

    /// The up members in the order of `priority` (highest first).
    pub fn up_in_priority_order<'a>(
        &'a self,
        priority: &'a [NodeId],
    ) -> impl Iterator<Item = NodeId> + 'a {
        priority.iter().copied().filter(|n| self.is_up(*n))
    }

    /// Claim 6: recomputes the ring order from the member statuses.
    pub fn reform_ring(&mut self, priority: &[NodeId]) {
        self.ring = self.up_in_priority_order(priority).collect();
    }

    /// Claim 6: the ring neighbours of `me`: (upstream, downstream). `None`
    /// when `me` is not on the ring or is alone on it.
    pub fn neighbours(&self, me: NodeId) -> Option<(NodeId, NodeId)> {
        let n = self.ring.len();
        if n < 2 {
            return None;
        }
        let i = self.ring.iter().position(|x| *x == me)?;
        Some((self.ring[(i + n - 1) % n], self.ring[(i + 1) % n]))
    }

    /// The order in which receivers prefer notifications: a higher epoch wins,
    /// then a higher-priority supervisor, then a newer life of the same
    /// supervisor (one that restarted and formed again in an epoch its old
    /// members already hold, with a map of a lower version), then a newer
    /// version of the same map.
    pub fn precedence(&self) -> Precedence {
        (
            self.epoch,
            core::cmp::Reverse(self.supervisor_rank),
            self.supervisor_incarnation(),
            self.version,
        )
    }

    /// The life of the supervisor, as the map lists it.
    pub fn supervisor_incarnation(&self) -> Incarnation {
        self.member(self.supervisor)
            .map_or(Incarnation(0), |m| m.incarnation)
    }

    /// The members' statuses and the ring, ignoring the version: what every
    /// node must agree on once the cluster is quiet.
    pub fn agreement_key(&self) -> (NodeId, Epoch, Vec<(NodeId, Incarnation, MemberStatus)>) {
        (
            self.supervisor,
            self.epoch,
            self.members
                .iter()
                .map(|m| (m.id, m.incarnation, m.status))
                .collect(),
        )
    }
}

/// A change between two maps a node held, as the cluster's event stream reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapChange {
    /// A different supervisor, or a new epoch of the same one.
    Supervisor {
        /// The supervisor.
        node: NodeId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// A node is listed up (joined, or came back with a new life).
    Joined {
        /// The node.
        node: NodeId,
        /// Its life.
        incarnation: Incarnation,
    },
    /// A node is marked failed.
    Failed {
        /// The node.
        node: NodeId,
    },
    /// A node left.
    Left {
        /// The node.
        node: NodeId,
    },
}

/// What changed from `old` to `new`: the cluster events any node can report,
/// since every node sees the same sequence of maps.
pub fn changes(old: Option<&ClusterMap>, new: &ClusterMap) -> Vec<MapChange> {
    let mut out = Vec::new();
    if old.is_none_or(|o| (o.supervisor, o.epoch) != (new.supervisor, new.epoch)) {
        out.push(MapChange::Supervisor {
            node: new.supervisor,
            epoch: new.epoch,
        });
    }
    for m in &new.members {
        let before = old.and_then(|o| o.member(m.id));
        let same = before.is_some_and(|b| (b.status, b.incarnation) == (m.status, m.incarnation));
        if same {
            continue;
        }
        match m.status {
            MemberStatus::Up => out.push(MapChange::Joined {
                node: m.id,
                incarnation: m.incarnation,
            }),
            MemberStatus::Failed => out.push(MapChange::Failed { node: m.id }),
            MemberStatus::Left => out.push(MapChange::Left { node: m.id }),
        }
    }
    out
}
