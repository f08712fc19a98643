//! Claims 6-8: the ring of status messages. Each node receives the accumulated
//! status from its upstream neighbour, appends its own entry and passes the
//! accumulation downstream; a node that hears nothing from upstream for
//! `miss_limit` periods declares it failed.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{Incarnation, NodeId};
use crate::map::ClusterMap;
use crate::message::{Declaration, DiskReport, StatusEntry};
use crate::tables::Load;

/// Claims 6-7: what one side of a ring link has told (or been told): the
/// (life, sequence) of every entry, and their digest, the XOR of a hash of
/// each. Both ends of a link keep one; equal digests mean the downstream
/// has heard every entry the upstream told it, so a status need carry only
/// what is new to its receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Told {
    /// The other end of the link.
    peer: Option<NodeId>,
    /// What was told of each node.
    entries: BTreeMap<NodeId, (Incarnation, u64)>,
    digest: u64,
}

/// A well-mixed 64-bit hash of one told entry (splitmix64's finaliser, on
/// fields that arrive authenticated: this detects loss, not forgery).
fn entry_hash(node: NodeId, incarnation: Incarnation, seq: u64) -> u64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    mix(mix(mix(u64::from(node.0)) ^ incarnation.0) ^ seq)
}

impl Told {
    /// Starts afresh with `peer`.
    fn reset(&mut self, peer: NodeId) {
        *self = Told {
            peer: Some(peer),
            ..Told::default()
        };
    }

    /// Records that `entry` was told; returns whether it was new to the peer.
    fn record(&mut self, entry: &StatusEntry) -> bool {
        let now = (entry.incarnation, entry.seq);
        let old = self.entries.insert(entry.node, now);
        if old == Some(now) {
            return false;
        }
        if let Some((inc, seq)) = old {
            self.digest ^= entry_hash(entry.node, inc, seq);
        }
        self.digest ^= entry_hash(entry.node, now.0, now.1);
        true
    }

    /// The digest, as a status carries it.
    pub fn digest(&self) -> [u8; 8] {
        self.digest.to_le_bytes()
    }
}

/// The most entries of unlisted lives kept (one per node id; a cluster
/// file names at most this many nodes).
const MAX_UNLISTED: usize = 4096;

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
    /// What this node told its downstream.
    told: Told,
    /// Entries changed since the last status sent downstream.
    dirty: BTreeSet<NodeId>,
    /// What this node's upstream told it.
    heard: Told,
    /// The latest entry of each life the map does not list (yet): told and
    /// heard, so never told again, it is merged once the map lists it.
    unlisted: BTreeMap<NodeId, StatusEntry>,
    /// Entries merged because the map now lists them, for the supervisor to read.
    relisted: Vec<NodeId>,
    /// The map last followed: its supervisor, epoch, version and the
    /// supervisor's life. A supervisor bumps the version with every change,
    /// so the same key is the same map, and following it again would find
    /// nothing to do (it did, on every notification: a fifth of a large
    /// simulation's time).
    followed: Option<(NodeId, crate::ids::Epoch, u64, Incarnation)>,
}

/// What a status is, to the ring state of its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hearing {
    /// Its digest is what this node heard from the sender: nothing was missed.
    Whole,
    /// Something the sender told was missed (a status lost or reordered,
    /// the sender new or restarted): ask it to tell everything again.
    Missed,
}

/// A status as the ring would send it downstream (see [`Ring::emit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The entries new to the downstream.
    pub entries: Vec<StatusEntry>,
    /// Whether the downstream must forget what it was told before.
    pub reset: bool,
    /// The digest of everything told to the downstream.
    pub told: [u8; 8],
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
        let key = (
            map.supervisor,
            map.epoch,
            map.version,
            map.supervisor_incarnation(),
        );
        if self.followed == Some(key) {
            return false;
        }
        self.followed = Some(key);
        let (up, down) = match map.neighbours(me) {
            Some((u, d)) => {
                let inc = map.member(u).map(|m| m.incarnation).unwrap_or_default();
                (Some((u, inc)), Some(d))
            }
            None => (None, None),
        };
        let changed = up != self.upstream;
        self.upstream = up;
        if down != self.downstream {
            // A new downstream knows nothing this node told: tell it all.
            self.told = Told::default();
        }
        self.downstream = down;
        // Entries of lives the map no longer lists up are kept aside, not
        // forgotten: they were told, so they would never be told again, and
        // a map that lists the life again (a split healing, a map that was
        // behind) needs them back.
        let unlisted: Vec<NodeId> = self
            .accumulated
            .iter()
            .filter(|(id, entry)| {
                **id != me
                    && !map.member(**id).is_some_and(|m| {
                        m.status == crate::map::MemberStatus::Up
                            && m.incarnation == entry.incarnation
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in unlisted {
            if let Some(entry) = self.accumulated.remove(&id) {
                let newer = self
                    .unlisted
                    .get(&id)
                    .is_none_or(|old| (old.incarnation, old.seq) < (entry.incarnation, entry.seq));
                let room = self.unlisted.len() < MAX_UNLISTED || self.unlisted.contains_key(&id);
                if newer && room {
                    self.unlisted.insert(id, entry);
                }
            }
        }
        self.accumulated.retain(|id, entry| {
            map.member(*id).is_some_and(|m| {
                m.status == crate::map::MemberStatus::Up && m.incarnation == entry.incarnation
            })
        });
        let listed = |e: &StatusEntry| {
            map.member(e.node).is_some_and(|m| {
                m.status == crate::map::MemberStatus::Up && m.incarnation == e.incarnation
            })
        };
        let now_listed: Vec<StatusEntry> = self
            .unlisted
            .values()
            .filter(|e| listed(e) && e.node != me)
            .cloned()
            .collect();
        for entry in now_listed {
            self.unlisted.remove(&entry.node);
            let newer = self
                .accumulated
                .get(&entry.node)
                .is_none_or(|old| old.seq < entry.seq || old.incarnation != entry.incarnation);
            if newer {
                self.relisted.push(entry.node);
                self.dirty.insert(entry.node);
                self.accumulated.insert(entry.node, entry);
            }
        }
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

    /// Claims 6-7: checks a status from `from` against what it told this
    /// node before: records its entries as heard (after a reset, afresh)
    /// and compares the digests. Only a status from the upstream is ever
    /// missed: another sender (one whose map is ahead or behind) is heard
    /// but not checked.
    pub fn hear(&mut self, from: NodeId, status: &crate::message::Status) -> Hearing {
        if status.reset {
            self.heard.reset(from);
        }
        let telling = self.heard.peer == Some(from);
        if telling {
            for entry in &status.entries {
                self.heard.record(entry);
            }
        }
        let upstream = self.upstream.map(|(n, _)| n) == Some(from);
        if upstream && (!telling || self.heard.digest() != status.told) {
            Hearing::Missed
        } else {
            Hearing::Whole
        }
    }

    /// Claims 6-7: the downstream asked to be told everything again.
    pub fn resend_to(&mut self, node: NodeId) {
        if self.downstream == Some(node) {
            self.told = Told::default();
        }
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
                let newer = self
                    .unlisted
                    .get(&entry.node)
                    .is_none_or(|old| (old.incarnation, old.seq) < (entry.incarnation, entry.seq));
                let room =
                    self.unlisted.len() < MAX_UNLISTED || self.unlisted.contains_key(&entry.node);
                if newer && room {
                    self.unlisted.insert(entry.node, entry);
                }
                continue;
            }
            match self.accumulated.get(&entry.node) {
                Some(old) if old.seq >= entry.seq => {}
                Some(old) => {
                    merged.news |= entry.has_news_over(old);
                    merged.changed.push(entry.node);
                    self.dirty.insert(entry.node);
                    self.accumulated.insert(entry.node, entry);
                }
                None => {
                    merged.news |=
                        !entry.declarations.is_empty() || entry.disks.iter().any(|d| !d.ok);
                    merged.changed.push(entry.node);
                    self.dirty.insert(entry.node);
                    self.accumulated.insert(entry.node, entry);
                }
            }
        }
        merged
    }

    /// Claim 6: appends this node's own entry and returns the status to
    /// send downstream, with whether the own entry changed. The entry's
    /// sequence number grows only when what it says changed, so the other
    /// nodes (and the supervisor above all) re-read an entry only when there
    /// is something new in it; and the status carries only the entries the
    /// downstream was not told yet (all of them after a reset), with the
    /// digest of everything told. The entries are cut into statuses of
    /// about `budget` encoded bytes (a reset of a large ring is several),
    /// each with the digest of what was told up to its last entry, so a
    /// downstream that hears them in order finds every digest its own.
    pub fn emit(
        &mut self,
        me: NodeId,
        incarnation: Incarnation,
        load: Load,
        disks: Vec<DiskReport>,
        budget: usize,
    ) -> (Vec<Outgoing>, bool) {
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
            self.dirty.insert(me);
        }
        let reset = match self.downstream {
            Some(down) if self.told.peer != Some(down) => {
                self.told.reset(down);
                true
            }
            _ => false,
        };
        let dirty = std::mem::take(&mut self.dirty);
        let entries: Vec<StatusEntry> = if reset {
            self.accumulated.values().cloned().collect()
        } else {
            dirty
                .iter()
                .filter_map(|n| self.accumulated.get(n))
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        let (mut part, mut size) = (Vec::new(), 0);
        for entry in entries {
            let before = self.told.digest();
            if !self.told.record(&entry) {
                continue;
            }
            let len = postcard::to_allocvec(&entry).map_or(0, |b| b.len());
            if !part.is_empty() && size + len > budget {
                out.push(Outgoing {
                    entries: std::mem::take(&mut part),
                    reset: reset && out.is_empty(),
                    told: before,
                });
                size = 0;
            }
            size += len;
            part.push(entry);
        }
        out.push(Outgoing {
            entries: part,
            reset: reset && out.is_empty(),
            told: self.told.digest(),
        });
        (out, !same)
    }

    /// The nodes whose entry was merged because the map now lists their life
    /// (see `unlisted`), since this was last asked.
    pub fn take_relisted(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.relisted)
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
        let (mut sent, changed) = two.emit(NodeId(2), Incarnation(1), load(3), vec![], 1200);
        assert!(changed, "the first entry is news");
        assert_eq!(
            one.merge(sent.remove(0).entries, &m, NodeId(1)).changed,
            vec![NodeId(2)]
        );
        let (mut sent, changed) = two.emit(NodeId(2), Incarnation(1), load(3), vec![], 1200);
        assert!(!changed, "the same load is no news");
        let sent = sent.remove(0);
        assert!(sent.entries.is_empty(), "nor is it told again");
        assert!(one.merge(sent.entries, &m, NodeId(1)).changed.is_empty());
        let (mut sent, changed) = two.emit(NodeId(2), Incarnation(1), load(4), vec![], 1200);
        assert!(changed);
        assert_eq!(
            one.merge(sent.remove(0).entries, &m, NodeId(1)).changed,
            vec![NodeId(2)]
        );
        assert_eq!(one.entry(NodeId(2)).map(|e| e.load), Some(load(4)));
    }

    #[test]
    fn a_reset_cut_into_statuses_is_heard_whole_in_order() {
        // Claims 6-7 at scale: a reset of a large ring is several statuses,
        // each checked against the digest of what was told up to it.
        let ids: Vec<u32> = (1..=60).collect();
        let m = map(&ids);
        let (mut two, mut one) = (Ring::default(), Ring::default());
        two.follow(&m, NodeId(2));
        one.follow(&m, NodeId(3));
        for n in 4..=60 {
            let mut other = Ring::default();
            other.follow(&m, NodeId(n));
            let (sent, _) = other.emit(NodeId(n), Incarnation(1), load(n), vec![], 1200);
            for s in sent {
                two.merge(s.entries, &m, NodeId(2));
            }
        }
        let (sent, _) = two.emit(NodeId(2), Incarnation(1), load(2), vec![], 60);
        assert!(sent.len() > 3, "{} statuses", sent.len());
        assert!(sent[0].reset && sent[1..].iter().all(|s| !s.reset));
        let mut entries = 0;
        for s in sent {
            entries += s.entries.len();
            let status = crate::message::Status {
                epoch: m.epoch,
                entries: s.entries.clone(),
                reset: s.reset,
                told: s.told,
            };
            assert_eq!(one.hear(NodeId(2), &status), Hearing::Whole);
            one.merge(s.entries, &m, NodeId(3));
        }
        assert_eq!(entries, 58, "every entry but the receiver's own, once");
    }
}
