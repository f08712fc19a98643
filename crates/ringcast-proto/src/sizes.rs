//! Claims 6-7 and 10-11 at their limit: the largest messages a cluster of
//! a given shape must be able to send, so that a configuration whose state
//! the protocol cannot carry is refused before it runs, instead of a
//! supervisor that stops notifying at run time.
//!
//! A message is sealed into at most [`MAX_PARTS`] frames of at most the
//! cluster's MTU. Notifications carry changes and statuses carry entries,
//! each cut to fit (a whole state is pulled in up to [`MAX_STATE_PARTS`]
//! parts), so what must fit one message is the largest single row of the
//! state and the largest single ring entry; and the whole state must fit
//! its parts. The figures here are of messages filled to the worst: every
//! node up and on the ring, every disk and path reported, every counter at
//! its largest (postcard's varints are then longest), every node declaring
//! another failed.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use crate::announce::{self, Head, Row, MAX_STATE_PARTS};
use crate::config::{Capacity, NodeAddrs};
use crate::frame::{MAX_PARTS, OVERHEAD};
use crate::ids::{DiskId, Epoch, Incarnation, NodeId, Rank};
use crate::map::{ClusterMap, Member, MemberStatus};
use crate::message::{Declaration, Message, StatePart, Status, StatusEntry};
use crate::tables::{
    DiskAccessStatus, DiskLink, DiskReport, DiskStatus, DiskUsage, Load, NodeTopology, NodeUsage,
    Tables,
};

/// One node of a cluster as far as message sizes go: its id and the disks
/// it reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeShape {
    /// The node.
    pub id: NodeId,
    /// The disks of its access list.
    pub disks: Vec<DiskId>,
}

/// The largest messages of a cluster, in bytes of message body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Largest {
    /// A state part holding the state's largest row alone (claim 11).
    pub notify: usize,
    /// A ring status holding the largest entry alone (claim 7).
    pub status: usize,
    /// Every row of the whole state (map and tables), encoded.
    pub state: usize,
}

impl Largest {
    /// The larger of the two single messages.
    pub fn max(&self) -> usize {
        self.notify.max(self.status)
    }

    /// How many parts the whole state is pulled in at `mtu` (about one
    /// frame each), at most [`MAX_STATE_PARTS`] for a cluster to run.
    pub fn state_parts(&self, mtu: usize) -> usize {
        self.state.div_ceil(part_budget(mtu))
    }
}

/// The most parts a whole state is pulled in.
pub const STATE_PARTS_LIMIT: usize = MAX_STATE_PARTS as usize;

/// The encoded bytes of rows (or ring entries) one part carries at `mtu`:
/// about one frame, so a lost frame costs one part.
pub fn part_budget(mtu: usize) -> usize {
    mtu.saturating_sub(OVERHEAD + 160).max(256)
}

/// How many frames a body of `len` bytes needs at `mtu`.
pub fn parts(len: usize, mtu: usize) -> usize {
    len.div_ceil(mtu.saturating_sub(OVERHEAD).max(1))
}

/// The largest body the protocol carries at `mtu`.
pub fn carried(mtu: usize) -> usize {
    usize::from(MAX_PARTS) * mtu.saturating_sub(OVERHEAD)
}

/// The largest notification and ring status of a cluster of `nodes` that
/// talks to `servers` servers.
pub fn largest(nodes: &[NodeShape], servers: usize) -> Largest {
    // IPv6 addresses with a scope: the longest a socket address encodes.
    let addr = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ),
        u16::MAX,
        u32::MAX,
        u32::MAX,
    ));
    let addrs = NodeAddrs {
        ring: addr,
        http: addr,
    };
    let big = u64::MAX;
    let mut disks: Vec<DiskId> = nodes.iter().flat_map(|n| n.disks.iter().copied()).collect();
    disks.sort();
    disks.dedup();
    let map = ClusterMap {
        supervisor: NodeId(u32::MAX),
        epoch: Epoch(big),
        supervisor_rank: Rank(u16::MAX),
        version: big,
        servers: vec![addr; servers],
        members: nodes
            .iter()
            .map(|_| Member {
                id: NodeId(u32::MAX),
                incarnation: Incarnation(big),
                addrs,
                status: MemberStatus::Up,
            })
            .collect(),
        ring: nodes.iter().map(|_| NodeId(u32::MAX)).collect(),
    };
    let tables = Tables {
        topology: nodes
            .iter()
            .map(|n| NodeTopology {
                node: NodeId(u32::MAX),
                disks: n
                    .disks
                    .iter()
                    .map(|d| DiskLink {
                        disk: DiskId(d.0 | 0xf000_0000),
                        status: DiskAccessStatus::Broken,
                        streams: u32::MAX,
                        bytes_per_s: big,
                    })
                    .collect(),
            })
            .collect(),
        node_usage: nodes
            .iter()
            .map(|_| NodeUsage {
                node: NodeId(u32::MAX),
                capacity: Capacity {
                    max_streams: u32::MAX,
                    max_bytes_per_s: big,
                },
                load: Load {
                    streams: u32::MAX,
                    bytes_per_s: big,
                },
            })
            .collect(),
        disk_usage: disks
            .iter()
            .map(|d| DiskUsage {
                disk: DiskId(d.0 | 0xf000_0000),
                capacity_bytes: big,
                used_bytes: big,
                streams: u32::MAX,
                bytes_per_s: big,
                status: DiskStatus::Failed,
                catalog: big,
            })
            .collect(),
    };
    let rows = announce::rows(&map, &tables);
    let state = rows
        .iter()
        .map(|r| postcard::to_allocvec(r).map_or(0, |b| b.len()))
        .sum();
    let head = Head {
        supervisor: NodeId(u32::MAX),
        supervisor_rank: Rank(u16::MAX),
        epoch: Epoch(big),
        life: Incarnation(big),
        map_version: big,
        version: big,
        digest: big,
    };
    let notify = rows
        .into_iter()
        .map(|row: Row| {
            Message::State(StatePart {
                addrs,
                head,
                part: u16::MAX,
                parts: u16::MAX,
                rows: vec![row],
            })
            .encode()
            .len()
        })
        .max()
        .unwrap_or(0);
    let status = nodes
        .iter()
        .map(|n| {
            let entry = StatusEntry {
                node: NodeId(u32::MAX),
                incarnation: Incarnation(big),
                seq: big,
                load: Load {
                    streams: u32::MAX,
                    bytes_per_s: big,
                },
                disks: n
                    .disks
                    .iter()
                    .map(|d| DiskReport {
                        disk: DiskId(d.0 | 0xf000_0000),
                        ok: false,
                        capacity_bytes: big,
                        used_bytes: big,
                        catalog: big,
                        streams: u32::MAX,
                        bytes_per_s: big,
                    })
                    .collect(),
                declarations: vec![Declaration {
                    node: NodeId(u32::MAX),
                    incarnation: Incarnation(big),
                }],
            };
            Message::Status(Status {
                epoch: Epoch(big),
                entries: vec![entry],
                reset: true,
                told: [0xff; 8],
            })
            .encode()
            .len()
        })
        .max()
        .unwrap_or(0);
    Largest {
        notify,
        status,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nodes: u32, disks_each: u32) -> Vec<NodeShape> {
        (1..=nodes)
            .map(|n| NodeShape {
                id: NodeId(n),
                disks: (0..disks_each).map(|d| DiskId(n * 100 + d)).collect(),
            })
            .collect()
    }

    #[test]
    fn the_figures_bound_what_a_real_cluster_sends_and_grow_with_it() {
        let small = largest(&cluster(16, 2), 1);
        let large = largest(&cluster(1024, 2), 1);
        // The whole state grows with the cluster; it is pulled in parts.
        assert!(large.state > 60 * small.state, "{small:?} {large:?}");
        assert!(large.state_parts(1400) <= STATE_PARTS_LIMIT, "{large:?}");
        // A single message holds one row or one entry: both clusters fit
        // one message at the default MTU, the larger by its ring row.
        assert!(large.max() <= carried(1400), "{large:?}");
        assert!(small.max() <= carried(1400), "{small:?}");
        // A node with thousands of disk paths does not.
        let huge = largest(&cluster(2, 4000), 1);
        assert!(huge.max() > carried(1400), "{huge:?}");
    }

    #[test]
    fn a_real_state_is_never_larger_than_the_figures() {
        let shape = cluster(4, 3);
        let addr: SocketAddr = "[fe80::1%2]:65535".parse().unwrap();
        let addrs = NodeAddrs {
            ring: addr,
            http: addr,
        };
        let mut tables = Tables::default();
        for n in &shape {
            tables.record_join(
                n.id,
                Capacity {
                    max_streams: 100,
                    max_bytes_per_s: 1 << 30,
                },
                &n.disks,
            );
            tables.record_load(
                n.id,
                Load {
                    streams: 99,
                    bytes_per_s: 1 << 29,
                },
            );
        }
        let map = ClusterMap {
            supervisor: NodeId(1),
            epoch: Epoch(7),
            supervisor_rank: Rank(0),
            version: 99,
            servers: vec![addr],
            members: shape
                .iter()
                .map(|n| Member {
                    id: n.id,
                    incarnation: Incarnation(1 << 40),
                    addrs,
                    status: MemberStatus::Up,
                })
                .collect(),
            ring: shape.iter().map(|n| n.id).collect(),
        };
        let figures = largest(&shape, 1);
        let head = Head {
            supervisor: NodeId(1),
            supervisor_rank: Rank(0),
            epoch: Epoch(7),
            life: Incarnation(1 << 40),
            map_version: 99,
            version: 12,
            digest: announce::digest(&map, &tables),
        };
        let rows = announce::rows(&map, &tables);
        let mut state = 0;
        for row in rows {
            state += postcard::to_allocvec(&row).unwrap().len();
            let part = Message::State(StatePart {
                addrs,
                head,
                part: 3,
                parts: 9,
                rows: vec![row],
            })
            .encode()
            .len();
            assert!(part <= figures.notify, "{part} {figures:?}");
        }
        assert!(state <= figures.state, "{state} {figures:?}");
    }

    #[test]
    fn parts_and_carried_agree() {
        let mtu = 1400;
        assert_eq!(parts(carried(mtu), mtu), usize::from(MAX_PARTS));
        assert_eq!(parts(carried(mtu) + 1, mtu), usize::from(MAX_PARTS) + 1);
        assert_eq!(parts(0, mtu), 0);
    }
}
