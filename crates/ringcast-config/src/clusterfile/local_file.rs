//! The cluster file of a local cluster or tree (`ringcast up`) as a tree of
//! tables, serialized to TOML. Reading a cluster file is `schema`'s and
//! `check`'s (with every value's span); this is only the writing side, and
//! the protocol's own types ([`Timing`], [`NodeAddrs`], [`Capacity`],
//! [`DiskAccess`]) write their keys themselves.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

use ringcast_proto::{Capacity, DiskAccess, DiskId, NodeAddrs, NodeId, Timing};
use serde::Serialize;

use super::error::ConfigFileError;
use super::schema::{TransportKind, DEFAULT_MTU};
use super::secrets::write_private;
use crate::settings::LIBRARY_DIR;

/// Streaming capacity of a local cluster's node, bytes per second: loopback is
/// memory, not a network card, so the limit is the machine's, not a NIC's.
pub(super) const LOCAL_BYTES_PER_S: u64 = 40_000_000_000;

/// Concurrent streams of a local cluster's node.
const LOCAL_MAX_STREAMS: u32 = 100;

/// A whole local cluster file: the root cluster, its timing, the
/// sub-clusters of a tree (claim 5) and every machine.
#[derive(Serialize)]
pub(super) struct LocalFile {
    pub(super) cluster: RootTable,
    pub(super) timing: Timing,
    #[serde(rename = "subcluster", skip_serializing_if = "Vec::is_empty")]
    pub(super) subclusters: Vec<SubclusterTable>,
    #[serde(rename = "node")]
    pub(super) nodes: Vec<NodeTable>,
}

impl LocalFile {
    /// Writes the file to `path`, readable by its owner only, after
    /// `header` (comment lines, each starting with `#`).
    pub(super) fn write(&self, path: &Path, header: &str) -> Result<(), ConfigFileError> {
        let body = toml::to_string(self).map_err(ConfigFileError::Serialize)?;
        write_private(path, &format!("{header}{body}"))
    }
}

/// The `[cluster]` table of a local cluster: multicast, the key and admin
/// token files beside it.
#[derive(Serialize)]
pub(super) struct RootTable {
    id: u32,
    name: String,
    config_version: u32,
    transport: TransportKind,
    #[serde(flatten)]
    bus: LocalBus,
    key_file: &'static str,
    admin_token_file: &'static str,
    priority: Vec<u32>,
    mtu: usize,
    /// Claim 13: the cluster address players are given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) address: Option<SocketAddr>,
}

impl RootTable {
    /// Cluster `id` named `name` on `bus`, its members `priority` first to last.
    pub(super) fn new(id: u32, name: &str, bus: LocalBus, priority: Vec<u32>) -> Self {
        RootTable {
            id,
            name: name.to_string(),
            config_version: 1,
            transport: TransportKind::Multicast,
            bus,
            key_file: "cluster.key",
            admin_token_file: "admin.token",
            priority,
            mtu: DEFAULT_MTU,
            address: None,
        }
    }
}

/// Claim 13: the service addresses of a local cluster or tree: a block of
/// 127.0.0.0/8 of its own (so clusters on one host do not share addresses),
/// all on one port: machine `i` (from 1) has `127.a.b.0 + i`, the cluster
/// address follows the last machine's.
#[derive(Clone, Copy, Debug)]
pub(super) struct LocalServices {
    base: u32,
    port: u16,
}

impl LocalServices {
    /// A block for up to `machines` machines on `port`, from `random` bytes.
    pub(super) fn new(random: [u8; 2], port: u16) -> Self {
        // 127.1.0.0 to 127.254.255.0: never 127.0.0.0/16, where the nodes'
        // own listeners are.
        let a = u32::from(random[0].clamp(1, 240));
        let b = u32::from(random[1]);
        LocalServices {
            base: (127 << 24) | (a << 16) | (b << 8),
            port,
        }
    }

    /// The service address of machine `id`.
    pub(super) fn node(&self, id: u32) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(self.base + id), self.port))
    }

    /// The cluster address of a cluster of `machines` machines.
    pub(super) fn cluster(&self, machines: u32) -> SocketAddr {
        self.node(machines + 1)
    }
}

/// Claim 5: a `[[subcluster]]` table of a local tree, with its own timing.
#[derive(Serialize)]
pub(super) struct SubclusterTable {
    id: u32,
    name: String,
    #[serde(flatten)]
    bus: LocalBus,
    priority: Vec<u32>,
    mtu: usize,
    timing: Timing,
}

impl SubclusterTable {
    /// Sub-cluster `id` named `name` on `bus`, its members `priority` first to last.
    pub(super) fn new(
        id: u32,
        name: &str,
        bus: LocalBus,
        priority: Vec<u32>,
        timing: Timing,
    ) -> Self {
        SubclusterTable {
            id,
            name: name.to_string(),
            bus,
            priority,
            mtu: DEFAULT_MTU,
            timing,
        }
    }
}

/// The multicast keys of a local cluster: a group of its own, sent from
/// 127.0.0.1 with TTL 0, so nothing leaves the host.
#[derive(Serialize)]
pub(super) struct LocalBus {
    bus: SocketAddrV4,
    interface: Ipv4Addr,
    ttl: u32,
    loopback: bool,
}

impl LocalBus {
    /// The bus on multicast `group` and `port`.
    pub(super) fn new(group: Ipv4Addr, port: u16) -> Self {
        LocalBus {
            bus: SocketAddrV4::new(group, port),
            interface: Ipv4Addr::LOCALHOST,
            ttl: 0,
            loopback: true,
        }
    }
}

/// A `[[node]]` table: a machine on 127.0.0.1, its seats in a tree's
/// ancestor clusters (claim 5) and the disks it reaches (claim 3).
#[derive(Serialize)]
pub(super) struct NodeTable {
    id: NodeId,
    #[serde(flatten)]
    addrs: NodeAddrs,
    /// Claim 13: the machine's service address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) service: Option<SocketAddr>,
    #[serde(flatten)]
    capacity: Capacity,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    seats: Vec<SocketAddr>,
    #[serde(rename = "disk", skip_serializing_if = "Vec::is_empty")]
    pub(super) disks: Vec<DiskAccess>,
}

impl NodeTable {
    /// Machine `id` ringing on port `ring` and serving HTTP on port `http`
    /// of 127.0.0.1, with its ring ports in each ancestor cluster, nearest
    /// first, and no disks yet.
    pub(super) fn new(id: u32, ring: u16, http: u16, seats: &[u16]) -> Self {
        let local = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        NodeTable {
            id: NodeId(id),
            addrs: NodeAddrs {
                ring: local(ring),
                http: local(http),
            },
            service: None,
            capacity: Capacity {
                max_streams: LOCAL_MAX_STREAMS,
                max_bytes_per_s: LOCAL_BYTES_PER_S,
            },
            seats: seats.iter().map(|&p| local(p)).collect(),
            disks: Vec::new(),
        }
    }
}

/// Claim 3: disk `disk` of a local cluster as machine `node` reaches it,
/// mounted at `dir/disks/d<disk>` (whose library folder this creates) and
/// probed at a failure detection location of the machine's own there.
pub(super) fn local_disk(dir: &Path, disk: u32, node: u32) -> Result<DiskAccess, ConfigFileError> {
    let mount = dir.join("disks").join(format!("d{disk}"));
    let lib = mount.join(LIBRARY_DIR);
    fs::create_dir_all(&lib).map_err(|source| ConfigFileError::Write { path: lib, source })?;
    Ok(DiskAccess {
        id: DiskId(disk),
        mount: mount.display().to_string(),
        probe_path: mount
            .join(format!(".ringcast-probe-n{node}"))
            .display()
            .to_string(),
    })
}

/// The disks a local node reaches: its own and its ring predecessor's
/// (`previous`), so every disk is reached by two nodes and survives one.
pub(super) fn own_and_previous_disks(
    dir: &Path,
    node: u32,
    previous: u32,
) -> Result<Vec<DiskAccess>, ConfigFileError> {
    let mut reached = vec![node];
    if previous != node {
        reached.push(previous);
    }
    reached
        .into_iter()
        .map(|disk| local_disk(dir, disk, node))
        .collect()
}
