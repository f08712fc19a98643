//! A changed priority list taking effect in a running node, by the claims'
//! own rules: the supervisor announces its new rank under a new epoch (a
//! lower rank in the same epoch would read as an older map), members follow
//! it and the node that now outranks it preempts it (claim 16), nodes the
//! list no longer names are marked left (claim 19), and a node the list no
//! longer names leaves by itself.

use std::time::Instant;

use super::{Node, Role};
use crate::election::Reason;
use crate::ids::{NodeId, Rank};
use crate::map::MemberStatus;

impl Node {
    /// Claims 1, 16, 19: runs with `priority` from now on.
    pub(super) fn set_priority(&mut self, now: Instant, priority: Vec<NodeId>) {
        if priority == self.cfg.priority || priority.is_empty() {
            return;
        }
        if !priority.contains(&self.cfg.node) {
            // Removed from the cluster: leave under the list the others
            // still know this node by, until they too have the new one.
            if !self.leaving {
                self.start_leaving(now);
            }
            return;
        }
        let rank_before = self.cfg.rank();
        self.cfg.priority = priority;
        self.ranks = self
            .cfg
            .priority
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, Rank(i as u16)))
            .collect();
        self.succession = None;
        if self.role != Role::Supervisor {
            // A member looks again at the next notification whether it
            // outranks its supervisor now (`followed`).
            return;
        }
        if let Some(view) = self.view.as_mut() {
            let gone: Vec<NodeId> = view
                .map
                .members
                .iter()
                .filter(|m| m.status == MemberStatus::Up && !self.ranks.contains_key(&m.id))
                .map(|m| m.id)
                .collect();
            for node in gone {
                view.set_status(node, MemberStatus::Left, &self.cfg.priority);
            }
            view.map.reform_ring(&self.cfg.priority);
            view.map.version = view.map.version.saturating_add(1);
        }
        if self.cfg.rank() != rank_before {
            let epoch = self.highest_epoch.next();
            self.become_supervisor(now, Reason::Reconfigured, epoch);
        } else {
            self.notify_now = true;
        }
    }
}
