//! A narrated run for newcomers: formation, a join, a supervisor crash and
//! takeover, a member crash and its detection, and a graceful leave.

use std::time::Duration;

use ringcast_proto::Event;

use crate::check;
use crate::world::{Sim, SimConfig};

fn describe(id: u32, e: &Event) -> Option<String> {
    let line = match e {
        Event::BecameSupervisor { epoch, reason } => {
            format!("n{id} became supervisor ({reason:?}, epoch {})", epoch.0)
        }
        Event::StoppedSupervising { successor } => {
            format!("n{id} stopped supervising in favour of {successor}")
        }
        Event::Joined { supervisor } => format!("n{id} joined, supervisor {supervisor}"),
        Event::Left => format!("n{id} left"),
        Event::NodeFailed { node, declared_by } => {
            format!("n{id} (supervisor) marked {node} failed, declared by {declared_by}")
        }
        Event::UpstreamDeclared { node } => format!("n{id} declared its upstream {node} failed"),
        Event::Refuted { incarnation } => format!("n{id} refuted its failure with {incarnation}"),
        Event::NodeLeft { node } => format!("n{id} (supervisor) saw {node} leave"),
        _ => return None,
    };
    Some(line)
}

fn narrate(sim: &Sim, from: usize, out: &mut Vec<String>) -> usize {
    let mut lines: Vec<(Duration, String)> = Vec::new();
    for m in &sim.machines {
        for (at, e) in &m.events {
            if let Some(text) = describe(m.id.0, e) {
                lines.push((*at, text));
            }
        }
    }
    lines.sort();
    for (at, text) in lines.iter().skip(from) {
        out.push(format!("{:8.1} ms  {text}", at.as_secs_f64() * 1000.0));
    }
    lines.len()
}

/// Runs the demo with `nodes` nodes and returns its narration.
pub fn run(seed: u64, nodes: u32) -> Vec<String> {
    let nodes = nodes.max(3);
    let mut sim = Sim::new(SimConfig::new(seed, nodes));
    let mut out = vec![format!(
        "seed {seed}: {nodes} nodes, 20 ms intervals, miss limit 3"
    )];
    let limit = Duration::from_secs(5);
    let mut seen = 0;
    let mut step = |sim: &mut Sim, title: &str, out: &mut Vec<String>| {
        let _ = sim.run_until(limit, check::converged);
        sim.run_for(Duration::from_millis(100));
        out.push(format!("== {title}"));
        seen = narrate(sim, seen, out);
        let sup = sim
            .live()
            .into_iter()
            .find(|id| sim.node(*id).role() == ringcast_proto::Role::Supervisor);
        out.push(format!(
            "   converged: {}, supervisor: {}",
            check::converged(sim),
            sup.map(|s| format!("n{s}"))
                .unwrap_or_else(|| "none".into())
        ));
    };
    for id in 2..=nodes {
        sim.start(id);
    }
    step(&mut sim, "formation without the top node", &mut out);
    sim.start(1);
    step(&mut sim, "n1 starts and preempts", &mut out);
    sim.crash(1);
    step(&mut sim, "n1 crashes: takeover", &mut out);
    sim.crash(nodes);
    step(
        &mut sim,
        &format!("n{nodes} crashes: the ring declares it"),
        &mut out,
    );
    sim.leave(3);
    step(&mut sim, "n3 leaves gracefully", &mut out);
    sim.leave(2);
    step(&mut sim, "the supervisor n2 leaves: handover", &mut out);
    out
}
