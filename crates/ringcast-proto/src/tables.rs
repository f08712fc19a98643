//! Claim 4: the supervisor's tables besides the cluster map: cluster topology,
//! node usage and disk usage. They are rebuilt from what nodes report on the
//! ring and in join requests, so a new supervisor recovers them (DESIGN 5).

use serde::{Deserialize, Serialize};

use crate::config::Capacity;
use crate::ids::{DiskId, NodeId};

/// Whether a node's path to a disk works (claim 4, disk access status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskAccessStatus {
    /// The node's last probe of the disk succeeded.
    Ok,
    /// The node's last probe of the disk failed.
    Broken,
}

/// Claim 4: a disk as one node reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskLink {
    /// The disk.
    pub disk: DiskId,
    /// Whether this node's path to it works.
    pub status: DiskAccessStatus,
    /// Streams this node reads from it.
    #[serde(default)]
    pub streams: u32,
    /// Bytes per second this node reads from it.
    #[serde(default)]
    pub bytes_per_s: u64,
}

/// Claim 4: one row of the cluster topology table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTopology {
    /// The node.
    pub node: NodeId,
    /// The disks it reaches and the status of each path.
    pub disks: Vec<DiskLink>,
}

/// A node's current load, as it reports it on the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Load {
    /// Streams being served.
    pub streams: u32,
    /// Bytes per second being sent.
    pub bytes_per_s: u64,
}

/// Claim 4: one row of the node usage table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// The node.
    pub node: NodeId,
    /// Its configured streaming capacity.
    pub capacity: Capacity,
    /// Its load as last reported.
    pub load: Load,
}

/// Claim 13: a disk's status in the disk usage table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskStatus {
    /// Working.
    Ok,
    /// Declared failed by reports of several nodes.
    Failed,
}

/// Claim 4: one row of the disk usage table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// The disk.
    pub disk: DiskId,
    /// Total bytes.
    pub capacity_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Streams reading from it.
    pub streams: u32,
    /// Bytes per second being read.
    pub bytes_per_s: u64,
    /// Working or failed.
    pub status: DiskStatus,
    /// Digest of its library as last reported by a node with a working path.
    pub catalog: u64,
}

/// Claim 13: a change in what the cluster knows of a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskChange {
    /// Enough distinct nodes report it broken: the disk is declared failed.
    Failed(DiskId),
    /// Too few reports remain: the disk works again.
    Recovered(DiskId),
    /// One node's path to the disk broke (others still reach it).
    PathBroken {
        /// The node.
        node: NodeId,
        /// The disk.
        disk: DiskId,
    },
    /// One node's path to the disk works again.
    PathRestored {
        /// The node.
        node: NodeId,
        /// The disk.
        disk: DiskId,
    },
}

/// Claim 4: the supervisor's tables, announced with every notification (claim 11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tables {
    /// Cluster topology, sorted by node.
    pub topology: Vec<NodeTopology>,
    /// Node usage, sorted by node (a node that failed or left keeps its
    /// last row: see [`Tables::forget_node`]).
    pub node_usage: Vec<NodeUsage>,
    /// Disk usage, sorted by disk.
    pub disk_usage: Vec<DiskUsage>,
}

fn path_change(node: NodeId, disk: DiskId, status: DiskAccessStatus) -> DiskChange {
    match status {
        DiskAccessStatus::Broken => DiskChange::PathBroken { node, disk },
        DiskAccessStatus::Ok => DiskChange::PathRestored { node, disk },
    }
}

fn upsert_by<T, K: Ord>(rows: &mut Vec<T>, key: impl Fn(&T) -> K, row: T) {
    match rows.binary_search_by_key(&key(&row), &key) {
        Ok(i) => rows[i] = row,
        Err(i) => rows.insert(i, row),
    }
}

/// Claim 13: one node's report on one disk it reaches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskReport {
    /// The disk.
    pub disk: DiskId,
    /// Whether the last probe succeeded.
    pub ok: bool,
    /// Total bytes, when known.
    pub capacity_bytes: u64,
    /// Bytes used, when known.
    pub used_bytes: u64,
    /// Digest of the disk's library (titles, sizes, times), so the supervisor
    /// knows when to refresh its catalog of the disk.
    pub catalog: u64,
    /// Streams this node reads from the disk now (claim 4, disk usage).
    pub streams: u32,
    /// Bytes per second this node reads from the disk.
    pub bytes_per_s: u64,
}

/// Claim 5: what a cluster reports as one node of its parent: the capacity
/// and load of every member its map lists up, summed.
pub fn aggregate(map: &crate::map::ClusterMap, tables: &Tables) -> (Capacity, Load) {
    let mut capacity = Capacity {
        max_streams: 0,
        max_bytes_per_s: 0,
    };
    let mut load = Load::default();
    for usage in &tables.node_usage {
        if !map.is_up(usage.node) {
            continue;
        }
        capacity.max_streams = capacity
            .max_streams
            .saturating_add(usage.capacity.max_streams);
        capacity.max_bytes_per_s = capacity
            .max_bytes_per_s
            .saturating_add(usage.capacity.max_bytes_per_s);
        load.streams = load.streams.saturating_add(usage.load.streams);
        load.bytes_per_s = load.bytes_per_s.saturating_add(usage.load.bytes_per_s);
    }
    (capacity, load)
}

impl Tables {
    /// Records what a node said of its disks and capacity when it joined (claim 14).
    pub fn record_join(&mut self, node: NodeId, capacity: Capacity, disks: &[DiskId]) {
        let links = disks
            .iter()
            .map(|d| DiskLink {
                disk: *d,
                status: DiskAccessStatus::Ok,
                streams: 0,
                bytes_per_s: 0,
            })
            .collect();
        upsert_by(
            &mut self.topology,
            |r| r.node,
            NodeTopology { node, disks: links },
        );
        let load = self.usage(node).map(|u| u.load).unwrap_or_default();
        upsert_by(
            &mut self.node_usage,
            |r| r.node,
            NodeUsage {
                node,
                capacity,
                load,
            },
        );
        for d in disks {
            if self.disk(*d).is_none() {
                upsert_by(
                    &mut self.disk_usage,
                    |r| r.disk,
                    DiskUsage {
                        disk: *d,
                        capacity_bytes: 0,
                        used_bytes: 0,
                        streams: 0,
                        bytes_per_s: 0,
                        status: DiskStatus::Ok,
                        catalog: 0,
                    },
                );
            }
        }
    }

    /// Claim 5: records a node's changed streaming capacity (a seat whose
    /// sub-cluster gained or lost machines). Returns whether it changed.
    pub fn record_capacity(&mut self, node: NodeId, capacity: Capacity) -> bool {
        match self.node_usage.binary_search_by_key(&node, |r| r.node) {
            Ok(i) if self.node_usage[i].capacity != capacity => {
                self.node_usage[i].capacity = capacity;
                true
            }
            _ => false,
        }
    }

    /// Records a node's reported load (claim 7: it arrives in the ring accumulation).
    /// Returns whether anything changed.
    pub fn record_load(&mut self, node: NodeId, load: Load) -> bool {
        match self.node_usage.binary_search_by_key(&node, |r| r.node) {
            Ok(i) if self.node_usage[i].load != load => {
                self.node_usage[i].load = load;
                true
            }
            _ => false,
        }
    }

    /// Records one node's report on one disk. Returns the change of that
    /// node's path to the disk, if its status changed.
    pub fn record_disk_report(&mut self, node: NodeId, report: &DiskReport) -> Option<DiskChange> {
        let mut changed = None;
        let status = if report.ok {
            DiskAccessStatus::Ok
        } else {
            DiskAccessStatus::Broken
        };
        if let Ok(i) = self.topology.binary_search_by_key(&node, |r| r.node) {
            let row = &mut self.topology[i];
            match row.disks.iter_mut().find(|l| l.disk == report.disk) {
                Some(link) => {
                    if link.status != status {
                        link.status = status;
                        changed = Some(path_change(node, report.disk, status));
                    }
                    link.streams = report.streams;
                    link.bytes_per_s = report.bytes_per_s;
                }
                None => {
                    row.disks.push(DiskLink {
                        disk: report.disk,
                        status,
                        streams: report.streams,
                        bytes_per_s: report.bytes_per_s,
                    });
                    row.disks.sort_by_key(|l| l.disk);
                    if status == DiskAccessStatus::Broken {
                        changed = Some(path_change(node, report.disk, status));
                    }
                }
            }
        }
        if let Ok(i) = self
            .disk_usage
            .binary_search_by_key(&report.disk, |r| r.disk)
        {
            let row = &mut self.disk_usage[i];
            if report.ok {
                row.capacity_bytes = report.capacity_bytes;
                row.used_bytes = report.used_bytes;
                row.catalog = report.catalog;
            }
        }
        changed
    }

    /// Claim 13: re-decides every disk's status from the nodes' reports: a
    /// disk is failed when at least `quorum` distinct nodes (capped by how
    /// many reach it) report their path to it broken. The supervisor calls
    /// it when the map changed (a node's paths stop counting when it fails or
    /// leaves); on a status it re-decides only the disks reported anew
    /// ([`Tables::evaluate_disks_of`]).
    pub fn evaluate_disks(&mut self, quorum: u32) -> Vec<DiskChange> {
        let all: Vec<DiskId> = self.disk_usage.iter().map(|r| r.disk).collect();
        self.evaluate_disks_of(quorum, &all)
    }

    /// Claim 13: [`Tables::evaluate_disks`] for the disks of `disks` only:
    /// what the supervisor does with a status, whose work is then what the
    /// status changed.
    pub fn evaluate_disks_of(&mut self, quorum: u32, disks: &[DiskId]) -> Vec<DiskChange> {
        let mut changes = Vec::new();
        for disk in disks {
            let Ok(i) = self.disk_usage.binary_search_by_key(disk, |r| r.disk) else {
                continue;
            };
            let (mut reach, mut broken) = (0usize, 0usize);
            let (mut streams, mut bytes_per_s) = (0u32, 0u64);
            for t in &self.topology {
                if let Some(link) = t.disks.iter().find(|l| l.disk == *disk) {
                    reach += 1;
                    broken += usize::from(link.status == DiskAccessStatus::Broken);
                    streams = streams.saturating_add(link.streams);
                    bytes_per_s = bytes_per_s.saturating_add(link.bytes_per_s);
                }
            }
            let row = &mut self.disk_usage[i];
            // Claim 4: a disk's load is what every node reading it reports.
            row.streams = streams;
            row.bytes_per_s = bytes_per_s;
            let needed = (quorum as usize).min(reach).max(1);
            let failed = broken >= needed;
            let status = if failed {
                DiskStatus::Failed
            } else {
                DiskStatus::Ok
            };
            if status != row.status {
                row.status = status;
                changes.push(if failed {
                    DiskChange::Failed(row.disk)
                } else {
                    DiskChange::Recovered(row.disk)
                });
            }
        }
        changes
    }

    /// Whether `node` reaches `disk` through a working path and the disk is not failed.
    pub fn serves_from(&self, node: NodeId, disk: DiskId) -> bool {
        let path_ok = self.topology_of(node).is_some_and(|t| {
            t.disks
                .iter()
                .any(|l| l.disk == disk && l.status == DiskAccessStatus::Ok)
        });
        path_ok && self.disk(disk).is_some_and(|d| d.status == DiskStatus::Ok)
    }

    /// Forgets a node that failed or left: its paths to disks no longer
    /// count; the disks stay in the disk usage table, and its usage row
    /// (capacity and last load) stays too, so that a node marked failed
    /// that refutes it and rejoins, still serving its streams, is not taken
    /// for an empty one until its next report (a join carries no load).
    pub fn forget_node(&mut self, node: NodeId) {
        self.topology.retain(|r| r.node != node);
    }

    /// The usage row of `node`.
    pub fn usage(&self, node: NodeId) -> Option<&NodeUsage> {
        self.node_usage
            .binary_search_by_key(&node, |r| r.node)
            .ok()
            .map(|i| &self.node_usage[i])
    }

    /// The usage row of `disk`.
    pub fn disk(&self, disk: DiskId) -> Option<&DiskUsage> {
        self.disk_usage
            .binary_search_by_key(&disk, |r| r.disk)
            .ok()
            .map(|i| &self.disk_usage[i])
    }

    /// The topology row of `node`.
    pub fn topology_of(&self, node: NodeId) -> Option<&NodeTopology> {
        self.topology
            .binary_search_by_key(&node, |r| r.node)
            .ok()
            .map(|i| &self.topology[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_marked_failed_that_rejoins_is_not_taken_for_an_empty_one() {
        // Found by the simulator's stream campaign: a node wrongly marked
        // failed refuted it and rejoined while still serving its streams;
        // the supervisor had forgotten its load, saw it empty and placed
        // more streams on it than its capacity.
        let mut t = Tables::default();
        let cap = Capacity {
            max_streams: 2,
            max_bytes_per_s: 0,
        };
        t.record_join(NodeId(1), cap, &[DiskId(1)]);
        t.record_load(
            NodeId(1),
            Load {
                streams: 2,
                bytes_per_s: 0,
            },
        );
        t.forget_node(NodeId(1));
        assert!(t.topology_of(NodeId(1)).is_none());
        assert!(
            !t.serves_from(NodeId(1), DiskId(1)),
            "its paths no longer count"
        );
        t.record_join(NodeId(1), cap, &[DiskId(1)]);
        assert_eq!(t.usage(NodeId(1)).map(|u| u.load.streams), Some(2));
        assert!(t.serves_from(NodeId(1), DiskId(1)));
    }

    #[test]
    fn a_status_re_decides_only_the_disks_it_reports() {
        // Claim 13 at O(news): one node's report re-decides its own disks.
        let mut t = Tables::default();
        let cap = Capacity {
            max_streams: 2,
            max_bytes_per_s: 0,
        };
        t.record_join(NodeId(1), cap, &[DiskId(1), DiskId(2)]);
        let broken = |disk| DiskReport {
            disk,
            ok: false,
            capacity_bytes: 0,
            used_bytes: 0,
            catalog: 0,
            streams: 0,
            bytes_per_s: 0,
        };
        t.record_disk_report(NodeId(1), &broken(DiskId(1)));
        t.record_disk_report(NodeId(1), &broken(DiskId(2)));
        assert_eq!(
            t.evaluate_disks_of(2, &[DiskId(2)]),
            vec![DiskChange::Failed(DiskId(2))]
        );
        assert_eq!(t.disk(DiskId(1)).map(|d| d.status), Some(DiskStatus::Ok));
        assert_eq!(t.evaluate_disks(2), vec![DiskChange::Failed(DiskId(1))]);
    }
}
