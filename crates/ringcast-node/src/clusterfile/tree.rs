//! Claim 5: a cluster file that describes a tree of clusters.
//!
//! The `[cluster]` table is the root. Each `[[subcluster]]` table is a
//! cluster that is one member of the cluster whose priority list names it;
//! a cluster's members are all nodes (a leaf cluster) or all sub-clusters.
//! Node ids and cluster ids share one id space, because a sub-cluster is a
//! node of its parent under its own id. Every cluster has its own multicast
//! bus and timing; the keys, the admin token, the configuration version and
//! the limits are the root's, for the whole tree. A node of a cluster at
//! depth `d` lists `d` seat addresses (`seats`, nearest parent first): the
//! ring addresses it uses while it holds its cluster's seat in each ancestor.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcast_proto::config::MAX_NODES;
use ringcast_proto::{ClusterId, Timing};
use thiserror::Error;
use toml::Spanned;

use super::{
    ids, write_fresh_secrets, write_private, Checker, ClusterDef, ConfigFileError, MulticastKeys,
    NodeEntry, RawCluster, RawNode, RawSubcluster, TransportKind, DEFAULT_MTU, LOCAL_BYTES_PER_S,
};

/// The most levels a tree may have, the root's included: placement goes up
/// and down the tree one machine per level, and the dashboard walks it.
pub const MAX_LEVELS: usize = 6;

/// A priority list as parsed, with its spans.
type RawPriority = Spanned<Vec<Spanned<u32>>>;

/// A cluster's id, its priority list and the list's field name.
type MemberList<'a> = (u32, &'a RawPriority, &'a str);

/// What a member id of a priority list names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Node,
    Subcluster,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Subcluster => "sub-cluster",
        }
    }
}

impl Checker<'_> {
    /// Outside a hierarchy no node has seats.
    pub(super) fn check_no_seats(&mut self, nodes: &[RawNode]) {
        for node in nodes {
            if let Some(first) = node.seats.first() {
                let message = format!(
                    "node {} lists seats, but the file has no [[subcluster]]: seats are the addresses a node uses in the ancestors of its cluster",
                    node.id.get_ref()
                );
                self.report(first.span(), "node.seats", message);
            }
        }
    }

    /// Claim 5: checks the tree (membership, cycles, buses, seats) and
    /// returns every cluster, the root first, with each node's cluster set.
    pub(super) fn check_tree(
        &mut self,
        root_raw: &RawCluster,
        root_span: Range<usize>,
        root: Option<ClusterDef>,
        subs: &[Spanned<RawSubcluster>],
        nodes: &mut [NodeEntry],
    ) -> Option<Vec<ClusterDef>> {
        let before = self.problems.len();
        if root_raw.transport == Some(TransportKind::Unicast) {
            self.report(
                root_span.clone(),
                "cluster.transport",
                "a tree of clusters needs multicast buses: a seat moves between machines, so no unicast peer list can name it",
            );
        }
        let kinds = self.member_kinds(root_raw, subs, nodes);
        let mut defs: Vec<Option<ClusterDef>> = vec![root];
        for sub in subs {
            defs.push(self.check_subcluster(sub));
        }
        // Index 0 is the root, index i + 1 the sub-cluster subs[i].
        let mut lists: Vec<MemberList<'_>> =
            vec![(root_raw.id, &root_raw.priority, "cluster.priority")];
        for sub in subs {
            let sub = sub.get_ref();
            lists.push((*sub.id.get_ref(), &sub.priority, "subcluster.priority"));
        }
        let member_of = self.check_membership(&lists, &kinds, root_raw.id);
        for node in nodes.iter_mut() {
            match member_of.get(&node.id.0) {
                Some((cluster, _)) => node.cluster = *cluster,
                None => self.report_at(
                    node.line,
                    "node.id",
                    format!(
                        "node {} is a member of no cluster: name it in the priority list of its cluster",
                        node.id.0
                    ),
                ),
            }
        }
        let index_of: BTreeMap<u32, usize> = subs
            .iter()
            .enumerate()
            .rev()
            .map(|(i, s)| (*s.get_ref().id.get_ref(), i + 1))
            .collect();
        let mut parents: Vec<Option<usize>> = vec![None];
        for (i, sub) in subs.iter().enumerate() {
            let id = *sub.get_ref().id.get_ref();
            let parent = member_of.get(&id).map(|(c, _)| *c);
            if parent.is_none() && index_of.get(&id) == Some(&(i + 1)) {
                let message = format!(
                    "sub-cluster {id} is a member of no cluster: name it in its parent's priority list"
                );
                self.report(sub.get_ref().id.span(), "subcluster.id", message);
            }
            parents.push(parent);
        }
        let levels = self.check_cycles(subs, &parents);
        self.check_buses(root_raw, subs);
        for (i, def) in defs.iter_mut().enumerate() {
            if let Some(def) = def {
                def.parent = parents[i];
                def.level = levels[i].unwrap_or(0);
            }
        }
        for node in nodes.iter() {
            let Some(level) = levels.get(node.cluster).copied().flatten() else {
                continue;
            };
            if node.seats.len() != level {
                let message = format!(
                    "node {} is in a cluster {level} level(s) below the root, so it needs {level} seat address(es), one per ancestor cluster, nearest parent first; it lists {}",
                    node.id.0,
                    node.seats.len()
                );
                self.report_at(node.line, "node.seats", message);
            }
        }
        if self.problems.len() > before {
            return None;
        }
        defs.into_iter().collect()
    }

    /// What each id names: a node or a sub-cluster. Reports an id defined
    /// twice, or used by a node and a cluster.
    fn member_kinds(
        &mut self,
        root: &RawCluster,
        subs: &[Spanned<RawSubcluster>],
        nodes: &[NodeEntry],
    ) -> BTreeMap<u32, (Kind, usize)> {
        let mut kinds: BTreeMap<u32, (Kind, usize)> = nodes
            .iter()
            .map(|n| (n.id.0, (Kind::Node, n.line)))
            .collect();
        for sub in subs {
            let id = sub.get_ref().id.get_ref();
            let span = sub.get_ref().id.span();
            let message = if *id == root.id {
                Some(format!("{id} is the root cluster's id"))
            } else {
                kinds.get(id).map(|(kind, line)| match kind {
                    Kind::Node => format!(
                        "{id} is already node {id}'s id (line {line}); nodes and clusters share one id space, since a sub-cluster is a node of its parent"
                    ),
                    Kind::Subcluster => {
                        format!("sub-cluster {id} is defined twice (first at line {line})")
                    }
                })
            };
            match message {
                Some(message) => self.report(span, "subcluster.id", message),
                None => {
                    let line = self.lines.line(span.start);
                    kinds.insert(*id, (Kind::Subcluster, line));
                }
            }
        }
        kinds
    }

    /// Each member named by exactly one cluster; a cluster's members all
    /// nodes or all sub-clusters. Returns each member's cluster (an index
    /// into `lists`) and the line that names it.
    fn check_membership(
        &mut self,
        lists: &[MemberList<'_>],
        kinds: &BTreeMap<u32, (Kind, usize)>,
        root: u32,
    ) -> BTreeMap<u32, (usize, usize)> {
        let mut member_of: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
        for (index, (cluster, list, field)) in lists.iter().enumerate() {
            if list.get_ref().is_empty() {
                self.report(
                    list.span(),
                    field,
                    "is empty; list every member, highest priority first",
                );
            }
            if list.get_ref().len() > MAX_NODES {
                self.report(
                    list.span(),
                    field,
                    format!(
                        "cluster {cluster} has {} members; a cluster holds at most {MAX_NODES}",
                        list.get_ref().len()
                    ),
                );
            }
            let mut seen_kinds = Vec::new();
            let mut listed = Vec::new();
            for entry in list.get_ref() {
                let id = *entry.get_ref();
                let line = self.lines.line(entry.span().start);
                let problem = if id == *cluster {
                    Some(format!(
                        "names cluster {id} itself; a cluster cannot be its own member"
                    ))
                } else if id == root {
                    Some(format!(
                        "names the root cluster {id}, which is no cluster's member"
                    ))
                } else if listed.contains(&id) {
                    Some(format!("names {id} more than once"))
                } else if let Some((kind, _)) = kinds.get(&id) {
                    if let Some((other, at)) = member_of.get(&id) {
                        Some(format!(
                            "names {} {id}, already a member of cluster {} (line {at}); a node or sub-cluster belongs to one cluster",
                            kind.noun(),
                            lists[*other].0
                        ))
                    } else {
                        if !seen_kinds.contains(kind) {
                            seen_kinds.push(*kind);
                        }
                        member_of.insert(id, (index, line));
                        None
                    }
                } else {
                    Some(format!(
                        "names {id}, which no [[node]] or [[subcluster]] table defines"
                    ))
                };
                listed.push(id);
                if let Some(message) = problem {
                    self.report(entry.span(), field, message);
                }
            }
            if seen_kinds.len() > 1 {
                self.report(
                    list.span(),
                    field,
                    format!(
                        "cluster {cluster} mixes nodes and sub-clusters; a cluster's members are all nodes or all sub-clusters"
                    ),
                );
            }
        }
        member_of
    }

    /// The level of each cluster (0 for the root), `None` where the chain of
    /// parents does not lead to the root within [`MAX_LEVELS`] (a cycle or a
    /// tree too deep, reported here, or a sub-cluster that is no member,
    /// reported by the caller).
    fn check_cycles(
        &mut self,
        subs: &[Spanned<RawSubcluster>],
        parents: &[Option<usize>],
    ) -> Vec<Option<usize>> {
        let mut levels = vec![Some(0)];
        let id_of = |i: usize| {
            if i == 0 {
                None
            } else {
                Some(*subs[i - 1].get_ref().id.get_ref())
            }
        };
        for i in 1..parents.len() {
            let mut chain = vec![i];
            let mut at = i;
            let level = loop {
                if chain.len() >= MAX_LEVELS {
                    let message = format!(
                        "sub-cluster {} is more than {} levels below the root; a tree has at most {MAX_LEVELS} levels",
                        id_of(i).unwrap_or_default(),
                        MAX_LEVELS - 1
                    );
                    self.report(subs[i - 1].get_ref().id.span(), "subcluster.id", message);
                    break None;
                }
                match parents[at] {
                    Some(0) => break Some(chain.len()),
                    Some(p) if chain.contains(&p) => {
                        chain.push(p);
                        break None;
                    }
                    Some(p) => {
                        chain.push(p);
                        at = p;
                    }
                    None => break None,
                }
            };
            if level.is_none() && chain.len() > 1 && chain.first() == chain.last() {
                let path: Vec<String> = chain
                    .iter()
                    .filter_map(|c| id_of(*c).map(|id| id.to_string()))
                    .collect();
                let id = id_of(i).unwrap_or_default();
                let message = format!(
                    "sub-cluster {id} is its own ancestor ({}); the clusters must form a tree below [cluster]",
                    path.join(" is a member of ")
                );
                self.report(subs[i - 1].get_ref().id.span(), "subcluster.id", message);
            }
            levels.push(level);
        }
        levels
    }

    /// Every cluster on its own multicast group.
    fn check_buses(&mut self, root: &RawCluster, subs: &[Spanned<RawSubcluster>]) {
        let mut seen: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        let buses = std::iter::once((root.id, root.bus.as_ref(), "cluster.bus")).chain(
            subs.iter().map(|s| {
                let s = s.get_ref();
                (*s.id.get_ref(), s.bus.as_ref(), "subcluster.bus")
            }),
        );
        for (cluster, bus, field) in buses {
            let Some(bus) = bus else { continue };
            match seen.get(bus.get_ref()) {
                Some(other) => {
                    let message = format!(
                        "{} is already cluster {other}'s bus; give every cluster its own multicast group",
                        bus.get_ref()
                    );
                    self.report(bus.span(), field, message);
                }
                None => {
                    seen.insert(*bus.get_ref(), cluster);
                }
            }
        }
    }

    /// One `[[subcluster]]` table, without its place in the tree.
    fn check_subcluster(&mut self, sub: &Spanned<RawSubcluster>) -> Option<ClusterDef> {
        let span = sub.span();
        let sub = sub.get_ref();
        self.check_name(&sub.name, "subcluster.name");
        let transport = self.check_multicast(
            MulticastKeys {
                table: "subcluster",
                bus: sub.bus.as_ref(),
                interface: sub.interface.as_ref(),
                ttl: sub.ttl.as_ref(),
                loopback: sub.loopback.as_ref(),
            },
            span,
        );
        let timing = self.check_timing(sub.timing.as_ref(), "subcluster.timing");
        let mtu = self.check_mtu(sub.mtu.as_ref(), "subcluster.mtu");
        Some(ClusterDef {
            id: ClusterId(*sub.id.get_ref()),
            name: sub.name.get_ref().clone(),
            transport: transport?,
            priority: ids(&sub.priority),
            mtu,
            timing: timing?,
            parent: None,
            level: 0,
        })
    }
}

// ---- a local tree -------------------------------------------------------------

/// Why a tree shape such as `3x3` cannot be laid out.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShapeError {
    /// Not numbers joined by `x`.
    #[error("{0:?} is not a shape: give members per cluster at each level, root first, joined by x (such as 3x3)")]
    Syntax(String),
    /// More levels than a tree may have.
    #[error("a tree has at most {MAX_LEVELS} levels, not {0}")]
    TooDeep(usize),
    /// Fewer than two levels: that is one cluster.
    #[error("a tree needs at least two levels (such as 3x3); for one cluster give --nodes")]
    OneLevel,
    /// A level with no members.
    #[error("every level needs at least one member")]
    Zero,
    /// More members in one cluster than a cluster may hold.
    #[error("a cluster holds at most {MAX_NODES} members, not {0}")]
    TooWide(u32),
    /// More machines than a local tree runs.
    #[error("a local tree runs at most {max} machines, and this shape has {machines}")]
    TooMany {
        /// Machines the shape has.
        machines: u64,
        /// The most a local tree runs.
        max: u64,
    },
}

/// The most machines `ringcast up --shape` starts on one host.
pub const MAX_LOCAL_MACHINES: u64 = 64;

/// Claim 5: members per cluster at each level, root first, from `3x3`.
pub fn parse_shape(text: &str) -> Result<Vec<u32>, ShapeError> {
    let shape: Vec<u32> = text
        .split(['x', 'X'])
        .map(|part| part.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| ShapeError::Syntax(text.to_string()))?;
    check_shape(&shape)?;
    Ok(shape)
}

fn check_shape(shape: &[u32]) -> Result<u64, ShapeError> {
    if shape.len() < 2 {
        return Err(ShapeError::OneLevel);
    }
    if shape.len() > MAX_LEVELS {
        return Err(ShapeError::TooDeep(shape.len()));
    }
    let mut machines: u64 = 1;
    for &members in shape {
        if members == 0 {
            return Err(ShapeError::Zero);
        }
        if members as usize > MAX_NODES {
            return Err(ShapeError::TooWide(members));
        }
        machines = machines.saturating_mul(u64::from(members));
    }
    if machines > MAX_LOCAL_MACHINES {
        return Err(ShapeError::TooMany {
            machines,
            max: MAX_LOCAL_MACHINES,
        });
    }
    Ok(machines)
}

/// How much slower each level of a local tree runs than the level below it,
/// so that a sub-cluster fails over and its seat moves well inside its
/// parent's failure detection (docs/hierarchy.md, "Timing between levels").
pub const LOCAL_SLOWDOWN: u32 = 5;
/// Missed status periods before a parent declares a seat failed in a local
/// tree: a seat moves in a sub-cluster's failover plus one notification of
/// its parent, and a loaded machine should not turn that into a failure.
pub const LOCAL_PARENT_MISS_LIMIT: u32 = 5;

/// Ports for a local tree: either fixed from a base, or ones the system
/// reports free, held open until all are chosen.
struct Ports {
    /// The base port asked for, and the machines, for errors.
    base: u16,
    machines: u32,
    next: Option<u32>,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Ports {
    fn udp(&mut self) -> Result<u16, ConfigFileError> {
        if let Some(port) = self.take_fixed()? {
            return Ok(port);
        }
        let socket =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ConfigFileError::FreePort)?;
        let port = socket
            .local_addr()
            .map_err(ConfigFileError::FreePort)?
            .port();
        self.udp.push(socket);
        Ok(port)
    }

    fn tcp(&mut self) -> Result<u16, ConfigFileError> {
        if let Some(port) = self.take_fixed()? {
            return Ok(port);
        }
        loop {
            let listener =
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ConfigFileError::FreePort)?;
            let port = listener
                .local_addr()
                .map_err(ConfigFileError::FreePort)?
                .port();
            // A port already handed out for UDP would be confusing in a file.
            let clash = self
                .udp
                .iter()
                .any(|s| s.local_addr().is_ok_and(|a| a.port() == port));
            self.tcp.push(listener);
            if !clash {
                return Ok(port);
            }
        }
    }

    fn take_fixed(&mut self) -> Result<Option<u16>, ConfigFileError> {
        let Some(next) = self.next else {
            return Ok(None);
        };
        let port = u16::try_from(next).map_err(|_| ConfigFileError::PortRange {
            base: self.base,
            nodes: self.machines,
        })?;
        self.next = Some(next + 1);
        Ok(Some(port))
    }
}

/// One cluster of a local tree being laid out.
struct Planned {
    id: u32,
    level: usize,
    /// Member ids: machines for a leaf, clusters otherwise.
    members: Vec<u32>,
    bus: u16,
}

/// Claim 5: writes `cluster.toml`, `cluster.key` and `admin.token` into `dir`
/// for a tree of clusters on 127.0.0.1 shaped as `shape` (members per
/// cluster at each level, root first: `[3, 3]` is a root of three
/// sub-clusters of three machines), and returns the file's path.
///
/// Machines are numbered from 1; clusters from 1000 (the root) upward, level
/// by level. Every cluster multicasts on its own group with TTL 0; the leaves
/// run `Timing::lan()` and each level above runs [`LOCAL_SLOWDOWN`] times
/// slower. With `disks`, every machine has one disk under `dir/disks/d<k>`
/// shared with the previous machine of its leaf cluster. With `base_port`
/// ports are handed out upward from it; without, every port is one the
/// system reports free now.
pub fn local_hierarchy(
    dir: &Path,
    shape: &[u32],
    base_port: Option<u16>,
    disks: bool,
) -> Result<PathBuf, ConfigFileError> {
    let machines = check_shape(shape).map_err(ConfigFileError::Shape)? as u32;
    if base_port == Some(0) {
        return Err(ConfigFileError::PortRange {
            base: 0,
            nodes: machines,
        });
    }
    let mut ports = Ports {
        base: base_port.unwrap_or(0),
        machines,
        next: base_port.map(u32::from),
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    let first_cluster = 1000.max(machines + 1);
    let leaf_level = shape.len() - 1;
    // Lay the clusters out level by level, the root first.
    let mut clusters: Vec<Planned> = Vec::new();
    let mut next_cluster = first_cluster;
    let mut next_machine = 1;
    let mut frontier = vec![next_cluster];
    next_cluster += 1;
    for (level, &members) in shape.iter().enumerate() {
        let mut below = Vec::new();
        for id in frontier {
            let ids: Vec<u32> = if level == leaf_level {
                let ids = (next_machine..next_machine + members).collect();
                next_machine += members;
                ids
            } else {
                let ids: Vec<u32> = (next_cluster..next_cluster + members).collect();
                next_cluster += members;
                ids
            };
            below.extend(&ids);
            clusters.push(Planned {
                id,
                level,
                members: ids,
                bus: ports.udp()?,
            });
        }
        frontier = below;
    }
    let key_bytes = write_fresh_secrets(dir)?;

    let timing_of = |level: usize| {
        let above = (leaf_level - level) as u32;
        if above == 0 {
            Timing::lan()
        } else {
            Timing::with_interval(
                Timing::lan().status_interval * LOCAL_SLOWDOWN.pow(above),
                LOCAL_PARENT_MISS_LIMIT,
            )
        }
    };
    // A group per cluster, from the key's randomness so two trees on one
    // host do not share groups.
    let group = |i: usize| Ipv4Addr::new(239, 255, key_bytes[0].clamp(1, 254), (i % 254 + 1) as u8);
    let shape_text: Vec<String> = shape.iter().map(u32::to_string).collect();
    let mut text = format!(
        "# A local tree of ringcast clusters ({}) on 127.0.0.1, written by ringcast.\n",
        shape_text.join("x")
    );
    for (i, c) in clusters.iter().enumerate() {
        let members: Vec<String> = c.members.iter().map(u32::to_string).collect();
        let (header, timing_header) = if i == 0 {
            ("[cluster]", "[timing]")
        } else {
            ("\n[[subcluster]]", "[subcluster.timing]")
        };
        let name = if i == 0 {
            "root".to_string()
        } else {
            format!("c{}", c.id)
        };
        let _ = writeln!(text, "{header}\nid = {}\nname = \"{name}\"", c.id);
        if i == 0 {
            text.push_str("config_version = 1\ntransport = \"multicast\"\n");
        }
        let _ = writeln!(
            text,
            "bus = \"{}:{}\"\ninterface = \"127.0.0.1\"\nttl = 0                       # multicast stays on this host\nloopback = true",
            group(i),
            c.bus
        );
        if i == 0 {
            text.push_str("key_file = \"cluster.key\"\nadmin_token_file = \"admin.token\"\n");
        }
        let _ = writeln!(
            text,
            "priority = [{}]\nmtu = {DEFAULT_MTU}",
            members.join(", ")
        );
        let t = timing_of(c.level);
        let ms = |d: Duration| d.as_millis();
        let _ = writeln!(
            text,
            "\n{timing_header}\nstatus_interval_ms = {}\nnotify_interval_ms = {}\nnotification_time_ms = {}\nmiss_limit = {}\ntakeover_step_ms = {}\njoin_retry_ms = {}\nleave_retry_ms = {}",
            ms(t.status_interval),
            ms(t.notify_interval),
            ms(t.notification_time),
            t.miss_limit,
            ms(t.takeover_step),
            ms(t.join_retry),
            ms(t.leave_retry),
        );
    }
    for leaf in clusters.iter().filter(|c| c.level == leaf_level) {
        for (k, &m) in leaf.members.iter().enumerate() {
            let ring = ports.udp()?;
            let http = ports.tcp()?;
            let seats: Vec<String> = (0..leaf_level)
                .map(|_| ports.udp().map(|p| format!("\"127.0.0.1:{p}\"")))
                .collect::<Result<_, _>>()?;
            let _ = writeln!(
                text,
                "\n[[node]]\nid = {m}\nring = \"127.0.0.1:{ring}\"\nhttp = \"127.0.0.1:{http}\"\nmax_streams = 100\nmax_bytes_per_s = {LOCAL_BYTES_PER_S}\nseats = [{}]  # its ring address in each ancestor cluster, nearest first",
                seats.join(", ")
            );
            if disks {
                let previous = leaf.members[(k + leaf.members.len() - 1) % leaf.members.len()];
                let mut reached = vec![m];
                if previous != m {
                    reached.push(previous);
                }
                for d in reached {
                    let mount = dir.join("disks").join(format!("d{d}"));
                    let lib = mount.join(crate::catalog::LIBRARY_DIR);
                    fs::create_dir_all(&lib)
                        .map_err(|source| ConfigFileError::Write { path: lib, source })?;
                    let _ = writeln!(
                        text,
                        "\n[[node.disk]]\nid = {d}\nmount = \"{}\"\nprobe = \"{}\"",
                        mount.display(),
                        mount.join(format!(".ringcast-probe-n{m}")).display()
                    );
                }
            }
        }
    }
    let path = dir.join("cluster.toml");
    write_private(&path, &text)?;
    drop(ports);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clusterfile::{load, ConfigFileError};
    use ringcast_proto::NodeId;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// A root (100) of sub-clusters 10 and 20; 10 holds nodes 1 and 2, 20
    /// holds node 3.
    const TREE: &str = r#"[cluster]
id = 100
name = "root"
config_version = 2
bus = "239.255.9.1:7400"
interface = "127.0.0.1"
ttl = 0
key_file = "cluster.key"
priority = [20, 10]

[timing]
status_interval_ms = 100
notify_interval_ms = 100
notification_time_ms = 300

[[subcluster]]
id = 10
name = "east"
bus = "239.255.9.2:7400"
priority = [1, 2]

[[subcluster]]
id = 20
name = "west"
bus = "239.255.9.3:7400"
priority = [3]

[subcluster.timing]
status_interval_ms = 30
notify_interval_ms = 30
notification_time_ms = 90

[[node]]
id = 1
ring = "127.0.0.1:7501"
http = "127.0.0.1:8501"
max_streams = 100
max_bytes_per_s = 1000
seats = ["127.0.0.1:7601"]

[[node]]
id = 2
ring = "127.0.0.1:7502"
http = "127.0.0.1:8502"
max_streams = 50
max_bytes_per_s = 500
seats = ["127.0.0.1:7602"]

[[node]]
id = 3
ring = "127.0.0.1:7503"
http = "127.0.0.1:8503"
max_streams = 10
max_bytes_per_s = 100
seats = ["127.0.0.1:7603"]
"#;

    /// Loads `text` as a cluster file beside a key file.
    fn load_text(text: &str) -> Result<super::super::ClusterFile, ConfigFileError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.key"), KEY_HEX).unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    fn problems(text: &str) -> Vec<String> {
        match load_text(text) {
            Ok(_) => Vec::new(),
            Err(ConfigFileError::Invalid { problems, .. }) => problems
                .iter()
                .map(|p| format!("{}:{}: {}", p.line, p.field, p.message))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    fn with_tree<T>(text: &str, f: impl FnOnce(&super::super::ClusterFile) -> T) -> T {
        f(&load_text(text).unwrap())
    }

    #[test]
    fn a_tree_gives_each_node_its_cluster_and_a_seat_in_the_parent() {
        with_tree(TREE, |file| {
            assert!(file.is_hierarchy());
            let s = file.node_settings(NodeId(2)).unwrap();
            assert_eq!(s.proto.cluster, ClusterId(10));
            assert_eq!(s.proto.priority, vec![NodeId(1), NodeId(2)]);
            assert_eq!(s.proto.bus, "239.255.9.2:7400".parse().unwrap());
            assert_eq!(s.cluster_name, "east");
            assert_eq!(s.seats.len(), 1);
            let seat = &s.seats[0];
            assert_eq!(seat.proto.cluster, ClusterId(100));
            assert_eq!(
                seat.proto.node,
                NodeId(10),
                "the seat is the sub-cluster's id"
            );
            assert_eq!(seat.proto.priority, vec![NodeId(20), NodeId(10)]);
            assert_eq!(seat.proto.addrs.ring, "127.0.0.1:7602".parse().unwrap());
            assert_eq!(seat.proto.addrs.http, s.proto.addrs.http);
            assert_eq!(seat.proto.capacity.max_streams, 150, "1 and 2 summed");
            assert_eq!(
                seat.proto.timing.status_interval,
                Duration::from_millis(100)
            );
            assert!(seat.proto.disks.is_empty());
            assert_eq!(seat.cluster_name, "root");
            let west = file.node_settings(NodeId(3)).unwrap();
            assert_eq!(west.proto.timing.status_interval, Duration::from_millis(30));
            s.validate().unwrap();
            // The JSON the configuration service sends keeps the seats.
            let json = serde_json::to_string(&s).unwrap();
            let back: crate::settings::NodeSettings = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s);
            let infos = file.clusters();
            let names: Vec<(&str, usize)> =
                infos.iter().map(|c| (c.name.as_str(), c.level)).collect();
            assert_eq!(names, vec![("root", 0), ("west", 1), ("east", 1)]);
            assert_eq!(infos[1].parent, Some(ClusterId(100)));
        });
    }

    #[test]
    fn a_node_in_two_clusters_is_reported_at_the_second() {
        let text = TREE.replace("priority = [3]", "priority = [3, 1]");
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.contains("subcluster.priority")
                && p.contains("names node 1, already a member of cluster 10")),
            "{p:#?}"
        );
    }

    #[test]
    fn a_cycle_of_subclusters_is_reported() {
        // 10 names 20 and 20 names 10: neither hangs below the root.
        let text = TREE
            .replace("priority = [20, 10]", "priority = [30]")
            .replace("priority = [1, 2]", "priority = [20, 1, 2]")
            .replace("priority = [3]", "priority = [10, 3]")
            .replace(
                "[[node]]\nid = 1",
                "[[subcluster]]\nid = 30\nname = \"x\"\nbus = \"239.255.9.4:7400\"\npriority = [4]\n\n[[node]]\nid = 4\nring = \"127.0.0.1:7504\"\nhttp = \"127.0.0.1:8504\"\nmax_streams = 1\nmax_bytes_per_s = 1\nseats = [\"127.0.0.1:7604\"]\n\n[[node]]\nid = 1",
            );
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.contains("is its own ancestor")),
            "{p:#?}"
        );
    }

    #[test]
    fn two_clusters_on_one_bus_are_reported() {
        let text = TREE.replace("239.255.9.3:7400", "239.255.9.2:7400");
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.contains("subcluster.bus") && p.contains("already cluster 10's bus")),
            "{p:#?}"
        );
    }

    #[test]
    fn a_cluster_mixing_nodes_and_subclusters_is_reported() {
        let text = TREE
            .replace("priority = [20, 10]", "priority = [20, 10, 3]")
            .replace("priority = [3]", "priority = [2]")
            .replace("priority = [1, 2]", "priority = [1]");
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.contains("mixes nodes and sub-clusters")),
            "{p:#?}"
        );
    }

    #[test]
    fn missing_seats_and_shared_ids_and_orphans_are_reported() {
        let text = TREE.replace("seats = [\"127.0.0.1:7603\"]\n", "");
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.contains("node.seats") && p.contains("needs 1 seat address")),
            "{p:#?}"
        );
        let text = TREE.replace("id = 20\n", "id = 3\n");
        let p = problems(&text);
        assert!(p.iter().any(|p| p.contains("share one id space")), "{p:#?}");
        let text = TREE.replace("priority = [20, 10]", "priority = [20]");
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.contains("sub-cluster 10 is a member of no cluster")),
            "{p:#?}"
        );
        let text = TREE.replace("bus = \"239.255.9.1:7400\"\n", "transport = \"unicast\"\n");
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.contains("needs multicast buses")),
            "{p:#?}"
        );
    }

    #[test]
    fn shapes_parse_and_bad_ones_say_why() {
        assert_eq!(parse_shape("3x3"), Ok(vec![3, 3]));
        assert_eq!(parse_shape("2x2x2"), Ok(vec![2, 2, 2]));
        assert_eq!(parse_shape("3"), Err(ShapeError::OneLevel));
        assert_eq!(parse_shape("3x0"), Err(ShapeError::Zero));
        assert!(matches!(parse_shape("3xa"), Err(ShapeError::Syntax(_))));
        assert_eq!(parse_shape("1x1x1x1x1x1x1"), Err(ShapeError::TooDeep(7)));
        assert!(matches!(
            parse_shape("9x9"),
            Err(ShapeError::TooMany { machines: 81, .. })
        ));
    }

    #[test]
    fn a_local_tree_loads_with_every_machine_seated_in_each_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let path = local_hierarchy(dir.path(), &[2, 2, 2], None, true).unwrap();
        let file = load(&path).unwrap();
        assert_eq!(file.node_ids().len(), 8);
        let clusters = file.clusters();
        assert_eq!(clusters.len(), 1 + 2 + 4);
        assert_eq!(clusters[0].level, 0);
        for id in file.node_ids() {
            let s = file.node_settings(id).unwrap();
            assert_eq!(s.seats.len(), 2);
            assert_eq!(s.proto.disks.len(), 2, "its own disk and its neighbour's");
            // Each level above runs slower than the one below.
            assert!(s.seats[0].proto.timing.status_interval > s.proto.timing.status_interval);
            assert!(
                s.seats[1].proto.timing.status_interval > s.seats[0].proto.timing.status_interval
            );
            assert_eq!(s.seats[1].proto.capacity.max_streams, 400);
        }
    }
}
