//! The checker: turns the parsed tables into a [`ClusterFile`], reporting
//! every problem it finds at its line and field.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcast_proto::config::{MAX_MTU, MIN_MTU};
use ringcast_proto::frame::MAX_PARTS;
use ringcast_proto::sizes::{self, NodeShape};
use ringcast_proto::{
    Capacity, ClusterId, ConfigError, DiskAccess, DiskId, KeyId, NodeAddrs, NodeId, Timing,
};
use toml::Spanned;

use super::error::{ConfigFileError, Problem};
use super::model::{ClusterDef, ClusterFile, NodeEntry, Transport};
use super::schema::{
    RawCluster, RawDisk, RawFile, RawNode, RawTiming, TransportKind, DEFAULT_MTU, DEFAULT_TTL,
};
use super::secrets::parse_key_file;
use super::spans::{parse_error_field, LineIndex};
use crate::settings::{Limits, KEY_LEN};

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

/// The multicast keys of a `[cluster]` or `[[subcluster]]` table.
pub(super) struct MulticastKeys<'a> {
    /// The table's name, for problems: `cluster` or `subcluster`.
    pub(super) table: &'a str,
    pub(super) bus: Option<&'a Spanned<SocketAddr>>,
    pub(super) interface: Option<&'a Spanned<Ipv4Addr>>,
    pub(super) ttl: Option<&'a Spanned<u32>>,
    pub(super) loopback: Option<&'a Spanned<bool>>,
}

/// The ids of a priority list.
pub(super) fn ids(priority: &Spanned<Vec<Spanned<u32>>>) -> Vec<NodeId> {
    priority
        .get_ref()
        .iter()
        .map(|n| NodeId(*n.get_ref()))
        .collect()
}

/// Collects problems while turning a [`RawFile`] into a [`ClusterFile`].
pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) lines: LineIndex,
    pub(super) problems: Vec<Problem>,
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

    pub(super) fn report(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.report_at(self.lines.line(span.start), field, message);
    }

    pub(super) fn report_at(&mut self, line: usize, field: &str, message: impl Into<String>) {
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
            self.check_tree(
                &cluster,
                cluster_span.clone(),
                root,
                &raw.subclusters,
                &mut nodes,
            )?
        };
        self.check_node_interfaces(&clusters, &nodes);
        self.check_service_addresses(&cluster, &raw.nodes, clusters.len());
        let mtu_span = cluster
            .mtu
            .as_ref()
            .map_or(cluster_span.clone(), |m| m.span());
        self.check_message_sizes(&clusters, &nodes, cluster.servers.len(), mtu_span);
        let file = ClusterFile {
            path: self.path.to_path_buf(),
            config_version: cluster.config_version,
            clusters,
            servers: cluster.servers,
            nodes,
            keys: keys?,
            admin_token: admin_token?,
            limits,
            address: cluster.address.as_ref().map(|a| *a.get_ref()),
            tls_ca: cluster.tls_ca.as_ref().map(|p| self.sibling(p.get_ref())),
        };
        self.check_tls_everywhere(&file, cluster.tls_ca.as_ref(), &raw.nodes);
        if self.problems.is_empty() {
            self.check_each_node_config(&file, &cluster.priority);
        }
        Some(file)
    }

    pub(super) fn check_name(&mut self, name: &Spanned<String>, field: &str) {
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

    pub(super) fn check_multicast(
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
                service: node.service.as_ref().map(|s| *s.get_ref()),
                capacity: Capacity {
                    max_streams: node.max_streams,
                    max_bytes_per_s: node.max_bytes_per_s,
                },
                disks: self.check_disks(id, &node.disk),
                interface: self.check_node_interface(id, node),
                seats: node.seats.iter().map(|s| *s.get_ref()).collect(),
                cluster: 0,
                line,
                tls: self.check_node_tls(id, node),
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

    /// Claim 13: service addresses and the cluster address are addresses
    /// players can reach, each held by one node at a time: no two alike,
    /// none a node's own listener. A cluster address needs a flat file.
    /// Claims 7 and 11: every cluster's largest state row and ring entry
    /// fit one message at its MTU, and its whole state the parts a pull
    /// carries; a cluster whose state cannot be carried is refused here,
    /// with the figures, rather than failing to notify at run time.
    fn check_message_sizes(
        &mut self,
        clusters: &[ClusterDef],
        nodes: &[NodeEntry],
        servers: usize,
        span: Range<usize>,
    ) {
        for (index, c) in clusters.iter().enumerate() {
            let shape: Vec<NodeShape> = c
                .priority
                .iter()
                .map(|id| NodeShape {
                    id: *id,
                    disks: nodes
                        .iter()
                        .find(|n| n.id == *id && n.cluster == index)
                        .map(|n| n.disks.iter().map(|d| d.id).collect())
                        .unwrap_or_default(),
                })
                .collect();
            let largest = sizes::largest(&shape, servers);
            let parts = sizes::parts(largest.max(), c.mtu);
            let disks: usize = shape.iter().map(|n| n.disks.len()).sum();
            let state_parts = largest.state_parts(c.mtu);
            let message = if parts > usize::from(MAX_PARTS) {
                let what = if largest.notify >= largest.status {
                    "largest state row (the topology of its node with the most disks)"
                } else {
                    "largest ring entry (the disk reports of its node with the most disks)"
                };
                format!(
                    "cluster {:?} cannot be carried: its {what} ({} members, {disks} disk \
                     paths) is up to {} bytes, {parts} frames at MTU {}, and the protocol \
                     carries at most {MAX_PARTS} frames ({} bytes) in one message; raise the \
                     MTU if the network carries larger datagrams, or give that node fewer disks",
                    c.name,
                    shape.len(),
                    largest.max(),
                    c.mtu,
                    sizes::carried(c.mtu),
                )
            } else if state_parts > sizes::STATE_PARTS_LIMIT {
                format!(
                    "cluster {:?} cannot be carried: its whole state ({} members, {disks} disk \
                     paths) is up to {} bytes, {state_parts} parts at MTU {}, and a member \
                     pulls it in at most {} parts; raise the MTU if the network carries larger \
                     datagrams, or split the cluster into sub-clusters",
                    c.name,
                    shape.len(),
                    largest.state,
                    c.mtu,
                    sizes::STATE_PARTS_LIMIT,
                )
            } else {
                continue;
            };
            self.report(span.clone(), "cluster.mtu", message);
        }
    }

    fn check_service_addresses(&mut self, cluster: &RawCluster, raw: &[RawNode], clusters: usize) {
        let mut seen: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        let own: BTreeSet<SocketAddr> = raw.iter().map(|n| *n.http.get_ref()).collect();
        let addresses = raw
            .iter()
            .filter_map(|n| Some((n.service.as_ref()?, "node.service", *n.id.get_ref())))
            .chain(cluster.address.as_ref().map(|a| (a, "cluster.address", 0)));
        for (addr, field, node) in addresses {
            let value = *addr.get_ref();
            if own.contains(&value) {
                let message = format!(
                    "{value} is a node's own HTTP listener; a service address must outlive its process, so give one no node listens on"
                );
                self.report(addr.span(), field, message);
                continue;
            }
            self.check_node_addr(addr, field, node, &mut seen);
        }
        if let Some(a) = cluster.address.as_ref() {
            if clusters > 1 {
                self.report(
                    a.span(),
                    "cluster.address",
                    "a cluster address is held by a flat cluster's supervisor; give each leaf node a service address instead".to_string(),
                );
            }
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

    /// The `[limits]` table; each bad entry is reported at its line
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

    pub(super) fn check_timing(
        &mut self,
        raw: Option<&Spanned<RawTiming>>,
        table: &str,
    ) -> Option<Timing> {
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

    pub(super) fn check_mtu(&mut self, mtu: Option<&Spanned<usize>>, field: &str) -> usize {
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
    /// A node's `tls_cert` and `tls_key`: both or neither, resolved beside
    /// the file. The files are read by the node on its own host.
    fn check_node_tls(&mut self, id: u32, node: &RawNode) -> Option<(PathBuf, PathBuf)> {
        match (&node.tls_cert, &node.tls_key) {
            (Some(cert), Some(key)) => {
                Some((self.sibling(cert.get_ref()), self.sibling(key.get_ref())))
            }
            (Some(given), None) | (None, Some(given)) => {
                let (field, missing) = if node.tls_cert.is_some() {
                    ("node.tls_cert", "tls_key")
                } else {
                    ("node.tls_key", "tls_cert")
                };
                self.report(
                    given.span(),
                    field,
                    format!("node {id} names one of tls_cert and tls_key; give its {missing} too"),
                );
                None
            }
            (None, None) => None,
        }
    }

    /// HTTPS is the cluster's, not a node's: with `cluster.tls_ca` every
    /// node serves it (players and nodes reach any of them), and a node's
    /// certificate without the CA would be checked against nothing.
    fn check_tls_everywhere(
        &mut self,
        file: &ClusterFile,
        tls_ca: Option<&Spanned<String>>,
        raw: &[RawNode],
    ) {
        for node in raw {
            let Some(entry) = file.nodes.iter().find(|n| n.id.0 == *node.id.get_ref()) else {
                continue;
            };
            match (tls_ca, &entry.tls, &node.tls_cert) {
                (Some(_), None, None) => self.report(
                    node.id.span(),
                    "node.tls_cert",
                    format!(
                        "cluster.tls_ca makes every node serve HTTPS; give node {} a tls_cert and tls_key",
                        entry.id.0
                    ),
                ),
                (None, Some(_), Some(cert)) => self.report(
                    cert.span(),
                    "node.tls_cert",
                    format!(
                        "node {} has a certificate but the cluster has no tls_ca to check the nodes' certificates against",
                        entry.id.0
                    ),
                ),
                _ => {}
            }
        }
    }

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
