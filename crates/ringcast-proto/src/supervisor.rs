//! Claims 4, 9, 14, 19: what the supervisor does to its tables and map when
//! nodes join, leave, report and are declared failed. Pure functions on the
//! [`View`] the supervisor announces.

use crate::config::NodeAddrs;
use crate::ids::{NodeId, Rank};
use crate::map::{ClusterMap, Member, MemberStatus};
use crate::message::{Declaration, JoinRequest, Leave, StatusEntry};
use crate::tables::{DiskChange, Tables};

/// The cluster as one supervisor announces it: map and tables (claim 11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The cluster map.
    pub map: ClusterMap,
    /// Topology, node usage and disk usage.
    pub tables: Tables,
    /// The supervisor's addresses (claim 10).
    pub supervisor_addrs: NodeAddrs,
}

/// What a join request did to the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The node was added (or came back with a new life).
    Added,
    /// The node is already listed up with this life; the request only needs an answer.
    AlreadyListed,
    /// The request is from an older life than the one listed; ignored.
    Stale,
}

impl View {
    /// Claim 14: updates the map and topology for a join request.
    pub fn apply_join(&mut self, join: &JoinRequest, priority: &[NodeId]) -> JoinOutcome {
        if let Some(m) = self.map.member(join.node) {
            if m.incarnation > join.incarnation {
                return JoinOutcome::Stale;
            }
            if m.incarnation == join.incarnation && m.status == MemberStatus::Up {
                // Claim 5: a listed node re-announces a changed capacity.
                self.tables.record_capacity(join.node, join.capacity);
                return JoinOutcome::AlreadyListed;
            }
            if m.incarnation == join.incarnation && m.status != MemberStatus::Up {
                // A life once declared failed or left never comes back; it must
                // refute with a higher incarnation.
                return JoinOutcome::Stale;
            }
        }
        self.map.upsert(Member {
            id: join.node,
            incarnation: join.incarnation,
            addrs: join.addrs,
            status: MemberStatus::Up,
        });
        self.tables
            .record_join(join.node, join.capacity, &join.disks);
        self.tables.record_load(join.node, join.load);
        self.changed(priority);
        JoinOutcome::Added
    }

    /// Claim 19: marks a leaving node left. Returns whether the map changed.
    pub fn apply_leave(&mut self, leave: &Leave, priority: &[NodeId]) -> bool {
        let listed = self
            .map
            .member(leave.node)
            .is_some_and(|m| m.status == MemberStatus::Up && m.incarnation <= leave.incarnation);
        if listed {
            self.set_status(leave.node, MemberStatus::Left, priority);
        }
        listed
    }

    /// Claim 9: marks a declared node failed, unless the declaration is about
    /// an older life, about the supervisor itself, or made by a node that is
    /// not up. Returns whether the map changed.
    pub fn apply_declaration(&mut self, d: &Declaration, by: NodeId, priority: &[NodeId]) -> bool {
        if d.node == self.map.supervisor || !self.map.is_up(by) {
            return false;
        }
        let current = self
            .map
            .member(d.node)
            .is_some_and(|m| m.status == MemberStatus::Up && m.incarnation <= d.incarnation);
        if current {
            self.set_status(d.node, MemberStatus::Failed, priority);
        }
        current
    }

    /// Claims 4, 7 and 13: records a status entry's load and disk states.
    /// Returns the declarations it carries that changed the map, and the
    /// changes of the node's paths to its disks.
    pub fn apply_entry(
        &mut self,
        entry: &StatusEntry,
        priority: &[NodeId],
    ) -> (Vec<Declaration>, Vec<DiskChange>) {
        let current = self
            .map
            .member(entry.node)
            .is_some_and(|m| m.status == MemberStatus::Up && m.incarnation == entry.incarnation);
        if !current {
            return (Vec::new(), Vec::new());
        }
        self.tables.record_load(entry.node, entry.load);
        let paths = entry
            .disks
            .iter()
            .filter_map(|report| self.tables.record_disk_report(entry.node, report))
            .collect();
        let declared = entry
            .declarations
            .iter()
            .filter(|d| self.apply_declaration(d, entry.node, priority))
            .copied()
            .collect();
        (declared, paths)
    }

    /// Sets a member's status, forgets its usage if it is no longer up, and re-forms the ring.
    pub fn set_status(&mut self, node: NodeId, status: MemberStatus, priority: &[NodeId]) {
        if let Some(m) = self.map.member_mut(node) {
            m.status = status;
        }
        if status != MemberStatus::Up {
            self.tables.forget_node(node);
        }
        self.changed(priority);
    }

    /// Claim 6: re-forms the ring and bumps the map's version after a change.
    fn changed(&mut self, priority: &[NodeId]) {
        self.map.reform_ring(priority);
        self.map.version = self.map.version.saturating_add(1);
    }

    /// Claim 12: this view taken over by `me`: `me` becomes the supervisor of a
    /// new epoch, listed up; the previous supervisor, if another node, is
    /// marked `previous_status`.
    pub fn take_over(
        &mut self,
        me: Member,
        rank: Rank,
        epoch: crate::ids::Epoch,
        previous_status: Option<MemberStatus>,
        priority: &[NodeId],
    ) {
        let previous = self.map.supervisor;
        if let Some(status) = previous_status {
            if previous != me.id && self.map.is_up(previous) {
                self.set_status(previous, status, priority);
            }
        }
        self.supervisor_addrs = me.addrs;
        self.map.supervisor = me.id;
        self.map.supervisor_rank = rank;
        self.map.epoch = epoch;
        self.map.upsert(me);
        self.changed(priority);
    }
}
