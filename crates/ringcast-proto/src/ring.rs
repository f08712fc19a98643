//! Claims 6-8: the ring of status messages. Each node receives the accumulated
//! status from its upstream neighbour, appends its own entry and passes the
//! accumulation downstream; a node that hears nothing from upstream for
//! `miss_limit` periods declares it failed.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{Incarnation, NodeId};
use crate::map::ClusterMap;
use crate::message::{Declaration, DiskReport, StatusEntry};
use crate::tables::Load;

/// A node's place on the ring and what it has accumulated.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    /// Upstream neighbour and the life of it we watch.
    upstream: Option<(NodeId, Incarnation)>,
    /// Downstream neighbour.
    downstream: Option<NodeId>,
    /// Latest entry of every node on the ring (claim 7).
    accumulated: BTreeMap<NodeId, StatusEntry>,
    /// This node's outstanding failure declarations (claim 8).
    declarations: BTreeSet<Declaration>,
    /// Sequence number of this node's own entry.
    seq: u64,
}

/// What merging a received accumulation found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Merged {
    /// Whether some entry carried news (a declaration or disk state not seen before).
    pub news: bool,
    /// The nodes whose entry is newer than the one held: the only entries
    /// the supervisor reads again (its work per status is what changed).
    pub changed: Vec<NodeId>,
}

impl Ring {
    /// Takes the ring order from a newly adopted map. Returns whether the
    /// upstream neighbour changed, so its silence deadline restarts.
    pub fn follow(&mut self, map: &ClusterMap, me: NodeId) -> bool {
        let (up, down) = match map.neighbours(me) {
            Some((u, d)) => {
                let inc = map.member(u).map(|m| m.incarnation).unwrap_or_default();
                (Some((u, inc)), Some(d))
            }
            None => (None, None),
        };
        let changed = up != self.upstream;
        self.upstream = up;
        self.downstream = down;
        self.accumulated.retain(|id, entry| {
            map.member(*id).is_some_and(|m| {
                m.status == crate::map::MemberStatus::Up && m.incarnation == entry.incarnation
            })
        });
        // A declaration is done once the map no longer lists that life up.
        self.declarations.retain(|d| {
            map.member(d.node).is_some_and(|m| {
                m.status == crate::map::MemberStatus::Up && m.incarnation <= d.incarnation
            })
        });
        changed
    }

    /// The upstream neighbour, if this node is on a ring of two or more.
    pub fn upstream(&self) -> Option<(NodeId, Incarnation)> {
        self.upstream
    }

    /// The downstream neighbour, if this node is on a ring of two or more.
    pub fn downstream(&self) -> Option<NodeId> {
        self.downstream
    }

    /// Claim 8: declares the upstream neighbour failed. Returns the declaration
    /// if it is new.
    pub fn declare_upstream(&mut self) -> Option<Declaration> {
        let (node, incarnation) = self.upstream?;
        let d = Declaration { node, incarnation };
        self.declarations.insert(d).then_some(d)
    }

    /// This node's outstanding declarations.
    pub fn declarations(&self) -> impl Iterator<Item = &Declaration> {
        self.declarations.iter()
    }

    /// Claim 6: merges a received accumulation, keeping the latest entry of
    /// each node that `map` lists up with the same life.
    pub fn merge(&mut self, entries: Vec<StatusEntry>, map: &ClusterMap, me: NodeId) -> Merged {
        let mut merged = Merged::default();
        for entry in entries {
            if entry.node == me {
                continue;
            }
            let listed = map.member(entry.node).is_some_and(|m| {
                m.status == crate::map::MemberStatus::Up && m.incarnation == entry.incarnation
            });
            if !listed {
                continue;
            }
            match self.accumulated.get(&entry.node) {
                Some(old) if old.seq >= entry.seq => {}
                Some(old) => {
                    merged.news |= entry.has_news_over(old);
                    merged.changed.push(entry.node);
                    self.accumulated.insert(entry.node, entry);
                }
                None => {
                    merged.news |=
                        !entry.declarations.is_empty() || entry.disks.iter().any(|d| !d.ok);
                    merged.changed.push(entry.node);
                    self.accumulated.insert(entry.node, entry);
                }
            }
        }
        merged
    }

    /// Claim 6: appends this node's own entry and returns the accumulation to
    /// send, with whether the own entry changed. The entry's sequence number
    /// grows only when what it says changed, so the other nodes (and the
    /// supervisor above all) re-read an entry only when there is something
    /// new in it.
    pub fn emit(
        &mut self,
        me: NodeId,
        incarnation: Incarnation,
        load: Load,
        disks: Vec<DiskReport>,
    ) -> (Vec<StatusEntry>, bool) {
        let declarations: Vec<Declaration> = self.declarations.iter().copied().collect();
        let same = self.accumulated.get(&me).is_some_and(|e| {
            e.incarnation == incarnation
                && e.load == load
                && e.disks == disks
                && e.declarations == declarations
        });
        if !same {
            self.seq += 1;
            let own = StatusEntry {
                node: me,
                incarnation,
                seq: self.seq,
                load,
                disks,
                declarations,
            };
            self.accumulated.insert(me, own);
        }
        (self.accumulated.values().cloned().collect(), !same)
    }

    /// The entry of `node`, if accumulated.
    pub fn entry(&self, node: NodeId) -> Option<&StatusEntry> {
        self.accumulated.get(&node)
    }

    /// Every entry accumulated so far, this node's own included.
    pub fn entries(&self) -> impl Iterator<Item = &StatusEntry> {
        self.accumulated.values()
    }

    /// Forgets everything: the node left the ring.
    pub fn reset(&mut self) {
        let seq = self.seq;
        *self = Ring::default();
        self.seq = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeAddrs;
    use crate::ids::{Epoch, Rank};
    use crate::map::{Member, MemberStatus};

    fn map(ids: &[u32]) -> ClusterMap {
        let addr = "127.0.0.1:1".parse().unwrap();
        ClusterMap {
            supervisor: NodeId(ids[0]),
            epoch: Epoch(1),
            supervisor_rank: Rank(0),
            version: 1,
            servers: vec![],
            members: ids
                .iter()
                .map(|i| Member {
                    id: NodeId(*i),
                    incarnation: Incarnation(1),
                    addrs: NodeAddrs {
                        ring: addr,
                        http: addr,
                    },
                    status: MemberStatus::Up,
                })
                .collect(),
            ring: ids.iter().map(|i| NodeId(*i)).collect(),
        }
    }

    fn load(streams: u32) -> Load {
        Load {
            streams,
            bytes_per_s: 0,
        }
    }

    #[test]
    fn an_entry_is_new_to_its_readers_only_when_what_it_says_changed() {
        // Claims 6-7 at O(news): the supervisor re-reads only what changed.
        let m = map(&[1, 2]);
        let (mut two, mut one) = (Ring::default(), Ring::default());
        two.follow(&m, NodeId(2));
        one.follow(&m, NodeId(1));
        let (sent, changed) = two.emit(NodeId(2), Incarnation(1), load(3), vec![]);
        assert!(changed, "the first entry is news");
        assert_eq!(one.merge(sent, &m, NodeId(1)).changed, vec![NodeId(2)]);
        let (sent, changed) = two.emit(NodeId(2), Incarnation(1), load(3), vec![]);
        assert!(!changed, "the same load is no news");
        assert!(one.merge(sent, &m, NodeId(1)).changed.is_empty());
        let (sent, changed) = two.emit(NodeId(2), Incarnation(1), load(4), vec![]);
        assert!(changed);
        assert_eq!(one.merge(sent, &m, NodeId(1)).changed, vec![NodeId(2)]);
        assert_eq!(one.entry(NodeId(2)).map(|e| e.load), Some(load(4)));
    }
}
