//! Model-based: 3-5 protocol nodes on the simulator (`ringcast_sim::world::Sim`)
//! driven by an arbitrary sequence of faults: run for a while, crash, restart,
//! partition, cut a one-way link, heal, pause, leave, set loss / duplication /
//! delay, inject garbage, report load and disk probes. Then everything is
//! healed (clean network, links restored, dead nodes restarted except those
//! the input keeps dead, at least two left running) and the world must
//! converge (`check::converged`) within `campaign::convergence_limit`.
//!
//! Checks: the simulator's safety invariants (`sim.violations`, checked after
//! every step) stay empty, and convergence happens; otherwise it panics with
//! the reason, the operations and the simulator's trace. At most 5 s of
//! virtual time of operations per input.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringcast_fuzz::structured::FDiskReport;
use ringcast_proto::{LocalEvent, Timing};
use ringcast_sim::campaign::convergence_limit;
use ringcast_sim::check;
use ringcast_sim::world::{NetFaults, Sim, SimConfig};

/// Most virtual time the operations may take.
const OPS_BUDGET: Duration = Duration::from_secs(5);

#[derive(Arbitrary, Debug)]
struct Input {
    /// 3..=5 nodes.
    nodes: u8,
    /// Seed of the simulator (delays, losses, node seeds).
    seed: u64,
    /// Nodes start one after the other, this many ms apart (0..=63).
    stagger: u8,
    ops: Vec<Op>,
    /// Bit i set: node i+1 stays down after the faults, if it is down then.
    keep_dead: u8,
}

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    /// Run for 1..=1000 ms.
    Run(u16),
    Crash(u8),
    Restart(u8),
    /// Bit i set: node i+1 is on the other side.
    Partition(u8),
    /// Cut the one-way link from one node to another.
    Cut(u8, u8),
    Heal,
    /// Pause a node for 1..=500 ms.
    Pause(u8, u16),
    Leave(u8),
    /// Loss and duplication in 1/256ths of 0.5, longest delay in 0.1 ms (up to 25.5 ms).
    Net { loss: u8, duplicate: u8, delay: u8 },
    /// Deliver garbage to a node.
    Inject(u8, Vec<u8>),
    Load(u8, u32, u64),
    Disk(u8, FDiskReport),
}

fuzz_target!(|input: Input| {
    let n = u32::from(input.nodes % 3) + 3;
    let timing = Timing::lan();
    let mut sim = Sim::new(SimConfig {
        seed: input.seed,
        nodes: n,
        timing: timing.clone(),
        strict_failures: false,
        mtu: 1400,
    });
    let node = |x: u8| u32::from(x) % n + 1;
    let stagger = Duration::from_millis(u64::from(input.stagger % 64));
    for id in 1..=n {
        sim.start(id);
        sim.run_for(stagger);
    }

    let start = sim.now();
    let mut done = Vec::new();
    for op in input.ops.iter().take(64) {
        if sim.now() - start >= OPS_BUDGET {
            break;
        }
        done.push(op.clone());
        match op {
            Op::Run(ms) => sim.run_for(Duration::from_millis(u64::from(ms % 1000) + 1)),
            Op::Crash(i) => sim.crash(node(*i)),
            Op::Restart(i) => sim.start(node(*i)),
            Op::Partition(mask) => {
                let (a, b): (Vec<u32>, Vec<u32>) =
                    (1..=n).partition(|id| mask & (1 << (id - 1)) != 0);
                sim.partition(&[&a, &b]);
            }
            Op::Cut(from, to) => {
                let (from, to) = (node(*from), node(*to));
                if from != to {
                    sim.cut(from, to);
                }
            }
            Op::Heal => sim.heal(),
            Op::Pause(i, ms) => {
                let id = node(*i);
                if sim.machine(id).node().is_some() {
                    sim.pause(id, Duration::from_millis(u64::from(ms % 500) + 1));
                }
            }
            Op::Leave(i) => sim.leave(node(*i)),
            Op::Net {
                loss,
                duplicate,
                delay,
            } => sim.set_net(NetFaults {
                loss: f64::from(*loss) / 512.0,
                duplicate: f64::from(*duplicate) / 512.0,
                delay_min: Duration::from_micros(50),
                delay_max: Duration::from_micros(50 + u64::from(*delay) * 100),
            }),
            Op::Inject(i, bytes) => sim.inject(node(*i), bytes.clone()),
            Op::Load(i, streams, bytes_per_s) => sim.local(
                node(*i),
                LocalEvent::Load(ringcast_proto::Load {
                    streams: *streams,
                    bytes_per_s: *bytes_per_s,
                }),
            ),
            Op::Disk(i, report) => sim.local(node(*i), LocalEvent::DiskProbe(report.build())),
        }
    }

    // Heal everything.
    sim.set_net(NetFaults::clean());
    sim.heal();
    for id in 1..=n {
        let keep = input.keep_dead & (1 << (id - 1)) != 0;
        if !sim.machine(id).is_live() && (!keep || sim.live().len() < 2) {
            sim.start(id);
        }
    }
    // Nodes restarted at the end may still be short of two; start in order.
    for id in 1..=n {
        if sim.live().len() >= 2 {
            break;
        }
        if !sim.machine(id).is_live() {
            sim.start(id);
        }
    }

    let limit = convergence_limit(&timing, n);
    let converged = sim.run_until(limit, check::converged);
    let report = |what: &str, sim: &Sim| {
        format!(
            "{what}\nnodes {n}, seed {}, stagger {stagger:?}, keep_dead {:#x}\nops: {done:?}\nviolations:\n{}\n--- trace ---\n{}",
            input.seed,
            input.keep_dead,
            sim.violations.join("\n"),
            sim.trace()
        )
    };
    if !sim.violations.is_empty() {
        panic!("{}", report("safety violation", &sim));
    }
    if converged.is_err() {
        let why = check::not_converged(&sim).unwrap_or_default();
        panic!(
            "{}",
            report(&format!("no convergence within {limit:?} after healing: {why}"), &sim)
        );
    }
});
