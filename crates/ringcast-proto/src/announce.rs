//! Claims 10-11: the supervisor's announced state (map and tables) as
//! rows, its digest, and the changes between two versions of it, so a
//! notification carries what changed and a member can always tell
//! whether it holds the whole (`docs/protocol.md`, "Deltas with repair").
//!
//! The digest is the XOR of a 64-bit hash of every row, so one changed row
//! changes it in O(1) on the supervisor and on every member alike.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::damping;
use crate::ids::{DiskId, Epoch, Incarnation, NodeId, Rank};
use crate::map::{ClusterMap, Member};
use crate::tables::{DiskLink, DiskUsage, Load, NodeTopology, NodeUsage, Tables};

/// Claims 10-11: who announces a state and which state it is: the
/// supervisor's identity, rank, epoch and life (together: its reign), the
/// version of its map, and the version and digest of its whole state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The supervisor (claim 10); it must be the frame's sender.
    pub supervisor: NodeId,
    /// Its rank in the priority list.
    pub supervisor_rank: Rank,
    /// The epoch of its reign (claim 12).
    pub epoch: Epoch,
    /// Its life: with the epoch, it names the reign.
    pub life: Incarnation,
    /// The version of its map (`ClusterMap::version`).
    pub map_version: u64,
    /// The version of its whole state (map and tables): grows with every
    /// announced change within the reign.
    pub version: u64,
    /// The digest of its whole state at that version ([`digest`]).
    pub digest: u64,
}

/// The order of announced states: a later epoch, then a higher-priority
/// supervisor, then a later life, then a later version wins.
pub type Precedence = (Epoch, core::cmp::Reverse<Rank>, Incarnation, u64);

impl Head {
    /// Where this state stands among all announced states.
    pub fn precedence(&self) -> Precedence {
        (
            self.epoch,
            core::cmp::Reverse(self.supervisor_rank),
            self.life,
            self.version,
        )
    }

    /// Whether `other` is of the same reign (so its versions compare).
    pub fn same_reign(&self, other: &Head) -> bool {
        (self.supervisor, self.epoch, self.life) == (other.supervisor, other.epoch, other.life)
    }

    /// The map's fields that are not rows, as this head names them.
    pub fn write_into(&self, map: &mut ClusterMap) {
        map.supervisor = self.supervisor;
        map.supervisor_rank = self.supervisor_rank;
        map.epoch = self.epoch;
        map.version = self.map_version;
    }
}

/// One row of the announced state (claim 11): a member, a row of a table,
/// the ring order or the server list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Row {
    /// A member of the map.
    Member(Member),
    /// The ring order (claim 6).
    Ring(Vec<NodeId>),
    /// The servers the cluster talks to.
    Servers(Vec<SocketAddr>),
    /// A row of the topology table.
    Topology(NodeTopology),
    /// A row of the node usage table.
    Usage(NodeUsage),
    /// A row of the disk usage table.
    Disk(DiskUsage),
}

/// A row borrowed, encoded exactly as [`Row`] (same variants, same order),
/// so hashing a held row needs no copy.
#[derive(Serialize)]
enum RowRef<'a> {
    Member(&'a Member),
    Ring(&'a [NodeId]),
    Servers(&'a [SocketAddr]),
    Topology(&'a NodeTopology),
    Usage(&'a NodeUsage),
    Disk(&'a DiskUsage),
}

/// Which row: what a removal names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RowKey {
    /// The member `id`.
    Member(NodeId),
    /// The topology row of a node.
    Topology(NodeId),
    /// The node usage row of a node.
    Usage(NodeId),
    /// The disk usage row of a disk.
    Disk(DiskId),
}

/// One change of the announced state: a whole row written, or removed.
/// Applying a list of changes is idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The row, as it is now.
    Put(Row),
    /// The row is gone.
    Remove(RowKey),
}

impl Row {
    fn as_ref(&self) -> RowRef<'_> {
        match self {
            Row::Member(m) => RowRef::Member(m),
            Row::Ring(r) => RowRef::Ring(r),
            Row::Servers(s) => RowRef::Servers(s),
            Row::Topology(t) => RowRef::Topology(t),
            Row::Usage(u) => RowRef::Usage(u),
            Row::Disk(d) => RowRef::Disk(d),
        }
    }
}

impl Change {
    /// The row this change is about, for merging changes (a later change
    /// of the same row replaces an earlier one). `None` for the ring and
    /// the server list, which are keyed by their kind alone.
    fn key(&self) -> (u8, Option<RowKey>) {
        match self {
            Change::Put(Row::Ring(_)) => (0, None),
            Change::Put(Row::Servers(_)) => (1, None),
            Change::Put(Row::Member(m)) => (2, Some(RowKey::Member(m.id))),
            Change::Put(Row::Topology(t)) => (2, Some(RowKey::Topology(t.node))),
            Change::Put(Row::Usage(u)) => (2, Some(RowKey::Usage(u.node))),
            Change::Put(Row::Disk(d)) => (2, Some(RowKey::Disk(d.disk))),
            Change::Remove(k) => (2, Some(*k)),
        }
    }
}

fn hash(row: RowRef<'_>) -> u64 {
    let bytes = postcard::to_allocvec(&row).unwrap_or_default();
    let sum = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    u64::from_le_bytes(first)
}

/// The hash of one row, as the digest counts it.
pub fn row_hash(row: &Row) -> u64 {
    hash(row.as_ref())
}

/// Every row of a map and tables, borrowed, in a fixed order.
fn row_refs<'a>(map: &'a ClusterMap, tables: &'a Tables) -> impl Iterator<Item = RowRef<'a>> {
    [RowRef::Ring(&map.ring), RowRef::Servers(&map.servers)]
        .into_iter()
        .chain(map.members.iter().map(RowRef::Member))
        .chain(tables.topology.iter().map(RowRef::Topology))
        .chain(tables.node_usage.iter().map(RowRef::Usage))
        .chain(tables.disk_usage.iter().map(RowRef::Disk))
}

/// Claim 11: the digest of the whole state, computed afresh (O(rows)); the
/// supervisor and the members keep it up to date with [`apply`] instead.
pub fn digest(map: &ClusterMap, tables: &Tables) -> u64 {
    row_refs(map, tables).fold(0, |d, r| d ^ hash(r))
}

/// Every row of the state, in a fixed order (for a pull's answer).
pub fn rows(map: &ClusterMap, tables: &Tables) -> Vec<Row> {
    let mut out = vec![
        Row::Ring(map.ring.clone()),
        Row::Servers(map.servers.clone()),
    ];
    out.extend(map.members.iter().cloned().map(Row::Member));
    out.extend(tables.topology.iter().cloned().map(Row::Topology));
    out.extend(tables.node_usage.iter().cloned().map(Row::Usage));
    out.extend(tables.disk_usage.iter().cloned().map(Row::Disk));
    out
}

/// The rows of sorted `old` and `new` that differ, walked once in step.
/// Claim 4 at O(news): whether the supervisor's row `new` may stay
/// announced as `old`, because all they differ in is load that does not
/// matter to admission ([`damping::matters_to_admission`],
/// [`damping::figure_matters`], [`damping::space_matters`]).
/// The supervisor places by its own exact tables; what it announces of a
/// node's or a disk's load is within a step of the truth, and exact near a
/// limit, so a changing load does not make every notification carry rows.
fn close_enough<T: Damped>(damped: bool, old: &T, new: &T, tables: &Tables) -> bool {
    old == new || (damped && old.close_to(new, tables))
}

/// A row whose load figures are announced with hysteresis.
trait Damped: PartialEq {
    /// Whether `self` (announced) may stand for `new`.
    fn close_to(&self, new: &Self, tables: &Tables) -> bool;
}

impl Damped for Member {
    fn close_to(&self, _: &Self, _: &Tables) -> bool {
        false
    }
}

impl Damped for NodeUsage {
    fn close_to(&self, new: &Self, _: &Tables) -> bool {
        self.node == new.node
            && self.capacity == new.capacity
            && !damping::matters_to_admission(self.load, new.load, new.capacity)
    }
}

impl Damped for NodeTopology {
    fn close_to(&self, new: &Self, tables: &Tables) -> bool {
        let Some(capacity) = tables.usage(new.node).map(|u| u.capacity) else {
            return false;
        };
        let load = |l: &DiskLink| Load {
            streams: l.streams,
            bytes_per_s: l.bytes_per_s,
        };
        self.node == new.node
            && self.disks.len() == new.disks.len()
            && self.disks.iter().zip(&new.disks).all(|(a, b)| {
                a.disk == b.disk
                    && a.status == b.status
                    && !damping::matters_to_admission(load(a), load(b), capacity)
            })
    }
}

impl Damped for DiskUsage {
    fn close_to(&self, new: &Self, _: &Tables) -> bool {
        let figures = |d: &DiskUsage| DiskUsage {
            streams: 0,
            bytes_per_s: 0,
            used_bytes: 0,
            ..d.clone()
        };
        figures(self) == figures(new)
            && !damping::space_matters(
                (self.capacity_bytes, self.used_bytes),
                (new.capacity_bytes, new.used_bytes),
            )
            && !damping::figure_matters(u64::from(self.streams), u64::from(new.streams))
            && !damping::figure_matters(self.bytes_per_s, new.bytes_per_s)
    }
}

fn diff_sorted<T: Damped + Clone, K: Ord + Copy>(
    old: &[T],
    new: &[T],
    key: impl Fn(&T) -> K,
    put: impl Fn(T) -> Row,
    remove: impl Fn(K) -> RowKey,
    (damped, tables): (bool, &Tables),
    out: &mut Vec<Change>,
) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if key(a) == key(b) => {
                if !close_enough(damped, a, b, tables) {
                    out.push(Change::Put(put(b.clone())));
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if key(a) < key(b) => {
                out.push(Change::Remove(remove(key(a))));
                i += 1;
            }
            (Some(a), None) => {
                out.push(Change::Remove(remove(key(a))));
                i += 1;
            }
            (_, Some(b)) => {
                out.push(Change::Put(put(b.clone())));
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// The changes that turn (`old_map`, `old_tables`) into (`map`, `tables`):
/// one pass over both (the supervisor's cost per announced version).
pub fn diff(
    old_map: &ClusterMap,
    old_tables: &Tables,
    map: &ClusterMap,
    tables: &Tables,
) -> Vec<Change> {
    diff_rows(old_map, old_tables, map, tables, false)
}

/// [`diff`] for what the supervisor announces: rows that differ only in
/// load that does not matter yet are left as announced
/// ([`Damped::close_to`]).
pub fn announced_diff(
    old_map: &ClusterMap,
    old_tables: &Tables,
    map: &ClusterMap,
    tables: &Tables,
) -> Vec<Change> {
    diff_rows(old_map, old_tables, map, tables, true)
}

fn diff_rows(
    old_map: &ClusterMap,
    old_tables: &Tables,
    map: &ClusterMap,
    tables: &Tables,
    damped: bool,
) -> Vec<Change> {
    let how = (damped, tables);
    let mut out = Vec::new();
    if old_map.ring != map.ring {
        out.push(Change::Put(Row::Ring(map.ring.clone())));
    }
    if old_map.servers != map.servers {
        out.push(Change::Put(Row::Servers(map.servers.clone())));
    }
    diff_sorted(
        &old_map.members,
        &map.members,
        |m| m.id,
        Row::Member,
        RowKey::Member,
        how,
        &mut out,
    );
    diff_sorted(
        &old_tables.topology,
        &tables.topology,
        |t| t.node,
        Row::Topology,
        RowKey::Topology,
        how,
        &mut out,
    );
    diff_sorted(
        &old_tables.node_usage,
        &tables.node_usage,
        |u| u.node,
        Row::Usage,
        RowKey::Usage,
        how,
        &mut out,
    );
    diff_sorted(
        &old_tables.disk_usage,
        &tables.disk_usage,
        |d| d.disk,
        Row::Disk,
        RowKey::Disk,
        how,
        &mut out,
    );
    out
}

/// Writes `row` into sorted `rows` by key; returns the digest's change.
fn put_sorted<T, K: Ord>(
    rows: &mut Vec<T>,
    key: impl Fn(&T) -> K,
    row: T,
    as_ref: fn(&T) -> RowRef<'_>,
) -> u64 {
    match rows.binary_search_by_key(&key(&row), &key) {
        Ok(i) => {
            let d = hash(as_ref(&rows[i])) ^ hash(as_ref(&row));
            rows[i] = row;
            d
        }
        Err(i) => {
            let d = hash(as_ref(&row));
            rows.insert(i, row);
            d
        }
    }
}

/// Removes the row of `k` from sorted `rows`; returns the digest's change.
fn remove_sorted<T, K: Ord>(
    rows: &mut Vec<T>,
    key: impl Fn(&T) -> K,
    k: K,
    as_ref: fn(&T) -> RowRef<'_>,
) -> u64 {
    match rows.binary_search_by_key(&k, key) {
        Ok(i) => hash(as_ref(&rows.remove(i))),
        Err(_) => 0,
    }
}

/// Applies `changes` in order; returns what to XOR into the digest of the
/// state before them to get the digest after (O(changes · log rows)).
pub fn apply(map: &mut ClusterMap, tables: &mut Tables, changes: &[Change]) -> u64 {
    let mut d = 0;
    for change in changes {
        d ^= match change.clone() {
            Change::Put(Row::Ring(r)) => {
                let x = hash(RowRef::Ring(&map.ring)) ^ hash(RowRef::Ring(&r));
                map.ring = r;
                x
            }
            Change::Put(Row::Servers(s)) => {
                let x = hash(RowRef::Servers(&map.servers)) ^ hash(RowRef::Servers(&s));
                map.servers = s;
                x
            }
            Change::Put(Row::Member(m)) => {
                put_sorted(&mut map.members, |m| m.id, m, |r| RowRef::Member(r))
            }
            Change::Put(Row::Topology(t)) => {
                put_sorted(&mut tables.topology, |t| t.node, t, |r| RowRef::Topology(r))
            }
            Change::Put(Row::Usage(u)) => {
                put_sorted(&mut tables.node_usage, |u| u.node, u, |r| RowRef::Usage(r))
            }
            Change::Put(Row::Disk(u)) => {
                put_sorted(&mut tables.disk_usage, |d| d.disk, u, |r| RowRef::Disk(r))
            }
            Change::Remove(RowKey::Member(id)) => {
                remove_sorted(&mut map.members, |m| m.id, id, |r| RowRef::Member(r))
            }
            Change::Remove(RowKey::Topology(id)) => remove_sorted(
                &mut tables.topology,
                |t| t.node,
                id,
                |r| RowRef::Topology(r),
            ),
            Change::Remove(RowKey::Usage(id)) => {
                remove_sorted(&mut tables.node_usage, |u| u.node, id, |r| RowRef::Usage(r))
            }
            Change::Remove(RowKey::Disk(id)) => {
                remove_sorted(&mut tables.disk_usage, |d| d.disk, id, |r| RowRef::Disk(r))
            }
        };
    }
    d
}

/// Merges `later` into `earlier`: a row changed in both keeps its later
/// change (applying the result equals applying both lists in order).
pub fn merge(earlier: &mut Vec<Change>, later: &[Change]) {
    let mut merged = Merger::default();
    merged.add(earlier);
    merged.add(later);
    *earlier = merged.changes;
}

/// Changes merged list after list, with one index of the rows they touch
/// (so merging the deltas of a notification costs their length, not their
/// length times their number).
#[derive(Default)]
struct Merger {
    changes: Vec<Change>,
    index: BTreeMap<(u8, Option<RowKey>), usize>,
}

impl Merger {
    /// Merges `later` in: a row already changed keeps the later change.
    fn add(&mut self, later: &[Change]) {
        for change in later {
            match self.index.entry(change.key()) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    self.changes[*e.get()] = change.clone();
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(self.changes.len());
                    self.changes.push(change.clone());
                }
            }
        }
    }
}

/// How many periodic notifications repeat one announced change, so a
/// member that missed fewer than this many still completes the state
/// without a pull.
pub const REPEATS: u32 = 3;

/// One announced change of the state and how many more notifications
/// repeat it.
#[derive(Clone, Debug)]
struct Delta {
    base: u64,
    base_digest: u64,
    changes: Vec<Change>,
    left: u32,
}

/// What one notification carries: the changes from state `base` (of
/// digest `base_digest`) to the announced one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The version the changes start from.
    pub base: u64,
    /// The digest of the state at `base`.
    pub base_digest: u64,
    /// The changes.
    pub changes: Vec<Change>,
}

/// Claims 10-11: the state a supervisor last announced, its version and
/// digest, and the changes it still repeats. Each notification is the
/// delta from the oldest change still repeated, so the bus never carries
/// the whole state; a member that cannot complete it pulls the rows of
/// [`Announcer::rows`].
#[derive(Clone, Debug)]
pub struct Announcer {
    map: ClusterMap,
    tables: Tables,
    version: u64,
    digest: u64,
    recent: VecDeque<Delta>,
}

impl Announcer {
    /// Starts from the state a new supervisor held before its reign
    /// (what its members most likely hold too), as version 0.
    pub fn new(map: ClusterMap, tables: Tables) -> Self {
        let digest = digest(&map, &tables);
        Announcer {
            map,
            tables,
            version: 0,
            digest,
            recent: VecDeque::new(),
        }
    }

    /// The announced version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The announced state's digest.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The announced map (its head fields as last updated).
    pub fn map(&self) -> &ClusterMap {
        &self.map
    }

    /// Every row of the announced state, for a pull's answer.
    pub fn rows(&self) -> Vec<Row> {
        rows(&self.map, &self.tables)
    }

    /// Brings the announced state to `map` and `tables`: one pass over
    /// both, a new version when any row differs. Returns whether it did.
    pub fn update(&mut self, map: &ClusterMap, tables: &Tables) -> bool {
        let changes = announced_diff(&self.map, &self.tables, map, tables);
        self.map.supervisor = map.supervisor;
        self.map.supervisor_rank = map.supervisor_rank;
        self.map.epoch = map.epoch;
        self.map.version = map.version;
        if changes.is_empty() {
            return false;
        }
        let (base, base_digest) = (self.version, self.digest);
        self.digest ^= apply(&mut self.map, &mut self.tables, &changes);
        self.version += 1;
        self.recent.push_back(Delta {
            base,
            base_digest,
            changes,
            left: REPEATS,
        });
        true
    }

    /// What the next notification carries: every change still repeated,
    /// merged; if `fits` refuses that, the newest change alone; if it
    /// refuses that too, none (members that do not hold the announced
    /// version then pull it). A `periodic` notification counts one repeat
    /// of each change (prompt ones, sent as changes happen, do not).
    pub fn next(&mut self, fits: impl Fn(&Announcement) -> bool, periodic: bool) -> Announcement {
        let none = Announcement {
            base: self.version,
            base_digest: self.digest,
            changes: Vec::new(),
        };
        let out = match (self.recent.front(), self.recent.back()) {
            (Some(first), Some(last)) => {
                let mut merged = Merger::default();
                for d in &self.recent {
                    merged.add(&d.changes);
                }
                let all = Announcement {
                    base: first.base,
                    base_digest: first.base_digest,
                    changes: merged.changes,
                };
                let newest = Announcement {
                    base: last.base,
                    base_digest: last.base_digest,
                    changes: last.changes.clone(),
                };
                [all, newest].into_iter().find(&fits).unwrap_or(none)
            }
            _ => none,
        };
        if periodic {
            for d in &mut self.recent {
                d.left = d.left.saturating_sub(1);
            }
        }
        while self.recent.front().is_some_and(|d| d.left == 0) {
            self.recent.pop_front();
        }
        out
    }
}

/// Rows cut into parts of at most `budget` encoded bytes each (a row
/// larger than that goes alone), in order.
pub fn cut(rows: Vec<Row>, budget: usize) -> Vec<Vec<Row>> {
    let mut parts: Vec<Vec<Row>> = Vec::new();
    let mut size = 0;
    for row in rows {
        let len = postcard::to_allocvec(&row).map_or(0, |b| b.len());
        match parts.last_mut() {
            Some(part) if size + len <= budget => part.push(row),
            _ => {
                parts.push(vec![row]);
                size = 0;
            }
        }
        size += len;
    }
    parts
}

/// The announced state a member's view is: its life, version and digest as
/// the supervisor named them, and whether the view is that state whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// The supervisor's life.
    pub life: Incarnation,
    /// The state's version.
    pub version: u64,
    /// The view's digest.
    pub digest: u64,
    /// Whether the view is the announced state, complete.
    pub whole: bool,
}

/// The most parts a whole state is sent in; a state part naming more is
/// refused (it would make a member hold that many slots).
pub const MAX_STATE_PARTS: u16 = 4096;

/// Claim 11: the parts of one pulled state, gathered until complete.
#[derive(Clone, Debug)]
pub struct Assembly {
    head: Head,
    parts: Vec<Option<Vec<Row>>>,
    missing: usize,
}

impl Assembly {
    /// Waits for the `parts` parts of the state `head` names.
    pub fn new(head: Head, parts: u16) -> Self {
        let parts = usize::from(parts.min(MAX_STATE_PARTS));
        Assembly {
            head,
            parts: vec![None; parts],
            missing: parts,
        }
    }

    /// The state being gathered.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// How many parts the state is in.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether the state has no parts (never: a state has its ring row).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Takes part `part`; returns every row once no part is missing.
    pub fn add(&mut self, part: u16, rows: Vec<Row>) -> Option<Vec<Row>> {
        let slot = self.parts.get_mut(usize::from(part))?;
        if slot.is_none() {
            self.missing -= 1;
        }
        *slot = Some(rows);
        if self.missing > 0 {
            return None;
        }
        Some(
            self.parts
                .iter_mut()
                .flat_map(|p| p.take().unwrap_or_default())
                .collect(),
        )
    }
}

/// A state built from rows in any order (a pull's parts): the ring, the
/// servers, the members and the tables, each sorted; of two rows with the
/// same key the later wins.
pub fn from_rows(rows: Vec<Row>, map: &mut ClusterMap, tables: &mut Tables) {
    map.ring.clear();
    map.servers.clear();
    map.members.clear();
    *tables = Tables::default();
    let changes: Vec<Change> = rows.into_iter().map(Change::Put).collect();
    apply(map, tables, &changes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Capacity, NodeAddrs};
    use crate::ids::{Epoch, Incarnation, Rank};
    use crate::map::MemberStatus;
    use crate::tables::Load;
    use proptest::prelude::*;

    fn state(ids: &[u32], load: u32) -> (ClusterMap, Tables) {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let map = ClusterMap {
            supervisor: NodeId(1),
            epoch: Epoch(1),
            supervisor_rank: Rank(0),
            version: 1,
            servers: vec![addr],
            members: ids
                .iter()
                .map(|n| Member {
                    id: NodeId(*n),
                    incarnation: Incarnation(u64::from(*n)),
                    addrs: NodeAddrs {
                        ring: addr,
                        http: addr,
                    },
                    status: MemberStatus::Up,
                })
                .collect(),
            ring: ids.iter().map(|n| NodeId(*n)).collect(),
        };
        let tables = Tables {
            node_usage: ids
                .iter()
                .map(|n| NodeUsage {
                    node: NodeId(*n),
                    capacity: Capacity {
                        max_streams: 10,
                        max_bytes_per_s: 1000,
                    },
                    load: Load {
                        streams: load + n,
                        bytes_per_s: 7,
                    },
                })
                .collect(),
            ..Tables::default()
        };
        (map, tables)
    }

    proptest! {
        /// Claim 11: the changes between any two states turn the one into
        /// the other, and the digest kept by XOR equals the digest computed
        /// afresh, so a member that applied them knows it holds the whole.
        #[test]
        fn applying_the_diff_gives_the_new_state_and_its_digest(
            a in proptest::collection::btree_set(1u32..40, 0..20),
            b in proptest::collection::btree_set(1u32..40, 0..20),
            la in 0u32..3,
            lb in 0u32..3,
        ) {
            let a: Vec<u32> = a.into_iter().collect();
            let b: Vec<u32> = b.into_iter().collect();
            let (mut map, mut tables) = state(&a, la);
            let (new_map, new_tables) = state(&b, lb);
            let before = digest(&map, &tables);
            let changes = diff(&map, &tables, &new_map, &new_tables);
            let d = apply(&mut map, &mut tables, &changes);
            prop_assert_eq!(&map.members, &new_map.members);
            prop_assert_eq!(&map.ring, &new_map.ring);
            prop_assert_eq!(&tables, &new_tables);
            prop_assert_eq!(before ^ d, digest(&new_map, &new_tables));
            // Idempotent: the same changes again change nothing.
            prop_assert_eq!(apply(&mut map, &mut tables, &changes), 0);
        }

        /// Changes merged across versions, applied to any state between
        /// the first and the last, give the last (a member that missed
        /// some notifications catches up from the repeats).
        #[test]
        fn merged_changes_bring_any_intermediate_state_to_the_last(
            states in proptest::collection::vec(
                (proptest::collection::btree_set(1u32..12, 0..8), 0u32..2), 2..6),
            from in 0usize..6,
        ) {
            let states: Vec<(ClusterMap, Tables)> = states
                .into_iter()
                .map(|(ids, l)| state(&ids.into_iter().collect::<Vec<_>>(), l))
                .collect();
            let mut merged = Vec::new();
            for w in states.windows(2) {
                merge(&mut merged, &diff(&w[0].0, &w[0].1, &w[1].0, &w[1].1));
            }
            let (mut map, mut tables) = states[from % states.len()].clone();
            apply(&mut map, &mut tables, &merged);
            let last = states.last().unwrap();
            prop_assert_eq!(digest(&map, &tables), digest(&last.0, &last.1));
            prop_assert_eq!(&tables, &last.1);
        }
    }

    #[test]
    fn a_state_rebuilt_from_its_rows_in_any_order_has_the_same_digest() {
        let (map, tables) = state(&[1, 2, 3], 1);
        let mut rows = rows(&map, &tables);
        rows.reverse();
        let (mut m, mut t) = state(&[9], 0);
        from_rows(rows, &mut m, &mut t);
        assert_eq!(digest(&m, &t), digest(&map, &tables));
        assert_eq!(m.members, map.members);
    }

    #[test]
    fn a_load_that_moved_less_than_a_step_stays_announced_until_it_matters() {
        let (map, mut tables) = state(&[1, 2, 3], 400);
        for u in &mut tables.node_usage {
            u.capacity = Capacity {
                max_streams: 1000,
                max_bytes_per_s: 0,
            };
        }
        let mut a = Announcer::new(map.clone(), tables.clone());
        let whole = |a: &Announcer| {
            let (mut m, mut t) = state(&[9], 0);
            from_rows(a.rows(), &mut m, &mut t);
            assert_eq!(
                digest(&m, &t),
                a.digest(),
                "the announced digest is of the announced rows"
            );
            t.node_usage[0].load.streams
        };
        let mut set = |a: &mut Announcer, streams| {
            tables.node_usage[0].load.streams = streams;
            a.update(&map, &tables)
        };
        // Node 1 is at 401 of 1,000 streams; a step is 62.
        assert!(!set(&mut a, 440), "39 streams more wait");
        assert_eq!(whole(&a), 401);
        assert!(!set(&mut a, 380), "and so do 21 fewer");
        assert!(set(&mut a, 463), "62 more than announced is a step");
        assert_eq!(whole(&a), 463);
        assert!(set(&mut a, 940));
        assert!(set(&mut a, 941), "near the limit every stream counts");
        assert_eq!(whole(&a), 941);
        assert!(set(&mut a, 0), "a step down");
        assert!(!set(&mut a, 1), "going busy is not the members' news");
        assert_eq!(whole(&a), 0);
    }
}
