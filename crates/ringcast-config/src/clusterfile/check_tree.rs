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
use std::net::SocketAddr;
use std::ops::Range;

use ringcast_proto::config::MAX_NODES;
use ringcast_proto::ClusterId;
use toml::Spanned;

use super::check::{ids, Checker, MulticastKeys};
use super::model::{ClusterDef, NodeEntry};
use super::schema::{RawCluster, RawNode, RawSubcluster, TransportKind, MAX_LEVELS};

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
