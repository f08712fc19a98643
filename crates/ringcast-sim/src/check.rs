//! The invariants of DESIGN section 8: safety after every step, convergence
//! (liveness) once the network is quiet.

use ringcast_proto::map::MemberStatus;
use ringcast_proto::{NodeId, Role};

use crate::world::{Machine, Sim};

/// The order in which a node prefers maps: (epoch, rank reversed, version).
pub use ringcast_proto::map::Precedence;

/// The precedence of the map a machine holds.
pub fn precedence_of(m: &Machine) -> Option<Precedence> {
    m.node
        .as_ref()
        .and_then(|n| n.map())
        .map(|map| map.precedence())
}

/// Safety checks on machine `i` after it handled an input.
pub fn node_safety(sim: &Sim, i: usize, previous: &mut Option<Precedence>) -> Vec<String> {
    let mut problems = Vec::new();
    let m = &sim.machines[i];
    let Some(node) = m.node.as_ref() else {
        return problems;
    };
    let id = m.id;
    if let (Some(before), Some(now)) = (*previous, precedence_of(m)) {
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
    if sim.config.strict_failures {
        if let Some(map) = node.map() {
            for entry in &map.members {
                if entry.status == MemberStatus::Failed
                    && sim.life_is_running(entry.id, entry.incarnation)
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
pub fn not_converged(sim: &Sim) -> Option<String> {
    let live = sim.live();
    if live.is_empty() {
        return None;
    }
    let supervisors: Vec<u32> = live
        .iter()
        .copied()
        .filter(|id| sim.node(*id).role() == Role::Supervisor)
        .collect();
    let [sup] = supervisors[..] else {
        return Some(format!("supervisors: {supervisors:?}"));
    };
    if sim.config.timing.preempt {
        let best = live.iter().min().copied().unwrap_or(sup);
        if sup != best {
            return Some(format!(
                "n{sup} supervises but n{best} has a higher priority"
            ));
        }
    }
    let reference = sim.node(sup).map()?.agreement_key();
    for id in &live {
        let node = sim.node(*id);
        if !node.is_joined() {
            return Some(format!("n{id} has not joined"));
        }
        match node.map() {
            Some(map) if map.agreement_key() == reference => {}
            _ => return Some(format!("n{id}'s map differs from the supervisor's")),
        }
    }
    let map = sim.node(sup).map()?;
    for id in &live {
        let node = sim.node(*id);
        let listed = map.member(NodeId(*id));
        if !listed
            .is_some_and(|m| m.status == MemberStatus::Up && m.incarnation == node.incarnation())
        {
            return Some(format!("n{id} is not listed up with its life"));
        }
    }
    for entry in &map.members {
        if entry.status == MemberStatus::Up && !sim.life_is_running(entry.id, entry.incarnation) {
            return Some(format!("{} is listed up but is not running", entry.id));
        }
    }
    None
}

/// Whether the world has converged.
pub fn converged(sim: &Sim) -> bool {
    not_converged(sim).is_none()
}
