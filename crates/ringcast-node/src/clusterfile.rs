//! The cluster file (claims 1-3): one TOML file describes a cluster, and the
//! configuration service derives each node's [`NodeSettings`] from it.
//!
//! Only the daemon parses TOML; the protocol core receives typed values.
//! `/docs/cluster-file.md` in the repository has an annotated example.
//!
//! # Schema
//!
//! Every table refuses keys it does not know.
//!
//! ```toml
//! [cluster]
//! id = 1                      # cluster id (u32), carried in every frame
//! name = "local"              # human-readable name, not empty
//! config_version = 1          # bump it on every change: running nodes refetch
//! transport = "multicast"     # optional, "multicast" (default) or "unicast"
//! bus = "239.255.42.1:7400"   # required with multicast: IPv4 multicast group:port
//! interface = "127.0.0.1"     # required with multicast: IP_MULTICAST_IF address
//! ttl = 1                     # optional (default 1, at most 255; 0 = this host)
//! loopback = true             # optional (default true): IP_MULTICAST_LOOP
//! key_file = "cluster.key"    # required, relative to this file's directory
//! admin_token_file = "admin.token"  # optional, relative to this file's directory
//! priority = [1, 2, 3]        # every node exactly once, highest priority first
//! mtu = 1400                  # optional (default 1400), 256..=65000
//! servers = ["127.0.0.1:7400"]  # optional: servers listed in the cluster map
//!
//! [timing]                    # optional table, every key optional;
//! status_interval_ms = 20     # defaults are ringcast_proto::Timing::lan()
//! notify_interval_ms = 20
//! notification_time_ms = 60   # at least twice notify_interval_ms
//! miss_limit = 3              # at least 1
//! takeover_step_ms = 10
//! preempt = true
//! preempt_delay_ms = 0
//! join_retry_ms = 20
//! leave_retry_ms = 20
//!
//! [limits]                    # optional table, every key optional (issue 7);
//! http_max_head_bytes = 16384 # defaults are settings::Limits::default(); the
//! bus_refused_per_s = 50      # full list is settings::Limits::FIELDS
//!
//! [[node]]                    # one table per node
//! id = 1                      # node id (u32), unique
//! ring = "127.0.0.1:7501"     # unicast UDP address: the ring, and the bus in unicast mode
//! http = "127.0.0.1:8501"     # HTTP address (API and streams)
//! max_streams = 100           # streaming capacity: concurrent streams
//! max_bytes_per_s = 1250000000  # streaming capacity: bytes per second
//!
//! [[node.disk]]               # optional, one table per disk this node reaches
//! id = 1                      # disk id: the same disk has the same id on every node
//! mount = "/srv/d1"           # absolute mount point on this node
//! probe = "/srv/d1/.ringcast-probe"  # absolute failure detection location
//! ```
//!
//! With `transport = "unicast"` bus messages go to every other node's `ring`
//! address; `bus`, `interface`, `ttl` and `loopback` may stay in the file but
//! are neither used nor checked (beyond their types), so switching transports
//! is a one-line change. The node's protocol configuration then names its own
//! ring address as its bus.
//!
//! The key file holds one or two lines (blank lines and lines starting with
//! `#` are ignored). Each is 64 hexadecimal characters (a 32-byte key),
//! optionally preceded by a key id and a colon (`2:ab12...`). Without an id the
//! first key is id 1 and the second id 2. The first key seals frames; the
//! second is also accepted, for a rotation. Give explicit ids when rotating so
//! that a key keeps its id when it moves from the second line to the first.
//!
//! # Errors
//!
//! [`load`] reports every problem it finds (a TOML syntax or type error stops
//! the parse, so it is reported alone), each as `file:line: field: what is
//! wrong`, where `field` is the dotted path such as `cluster.priority` or
//! `node.disk.id`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcast_proto::config::{MAX_MTU, MAX_NODES, MIN_MTU};
use ringcast_proto::{
    Capacity, ClusterId, ConfigError, DiskAccess, DiskId, KeyId, NodeAddrs, NodeConfig, NodeId,
    Timing,
};
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::settings::{key_from_hex, key_to_hex, BusMode, Limits, NodeSettings, KEY_LEN};

mod tree;
pub use tree::{local_hierarchy, parse_shape, ShapeError, MAX_LEVELS};

/// The MTU when the file sets none.
pub const DEFAULT_MTU: usize = 1400;
/// The multicast TTL when the file sets none.
pub const DEFAULT_TTL: u32 = 1;

/// One thing wrong in a cluster file, at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The cluster file.
    pub file: PathBuf,
    /// 1-based line of the offending value or key.
    pub line: usize,
    /// Dotted path of the field, such as `cluster.priority` or `node.disk.id`.
    pub field: String,
    /// What is wrong, as one sentence.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

/// Why a cluster file could not be loaded or written (claims 1-3).
#[derive(Debug, Error)]
pub enum ConfigFileError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not parse or does not validate; every problem found is listed.
    #[error("{}", list_problems(path, problems))]
    Invalid {
        /// The cluster file.
        path: PathBuf,
        /// Each problem, in line order.
        problems: Vec<Problem>,
    },
    /// A node id the file does not define.
    #[error("{} defines no node with id {}", path.display(), node.0)]
    UnknownNode {
        /// The cluster file.
        path: PathBuf,
        /// The node asked for.
        node: NodeId,
    },
    /// [`local_cluster`] was asked for no nodes or more than a cluster may hold.
    #[error("a local cluster needs 1 to {MAX_NODES} nodes, not {0}")]
    NodeCount(u32),
    /// [`local_cluster`]'s fixed ports do not fit below 65536.
    #[error("base port {base} leaves no room for {nodes} nodes (it needs ports up to {base} + {})", 2 * u64::from(*nodes))]
    PortRange {
        /// The base port asked for.
        base: u16,
        /// The number of nodes.
        nodes: u32,
    },
    /// [`local_hierarchy`] was given a shape it cannot lay out (claim 5).
    #[error("cannot lay out that tree: {0}")]
    Shape(ShapeError),
    /// No free port could be found on 127.0.0.1.
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    FreePort(#[source] io::Error),
    /// The operating system gave no random bytes for a key.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(getrandom::Error),
}

fn list_problems(path: &Path, problems: &[Problem]) -> String {
    let count = problems.len();
    let noun = if count == 1 { "problem" } else { "problems" };
    let mut text = format!("{} has {count} {noun}:", path.display());
    for problem in problems {
        text.push_str("\n  ");
        text.push_str(&problem.to_string());
    }
    text
}

/// A parsed and validated cluster file (claims 1-3). `Debug` never prints the
/// keys or the admin token.
pub struct ClusterFile {
    path: PathBuf,
    config_version: u32,
    /// Every cluster of the file, the root (`[cluster]`) first, then each
    /// `[[subcluster]]` in file order (claim 5).
    clusters: Vec<ClusterDef>,
    servers: Vec<SocketAddr>,
    nodes: Vec<NodeEntry>,
    keys: Vec<(KeyId, [u8; KEY_LEN])>,
    admin_token: Option<String>,
    limits: Limits,
}

/// One cluster of the file: the root or a sub-cluster.
#[derive(Clone, Debug)]
struct ClusterDef {
    id: ClusterId,
    name: String,
    transport: Transport,
    /// Its members, nodes or sub-clusters, highest priority first.
    priority: Vec<NodeId>,
    mtu: usize,
    timing: Timing,
    /// Index of the parent in [`ClusterFile::clusters`]; `None` for the root.
    parent: Option<usize>,
    /// 0 for the root.
    level: usize,
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
enum Transport {
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
struct NodeEntry {
    id: NodeId,
    addrs: NodeAddrs,
    capacity: Capacity,
    disks: Vec<DiskAccess>,
    /// The node's own multicast interface, overriding the cluster's.
    interface: Option<Ipv4Addr>,
    /// Claim 5: the ring address of its seat in each ancestor cluster,
    /// nearest parent first.
    seats: Vec<SocketAddr>,
    /// Index of its cluster in [`ClusterFile::clusters`].
    cluster: usize,
    /// Where the node's `id` is, for problems found after parsing.
    line: usize,
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

    /// The token guarding the nodes' admin endpoints, if the file names one.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// What node `node` runs with in its own cluster, and in each ancestor
    /// cluster while it holds its cluster's seat there (claim 5).
    fn settings_for(&self, node: &NodeEntry) -> NodeSettings {
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
            admin_token: self.admin_token.clone(),
            cluster_name: def.name.clone(),
            limits: self.limits.clone(),
            seats: Vec::new(),
        }
    }
}

/// Reads, parses and validates the cluster file at `path`, and reads the key
/// and admin token files it names.
pub fn load(path: &Path) -> Result<ClusterFile, ConfigFileError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut checker = Checker::new(path, &text);
    let raw = match toml::from_str::<RawFile>(&text) {
        Ok(raw) => raw,
        Err(err) => {
            checker.parse_error(&err);
            return Err(checker.into_error());
        }
    };
    match checker.check(raw) {
        Some(file) if checker.problems.is_empty() => Ok(file),
        _ => Err(checker.into_error()),
    }
}

// ---- the file as parsed ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cluster: Spanned<RawCluster>,
    timing: Option<Spanned<RawTiming>>,
    limits: Option<BTreeMap<String, Spanned<u64>>>,
    #[serde(default, rename = "node")]
    nodes: Vec<RawNode>,
    #[serde(default, rename = "subcluster")]
    subclusters: Vec<Spanned<RawSubcluster>>,
}

/// Claim 5: a `[[subcluster]]` table: a cluster that is one node of the
/// cluster whose priority list names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubcluster {
    id: Spanned<u32>,
    name: Spanned<String>,
    bus: Option<Spanned<SocketAddr>>,
    interface: Option<Spanned<Ipv4Addr>>,
    ttl: Option<Spanned<u32>>,
    loopback: Option<Spanned<bool>>,
    priority: Spanned<Vec<Spanned<u32>>>,
    mtu: Option<Spanned<usize>>,
    timing: Option<Spanned<RawTiming>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    id: u32,
    name: Spanned<String>,
    config_version: u32,
    transport: Option<TransportKind>,
    bus: Option<Spanned<SocketAddr>>,
    interface: Option<Spanned<Ipv4Addr>>,
    ttl: Option<Spanned<u32>>,
    loopback: Option<Spanned<bool>>,
    key_file: Spanned<String>,
    admin_token_file: Option<Spanned<String>>,
    priority: Spanned<Vec<Spanned<u32>>>,
    mtu: Option<Spanned<usize>>,
    #[serde(default)]
    servers: Vec<SocketAddr>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TransportKind {
    Multicast,
    Unicast,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    status_interval_ms: Option<Spanned<u64>>,
    notify_interval_ms: Option<Spanned<u64>>,
    notification_time_ms: Option<Spanned<u64>>,
    miss_limit: Option<Spanned<u32>>,
    takeover_step_ms: Option<Spanned<u64>>,
    preempt: Option<bool>,
    preempt_delay_ms: Option<Spanned<u64>>,
    join_retry_ms: Option<Spanned<u64>>,
    leave_retry_ms: Option<Spanned<u64>>,
    disk_check_interval_ms: Option<Spanned<u64>>,
    disk_quorum: Option<Spanned<u32>>,
}

impl RawTiming {
    /// The span of a duration field, named as `Timing::validate` names it.
    fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let value = match field {
            "status_interval" => &self.status_interval_ms,
            "notify_interval" => &self.notify_interval_ms,
            "notification_time" => &self.notification_time_ms,
            "takeover_step" => &self.takeover_step_ms,
            "preempt_delay" => &self.preempt_delay_ms,
            "join_retry" => &self.join_retry_ms,
            "leave_retry" => &self.leave_retry_ms,
            "disk_check_interval" => &self.disk_check_interval_ms,
            _ => &None,
        };
        value.as_ref().map(Spanned::span)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<u32>,
    ring: Spanned<SocketAddr>,
    http: Spanned<SocketAddr>,
    max_streams: u32,
    max_bytes_per_s: u64,
    interface: Option<Spanned<Ipv4Addr>>,
    #[serde(default)]
    seats: Vec<Spanned<SocketAddr>>,
    #[serde(default)]
    disk: Vec<RawDisk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    id: Spanned<u32>,
    mount: Spanned<String>,
    probe: Spanned<String>,
}

// ---- validation --------------------------------------------------------------

/// The multicast keys of a `[cluster]` or `[[subcluster]]` table.
struct MulticastKeys<'a> {
    /// The table's name, for problems: `cluster` or `subcluster`.
    table: &'a str,
    bus: Option<&'a Spanned<SocketAddr>>,
    interface: Option<&'a Spanned<Ipv4Addr>>,
    ttl: Option<&'a Spanned<u32>>,
    loopback: Option<&'a Spanned<bool>>,
}

/// The ids of a priority list.
fn ids(priority: &Spanned<Vec<Spanned<u32>>>) -> Vec<NodeId> {
    priority
        .get_ref()
        .iter()
        .map(|n| NodeId(*n.get_ref()))
        .collect()
}

/// Byte offsets of line starts, to turn spans into 1-based line numbers.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset).max(1)
    }
}

/// Collects problems while turning a [`RawFile`] into a [`ClusterFile`].
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    lines: LineIndex,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Checker {
            path,
            text,
            lines: LineIndex::new(text),
            problems: Vec::new(),
        }
    }

    fn report(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.report_at(self.lines.line(span.start), field, message);
    }

    fn report_at(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.path.to_path_buf(),
            line,
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn into_error(mut self) -> ConfigFileError {
        self.problems.sort_by_key(|p| p.line);
        ConfigFileError::Invalid {
            path: self.path.to_path_buf(),
            problems: self.problems,
        }
    }

    fn parse_error(&mut self, err: &toml::de::Error) {
        let span = err.span().unwrap_or(0..0);
        let field = parse_error_field(err, self.text);
        let message = err.message().lines().next().unwrap_or("invalid TOML");
        self.report(span, &field, message.to_string());
    }

    /// Every check; `None` when a part could not be built at all.
    fn check(&mut self, raw: RawFile) -> Option<ClusterFile> {
        let cluster_span = raw.cluster.span();
        let cluster = raw.cluster.into_inner();
        self.check_name(&cluster.name, "cluster.name");
        let transport = self.check_transport(&cluster, cluster_span.clone());
        let mut nodes = self.check_nodes(&raw.nodes, cluster_span.clone());
        let timing = self.check_timing(raw.timing.as_ref(), "timing");
        let limits = self.check_limits(raw.limits.as_ref());
        let mtu = self.check_mtu(cluster.mtu.as_ref(), "cluster.mtu");
        let keys = self.read_keys(&cluster.key_file);
        let admin_token = self.read_admin_token(cluster.admin_token_file.as_ref());
        let root = match (transport, timing) {
            (Some(transport), Some(timing)) => Some(ClusterDef {
                id: ClusterId(cluster.id),
                name: cluster.name.get_ref().clone(),
                transport,
                priority: ids(&cluster.priority),
                mtu,
                timing,
                parent: None,
                level: 0,
            }),
            _ => None,
        };
        let clusters = if raw.subclusters.is_empty() {
            self.check_priority(&cluster.priority, &nodes);
            self.check_no_seats(&raw.nodes);
            vec![root?]
        } else {
            self.check_tree(&cluster, cluster_span, root, &raw.subclusters, &mut nodes)?
        };
        self.check_node_interfaces(&clusters, &nodes);
        let file = ClusterFile {
            path: self.path.to_path_buf(),
            config_version: cluster.config_version,
            clusters,
            servers: cluster.servers,
            nodes,
            keys: keys?,
            admin_token: admin_token?,
            limits,
        };
        if self.problems.is_empty() {
            self.check_each_node_config(&file, &cluster.priority);
        }
        Some(file)
    }

    fn check_name(&mut self, name: &Spanned<String>, field: &str) {
        if name.get_ref().trim().is_empty() {
            self.report(name.span(), field, "must not be empty");
        }
    }

    /// The multicast keys are checked only with multicast: a unicast file may
    /// keep them, unused, so that switching transports is a one-line change.
    fn check_transport(&mut self, c: &RawCluster, cluster_span: Range<usize>) -> Option<Transport> {
        match c.transport.unwrap_or(TransportKind::Multicast) {
            TransportKind::Multicast => self.check_multicast(
                MulticastKeys {
                    table: "cluster",
                    bus: c.bus.as_ref(),
                    interface: c.interface.as_ref(),
                    ttl: c.ttl.as_ref(),
                    loopback: c.loopback.as_ref(),
                },
                cluster_span,
            ),
            TransportKind::Unicast => Some(Transport::Unicast),
        }
    }

    fn check_multicast(
        &mut self,
        c: MulticastKeys<'_>,
        table_span: Range<usize>,
    ) -> Option<Transport> {
        let group = self.check_bus(c.bus, table_span, c.table);
        let interface = self.check_interface(c.interface, c.table);
        let ttl = match c.ttl {
            Some(ttl) if *ttl.get_ref() > 255 => {
                let message = format!("{} is above 255, the largest multicast TTL", ttl.get_ref());
                self.report(ttl.span(), &format!("{}.ttl", c.table), message);
                None
            }
            Some(ttl) => Some(*ttl.get_ref()),
            None => Some(DEFAULT_TTL),
        };
        Some(Transport::Multicast {
            group: group?,
            interface: interface?,
            ttl: ttl?,
            loopback: c.loopback.is_none_or(|l| *l.get_ref()),
        })
    }

    fn check_bus(
        &mut self,
        bus: Option<&Spanned<SocketAddr>>,
        table_span: Range<usize>,
        table: &str,
    ) -> Option<SocketAddrV4> {
        let field = format!("{table}.bus");
        let Some(bus) = bus else {
            self.report(
                table_span,
                &field,
                "is required with transport = \"multicast\": give the multicast group and port, such as \"239.255.42.1:7400\"",
            );
            return None;
        };
        let problem = match bus.get_ref() {
            SocketAddr::V4(group) if !group.ip().is_multicast() => format!(
                "{group} is not a multicast address; use a group in 224.0.0.0/4 such as 239.255.42.1:7400, or set transport = \"unicast\""
            ),
            SocketAddr::V4(group) if group.port() == 0 => {
                format!("{group} has port 0; the nodes need a fixed port to share")
            }
            SocketAddr::V4(group) => return Some(*group),
            SocketAddr::V6(addr) => format!(
                "{addr} is not an IPv4 address; the multicast bus needs an IPv4 group such as 239.255.42.1:7400"
            ),
        };
        self.report(bus.span(), &field, problem);
        None
    }

    fn check_interface(
        &mut self,
        interface: Option<&Spanned<Ipv4Addr>>,
        table: &str,
    ) -> Option<Option<Ipv4Addr>> {
        let Some(interface) = interface else {
            // Each node then multicasts from its own interface or ring address.
            return Some(None);
        };
        let ip = *interface.get_ref();
        if ip.is_multicast() || ip.is_broadcast() || ip.is_unspecified() {
            let message = format!("{ip} is not a local interface address");
            self.report(interface.span(), &format!("{table}.interface"), message);
            return None;
        }
        Some(Some(ip))
    }

    fn check_nodes(&mut self, raw: &[RawNode], cluster_span: Range<usize>) -> Vec<NodeEntry> {
        if raw.is_empty() {
            self.report(cluster_span, "node", "the file defines no [[node]] table");
        }
        let mut first_line: BTreeMap<u32, usize> = BTreeMap::new();
        let mut rings: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        let mut https: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        let mut nodes = Vec::new();
        for node in raw {
            let id = *node.id.get_ref();
            let line = self.lines.line(node.id.span().start);
            if let Some(first) = first_line.get(&id) {
                let message = format!("node {id} is defined twice (first at line {first})");
                self.report(node.id.span(), "node.id", message);
                continue;
            }
            first_line.insert(id, line);
            self.check_node_addr(&node.ring, "node.ring", id, &mut rings);
            self.check_node_addr(&node.http, "node.http", id, &mut https);
            for seat in &node.seats {
                self.check_node_addr(seat, "node.seats", id, &mut rings);
            }
            nodes.push(NodeEntry {
                id: NodeId(id),
                addrs: NodeAddrs {
                    ring: *node.ring.get_ref(),
                    http: *node.http.get_ref(),
                },
                capacity: Capacity {
                    max_streams: node.max_streams,
                    max_bytes_per_s: node.max_bytes_per_s,
                },
                disks: self.check_disks(id, &node.disk),
                interface: self.check_node_interface(id, node),
                seats: node.seats.iter().map(|s| *s.get_ref()).collect(),
                cluster: 0,
                line,
            });
        }
        nodes
    }

    /// With multicast, every node needs an IPv4 interface to send from: its
    /// own, its cluster's, or its ring address.
    /// In a tree the same holds in every ancestor, where the node's seat
    /// address stands for its ring address (claim 5).
    fn check_node_interfaces(&mut self, clusters: &[ClusterDef], nodes: &[NodeEntry]) {
        for node in nodes {
            if node.interface.is_some() {
                continue;
            }
            let mut cluster = Some(node.cluster);
            let mut addrs = std::iter::once(node.addrs.ring).chain(node.seats.iter().copied());
            while let (Some(c), Some(addr)) = (cluster.and_then(|c| clusters.get(c)), addrs.next())
            {
                let needs_one = matches!(
                    c.transport,
                    Transport::Multicast {
                        interface: None,
                        ..
                    }
                );
                if needs_one && !addr.is_ipv4() {
                    self.report_at(
                        node.line,
                        "node.interface",
                        format!(
                            "node {} has the IPv6 address {addr} in cluster {} and no multicast interface: set interface = \"ADDRESS\" in the node or the cluster",
                            node.id.0, c.id.0
                        ),
                    );
                    break;
                }
                cluster = c.parent;
            }
        }
    }

    /// A node's own multicast interface, if it names one. Without it the node
    /// uses the cluster's `interface`, else the IPv4 address of its ring socket.
    fn check_node_interface(&mut self, id: u32, node: &RawNode) -> Option<Ipv4Addr> {
        let own = node.interface.as_ref()?;
        let ip = *own.get_ref();
        if ip.is_multicast() || ip.is_broadcast() || ip.is_unspecified() {
            let message = format!("{ip} is not a local interface address of node {id}");
            self.report(own.span(), "node.interface", message);
        }
        Some(ip)
    }

    fn check_node_addr(
        &mut self,
        addr: &Spanned<SocketAddr>,
        field: &str,
        node: u32,
        seen: &mut BTreeMap<SocketAddr, u32>,
    ) {
        let value = *addr.get_ref();
        if value.ip().is_unspecified() || value.port() == 0 || value.ip().is_multicast() {
            let message = format!(
                "{value} is not an address other nodes can reach; give this node's own IP address and a fixed port"
            );
            self.report(addr.span(), field, message);
        } else if let Some(other) = seen.get(&value) {
            let message = format!("{value} is already node {other}'s address");
            self.report(addr.span(), field, message);
        } else {
            seen.insert(value, node);
        }
    }

    fn check_disks(&mut self, node: u32, raw: &[RawDisk]) -> Vec<DiskAccess> {
        let mut seen = BTreeSet::new();
        let mut disks = Vec::new();
        for disk in raw {
            let id = *disk.id.get_ref();
            if !seen.insert(id) {
                let message = format!("disk {id} appears twice in node {node}'s disk list");
                self.report(disk.id.span(), "node.disk.id", message);
                continue;
            }
            self.check_absolute(&disk.mount, "node.disk.mount");
            self.check_absolute(&disk.probe, "node.disk.probe");
            disks.push(DiskAccess {
                id: DiskId(id),
                mount: disk.mount.get_ref().clone(),
                probe_path: disk.probe.get_ref().clone(),
            });
        }
        disks
    }

    fn check_absolute(&mut self, path: &Spanned<String>, field: &str) {
        if !Path::new(path.get_ref()).is_absolute() {
            let message = format!("{:?} is not an absolute path", path.get_ref());
            self.report(path.span(), field, message);
        }
    }

    fn check_priority(&mut self, priority: &Spanned<Vec<Spanned<u32>>>, nodes: &[NodeEntry]) {
        let known: BTreeMap<u32, usize> = nodes.iter().map(|n| (n.id.0, n.line)).collect();
        let mut listed = BTreeSet::new();
        for entry in priority.get_ref() {
            let id = *entry.get_ref();
            if !known.contains_key(&id) {
                let message = format!("names node {id}, which no [[node]] table defines");
                self.report(entry.span(), "cluster.priority", message);
            } else if !listed.insert(id) {
                let message = format!("names node {id} more than once");
                self.report(entry.span(), "cluster.priority", message);
            }
        }
        if priority.get_ref().is_empty() {
            self.report(
                priority.span(),
                "cluster.priority",
                "is empty; list every node, highest priority first",
            );
        }
        for (id, line) in &known {
            if !listed.contains(id) {
                let message = format!(
                    "does not name node {id} (defined at line {line}); list every node once"
                );
                self.report(priority.span(), "cluster.priority", message);
            }
        }
    }

    /// Issue 7: the `[limits]` table; each bad entry is reported at its line
    /// and leaves its default.
    fn check_limits(&mut self, raw: Option<&BTreeMap<String, Spanned<u64>>>) -> Limits {
        let mut limits = Limits::default();
        for (name, value) in raw.into_iter().flatten() {
            if let Err(e) = limits.set(name, *value.get_ref()) {
                let message = match e {
                    crate::settings::LimitError::Unknown(_) => format!(
                        "unknown limit; the limits are {}",
                        Limits::FIELDS.join(", ")
                    ),
                    e => e.to_string(),
                };
                self.report(value.span(), &format!("limits.{name}"), message);
            }
        }
        limits
    }

    fn check_timing(&mut self, raw: Option<&Spanned<RawTiming>>, table: &str) -> Option<Timing> {
        let Some(raw) = raw else {
            return Some(Timing::lan());
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let lan = Timing::lan();
        let ms = |value: &Option<Spanned<u64>>, default: Duration| {
            value
                .as_ref()
                .map_or(default, |v| Duration::from_millis(*v.get_ref()))
        };
        let miss_limit = match &raw.miss_limit {
            None => lan.miss_limit,
            Some(limit) => match NonZeroU32::new(*limit.get_ref()) {
                Some(limit) => limit,
                None => {
                    self.report(
                        limit.span(),
                        &format!("{table}.miss_limit"),
                        "must be at least 1",
                    );
                    return None;
                }
            },
        };
        let timing = Timing {
            status_interval: ms(&raw.status_interval_ms, lan.status_interval),
            notify_interval: ms(&raw.notify_interval_ms, lan.notify_interval),
            notification_time: ms(&raw.notification_time_ms, lan.notification_time),
            miss_limit,
            takeover_step: ms(&raw.takeover_step_ms, lan.takeover_step),
            preempt: raw.preempt.unwrap_or(lan.preempt),
            preempt_delay: ms(&raw.preempt_delay_ms, lan.preempt_delay),
            join_retry: ms(&raw.join_retry_ms, lan.join_retry),
            leave_retry: ms(&raw.leave_retry_ms, lan.leave_retry),
            disk_check_interval: ms(&raw.disk_check_interval_ms, lan.disk_check_interval),
            disk_quorum: raw
                .disk_quorum
                .as_ref()
                .map_or(lan.disk_quorum, |q| *q.get_ref()),
        };
        match timing.validate() {
            Ok(()) => Some(timing),
            Err(err) => {
                self.report_timing_error(&err, raw, span, table);
                None
            }
        }
    }

    fn report_timing_error(
        &mut self,
        err: &ConfigError,
        raw: &RawTiming,
        span: Range<usize>,
        table: &str,
    ) {
        let (field, message) = match err {
            ConfigError::ZeroDuration { field } => {
                (*field, "must be greater than zero".to_string())
            }
            ConfigError::DurationTooLong { field } => (
                *field,
                "is longer than one hour, the longest allowed".to_string(),
            ),
            ConfigError::NotificationTimeTooShort {
                notification_time,
                notify_interval,
            } => {
                let field =
                    if raw.notification_time_ms.is_some() || raw.notify_interval_ms.is_none() {
                        "notification_time"
                    } else {
                        "notify_interval"
                    };
                let message = format!(
                    "notification_time_ms ({} ms) must be at least twice notify_interval_ms ({} ms)",
                    notification_time.as_millis(),
                    notify_interval.as_millis()
                );
                (field, message)
            }
            other => ("", other.to_string()),
        };
        let span = raw.span_of(field).unwrap_or(span);
        let name = if field.is_empty() {
            table.to_string()
        } else {
            format!("{table}.{field}_ms")
        };
        self.report(span, &name, message);
    }

    fn check_mtu(&mut self, mtu: Option<&Spanned<usize>>, field: &str) -> usize {
        let Some(mtu) = mtu else {
            return DEFAULT_MTU;
        };
        let value = *mtu.get_ref();
        if !(MIN_MTU..=MAX_MTU).contains(&value) {
            let message = format!("{value} is outside {MIN_MTU}..={MAX_MTU}");
            self.report(mtu.span(), field, message);
        }
        value
    }

    /// A file named in the cluster file, relative to the cluster file's directory.
    fn sibling(&self, name: &str) -> PathBuf {
        match self.path.parent() {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    fn read_keys(&mut self, key_file: &Spanned<String>) -> Option<Vec<(KeyId, [u8; KEY_LEN])>> {
        let path = self.sibling(key_file.get_ref());
        let parsed = fs::read_to_string(&path)
            .map_err(|err| format!("cannot read the key file {}: {err}", path.display()))
            .and_then(|text| parse_key_file(&text, &path));
        match parsed {
            Ok(keys) => Some(keys),
            Err(message) => {
                self.report(key_file.span(), "cluster.key_file", message);
                None
            }
        }
    }

    fn read_admin_token(&mut self, file: Option<&Spanned<String>>) -> Option<Option<String>> {
        let Some(file) = file else {
            return Some(None);
        };
        let path = self.sibling(file.get_ref());
        let message = match fs::read_to_string(&path) {
            Err(err) => format!("cannot read the admin token file {}: {err}", path.display()),
            Ok(text) => {
                let token = text.trim();
                if !token.is_empty() && token.chars().all(|c| c.is_ascii_graphic()) {
                    return Some(Some(token.to_string()));
                }
                format!(
                    "the admin token file {} must hold one token of printable ASCII without spaces",
                    path.display()
                )
            }
        };
        self.report(file.span(), "cluster.admin_token_file", message);
        None
    }

    /// The protocol's own checks, as a safety net behind the precise ones above.
    fn check_each_node_config(
        &mut self,
        file: &ClusterFile,
        priority: &Spanned<Vec<Spanned<u32>>>,
    ) {
        for node in &file.nodes {
            let settings = file.settings_for(node);
            let results = std::iter::once(&settings)
                .chain(&settings.seats)
                .map(|s| s.proto.validate());
            if let Some(Err(err)) = results.into_iter().find(Result::is_err) {
                let (field, line) = match err {
                    ConfigError::TooManyNodes { .. } => {
                        ("cluster.priority", self.lines.line(priority.span().start))
                    }
                    ConfigError::TooManyDisks { .. } => ("node.disk", node.line),
                    _ => ("node", node.line),
                };
                let message = format!("node {}: {err}", node.id.0);
                self.report_at(line, field, message);
            }
        }
    }
}

/// Which field a TOML parse error is about, as a dotted path such as
/// `cluster.bus`. toml keeps its own key path private, so the path is read
/// from the document around the error's span: the table header above it and
/// the key on the nearest `key = ` line.
fn parse_error_field(err: &toml::de::Error, text: &str) -> String {
    let span = err.span().unwrap_or(0..0);
    let offset = span.start.min(text.len());
    let header = header_path(line_at(text, offset));
    let message = err.message();
    let (table, leaf) = if let Some(name) = backticked_after(message, "missing field ") {
        // The span covers the table that lacks the field; an empty one at 0 is the document.
        let table = if span.is_empty() && offset == 0 {
            String::new()
        } else {
            header.unwrap_or_else(|| enclosing_table(text, offset))
        };
        (table, Some(name))
    } else if let Some(name) = backticked_after(message, "unknown field ") {
        // An unknown table is reported on its own header: its parent holds the field.
        let table = match header {
            Some(path) => path
                .rsplit_once('.')
                .map_or("", |(parent, _)| parent)
                .to_string(),
            None => enclosing_table(text, offset),
        };
        (table, Some(name))
    } else {
        let table = header.unwrap_or_else(|| enclosing_table(text, offset));
        (table, key_above(text, offset).map(str::to_string))
    };
    match (table.is_empty(), leaf) {
        (false, Some(leaf)) => format!("{table}.{leaf}"),
        (true, Some(leaf)) => leaf.to_string(),
        (false, None) => table,
        (true, None) => "toml".to_string(),
    }
}

/// The start of the line holding byte `offset`.
fn line_start(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1)
}

/// The line holding byte `offset`.
fn line_at(text: &str, offset: usize) -> &str {
    let rest = text.get(line_start(text, offset)..).unwrap_or("");
    rest.lines().next().unwrap_or("")
}

/// The dotted path of a table header line (`[a.b]` or `[[a.b]]`), or `None`.
fn header_path(line: &str) -> Option<String> {
    let line = line.trim();
    let inner = match line.strip_prefix("[[") {
        Some(rest) => rest.split("]]").next()?,
        None => line.strip_prefix('[')?.split(']').next()?,
    };
    let keys: Vec<&str> = inner
        .split('.')
        .map(|k| k.trim().trim_matches('"'))
        .collect();
    Some(keys.join("."))
}

/// The path of the last table header before the line holding `offset`.
fn enclosing_table(text: &str, offset: usize) -> String {
    let before = text.get(..line_start(text, offset)).unwrap_or("");
    before
        .lines()
        .rev()
        .find_map(header_path)
        .unwrap_or_default()
}

/// The key of the nearest `key = ...` line at or above `offset` within its
/// table (a value may continue over several lines, as arrays do).
fn key_above(text: &str, offset: usize) -> Option<&str> {
    let end = text
        .get(offset..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| offset + i);
    text.get(..end)?
        .lines()
        .rev()
        .take_while(|line| header_path(line).is_none())
        .find_map(assigned_key)
}

/// `key` of a line `key = value`, for a bare key.
fn assigned_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    bare.then_some(key)
}

/// The text between backticks right after `prefix` in `message`.
fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix('`')?;
    rest.split('`').next().map(str::to_string)
}

/// Parses a key file (see the module doc); errors name the file and its line.
fn parse_key_file(text: &str, path: &Path) -> Result<Vec<(KeyId, [u8; KEY_LEN])>, String> {
    let mut keys: Vec<(KeyId, [u8; KEY_LEN])> = Vec::new();
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    for (number, line) in lines {
        let at = format!("{}:{number}", path.display());
        if keys.len() == 2 {
            return Err(format!(
                "the key file {at} holds a third key; at most two are allowed"
            ));
        }
        let (id, hex) = match line.split_once(':') {
            Some((id, hex)) => {
                let id = id.trim().parse::<u8>().map_err(|_| {
                    format!("the key file {at} has a key id that is not a number from 0 to 255")
                })?;
                (KeyId(id), hex.trim())
            }
            None => (KeyId(keys.len() as u8 + 1), line),
        };
        let key = key_from_hex(hex).ok_or_else(|| {
            format!("the key file {at} does not hold 64 hexadecimal characters (a 32-byte key)")
        })?;
        if keys.iter().any(|(other, _)| *other == id) {
            return Err(format!("the key file {at} repeats key id {}", id.0));
        }
        keys.push((id, key));
    }
    if keys.is_empty() {
        return Err(format!(
            "the key file {} holds no key; write 64 hexadecimal characters (a 32-byte key)",
            path.display()
        ));
    }
    Ok(keys)
}

// ---- a local cluster ---------------------------------------------------------

/// The ports of a local cluster: the bus, then each node's ring and HTTP port.
struct LocalPorts {
    bus: u16,
    ring: Vec<u16>,
    http: Vec<u16>,
}

/// Writes `cluster.toml`, `cluster.key` (a fresh random key) and `admin.token`
/// into `dir` for `nodes` nodes on 127.0.0.1, and returns the cluster file's path.
///
/// The bus is multicast on a random group in 239.255.0.0/16 with interface
/// 127.0.0.1 and TTL 0, so no traffic leaves the host; timing is 20 ms
/// (`Timing::lan()`). With `base_port` the bus uses `base_port`, node `i`
/// (from 1) rings on `base_port + i` and serves HTTP on `base_port + nodes + i`.
/// Without it every port is one the system reports free right now (another
/// program may still take it before the nodes start). Disk lists are empty.
pub fn local_cluster(
    dir: &Path,
    nodes: u32,
    base_port: Option<u16>,
) -> Result<PathBuf, ConfigFileError> {
    local_cluster_with_disks(dir, nodes, base_port, false)
}

/// [`local_cluster`], and with `disks` one disk per node under `dir/disks/d<k>`,
/// each shared by two nodes (disk k by nodes k and k+1, the last with node 1),
/// each node probing its own failure detection location on it (claim 3).
pub fn local_cluster_with_disks(
    dir: &Path,
    nodes: u32,
    base_port: Option<u16>,
    disks: bool,
) -> Result<PathBuf, ConfigFileError> {
    if nodes == 0 || nodes as usize > MAX_NODES {
        return Err(ConfigFileError::NodeCount(nodes));
    }
    let ports = match base_port {
        Some(base) => fixed_ports(base, nodes)?,
        None => free_ports(nodes).map_err(ConfigFileError::FreePort)?,
    };
    let mut group = [0u8; 2];
    getrandom::getrandom(&mut group).map_err(ConfigFileError::Random)?;
    let group = Ipv4Addr::new(239, 255, group[0].clamp(1, 254), group[1].clamp(1, 254));
    write_fresh_secrets(dir)?;
    let path = dir.join("cluster.toml");
    let mut text = local_cluster_toml(group, &ports);
    if disks {
        text = with_shared_disks(&text, dir, nodes)?;
    }
    write_private(&path, &text)?;
    Ok(path)
}

/// Adds the shared disks of a local cluster to each `[[node]]` table, and
/// creates their mount points and library folders.
fn with_shared_disks(text: &str, dir: &Path, nodes: u32) -> Result<String, ConfigFileError> {
    let mount = |k: u32| dir.join("disks").join(format!("d{k}"));
    for k in 1..=nodes {
        let lib = mount(k).join(crate::catalog::LIBRARY_DIR);
        fs::create_dir_all(&lib).map_err(|source| ConfigFileError::Write { path: lib, source })?;
    }
    let mut out = String::new();
    let mut blocks = text.split("\n[[node]]\n");
    out.push_str(blocks.next().unwrap_or_default());
    for (i, block) in blocks.enumerate() {
        let node = i as u32 + 1;
        out.push_str("\n[[node]]\n");
        out.push_str(block);
        let previous = if node == 1 { nodes } else { node - 1 };
        let mut reached = vec![node];
        if previous != node {
            reached.push(previous);
        }
        for k in reached {
            let m = mount(k);
            out.push_str(&format!(
                "\n[[node.disk]]\nid = {k}\nmount = \"{}\"\nprobe = \"{}\"\n",
                m.display(),
                m.join(format!(".ringcast-probe-n{node}")).display()
            ));
        }
    }
    Ok(out)
}

fn fixed_ports(base: u16, nodes: u32) -> Result<LocalPorts, ConfigFileError> {
    let port = |offset: u32| {
        u16::try_from(u32::from(base) + offset)
            .map_err(|_| ConfigFileError::PortRange { base, nodes })
    };
    if base == 0 {
        return Err(ConfigFileError::PortRange { base, nodes });
    }
    Ok(LocalPorts {
        bus: base,
        ring: (1..=nodes).map(port).collect::<Result<_, _>>()?,
        http: (1..=nodes)
            .map(|i| port(nodes.saturating_add(i)))
            .collect::<Result<_, _>>()?,
    })
}

/// Ports free on 127.0.0.1, all distinct: every socket stays open until all are chosen.
fn free_ports(nodes: u32) -> io::Result<LocalPorts> {
    let localhost = (Ipv4Addr::LOCALHOST, 0);
    let mut udp = Vec::new();
    let mut taken = BTreeSet::new();
    for _ in 0..=nodes {
        let socket = UdpSocket::bind(localhost)?;
        taken.insert(socket.local_addr()?.port());
        udp.push(socket);
    }
    let mut tcp = Vec::new();
    let mut http = Vec::new();
    while http.len() < nodes as usize {
        let listener = TcpListener::bind(localhost)?;
        let port = listener.local_addr()?.port();
        if taken.insert(port) {
            http.push(port);
        }
        tcp.push(listener);
    }
    let ports: Vec<u16> = udp
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<io::Result<_>>()?;
    Ok(LocalPorts {
        bus: ports[0],
        ring: ports[1..].to_vec(),
        http,
    })
}

/// Streaming capacity of a local cluster's node, bytes per second: loopback is
/// memory, not a network card, so the limit is the machine's, not a NIC's.
const LOCAL_BYTES_PER_S: u64 = 40_000_000_000;

fn local_cluster_toml(group: Ipv4Addr, ports: &LocalPorts) -> String {
    let t = Timing::lan();
    let ms = |d: Duration| d.as_millis();
    let priority: Vec<String> = (1..=ports.ring.len()).map(|i| i.to_string()).collect();
    let mut text = format!(
        "# A local ringcast cluster on 127.0.0.1, written by ringcast.\n\
         [cluster]\n\
         id = 1\n\
         name = \"local\"\n\
         config_version = 1\n\
         transport = \"multicast\"\n\
         bus = \"{group}:{bus}\"\n\
         interface = \"127.0.0.1\"\n\
         ttl = 0                       # multicast stays on this host\n\
         loopback = true\n\
         key_file = \"cluster.key\"\n\
         admin_token_file = \"admin.token\"\n\
         priority = [{priority}]\n\
         mtu = {DEFAULT_MTU}\n\
         \n\
         [timing]\n\
         status_interval_ms = {status}\n\
         notify_interval_ms = {notify}\n\
         notification_time_ms = {notification}\n\
         miss_limit = {miss}\n\
         takeover_step_ms = {step}\n\
         preempt = {preempt}\n\
         preempt_delay_ms = {delay}\n\
         join_retry_ms = {join}\n\
         leave_retry_ms = {leave}\n",
        bus = ports.bus,
        priority = priority.join(", "),
        status = ms(t.status_interval),
        notify = ms(t.notify_interval),
        notification = ms(t.notification_time),
        miss = t.miss_limit,
        step = ms(t.takeover_step),
        preempt = t.preempt,
        delay = ms(t.preempt_delay),
        join = ms(t.join_retry),
        leave = ms(t.leave_retry),
    );
    for (i, (ring, http)) in ports.ring.iter().zip(&ports.http).enumerate() {
        text.push_str(&format!(
            "\n[[node]]\nid = {}\nring = \"127.0.0.1:{ring}\"\nhttp = \"127.0.0.1:{http}\"\nmax_streams = 100\nmax_bytes_per_s = {LOCAL_BYTES_PER_S}\n",
            i + 1
        ));
    }
    text
}

/// Creates `dir` and writes a fresh random `cluster.key` and `admin.token`
/// into it, readable by their owner only; returns the key.
fn write_fresh_secrets(dir: &Path) -> Result<[u8; KEY_LEN], ConfigFileError> {
    let mut random = [0u8; KEY_LEN + 16];
    getrandom::getrandom(&mut random).map_err(ConfigFileError::Random)?;
    let (key, token) = random.split_at(KEY_LEN);
    fs::create_dir_all(dir).map_err(|source| ConfigFileError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut key_bytes = [0u8; KEY_LEN];
    key_bytes.copy_from_slice(key);
    write_private(
        &dir.join("cluster.key"),
        &format!("{}\n", key_to_hex(&key_bytes)),
    )?;
    write_private(
        &dir.join("admin.token"),
        &format!("{}\n", hex::encode(token)),
    )?;
    Ok(key_bytes)
}

/// Writes a file only its owner can read and write (it may hold a key or a token).
fn write_private(path: &Path, contents: &str) -> Result<(), ConfigFileError> {
    write_private_bytes(path, contents.as_bytes()).map_err(|source| ConfigFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates or truncates `path` with mode 0600 (on Unix), writes `contents`
/// and syncs it to disk.
pub(crate) fn write_private_bytes(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    const VALID: &str = r#"# a test cluster
[cluster]
id = 7
name = "test"
config_version = 3
bus = "239.255.42.1:7400"
transport = "multicast"
interface = "127.0.0.1"
ttl = 0
loopback = true
key_file = "cluster.key"
admin_token_file = "admin.token"
priority = [2, 1, 3]
mtu = 1400
servers = ["127.0.0.1:7000"]

[timing]
status_interval_ms = 25
notify_interval_ms = 25
notification_time_ms = 75
miss_limit = 3

[[node]]
id = 1
ring = "127.0.0.1:7501"
http = "127.0.0.1:8501"
max_streams = 100
max_bytes_per_s = 1250000000

[[node.disk]]
id = 1
mount = "/srv/d1"
probe = "/srv/d1/.ringcast-probe"

[[node]]
id = 2
ring = "127.0.0.1:7502"
http = "127.0.0.1:8502"
max_streams = 50
max_bytes_per_s = 625000000

[[node.disk]]
id = 1
mount = "/mnt/shared"
probe = "/mnt/shared/.ringcast-probe"

[[node.disk]]
id = 2
mount = "/srv/d2"
probe = "/srv/d2/.ringcast-probe"

[[node]]
id = 3
ring = "127.0.0.1:7503"
http = "127.0.0.1:8503"
max_streams = 10
max_bytes_per_s = 125000000
"#;

    /// Writes `text` as cluster.toml beside a valid key file and admin token.
    fn write_cluster(dir: &Path, text: &str) -> PathBuf {
        fs::write(dir.join("cluster.key"), format!("{KEY_HEX}\n")).unwrap();
        fs::write(dir.join("admin.token"), "let-me-in\n").unwrap();
        let path = dir.join("cluster.toml");
        fs::write(&path, text).unwrap();
        path
    }

    fn problems_of(text: &str) -> Vec<Problem> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_cluster(dir.path(), text);
        match load(&path) {
            Err(ConfigFileError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    /// The 1-based line of the first line of `text` containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle:?} is not in the text"))
    }

    /// The `nth` (from 0) line containing `needle`.
    fn nth_line_of(text: &str, needle: &str, nth: usize) -> usize {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .nth(nth)
            .map(|(i, _)| i + 1)
            .unwrap_or_else(|| panic!("{needle:?} is not in the text {nth} times"))
    }

    fn assert_one_problem(problems: &[Problem], field: &str, line: usize, says: &str) {
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_problem(problems, field, line, says);
    }

    fn assert_problem(problems: &[Problem], field: &str, line: usize, says: &str) {
        let found = problems
            .iter()
            .any(|p| p.field == field && p.line == line && p.message.contains(says));
        assert!(
            found,
            "no problem `{field}` at line {line} saying {says:?} in {problems:#?}"
        );
        let text = problems
            .iter()
            .find(|p| p.field == field && p.line == line)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            text.contains(&format!("cluster.toml:{line}: {field}: ")),
            "{text}"
        );
    }

    fn ring(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    #[test]
    fn a_valid_file_yields_the_settings_of_each_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_cluster(dir.path(), VALID);
        let file = load(&path).unwrap();
        assert_eq!(file.node_ids(), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(file.config_version(), 3);
        assert_eq!(file.admin_token(), Some("let-me-in"));
        assert_eq!(file.path(), path);
        assert_eq!(
            file.http_addr(NodeId(3)),
            Some("127.0.0.1:8503".parse().unwrap())
        );
        assert_eq!(file.http_addr(NodeId(9)), None);

        let group: SocketAddrV4 = "239.255.42.1:7400".parse().unwrap();
        let mut timing = Timing::with_interval(Duration::from_millis(25), 3);
        timing.notification_time = Duration::from_millis(75);
        timing.takeover_step = Timing::lan().takeover_step;
        timing.join_retry = Timing::lan().join_retry;
        timing.leave_retry = Timing::lan().leave_retry;
        let expected = NodeSettings {
            proto: NodeConfig {
                cluster: ClusterId(7),
                node: NodeId(2),
                config_version: 3,
                bus: SocketAddr::V4(group),
                priority: vec![NodeId(2), NodeId(1), NodeId(3)],
                addrs: NodeAddrs {
                    ring: ring(7502),
                    http: "127.0.0.1:8502".parse().unwrap(),
                },
                disks: vec![
                    DiskAccess {
                        id: DiskId(1),
                        mount: "/mnt/shared".into(),
                        probe_path: "/mnt/shared/.ringcast-probe".into(),
                    },
                    DiskAccess {
                        id: DiskId(2),
                        mount: "/srv/d2".into(),
                        probe_path: "/srv/d2/.ringcast-probe".into(),
                    },
                ],
                capacity: Capacity {
                    max_streams: 50,
                    max_bytes_per_s: 625_000_000,
                },
                servers: vec!["127.0.0.1:7000".parse().unwrap()],
                timing,
                mtu: 1400,
            },
            bus: BusMode::Multicast {
                group,
                interface: Ipv4Addr::LOCALHOST,
                ttl: 0,
                loopback: true,
            },
            keys: vec![(KeyId(1), key_from_hex(KEY_HEX).unwrap())],
            admin_token: Some("let-me-in".into()),
            cluster_name: "test".into(),
            limits: Limits::default(),
            seats: Vec::new(),
        };
        assert_eq!(file.node_settings(NodeId(2)).unwrap(), expected);
        for id in file.node_ids() {
            let settings = file.node_settings(id).unwrap();
            settings.validate().unwrap();
            assert_eq!(settings.proto.node, id);
            assert_eq!(settings.proto.addrs.ring, ring(7500 + id.0 as u16));
        }
        assert_eq!(
            file.node_settings(NodeId(1)).unwrap().proto.disks[0].mount,
            "/srv/d1"
        );
    }

    #[test]
    fn asking_for_a_node_the_file_does_not_define_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = load(&write_cluster(dir.path(), VALID)).unwrap();
        let err = file.node_settings(NodeId(9)).unwrap_err();
        assert!(matches!(
            err,
            ConfigFileError::UnknownNode {
                node: NodeId(9),
                ..
            }
        ));
        assert!(
            err.to_string().contains("defines no node with id 9"),
            "{err}"
        );
    }

    #[test]
    fn debug_of_a_cluster_file_never_prints_the_key_or_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = load(&write_cluster(dir.path(), VALID)).unwrap();
        let text = format!("{file:?}");
        assert!(!text.contains("let-me-in"), "{text}");
        assert!(!text.contains("keys"), "{text}");
    }

    #[test]
    fn a_unicast_file_gives_each_node_every_other_node_as_a_peer() {
        let text = VALID
            .replace("transport = \"multicast\"", "transport = \"unicast\"")
            .replace("bus = \"239.255.42.1:7400\"\n", "")
            .replace("interface = \"127.0.0.1\"\n", "")
            .replace("ttl = 0\n", "")
            .replace("loopback = true\n", "");
        let dir = tempfile::tempdir().unwrap();
        let file = load(&write_cluster(dir.path(), &text)).unwrap();
        let settings = file.node_settings(NodeId(2)).unwrap();
        let peers = vec![(NodeId(1), ring(7501)), (NodeId(3), ring(7503))];
        assert_eq!(settings.bus, BusMode::Unicast { peers });
        assert_eq!(settings.proto.bus, ring(7502));
        settings.validate().unwrap();
    }

    #[test]
    fn a_unicast_file_may_keep_its_multicast_settings_unused() {
        let text = VALID
            .replace("transport = \"multicast\"", "transport = \"unicast\"")
            .replace("239.255.42.1:7400", "10.1.2.3:7400");
        let dir = tempfile::tempdir().unwrap();
        let file = load(&write_cluster(dir.path(), &text)).unwrap();
        let settings = file.node_settings(NodeId(1)).unwrap();
        assert!(matches!(settings.bus, BusMode::Unicast { .. }));
        assert_eq!(settings.proto.bus, ring(7501));
    }

    #[test]
    fn duplicate_node_ids_are_reported_with_the_line_of_the_second() {
        let text = VALID
            .replace("id = 3\n", "id = 2\n")
            .replace("priority = [2, 1, 3]", "priority = [2, 1]");
        let problems = problems_of(&text);
        let first = line_of(&text, "ring = \"127.0.0.1:7502\"") - 1;
        let second = line_of(&text, "ring = \"127.0.0.1:7503\"") - 1;
        assert_one_problem(
            &problems,
            "node.id",
            second,
            &format!("node 2 is defined twice (first at line {first})"),
        );
    }

    #[test]
    fn a_priority_list_missing_a_node_is_reported_with_its_line() {
        let text = VALID.replace("priority = [2, 1, 3]", "priority = [2, 1]");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.priority",
            line_of(&text, "priority = "),
            "does not name node 3",
        );
    }

    #[test]
    fn a_priority_list_naming_an_unknown_node_is_reported_at_the_entry() {
        let text = VALID.replace(
            "priority = [2, 1, 3]",
            "priority = [\n  2,\n  1,\n  3,\n  9,\n]",
        );
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.priority",
            line_of(&text, "  9,"),
            "names node 9, which no [[node]] table defines",
        );
    }

    #[test]
    fn a_priority_list_repeating_a_node_is_reported_at_the_repeat() {
        let text = VALID.replace(
            "priority = [2, 1, 3]",
            "priority = [\n  2,\n  1,\n  3,\n  1,\n]",
        );
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.priority",
            nth_line_of(&text, "  1,", 1),
            "names node 1 more than once",
        );
    }

    #[test]
    fn an_empty_priority_list_is_reported() {
        let text = VALID.replace("priority = [2, 1, 3]", "priority = []");
        let problems = problems_of(&text);
        let line = line_of(&text, "priority = ");
        assert_problem(&problems, "cluster.priority", line, "is empty");
        assert_problem(&problems, "cluster.priority", line, "does not name node 1");
    }

    #[test]
    fn a_bus_address_that_is_not_multicast_is_reported_with_its_line() {
        let text = VALID.replace("239.255.42.1:7400", "10.1.2.3:7400");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.bus",
            line_of(&text, "bus = "),
            "10.1.2.3:7400 is not a multicast address",
        );
    }

    #[test]
    fn a_bus_address_that_does_not_parse_is_reported_with_its_line() {
        let text = VALID.replace("239.255.42.1:7400", "239.255.42.1");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.bus",
            line_of(&text, "bus = "),
            "socket address",
        );
    }

    #[test]
    fn without_an_interface_each_node_multicasts_from_its_ring_address() {
        let text = VALID.replace("interface = \"127.0.0.1\"\n", "");
        let dir = tempfile::tempdir().unwrap();
        let path = write_cluster(dir.path(), &text);
        let file = load(&path).expect("a multicast file may leave the interface to each node");
        for id in file.node_ids() {
            let settings = file.node_settings(id).unwrap();
            let BusMode::Multicast { interface, .. } = settings.bus else {
                panic!("multicast expected");
            };
            let SocketAddr::V4(ring) = settings.proto.addrs.ring else {
                panic!("IPv4 ring expected");
            };
            assert_eq!(interface, *ring.ip());
        }
    }

    #[test]
    fn a_node_may_name_its_own_multicast_interface() {
        let text = VALID.replacen(
            "[[node]]\nid = 1\n",
            "[[node]]\nid = 1\ninterface = \"127.0.0.9\"\n",
            1,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = write_cluster(dir.path(), &text);
        let file = load(&path).unwrap();
        let BusMode::Multicast { interface, .. } = file.node_settings(NodeId(1)).unwrap().bus
        else {
            panic!("multicast expected");
        };
        assert_eq!(interface, Ipv4Addr::new(127, 0, 0, 9));
    }

    #[test]
    fn an_unknown_key_is_reported_with_its_name_and_line() {
        let text = VALID.replace("mtu = 1400\n", "mtu = 1400\nmulticast_ttl = 4\n");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.multicast_ttl",
            line_of(&text, "multicast_ttl"),
            "unknown field `multicast_ttl`",
        );
    }

    #[test]
    fn an_unknown_key_in_a_disk_table_is_reported_with_its_name_and_line() {
        let text = VALID.replace(
            "mount = \"/srv/d2\"\n",
            "mount = \"/srv/d2\"\nsize_gb = 100\n",
        );
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.disk.size_gb",
            line_of(&text, "size_gb"),
            "unknown field `size_gb`",
        );
    }

    #[test]
    fn limits_are_read_from_their_table_and_bad_ones_reported_at_their_line() {
        let text =
            format!("{VALID}\n[limits]\nhttp_client_requests_per_s = 5\nbus_refused_burst = 7\n");
        let dir = tempfile::tempdir().unwrap();
        let file = load(&write_cluster(dir.path(), &text)).unwrap();
        let limits = file.node_settings(NodeId(1)).unwrap().limits;
        assert_eq!(limits.http.client_requests.per_second, 5);
        assert_eq!(limits.bus.refused.burst, 7);
        assert_eq!(limits.http.max_head, Limits::default().http.max_head);

        let text = format!("{VALID}\n[limits]\nhttp_max_head_bytes = 100\nfloods = 3\n");
        let problems = problems_of(&text);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].field, "limits.http_max_head_bytes");
        assert_eq!(problems[0].line, line_of(&text, "http_max_head_bytes"));
        assert!(
            problems[0].message.contains("from 1024 to 65536"),
            "{problems:?}"
        );
        assert_eq!(problems[1].field, "limits.floods");
        assert_eq!(problems[1].line, line_of(&text, "floods"));
        assert!(
            problems[1].message.contains("unknown limit"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_unknown_table_is_reported_with_its_name_and_line() {
        let text = format!("{VALID}\n[extras]\nx = 1\n");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "extras",
            line_of(&text, "[extras]"),
            "unknown field",
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_reported_with_its_field_and_line() {
        let text = VALID.replace("max_streams = 50", "max_streams = \"fifty\"");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.max_streams",
            line_of(&text, "max_streams = \"fifty\""),
            "invalid type",
        );
    }

    #[test]
    fn a_missing_required_key_is_reported_with_the_line_of_its_table() {
        let text = VALID.replace("max_streams = 10\n", "");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.max_streams",
            nth_line_of(&text, "[[node]]", 2),
            "missing field",
        );
    }

    #[test]
    fn a_wrong_type_inside_a_multi_line_list_names_the_list_and_the_entry_line() {
        let text = VALID.replace(
            "priority = [2, 1, 3]",
            "priority = [\n  2,\n  \"one\",\n  3,\n]",
        );
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.priority",
            line_of(&text, "\"one\""),
            "invalid type",
        );
    }

    #[test]
    fn a_key_given_twice_is_reported_at_the_second() {
        let text = VALID.replace("mtu = 1400\n", "mtu = 1400\nmtu = 1500\n");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.mtu",
            line_of(&text, "mtu = 1500"),
            "duplicate key",
        );
    }

    #[test]
    fn a_file_without_a_cluster_table_is_reported() {
        let text = "[timing]\nmiss_limit = 3\n";
        let problems = problems_of(text);
        assert_one_problem(&problems, "cluster", 1, "missing field `cluster`");
    }

    #[test]
    fn two_nodes_with_the_same_ring_address_are_reported() {
        let text = VALID.replace("ring = \"127.0.0.1:7503\"", "ring = \"127.0.0.1:7501\"");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.ring",
            nth_line_of(&text, "ring = \"127.0.0.1:7501\"", 1),
            "127.0.0.1:7501 is already node 1's address",
        );
    }

    #[test]
    fn two_nodes_with_the_same_http_address_are_reported() {
        let text = VALID.replace("http = \"127.0.0.1:8503\"", "http = \"127.0.0.1:8502\"");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.http",
            nth_line_of(&text, "http = \"127.0.0.1:8502\"", 1),
            "already node 2's address",
        );
    }

    #[test]
    fn a_node_address_no_one_can_reach_is_reported() {
        let text = VALID.replace("ring = \"127.0.0.1:7503\"", "ring = \"0.0.0.0:7503\"");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.ring",
            line_of(&text, "0.0.0.0:7503"),
            "not an address other nodes can reach",
        );
    }

    #[test]
    fn the_same_disk_twice_in_one_node_is_reported() {
        let text = VALID.replace("id = 2\nmount = \"/srv/d2\"", "id = 1\nmount = \"/srv/d2\"");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.disk.id",
            line_of(&text, "mount = \"/srv/d2\"") - 1,
            "disk 1 appears twice in node 2's disk list",
        );
    }

    #[test]
    fn a_disk_shared_by_nodes_with_different_mount_points_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let file = load(&write_cluster(dir.path(), VALID)).unwrap();
        let one = file.node_settings(NodeId(1)).unwrap().proto.disks;
        let two = file.node_settings(NodeId(2)).unwrap().proto.disks;
        assert_eq!(one[0].id, two[0].id);
        assert_ne!(one[0].mount, two[0].mount);
    }

    #[test]
    fn a_relative_disk_path_is_reported() {
        let text = VALID.replace(
            "probe = \"/srv/d2/.ringcast-probe\"",
            "probe = \"d2/probe\"",
        );
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.disk.probe",
            line_of(&text, "d2/probe"),
            "is not an absolute path",
        );
    }

    #[test]
    fn a_missing_key_file_is_reported_naming_the_key_file() {
        let text = VALID.replace("cluster.key", "missing.key");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.key_file",
            line_of(&text, "key_file"),
            "cannot read the key file",
        );
        assert!(problems[0].message.contains("missing.key"), "{problems:?}");
    }

    #[test]
    fn a_key_file_without_64_hex_characters_is_reported_naming_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_cluster(dir.path(), VALID);
        fs::write(dir.path().join("cluster.key"), "# key\nnot-a-key\n").unwrap();
        let Err(ConfigFileError::Invalid { problems, .. }) = load(&path) else {
            panic!("a bad key file was accepted");
        };
        assert_one_problem(
            &problems,
            "cluster.key_file",
            line_of(VALID, "key_file"),
            "cluster.key:2 does not hold 64 hexadecimal characters",
        );
    }

    #[test]
    fn a_key_file_with_two_keys_gives_a_keyring_for_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_cluster(dir.path(), VALID);
        let other = "ff".repeat(32);
        fs::write(
            dir.path().join("cluster.key"),
            format!("5:{other}\n4:{KEY_HEX}\n"),
        )
        .unwrap();
        let file = load(&path).unwrap();
        let settings = file.node_settings(NodeId(1)).unwrap();
        let ids: Vec<KeyId> = settings.keys.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![KeyId(5), KeyId(4)]);
        assert_eq!(settings.keys[0].1, [0xff; 32]);
        let keyring = format!("{:?}", settings.keyring());
        assert!(keyring.contains("sending: KeyId(5)"), "{keyring}");
    }

    #[test]
    fn a_key_file_with_three_keys_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_cluster(dir.path(), VALID);
        fs::write(
            dir.path().join("cluster.key"),
            format!("{KEY_HEX}\n{KEY_HEX}\n{KEY_HEX}\n"),
        )
        .unwrap();
        let Err(ConfigFileError::Invalid { problems, .. }) = load(&path) else {
            panic!("three keys were accepted");
        };
        assert_one_problem(
            &problems,
            "cluster.key_file",
            line_of(VALID, "key_file"),
            "third key",
        );
    }

    #[test]
    fn an_empty_admin_token_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_cluster(dir.path(), VALID);
        fs::write(dir.path().join("admin.token"), "\n").unwrap();
        let Err(ConfigFileError::Invalid { problems, .. }) = load(&path) else {
            panic!("an empty token was accepted");
        };
        assert_one_problem(
            &problems,
            "cluster.admin_token_file",
            line_of(VALID, "admin_token_file"),
            "admin.token must hold one token",
        );
    }

    #[test]
    fn a_zero_timing_value_is_reported_with_its_field_and_line() {
        let text = VALID.replace("status_interval_ms = 25", "status_interval_ms = 0");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "timing.status_interval_ms",
            line_of(&text, "status_interval_ms"),
            "must be greater than zero",
        );
    }

    #[test]
    fn a_notification_time_shorter_than_two_notifications_is_reported() {
        let text = VALID.replace("notification_time_ms = 75", "notification_time_ms = 30");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "timing.notification_time_ms",
            line_of(&text, "notification_time_ms"),
            "notification_time_ms (30 ms) must be at least twice notify_interval_ms (25 ms)",
        );
    }

    #[test]
    fn a_timing_value_of_more_than_an_hour_is_reported() {
        let text = VALID.replace("miss_limit = 3", "miss_limit = 3\njoin_retry_ms = 3600001");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "timing.join_retry_ms",
            line_of(&text, "join_retry_ms"),
            "longer than one hour",
        );
    }

    #[test]
    fn a_zero_miss_limit_is_reported() {
        let text = VALID.replace("miss_limit = 3", "miss_limit = 0");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "timing.miss_limit",
            line_of(&text, "miss_limit"),
            "at least 1",
        );
    }

    #[test]
    fn an_mtu_out_of_range_is_reported() {
        let text = VALID.replace("mtu = 1400", "mtu = 100");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "cluster.mtu",
            line_of(&text, "mtu = "),
            "outside 256..=65000",
        );
    }

    #[test]
    fn a_node_config_the_protocol_rejects_is_reported_at_the_node() {
        let disks: String = (1..=300)
            .map(|i| format!("[[node.disk]]\nid = {i}\nmount = \"/d{i}\"\nprobe = \"/d{i}/p\"\n"))
            .collect();
        let text = format!("{VALID}\n{disks}");
        let problems = problems_of(&text);
        assert_one_problem(
            &problems,
            "node.disk",
            line_of(&text, "ring = \"127.0.0.1:7503\"") - 1,
            "node 3: the disk access list names 300 disks",
        );
    }

    #[test]
    fn several_problems_in_one_file_are_all_reported_in_line_order() {
        let text = VALID
            .replace("239.255.42.1:7400", "10.1.2.3:7400")
            .replace("priority = [2, 1, 3]", "priority = [2, 1, 4]")
            .replace("status_interval_ms = 25", "status_interval_ms = 0")
            .replace("http = \"127.0.0.1:8503\"", "http = \"127.0.0.1:8501\"");
        let problems = problems_of(&text);
        let priority = line_of(&text, "priority = ");
        assert_problem(
            &problems,
            "cluster.bus",
            line_of(&text, "bus = "),
            "not a multicast",
        );
        assert_problem(&problems, "cluster.priority", priority, "names node 4");
        assert_problem(
            &problems,
            "cluster.priority",
            priority,
            "does not name node 3",
        );
        assert_problem(
            &problems,
            "timing.status_interval_ms",
            line_of(&text, "status_interval_ms"),
            "greater than zero",
        );
        assert_problem(
            &problems,
            "node.http",
            nth_line_of(&text, "127.0.0.1:8501", 1),
            "already node 1's address",
        );
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems.windows(2).all(|w| w[0].line <= w[1].line));
    }

    #[test]
    fn the_error_lists_each_problem_as_file_line_field_message() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace("priority = [2, 1, 3]", "priority = [2, 1]");
        let path = write_cluster(dir.path(), &text);
        let err = load(&path).unwrap_err().to_string();
        let line = line_of(&text, "priority = ");
        let expected = format!(
            "{}:{line}: cluster.priority: does not name node 3",
            path.display()
        );
        assert!(err.contains(&expected), "{err}");
        assert!(
            err.starts_with(&format!("{} has 1 problem:", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_missing_cluster_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere.toml");
        let err = load(&path).unwrap_err();
        assert!(matches!(err, ConfigFileError::Read { .. }));
        assert!(err.to_string().contains("nowhere.toml"), "{err}");
    }

    #[test]
    fn a_toml_syntax_error_is_reported_with_its_line() {
        let text = VALID.replace("name = \"test\"", "name = \"test");
        let problems = problems_of(&text);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].line, line_of(&text, "name = "), "{problems:#?}");
    }

    #[test]
    fn local_cluster_writes_a_file_that_loads_with_distinct_ports() {
        let dir = tempfile::tempdir().unwrap();
        let path = local_cluster(dir.path(), 5, None).unwrap();
        let file = load(&path).unwrap();
        assert_eq!(file.node_ids(), (1..=5).map(NodeId).collect::<Vec<_>>());
        assert!(file.admin_token().is_some_and(|t| t.len() == 32));
        let mut ports = BTreeSet::new();
        let mut group = None;
        for id in file.node_ids() {
            let s = file.node_settings(id).unwrap();
            assert_eq!(s.proto.timing, Timing::lan());
            assert_eq!(s.proto.addrs.ring.ip(), Ipv4Addr::LOCALHOST);
            assert_eq!(s.proto.addrs.http.ip(), Ipv4Addr::LOCALHOST);
            assert!(ports.insert(s.proto.addrs.ring.port()));
            assert!(ports.insert(s.proto.addrs.http.port()));
            let BusMode::Multicast {
                group: g,
                interface,
                ttl,
                ..
            } = s.bus
            else {
                panic!("a local cluster is multicast");
            };
            assert_eq!((interface, ttl), (Ipv4Addr::LOCALHOST, 0));
            assert_eq!(&g.ip().octets()[..2], &[239, 255]);
            group = Some(g);
        }
        assert!(
            ports.insert(group.unwrap().port()),
            "the bus port is shared"
        );
    }

    #[cfg(unix)]
    #[test]
    fn local_cluster_keeps_the_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        local_cluster(dir.path(), 1, None).unwrap();
        for name in ["cluster.key", "admin.token"] {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name} is readable by others");
        }
    }

    #[test]
    fn local_cluster_with_a_base_port_uses_consecutive_ports() {
        let dir = tempfile::tempdir().unwrap();
        let file = load(&local_cluster(dir.path(), 3, Some(20000)).unwrap()).unwrap();
        let two = file.node_settings(NodeId(2)).unwrap();
        assert_eq!(two.proto.bus.port(), 20000);
        assert_eq!(two.proto.addrs.ring, ring(20002));
        assert_eq!(
            file.http_addr(NodeId(3)),
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 20006)))
        );
    }

    #[test]
    fn local_cluster_refuses_zero_nodes_and_ports_past_65535() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            local_cluster(dir.path(), 0, None),
            Err(ConfigFileError::NodeCount(0))
        ));
        assert!(matches!(
            local_cluster(dir.path(), 10, Some(65530)),
            Err(ConfigFileError::PortRange { .. })
        ));
    }
}
