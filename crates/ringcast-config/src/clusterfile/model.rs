//! A loaded cluster file: its clusters and nodes as validated, and what
//! each node runs with (claims 1-3), in its own cluster and in each
//! ancestor cluster while it holds its cluster's seat there (claim 5).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use ringcast_proto::{
    Capacity, ClusterId, DiskAccess, KeyId, NodeAddrs, NodeConfig, NodeId, Timing,
};

use super::error::ConfigFileError;
use crate::addresses::ServiceAddresses;
use crate::admin::AdminDigest;
use crate::settings::{BusMode, HttpTls, Limits, NodeSettings, KEY_LEN};

/// A parsed and validated cluster file (claims 1-3). `Debug` never prints the
/// keys or the admin token.
pub struct ClusterFile {
    pub(super) path: PathBuf,
    pub(super) config_version: u32,
    /// Every cluster of the file, the root (`[cluster]`) first, then each
    /// `[[subcluster]]` in file order (claim 5).
    pub(super) clusters: Vec<ClusterDef>,
    pub(super) servers: Vec<SocketAddr>,
    pub(super) nodes: Vec<NodeEntry>,
    pub(super) keys: Vec<(KeyId, [u8; KEY_LEN])>,
    pub(super) admin_token: Option<String>,
    pub(super) limits: Limits,
    /// Claim 13: the cluster address (flat clusters only).
    pub(super) address: Option<SocketAddr>,
    /// The CA every node's HTTPS certificate is checked against.
    pub(super) tls_ca: Option<PathBuf>,
}

/// One cluster of the file: the root or a sub-cluster.
#[derive(Clone, Debug)]
pub(super) struct ClusterDef {
    pub(super) id: ClusterId,
    pub(super) name: String,
    pub(super) transport: Transport,
    /// Its members, nodes or sub-clusters, highest priority first.
    pub(super) priority: Vec<NodeId>,
    pub(super) mtu: usize,
    pub(super) timing: Timing,
    /// Index of the parent in [`ClusterFile::clusters`]; `None` for the root.
    pub(super) parent: Option<usize>,
    /// 0 for the root.
    pub(super) level: usize,
}

/// Claim 5: one cluster of a cluster file, as status output and tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster's id; in its parent it is the id of the cluster's seat.
    pub id: ClusterId,
    /// The cluster's name.
    pub name: String,
    /// Depth in the tree: 0 for the root.
    pub level: usize,
    /// The parent cluster, `None` for the root.
    pub parent: Option<ClusterId>,
    /// Its members (nodes, or sub-clusters by id), highest priority first.
    pub members: Vec<NodeId>,
}

#[derive(Clone, Debug)]
pub(super) enum Transport {
    Multicast {
        group: SocketAddrV4,
        /// The cluster-wide outgoing interface; each node may name its own.
        interface: Option<Ipv4Addr>,
        ttl: u32,
        loopback: bool,
    },
    Unicast,
}

#[derive(Clone, Debug)]
pub(super) struct NodeEntry {
    pub(super) id: NodeId,
    pub(super) addrs: NodeAddrs,
    /// Claim 13: its service address, if the file gives one.
    pub(super) service: Option<SocketAddr>,
    pub(super) capacity: Capacity,
    pub(super) disks: Vec<DiskAccess>,
    /// The node's own multicast interface, overriding the cluster's.
    pub(super) interface: Option<Ipv4Addr>,
    /// Claim 5: the ring address of its seat in each ancestor cluster,
    /// nearest parent first.
    pub(super) seats: Vec<SocketAddr>,
    /// Index of its cluster in [`ClusterFile::clusters`].
    pub(super) cluster: usize,
    /// Where the node's `id` is, for problems found after parsing.
    pub(super) line: usize,
    /// Its HTTPS certificate chain and key, resolved.
    pub(super) tls: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for ClusterFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterFile")
            .field("path", &self.path)
            .field("config_version", &self.config_version)
            .field("clusters", &self.clusters)
            .field("nodes", &self.node_ids())
            .finish_non_exhaustive()
    }
}

/// Where a node's multicast leaves from: its own `interface`, else the
/// cluster's, else `ring`, its address in that cluster (its ring address, or
/// its seat's in an ancestor). Validation refuses a multicast file
/// where none of them is an IPv4 address, so the last fallback is unused.
fn multicast_interface(node: &NodeEntry, ring: SocketAddr, cluster: Option<Ipv4Addr>) -> Ipv4Addr {
    let ring = match ring {
        SocketAddr::V4(v4) => Some(*v4.ip()),
        SocketAddr::V6(_) => None,
    };
    node.interface
        .or(cluster)
        .or(ring)
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

impl ClusterFile {
    /// Claims 1-3: what node `id` runs with: its id, the bus, the priority
    /// list, its disk access list, the timing, the keys and the admin token.
    pub fn node_settings(&self, id: NodeId) -> Result<NodeSettings, ConfigFileError> {
        let node =
            self.nodes
                .iter()
                .find(|n| n.id == id)
                .ok_or_else(|| ConfigFileError::UnknownNode {
                    path: self.path.clone(),
                    node: id,
                })?;
        Ok(self.settings_for(node))
    }

    /// Every node id, in file order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The HTTP address of node `id`, if the file defines it.
    pub fn http_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes.iter().find(|n| n.id == id).map(|n| n.addrs.http)
    }

    /// Claim 13: the cluster address players are given, if the file names one.
    pub fn cluster_address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// Claim 13: the service address of node `id`, if the file gives it one.
    pub fn service_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .and_then(|n| n.service)
    }

    /// The file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration version; nodes that see a newer one refetch.
    pub fn config_version(&self) -> u32 {
        self.config_version
    }

    /// The (root) cluster's name.
    pub fn name(&self) -> &str {
        &self.clusters[0].name
    }

    /// Claim 5: whether the file describes a tree of clusters rather than one.
    pub fn is_hierarchy(&self) -> bool {
        self.clusters.len() > 1
    }

    /// Claim 5: every cluster of the file, depth first from the root, each
    /// parent before its members.
    pub fn clusters(&self) -> Vec<ClusterInfo> {
        let mut out = Vec::new();
        let mut stack = vec![0];
        while let Some(i) = stack.pop() {
            let c = &self.clusters[i];
            out.push(ClusterInfo {
                id: c.id,
                name: c.name.clone(),
                level: c.level,
                parent: c.parent.map(|p| self.clusters[p].id),
                members: c.priority.clone(),
            });
            let children = c.priority.iter().rev().filter_map(|m| {
                self.clusters
                    .iter()
                    .position(|d| d.parent == Some(i) && d.id.0 == m.0)
            });
            stack.extend(children);
        }
        out
    }

    /// The summed streaming capacity of every machine below cluster `index`
    /// (claim 5: what its seat reports until its supervisor sums the tables).
    fn capacity_below(&self, index: usize) -> Capacity {
        let mut total = Capacity {
            max_streams: 0,
            max_bytes_per_s: 0,
        };
        for node in &self.nodes {
            let mut c = Some(node.cluster);
            while let Some(i) = c {
                if i == index {
                    total.max_streams = total.max_streams.saturating_add(node.capacity.max_streams);
                    total.max_bytes_per_s = total
                        .max_bytes_per_s
                        .saturating_add(node.capacity.max_bytes_per_s);
                    break;
                }
                c = self.clusters[i].parent;
            }
        }
        total
    }

    /// The CA the nodes' HTTPS certificates are checked against, when the
    /// nodes serve HTTPS.
    pub fn tls_ca(&self) -> Option<&Path> {
        self.tls_ca.as_deref()
    }

    /// The admin token, if the file names one.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// What node `node` runs with in its own cluster, and in each ancestor
    /// cluster while it holds its cluster's seat there (claim 5).
    pub(super) fn settings_for(&self, node: &NodeEntry) -> NodeSettings {
        let mut settings = self.settings_in(
            node.cluster,
            node,
            node.id,
            node.addrs,
            node.disks.clone(),
            node.capacity,
        );
        let mut child = node.cluster;
        let mut level = 0;
        while let (Some(parent), Some(ring)) = (self.clusters[child].parent, node.seats.get(level))
        {
            let seat = NodeId(self.clusters[child].id.0);
            let addrs = NodeAddrs {
                ring: *ring,
                http: node.addrs.http,
            };
            let capacity = self.capacity_below(child);
            settings
                .seats
                .push(self.settings_in(parent, node, seat, addrs, Vec::new(), capacity));
            child = parent;
            level += 1;
        }
        settings
    }

    /// Claim 13: the service addresses of cluster `cluster`: its machines'
    /// (a seat's cluster has none: players reach leaf nodes), and the
    /// cluster address of a flat file.
    fn service_addresses(&self, cluster: usize) -> ServiceAddresses {
        ServiceAddresses {
            nodes: self
                .nodes
                .iter()
                .filter(|n| n.cluster == cluster)
                .filter_map(|n| Some((n.id, n.service?)))
                .collect(),
            cluster: self.address.filter(|_| self.clusters.len() == 1),
        }
    }

    /// The settings of a protocol node `id` of cluster `cluster` run on the
    /// machine `node`.
    fn settings_in(
        &self,
        cluster: usize,
        node: &NodeEntry,
        id: NodeId,
        addrs: NodeAddrs,
        disks: Vec<DiskAccess>,
        capacity: Capacity,
    ) -> NodeSettings {
        let def = &self.clusters[cluster];
        let (bus, bus_addr) = match &def.transport {
            Transport::Multicast {
                group,
                interface,
                ttl,
                loopback,
            } => (
                BusMode::Multicast {
                    group: *group,
                    interface: multicast_interface(node, addrs.ring, *interface),
                    ttl: *ttl,
                    loopback: *loopback,
                },
                SocketAddr::V4(*group),
            ),
            Transport::Unicast => (
                BusMode::Unicast {
                    peers: self
                        .nodes
                        .iter()
                        .filter(|n| n.id != id && n.cluster == cluster)
                        .map(|n| (n.id, n.addrs.ring))
                        .collect(),
                },
                addrs.ring,
            ),
        };
        NodeSettings {
            proto: NodeConfig {
                cluster: def.id,
                node: id,
                config_version: self.config_version,
                bus: bus_addr,
                priority: def.priority.clone(),
                addrs,
                disks,
                capacity,
                servers: self.servers.clone(),
                timing: def.timing.clone(),
                mtu: def.mtu,
            },
            bus,
            keys: self.keys.clone(),
            admin_token_sha256: self.admin_token.as_deref().map(AdminDigest::of),
            cluster_name: def.name.clone(),
            limits: self.limits.clone(),
            seats: Vec::new(),
            service: self.service_addresses(cluster),
            tls: match (&self.tls_ca, &node.tls) {
                (Some(ca), Some((cert, key))) => Some(HttpTls {
                    ca: ca.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        }
    }
}
