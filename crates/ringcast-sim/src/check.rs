//! The invariants of DESIGN section 8: safety after every step, convergence
//! (liveness) once the network is quiet.

use ringcast_proto::map::MemberStatus;
use ringcast_proto::{Incarnation, Node, NodeId, Role};

/// The order in which a node prefers maps: (epoch, rank reversed, version).
pub use ringcast_proto::map::Precedence;

/// One cluster as the invariants see it: a lone cluster's world, or one
/// cluster of a simulated tree (its members machines or seats).
pub trait ClusterView {
    /// The nodes of the cluster's members that run now, by member id,
    /// lowest first (left nodes included).
    fn running(&self) -> Vec<(u32, &Node)>;
    /// Whether life `incarnation` of member `id` still runs.
    fn life_is_running(&self, id: NodeId, incarnation: Incarnation) -> bool;
    /// Whether the cluster's timing lets a higher priority preempt.
    fn preempt(&self) -> bool;
}

/// The precedence of the map a node holds.
pub fn precedence_of(node: Option<&Node>) -> Option<Precedence> {
    node.and_then(|n| n.map()).map(|map| map.precedence())
}

/// Safety checks on `node` after it handled an input: `previous` is the
/// precedence of the map it held before; with `strict`, its cluster runs on
/// a healthy network, where no live node may be marked failed.
pub fn node_safety(
    node: &Node,
    previous: Option<Precedence>,
    strict: Option<&dyn ClusterView>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let id = node.id();
    if let (Some(before), Some(now)) = (previous, precedence_of(Some(node))) {
        if now < before {
            problems.push(format!(
                "{id} went back from map {before:?} to an older one {now:?}"
            ));
        }
    }
    if node.role() == Role::Supervisor {
        match node.map() {
            None => problems.push(format!("{id} supervises without a map")),
            Some(map) => {
                if map.supervisor != id {
                    problems.push(format!(
                        "{id} supervises but its map names {}",
                        map.supervisor
                    ));
                }
                let me = map.member(id);
                if !me.is_some_and(|e| {
                    e.status == MemberStatus::Up && e.incarnation == node.incarnation()
                }) {
                    problems.push(format!(
                        "{id} supervises but is not listed up in its own map"
                    ));
                }
                let expected: Vec<NodeId> =
                    map.up_in_priority_order(&node.config().priority).collect();
                if map.ring != expected {
                    problems.push(format!(
                        "{id}'s ring {:?} is not its up members in priority order {expected:?}",
                        map.ring
                    ));
                }
            }
        }
    }
    if let Some(cluster) = strict {
        if let Some(map) = node.map() {
            for entry in &map.members {
                if entry.status == MemberStatus::Failed
                    && cluster.life_is_running(entry.id, entry.incarnation)
                {
                    problems.push(format!(
                        "{id}'s map marks {} ({}) failed but it is alive on a healthy network",
                        entry.id, entry.incarnation
                    ));
                }
            }
        }
    }
    problems
}

/// Why the world has not converged yet, or `None` once it has: exactly one
/// supervisor among the live nodes (the highest priority when preemption is
/// on), every live node joined and holding the supervisor's map, every live
/// node listed up with its current life and every other listed node not up.
pub fn not_converged(cluster: &(impl ClusterView + ?Sized)) -> Option<String> {
    let live: Vec<(u32, &Node)> = cluster
        .running()
        .into_iter()
        .filter(|(_, n)| n.role() != Role::Left)
        .collect();
    if live.is_empty() {
        return None;
    }
    let supervisors: Vec<(u32, &Node)> = live
        .iter()
        .copied()
        .filter(|(_, n)| n.role() == Role::Supervisor)
        .collect();
    let [(sup, sup_node)] = supervisors[..] else {
        let ids: Vec<u32> = supervisors.iter().map(|(id, _)| *id).collect();
        return Some(format!("supervisors: {ids:?}"));
    };
    if cluster.preempt() {
        // By the supervisor's own list: one reloaded live may differ from the
        // id order simulated clusters start with.
        let best = sup_node
            .config()
            .priority
            .iter()
            .map(|n| n.0)
            .find(|id| live.iter().any(|(l, _)| l == id))
            .unwrap_or(sup);
        if sup != best {
            return Some(format!(
                "n{sup} supervises but n{best} has a higher priority"
            ));
        }
    }
    let reference = sup_node.map()?.agreement_key();
    for (id, node) in &live {
        if !node.is_joined() {
            return Some(format!("n{id} has not joined"));
        }
        match node.map() {
            Some(map) if map.agreement_key() == reference => {}
            _ => return Some(format!("n{id}'s map differs from the supervisor's")),
        }
    }
    let map = sup_node.map()?;
    for (id, node) in &live {
        let listed = map.member(NodeId(*id));
        if !listed
            .is_some_and(|m| m.status == MemberStatus::Up && m.incarnation == node.incarnation())
        {
            return Some(format!("n{id} is not listed up with its life"));
        }
    }
    for entry in &map.members {
        if entry.status == MemberStatus::Up && !cluster.life_is_running(entry.id, entry.incarnation)
        {
            return Some(format!("{} is listed up but is not running", entry.id));
        }
    }
    None
}

/// Whether the cluster has converged.
pub fn converged(cluster: &(impl ClusterView + ?Sized)) -> bool {
    not_converged(cluster).is_none()
}
