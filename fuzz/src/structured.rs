//! An `Arbitrary` mirror of `ringcast_proto::message::Message`: well-typed
//! messages with hostile contents (unknown or repeated nodes, unsorted member
//! lists, rings naming strangers, huge epochs), built into the real types.
//!
//! Small ids dominate on purpose: `Id` maps to node 0..=7, so most ids name a
//! member of the 5-node clusters the targets build and some name strangers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use arbitrary::Arbitrary;
use ringcast_proto::map::{ClusterMap, Member, MemberStatus};
use ringcast_proto::announce;
use ringcast_proto::message::{
    Change, Declaration, DiskReport, Head, JoinRequest, Leave, Message, Notify, Status,
    StatusEntry, SupervisorUpdate,
};
use ringcast_proto::{
    Capacity, DiskId, Epoch, Incarnation, Load, NodeAddrs, NodeId, Rank, Tables,
};

/// A node id, mostly of the cluster.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct Id(pub u8);

impl Id {
    /// The node id: 0..=7.
    pub fn node(self) -> NodeId {
        NodeId(u32::from(self.0 % 8))
    }
}

/// A number: mostly small, sometimes anything or the largest.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Num {
    /// 0..=255.
    Small(u8),
    /// Anything.
    Any(u64),
    /// `u64::MAX`.
    Max,
}

impl Num {
    /// The value.
    pub fn get(self) -> u64 {
        match self {
            Num::Small(n) => u64::from(n),
            Num::Any(n) => n,
            Num::Max => u64::MAX,
        }
    }
}

/// Where a node claims to be reached.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Addrs {
    /// Where the simulator puts the node.
    Usual,
    /// Anywhere (IPv4).
    Other([u8; 4], u16),
}

impl Addrs {
    /// The addresses claimed for `id`.
    pub fn of(self, id: NodeId) -> NodeAddrs {
        match self {
            Addrs::Usual => crate::node_config(id.0.max(1), crate::NODES).addrs,
            Addrs::Other(ip, port) => {
                let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
                NodeAddrs { ring: a, http: a }
            }
        }
    }
}

/// A member entry.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct FMember {
    /// The node.
    pub id: Id,
    /// Its life.
    pub incarnation: Num,
    /// 0 up, 1 failed, 2 left.
    pub status: u8,
    /// Its addresses.
    pub addrs: Addrs,
}

/// A cluster map.
#[derive(Arbitrary, Clone, Debug)]
pub struct FMap {
    /// The supervisor it names.
    pub supervisor: Id,
    /// Its epoch.
    pub epoch: Num,
    /// The supervisor rank it claims (`None`: the true one).
    pub rank: Option<u16>,
    /// Its version.
    pub version: Num,
    /// Members, as given.
    pub members: Vec<FMember>,
    /// Sort and deduplicate members as a real supervisor does.
    pub tidy: bool,
    /// The ring (`None`: the up members in priority order, as a real supervisor computes it).
    pub ring: Option<Vec<Id>>,
    /// How many servers to list (0..=3).
    pub servers: u8,
}

impl FMap {
    /// The map.
    pub fn build(&self) -> ClusterMap {
        let supervisor = self.supervisor.node();
        let mut members: Vec<Member> = self
            .members
            .iter()
            .take(16)
            .map(|m| Member {
                id: m.id.node(),
                incarnation: Incarnation(m.incarnation.get()),
                addrs: m.addrs.of(m.id.node()),
                status: match m.status % 3 {
                    0 => MemberStatus::Up,
                    1 => MemberStatus::Failed,
                    _ => MemberStatus::Left,
                },
            })
            .collect();
        if self.tidy {
            members.sort_by_key(|m| m.id);
            members.dedup_by_key(|m| m.id);
        }
        let rank = self
            .rank
            .map(Rank)
            .unwrap_or(Rank((supervisor.0.saturating_sub(1)) as u16));
        let mut map = ClusterMap {
            supervisor,
            epoch: Epoch(self.epoch.get()),
            supervisor_rank: rank,
            version: self.version.get(),
            servers: (0..self.servers % 4)
                .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 7400 + u16::from(i)))
                .collect(),
            members,
            ring: Vec::new(),
        };
        match &self.ring {
            Some(ring) => map.ring = ring.iter().take(16).map(|n| n.node()).collect(),
            None => {
                let priority: Vec<NodeId> = (1..=crate::NODES).map(NodeId).collect();
                map.reform_ring(&priority);
            }
        }
        map
    }
}

/// A disk report.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct FDiskReport {
    /// The disk: 0..=7.
    pub disk: u8,
    /// Whether the probe succeeded.
    pub ok: bool,
    /// Capacity.
    pub capacity: Num,
    /// Used.
    pub used: Num,
    /// Library digest.
    pub catalog: u64,
    /// Streams.
    pub streams: u32,
    /// Bytes per second.
    pub bytes_per_s: Num,
}

impl FDiskReport {
    /// The report.
    pub fn build(&self) -> DiskReport {
        DiskReport {
            disk: DiskId(u32::from(self.disk % 8)),
            ok: self.ok,
            capacity_bytes: self.capacity.get(),
            used_bytes: self.used.get(),
            catalog: self.catalog,
            streams: self.streams,
            bytes_per_s: self.bytes_per_s.get(),
        }
    }
}

/// Tables, built through the supervisor's own `Tables` methods.
#[derive(Arbitrary, Clone, Debug)]
pub enum FTableOp {
    /// A node joined with these disks.
    Join(Id, u32, Vec<u8>),
    /// A node's load.
    Load(Id, u32, Num),
    /// A node's disk report.
    Report(Id, FDiskReport),
    /// Re-decide disk statuses with this quorum.
    Evaluate(u8),
    /// Forget a node.
    Forget(Id),
}

/// Builds tables from `ops`.
pub fn build_tables(ops: &[FTableOp]) -> Tables {
    let mut t = Tables::default();
    for op in ops.iter().take(32) {
        match op {
            FTableOp::Join(id, streams, disks) => {
                let disks: Vec<DiskId> =
                    disks.iter().take(8).map(|d| DiskId(u32::from(d % 8))).collect();
                t.record_join(
                    id.node(),
                    Capacity {
                        max_streams: *streams,
                        max_bytes_per_s: 1_000_000,
                    },
                    &disks,
                );
            }
            FTableOp::Load(id, streams, bps) => {
                t.record_load(
                    id.node(),
                    Load {
                        streams: *streams,
                        bytes_per_s: bps.get(),
                    },
                );
            }
            FTableOp::Report(id, r) => {
                t.record_disk_report(id.node(), &r.build());
            }
            FTableOp::Evaluate(q) => {
                t.evaluate_disks(u32::from(*q));
            }
            FTableOp::Forget(id) => t.forget_node(id.node()),
        }
    }
    t
}

/// One ring status entry.
#[derive(Arbitrary, Clone, Debug)]
pub struct FEntry {
    /// Whose.
    pub node: Id,
    /// Its life.
    pub incarnation: Num,
    /// Its sequence number.
    pub seq: Num,
    /// Its load.
    pub streams: u32,
    /// Its bytes per second.
    pub bytes_per_s: Num,
    /// Disk reports.
    pub disks: Vec<FDiskReport>,
    /// Failure declarations.
    pub declarations: Vec<(Id, Num)>,
}

impl FEntry {
    /// The entry.
    pub fn build(&self) -> StatusEntry {
        StatusEntry {
            node: self.node.node(),
            incarnation: Incarnation(self.incarnation.get()),
            seq: self.seq.get(),
            load: Load {
                streams: self.streams,
                bytes_per_s: self.bytes_per_s.get(),
            },
            disks: self.disks.iter().take(8).map(FDiskReport::build).collect(),
            declarations: self
                .declarations
                .iter()
                .take(8)
                .map(|(n, i)| Declaration {
                    node: n.node(),
                    incarnation: Incarnation(i.get()),
                })
                .collect(),
        }
    }
}

/// A message.
#[derive(Arbitrary, Clone, Debug)]
pub enum FMessage {
    /// A supervisor notification.
    Notify {
        /// Addresses of the supervisor.
        addrs: Addrs,
        /// The map.
        map: FMap,
        /// The tables.
        tables: Vec<FTableOp>,
    },
    /// A takeover announcement.
    Update {
        /// The new supervisor.
        supervisor: Id,
        /// Its addresses.
        addrs: Addrs,
        /// Its epoch.
        epoch: Num,
        /// The supervisor it replaces.
        replaces: Id,
    },
    /// A join request.
    Join {
        /// The node.
        node: Id,
        /// Its life.
        incarnation: Num,
        /// Its addresses.
        addrs: Addrs,
        /// Its disks.
        disks: Vec<u8>,
        /// Its capacity.
        max_streams: u32,
        /// Its bytes per second.
        max_bytes_per_s: Num,
    },
    /// A leave.
    Leave {
        /// The node.
        node: Id,
        /// Its life.
        incarnation: Num,
        /// Its addresses.
        addrs: Addrs,
    },
    /// Ring status.
    Status {
        /// The epoch the sender follows.
        epoch: Num,
        /// The entries.
        entries: Vec<FEntry>,
    },
}

impl FMessage {
    /// The message.
    pub fn build(&self) -> Message {
        match self {
            FMessage::Notify { addrs, map, tables } => {
                // The whole state as changes from version 0 of its reign:
                // what a member of that reign applies.
                let map = map.build();
                let tables = build_tables(tables);
                Message::Notify(Notify {
                    addrs: addrs.of(map.supervisor),
                    head: Head {
                        supervisor: map.supervisor,
                        supervisor_rank: map.supervisor_rank,
                        epoch: map.epoch,
                        life: map.supervisor_incarnation(),
                        map_version: map.version,
                        version: map.version,
                        digest: announce::digest(&map, &tables),
                    },
                    base: 0,
                    base_digest: 0,
                    changes: announce::rows(&map, &tables)
                        .into_iter()
                        .map(Change::Put)
                        .collect(),
                })
            }
            FMessage::Update {
                supervisor,
                addrs,
                epoch,
                replaces,
            } => Message::SupervisorUpdate(SupervisorUpdate {
                supervisor: supervisor.node(),
                addrs: addrs.of(supervisor.node()),
                epoch: Epoch(epoch.get()),
                replaces: replaces.node(),
            }),
            FMessage::Join {
                node,
                incarnation,
                addrs,
                disks,
                max_streams,
                max_bytes_per_s,
            } => Message::Join(JoinRequest {
                node: node.node(),
                incarnation: Incarnation(incarnation.get()),
                addrs: addrs.of(node.node()),
                disks: disks.iter().take(300).map(|d| DiskId(u32::from(*d))).collect(),
                capacity: Capacity {
                    max_streams: *max_streams,
                    max_bytes_per_s: max_bytes_per_s.get(),
                },
                load: Load {
                    streams: *max_streams / 2,
                    bytes_per_s: 0,
                },
            }),
            FMessage::Leave {
                node,
                incarnation,
                addrs,
            } => Message::Leave(Leave {
                node: node.node(),
                incarnation: Incarnation(incarnation.get()),
                addrs: addrs.of(node.node()),
            }),
            FMessage::Status { epoch, entries } => Message::Status(Status {
                epoch: Epoch(epoch.get()),
                entries: entries.iter().take(16).map(FEntry::build).collect(),
                // A reset: its receiver forgets what the sender told before.
                reset: true,
                told: [0; 8],
            }),
        }
    }
}
