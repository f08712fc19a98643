//! DESIGN 6 and claim 13: where a stream is served. The supervisor picks a
//! node that reaches a healthy disk holding the title, has spare capacity,
//! and is least loaded relative to its capacity; placements in flight count
//! as load until the node's own reports catch up, so a burst cannot overfill
//! a node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::Timing;
use crate::damping::{lap, load_refresh};
use crate::ids::{DiskId, NodeId};
use crate::map::ClusterMap;
use crate::tables::Tables;

/// The shortest a placement counts as load, on a small ring.
pub const RESERVATION_MIN: Duration = Duration::from_secs(3);

/// How long a placement counts as load on a ring of `ring_len` nodes
/// before the node's reports take over: longer than the longest a report
/// of the stream waits (a refresh, [`load_refresh`]) and then travels to
/// the supervisor (a lap), with a second to spare; at least
/// [`RESERVATION_MIN`].
pub fn reservation(timing: &Timing, ring_len: usize) -> Duration {
    (load_refresh(timing, ring_len) + lap(timing, ring_len) + Duration::from_secs(1))
        .max(RESERVATION_MIN)
}

/// Why no node can take a stream.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlaceError {
    /// No disk holds the title.
    #[error("no disk holds this title")]
    UnknownTitle,
    /// The disks holding it are failed or unreachable from every live node.
    #[error("no live node reaches a working disk holding this title")]
    NoHealthyReplica,
    /// Every node that could serve it is full (admission control: 503).
    #[error("every node that could serve this title is at capacity")]
    NoCapacity,
}

/// A placement decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The node to serve from.
    pub node: NodeId,
    /// The disk to read.
    pub disk: DiskId,
}

/// Placements in flight, per node, each counted until it expires.
#[derive(Clone, Debug, Default)]
pub struct Reservations {
    by_node: BTreeMap<NodeId, Vec<Instant>>,
}

impl Reservations {
    /// Counts one more stream on `node` until `until`.
    pub fn reserve(&mut self, node: NodeId, until: Instant) {
        self.by_node.entry(node).or_default().push(until);
    }

    /// Streams in flight on `node` at `now`.
    pub fn count(&mut self, node: NodeId, now: Instant) -> u32 {
        let Some(list) = self.by_node.get_mut(&node) else {
            return 0;
        };
        list.retain(|until| *until > now);
        list.len() as u32
    }

    /// Gives back one reservation on `node` made to last until `until` (a
    /// stream's, when it moves or reserves anew); none if it already expired.
    pub fn release(&mut self, node: NodeId, until: Instant) {
        if let Some(list) = self.by_node.get_mut(&node) {
            if let Some(i) = list.iter().position(|u| *u == until) {
                list.swap_remove(i);
            }
        }
    }

    /// Forgets the reservations of a node that failed or left.
    pub fn forget(&mut self, node: NodeId) {
        self.by_node.remove(&node);
    }
}

/// Chooses where to serve a title held on `replicas`. `sticky` is the node
/// already serving this stream: kept while it can still serve it, so a
/// player's next request does not move without need.
pub fn choose(
    map: &ClusterMap,
    tables: &Tables,
    replicas: &[DiskId],
    reservations: &mut Reservations,
    sticky: Option<NodeId>,
    now: Instant,
) -> Result<Placement, PlaceError> {
    if replicas.is_empty() {
        return Err(PlaceError::UnknownTitle);
    }
    let mut reachable = false;
    let mut best: Option<(u64, NodeId, DiskId)> = None;
    for node in map.ring.iter().copied() {
        let Some(disk) = replicas
            .iter()
            .copied()
            .find(|d| tables.serves_from(node, *d))
        else {
            continue;
        };
        reachable = true;
        let Some(usage) = tables.usage(node) else {
            continue;
        };
        let streams = usage.load.streams + reservations.count(node, now);
        let cap = usage.capacity.max_streams;
        let bytes_full = usage.capacity.max_bytes_per_s > 0
            && usage.load.bytes_per_s >= usage.capacity.max_bytes_per_s;
        if streams >= cap || bytes_full {
            continue;
        }
        if sticky == Some(node) {
            return Ok(Placement { node, disk });
        }
        // Load relative to capacity, then the node id: deterministic.
        let ratio = load_ratio(streams, cap);
        if best.is_none_or(|(r, n, _)| (ratio, node) < (r, n)) {
            best = Some((ratio, node, disk));
        }
    }
    match best {
        Some((_, node, disk)) => Ok(Placement { node, disk }),
        None if reachable => Err(PlaceError::NoCapacity),
        None => Err(PlaceError::NoHealthyReplica),
    }
}

/// Streams relative to a capacity of `cap` streams, in millionths.
fn load_ratio(streams: u32, cap: u32) -> u64 {
    u64::from(streams) * 1_000_000 / u64::from(cap.max(1))
}

/// Claim 5: the order in which a parent's supervisor asks its sub-clusters
/// (members of `map`'s ring, rows of `tables` summed over each sub-cluster)
/// to place a stream: the stream's previous sub-cluster first, then the
/// least loaded relative to capacity; full ones are left out. Which of them
/// holds the title only the sub-cluster knows, so the caller asks in turn.
pub fn rank_subclusters(map: &ClusterMap, tables: &Tables, sticky: Option<NodeId>) -> Vec<NodeId> {
    let mut candidates: Vec<(bool, u64, NodeId)> = map
        .ring
        .iter()
        .filter_map(|n| {
            let usage = tables.usage(*n)?;
            let cap = usage.capacity.max_streams;
            (usage.load.streams < cap)
                .then(|| (sticky != Some(*n), load_ratio(usage.load.streams, cap), *n))
        })
        .collect();
    candidates.sort();
    candidates.into_iter().map(|(_, _, n)| n).collect()
}

/// One stream the supervisor placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The disks holding its title.
    pub replicas: Vec<DiskId>,
    /// Where it is served now.
    pub placement: Placement,
    /// When a request of it was last placed.
    pub last_seen: Instant,
    /// Until when the capacity the book reserved for it on its node counts
    /// (see [`StreamBook::place`]).
    pub reserved_until: Option<Instant>,
}

/// Claim 13: the supervisor's book of streams, so that when a node or disk
/// fails every stream of it is reassigned at once, with capacity reserved on
/// the new node, and the stream's next request goes there. It is soft state:
/// a new supervisor starts with an empty book and places each stream afresh
/// on its next request, which is still correct (the player resumes by range).
#[derive(Clone, Debug)]
pub struct StreamBook {
    streams: BTreeMap<u64, StreamEntry>,
    /// Reservations of capacity in flight.
    pub reservations: Reservations,
    /// The cluster's timing, which the reservations' length derives from.
    timing: Timing,
}

impl Default for StreamBook {
    /// A book for a cluster on [`Timing::lan`].
    fn default() -> Self {
        StreamBook::new(Timing::lan())
    }
}

/// Streams not heard of for this long are dropped from the book.
pub const STREAM_IDLE: Duration = Duration::from_secs(120);

impl StreamBook {
    /// An empty book for a cluster running `timing`.
    pub fn new(timing: Timing) -> Self {
        StreamBook {
            streams: BTreeMap::new(),
            reservations: Reservations::default(),
            timing,
        }
    }

    /// How long a placement made now on `map`'s ring counts as load
    /// ([`reservation`]).
    pub fn hold(&self, map: &ClusterMap) -> Duration {
        reservation(&self.timing, map.ring.len())
    }

    /// Places a request of stream `id` (sticky to its current node while
    /// that node can serve it) and records it.
    ///
    /// Every answer reserves capacity for [`StreamBook::hold`] on the node it
    /// names, one reservation per stream (a stream's next answer replaces
    /// it): a request with a known stream id may be its player's next HLS
    /// segment, but also its resumption after a broken connection, and the
    /// node's own reports count the stream only once its player is there.
    /// A stream that still holds its reservation stays on its node while
    /// the node can serve it, full or not: the capacity is its own.
    pub fn place(
        &mut self,
        id: u64,
        replicas: Vec<DiskId>,
        map: &ClusterMap,
        tables: &Tables,
        now: Instant,
    ) -> Result<Placement, PlaceError> {
        let entry = self.streams.get(&id);
        let sticky = entry.map(|e| e.placement.node);
        let held = entry.and_then(|e| Some((e.placement, e.reserved_until.filter(|u| *u > now)?)));
        let placement = match held {
            Some((p, _)) if map.is_up(p.node) && tables.serves_from(p.node, p.disk) => p,
            _ => choose(map, tables, &replicas, &mut self.reservations, sticky, now)?,
        };
        if let Some((p, until)) = held {
            self.reservations.release(p.node, until);
        }
        let until = now + self.hold(map);
        self.reservations.reserve(placement.node, until);
        self.streams.insert(
            id,
            StreamEntry {
                replicas,
                placement,
                last_seen: now,
                reserved_until: Some(until),
            },
        );
        self.streams
            .retain(|_, e| now.saturating_duration_since(e.last_seen) < STREAM_IDLE);
        Ok(placement)
    }

    /// Claim 13: moves every stream that can no longer be served where it is
    /// (its node is gone, or its disk or path failed) to a node that can,
    /// reserving capacity there. Returns (stream, new placement) for each
    /// stream moved; a stream with nowhere to go stays listed and is placed
    /// again on its next request.
    pub fn reassign(
        &mut self,
        map: &ClusterMap,
        tables: &Tables,
        now: Instant,
    ) -> Vec<(u64, Placement)> {
        let mut moved = Vec::new();
        let until = now + self.hold(map);
        for (id, entry) in &mut self.streams {
            let p = entry.placement;
            if map.is_up(p.node) && tables.serves_from(p.node, p.disk) {
                continue;
            }
            // The stream's player is not served where it was: a node that
            // lost a disk or a path gives its reservation back (and keeps
            // those of its other streams). One marked failed keeps all of
            // its reservations until they expire: it may refute it and come
            // back still serving them.
            if map.is_up(p.node) {
                if let Some(until) = entry.reserved_until.take() {
                    self.reservations.release(p.node, until);
                }
            }
            if let Ok(new) = choose(
                map,
                tables,
                &entry.replicas,
                &mut self.reservations,
                None,
                now,
            ) {
                self.reservations.reserve(new.node, until);
                entry.placement = new;
                entry.reserved_until = Some(until);
                moved.push((*id, new));
            }
        }
        moved
    }

    /// Where stream `id` is served now, if the book knows it.
    pub fn get(&self, id: u64) -> Option<&StreamEntry> {
        self.streams.get(&id)
    }

    /// Streams in the book.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Capacity, NodeAddrs};
    use crate::ids::{Epoch, Incarnation, Rank};
    use crate::map::{Member, MemberStatus};
    use crate::message::DiskReport;
    use crate::tables::Load;

    fn cluster(nodes: &[(u32, &[u32], u32)]) -> (ClusterMap, Tables) {
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut tables = Tables::default();
        let mut members = Vec::new();
        for (id, disks, cap) in nodes {
            let disks: Vec<DiskId> = disks.iter().map(|d| DiskId(*d)).collect();
            tables.record_join(
                NodeId(*id),
                Capacity {
                    max_streams: *cap,
                    max_bytes_per_s: 0,
                },
                &disks,
            );
            members.push(Member {
                id: NodeId(*id),
                incarnation: Incarnation(1),
                addrs: NodeAddrs {
                    ring: addr,
                    http: addr,
                },
                status: MemberStatus::Up,
            });
        }
        let map = ClusterMap {
            supervisor: NodeId(nodes[0].0),
            epoch: Epoch(1),
            supervisor_rank: Rank(0),
            version: 1,
            servers: vec![],
            ring: members.iter().map(|m| m.id).collect(),
            members,
        };
        (map, tables)
    }

    #[test]
    fn subclusters_are_asked_previous_first_then_least_loaded_and_never_full() {
        // Claim 5: seats 10, 20, 30, 40 with summed capacities.
        let (map, mut tables) = cluster(&[
            (10, &[], 300),
            (20, &[], 300),
            (30, &[], 100),
            (40, &[], 100),
        ]);
        let load = |streams| Load {
            streams,
            bytes_per_s: 0,
        };
        tables.record_load(NodeId(10), load(150));
        tables.record_load(NodeId(20), load(30));
        tables.record_load(NodeId(30), load(100));
        tables.record_load(NodeId(40), load(20));
        let ids = |v: Vec<NodeId>| v.into_iter().map(|n| n.0).collect::<Vec<_>>();
        assert_eq!(ids(rank_subclusters(&map, &tables, None)), vec![20, 40, 10]);
        assert_eq!(
            ids(rank_subclusters(&map, &tables, Some(NodeId(10)))),
            vec![10, 20, 40]
        );
        // A full previous sub-cluster is not asked.
        assert_eq!(
            ids(rank_subclusters(&map, &tables, Some(NodeId(30)))),
            vec![20, 40, 10]
        );
    }

    #[test]
    fn the_least_loaded_node_relative_to_capacity_is_chosen() {
        let (map, mut tables) = cluster(&[(1, &[1], 10), (2, &[1], 100)]);
        tables.record_load(
            NodeId(1),
            Load {
                streams: 2,
                bytes_per_s: 0,
            },
        );
        tables.record_load(
            NodeId(2),
            Load {
                streams: 10,
                bytes_per_s: 0,
            },
        );
        let now = Instant::now();
        let p = choose(
            &map,
            &tables,
            &[DiskId(1)],
            &mut Reservations::default(),
            None,
            now,
        )
        .unwrap();
        assert_eq!(
            p,
            Placement {
                node: NodeId(2),
                disk: DiskId(1)
            }
        );
    }

    #[test]
    fn placements_in_flight_fill_a_node_before_its_reports_do() {
        let (map, tables) = cluster(&[(1, &[1], 2)]);
        let now = Instant::now();
        let mut r = Reservations::default();
        for _ in 0..2 {
            let p = choose(&map, &tables, &[DiskId(1)], &mut r, None, now).unwrap();
            r.reserve(p.node, now + RESERVATION_MIN);
        }
        assert_eq!(
            choose(&map, &tables, &[DiskId(1)], &mut r, None, now),
            Err(PlaceError::NoCapacity)
        );
        let later = now + RESERVATION_MIN + Duration::from_millis(1);
        assert!(choose(&map, &tables, &[DiskId(1)], &mut r, None, later).is_ok());
    }

    #[test]
    fn a_failed_disk_or_broken_path_is_never_chosen() {
        let (map, mut tables) = cluster(&[(1, &[1, 2], 10), (2, &[1], 10)]);
        let broken = |disk| DiskReport {
            disk: DiskId(disk),
            ok: false,
            capacity_bytes: 0,
            used_bytes: 0,
            catalog: 0,
            streams: 0,
            bytes_per_s: 0,
        };
        tables.record_disk_report(NodeId(2), &broken(1));
        tables.evaluate_disks(2);
        let now = Instant::now();
        let mut r = Reservations::default();
        let p = choose(&map, &tables, &[DiskId(1)], &mut r, None, now).unwrap();
        assert_eq!(p.node, NodeId(1), "n2's path to d1 is broken");
        tables.record_disk_report(NodeId(1), &broken(1));
        tables.evaluate_disks(2);
        assert_eq!(
            choose(&map, &tables, &[DiskId(1)], &mut r, None, now),
            Err(PlaceError::NoHealthyReplica)
        );
        let p = choose(&map, &tables, &[DiskId(1), DiskId(2)], &mut r, None, now).unwrap();
        assert_eq!(
            p,
            Placement {
                node: NodeId(1),
                disk: DiskId(2)
            },
            "the replica on d2"
        );
        assert_eq!(
            choose(&map, &tables, &[], &mut r, None, now),
            Err(PlaceError::UnknownTitle)
        );
    }

    #[test]
    fn every_stream_of_a_failed_node_is_reassigned_at_once_within_capacity() {
        let (mut map, mut tables) = cluster(&[(1, &[1], 10), (2, &[1], 10), (3, &[1], 3)]);
        let now = Instant::now();
        let mut book = StreamBook::default();
        // Fill n1 up: make it the least loaded by loading the others.
        tables.record_load(
            NodeId(2),
            Load {
                streams: 8,
                bytes_per_s: 0,
            },
        );
        tables.record_load(
            NodeId(3),
            Load {
                streams: 1,
                bytes_per_s: 0,
            },
        );
        for id in 0..4 {
            let p = book.place(id, vec![DiskId(1)], &map, &tables, now).unwrap();
            assert_eq!(p.node, NodeId(1));
        }
        map.member_mut(NodeId(1)).unwrap().status = MemberStatus::Failed;
        map.reform_ring(&[NodeId(1), NodeId(2), NodeId(3)]);
        tables.forget_node(NodeId(1));
        let moved = book.reassign(&map, &tables, now);
        assert_eq!(moved.len(), 4, "every stream of n1 moved");
        let on = |n| moved.iter().filter(|(_, p)| p.node == NodeId(n)).count();
        // n3 had room for 2 (capacity 3, load 1), n2 for 2 (capacity 10, load 8).
        assert_eq!((on(2), on(3)), (2, 2), "{moved:?}");
        for (id, p) in &moved {
            assert_eq!(book.get(*id).unwrap().placement, *p);
        }
        assert_eq!(book.len(), 4);
        // A fifth stream finds nobody with room: admission control.
        assert_eq!(
            book.place(9, vec![DiskId(1)], &map, &tables, now),
            Err(PlaceError::NoCapacity)
        );
    }

    #[test]
    fn a_stream_stays_on_its_node_while_that_node_can_serve_it() {
        let (map, mut tables) = cluster(&[(1, &[1], 10), (2, &[1], 10)]);
        tables.record_load(
            NodeId(2),
            Load {
                streams: 5,
                bytes_per_s: 0,
            },
        );
        let now = Instant::now();
        let mut r = Reservations::default();
        let p = choose(&map, &tables, &[DiskId(1)], &mut r, Some(NodeId(2)), now).unwrap();
        assert_eq!(p.node, NodeId(2));
        tables.forget_node(NodeId(2));
        let p = choose(&map, &tables, &[DiskId(1)], &mut r, Some(NodeId(2)), now).unwrap();
        assert_eq!(p.node, NodeId(1), "moved once its node is gone");
    }

    fn load(streams: u32) -> Load {
        Load {
            streams,
            bytes_per_s: 0,
        }
    }

    #[test]
    fn a_moved_stream_takes_the_capacity_reserved_for_it() {
        // Found by the simulator's stream campaign: the stream's own
        // reservation on its new node counted against it, so its player
        // was refused until the reservation ran out.
        let (mut map, mut tables) = cluster(&[(1, &[1], 10), (2, &[1], 1)]);
        tables.record_load(NodeId(2), load(0));
        let now = Instant::now();
        let mut book = StreamBook::default();
        let p = book.place(7, vec![DiskId(1)], &map, &tables, now).unwrap();
        assert_eq!(p.node, NodeId(1));
        map.member_mut(NodeId(1)).unwrap().status = MemberStatus::Failed;
        map.reform_ring(&[NodeId(1), NodeId(2)]);
        tables.forget_node(NodeId(1));
        let moved = book.reassign(&map, &tables, now);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].1.node, NodeId(2), "n2 has room for exactly one");
        let later = now + Duration::from_millis(200);
        let p = book
            .place(7, vec![DiskId(1)], &map, &tables, later)
            .unwrap();
        assert_eq!(
            p.node,
            NodeId(2),
            "the player is sent where room was kept for it"
        );
        assert_eq!(
            book.place(8, vec![DiskId(1)], &map, &tables, later),
            Err(PlaceError::NoCapacity)
        );
    }

    #[test]
    fn a_stream_asking_again_after_its_reservation_ran_out_is_counted_again() {
        // Found by the simulator's stream campaign: a player that lost its
        // connection without the supervisor hearing of a failure (a short
        // disk hang) asked again, stayed on its node without a reservation
        // and was counted nowhere until the node's next report, so two more
        // placements in between filled the node past its capacity.
        let (map, tables) = cluster(&[(1, &[1], 2)]);
        let now = Instant::now();
        let mut book = StreamBook::default();
        book.place(1, vec![DiskId(1)], &map, &tables, now).unwrap();
        // Its player never got there: n1 reports no stream.
        let later = now + book.hold(&map) + Duration::from_secs(1);
        let p = book
            .place(1, vec![DiskId(1)], &map, &tables, later)
            .unwrap();
        assert_eq!(p.node, NodeId(1));
        assert!(book.place(2, vec![DiskId(1)], &map, &tables, later).is_ok());
        assert_eq!(
            book.place(3, vec![DiskId(1)], &map, &tables, later),
            Err(PlaceError::NoCapacity),
            "stream 1 counts on n1 again"
        );
    }

    #[test]
    fn a_stream_holding_its_reservation_stays_on_its_full_node() {
        // A player's next request (an HLS segment) within the reservation
        // of its last answer keeps its node even when the node is full.
        let (map, tables) = cluster(&[(1, &[1], 1), (2, &[1], 10)]);
        let now = Instant::now();
        let mut book = StreamBook::default();
        assert_eq!(
            book.place(1, vec![DiskId(1)], &map, &tables, now)
                .unwrap()
                .node,
            NodeId(1)
        );
        let soon = now + Duration::from_secs(2);
        assert_eq!(
            book.place(1, vec![DiskId(1)], &map, &tables, soon)
                .unwrap()
                .node,
            NodeId(1)
        );
        // One reservation per stream: n1 is full, not over-full.
        assert_eq!(book.reservations.count(NodeId(1), soon), 1);
    }

    #[test]
    fn a_failed_path_keeps_the_reservations_of_the_nodes_other_streams() {
        // Found by reading while adding the simulator's stream checks:
        // moving the streams of one broken path forgot every reservation of
        // the node, whose other streams were still on their way to it.
        let (map, mut tables) = cluster(&[(1, &[1, 2], 3), (2, &[1], 10)]);
        tables.record_load(NodeId(2), load(9));
        let now = Instant::now();
        let mut book = StreamBook::default();
        for (id, disk) in [(1, 1), (2, 2), (3, 2)] {
            let p = book
                .place(id, vec![DiskId(disk)], &map, &tables, now)
                .unwrap();
            assert_eq!(p.node, NodeId(1));
        }
        tables.record_disk_report(
            NodeId(1),
            &DiskReport {
                disk: DiskId(1),
                ok: false,
                capacity_bytes: 0,
                used_bytes: 0,
                catalog: 0,
                streams: 0,
                bytes_per_s: 0,
            },
        );
        tables.evaluate_disks(2);
        let moved = book.reassign(&map, &tables, now);
        assert_eq!(
            moved,
            vec![(
                1,
                Placement {
                    node: NodeId(2),
                    disk: DiskId(1)
                }
            )]
        );
        // Streams 2 and 3 still count on n1: at most one more fits.
        let fits = (4..8)
            .filter(|id| book.place(*id, vec![DiskId(2)], &map, &tables, now).is_ok())
            .count();
        assert!(fits <= 1, "{fits} more streams placed on n1");
    }

    #[test]
    fn the_streams_of_a_broken_path_give_their_reservation_back() {
        // Their players are not served there, and with nowhere else to go
        // they must not keep the node full until the reservations expire.
        let (map, mut tables) = cluster(&[(1, &[1, 2], 2)]);
        let now = Instant::now();
        let mut book = StreamBook::default();
        for id in [1, 2] {
            book.place(id, vec![DiskId(1)], &map, &tables, now).unwrap();
        }
        assert_eq!(
            book.place(3, vec![DiskId(2)], &map, &tables, now),
            Err(PlaceError::NoCapacity)
        );
        tables.record_disk_report(
            NodeId(1),
            &DiskReport {
                disk: DiskId(1),
                ok: false,
                capacity_bytes: 0,
                used_bytes: 0,
                catalog: 0,
                streams: 0,
                bytes_per_s: 0,
            },
        );
        tables.evaluate_disks(2);
        assert!(
            book.reassign(&map, &tables, now).is_empty(),
            "nowhere to go"
        );
        assert_eq!(book.len(), 2, "still listed");
        assert!(book.place(3, vec![DiskId(2)], &map, &tables, now).is_ok());
    }
}
