//! Claim 5 and DESIGN section 7: runs of a whole tree of clusters.
//!
//! The tree is a [`TreeWorld`]: every host a protocol [`ringcast_proto::Machine`]
//! that takes its sub-cluster's seat in the parent cluster while it
//! supervises, exactly as the daemon's machine does. A run forms the tree
//! from a cold start, measures quiet traffic against lone clusters, then
//! plays fault rounds: supervisor deaths at every level, whole dead
//! sub-clusters and, with [`TreeFaults::All`], loss, duplication and
//! reordering on every level's network, partitions of clusters at every
//! level and pauses of supervising machines. After each round every cluster
//! must converge again; a parent may mark a sub-cluster failed only when it
//! is dead (or while network faults and pauses may cut its seat off), and at
//! the end the root's tables must count every machine's streams. Each level
//! runs slower than the one below it ([`Timing::for_level`]), so a
//! sub-cluster's failover fits well inside its parent's failure detection.

use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::Rng;
use rayon::prelude::*;
use ringcast_proto::event::LocalEvent;
use ringcast_proto::{Load, MemberStatus, Timing};
use serde::Serialize;
use thiserror::Error;

use crate::campaign::{convergence_limit, percentile};
use crate::check::{self, ClusterView};
use crate::tree::TreeWorld;
use crate::world::{NetFaults, Sim, SimConfig};

/// Why a shape was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShapeError {
    /// A level is not a number.
    #[error("shape {0:?}: each level must be a number of members, as in 22x22x22")]
    NotANumber(String),
    /// A level has too few or too many members for one cluster.
    #[error("shape {shape:?}: a cluster has between 2 and {max} members, not {members}")]
    Members {
        /// The shape given.
        shape: String,
        /// The offending level's size.
        members: u32,
        /// The most a cluster may have.
        max: u32,
    },
    /// Too many levels or machines to simulate.
    #[error("shape {0:?}: at most 5 levels and 200000 machines")]
    TooBig(String),
}

/// The shape of a hierarchy: members per cluster at each level, root first.
/// `22x22x22` is a root of 22 sub-clusters, each of 22 sub-clusters, each of
/// 22 machines: 10,648 machines in three levels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(Vec<u32>);

/// The most members one simulated cluster may have.
pub const MAX_MEMBERS: u32 = 64;

impl FromStr for Shape {
    type Err = ShapeError;

    fn from_str(s: &str) -> Result<Shape, ShapeError> {
        let mut levels = Vec::new();
        for part in s.split(['x', 'X']) {
            let members: u32 = part
                .trim()
                .parse()
                .map_err(|_| ShapeError::NotANumber(s.to_string()))?;
            if !(2..=MAX_MEMBERS).contains(&members) {
                return Err(ShapeError::Members {
                    shape: s.to_string(),
                    members,
                    max: MAX_MEMBERS,
                });
            }
            levels.push(members);
        }
        let machines: u64 = levels.iter().map(|m| u64::from(*m)).product();
        if levels.len() > 5 || machines > 200_000 {
            return Err(ShapeError::TooBig(s.to_string()));
        }
        Ok(Shape(levels))
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("x"))
    }
}

impl Shape {
    /// Levels of clusters.
    pub fn levels(&self) -> usize {
        self.0.len()
    }

    /// Members of each cluster at `level` (0 is the root).
    pub fn members(&self, level: usize) -> u32 {
        self.0[level]
    }

    /// Machines in the whole hierarchy.
    pub fn machines(&self) -> u64 {
        self.0.iter().map(|m| u64::from(*m)).product()
    }
}

/// Which faults a hierarchy run injects besides its kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeFaults {
    /// Only kills: supervisors at every level and whole sub-clusters, on a
    /// quiet network, where no parent may mark a live sub-cluster failed.
    Kills,
    /// Kills, and between them loss, duplication and reordering on every
    /// level's network, partitions of clusters at every level, and pauses
    /// of machines that supervise at one or more levels.
    All,
}

/// How a hierarchy run goes.
#[derive(Clone, Debug)]
pub struct HierarchyConfig {
    /// The tree.
    pub shape: Shape,
    /// Seed of everything random.
    pub seed: u64,
    /// Simulated time to run, faults included.
    pub duration: Duration,
    /// Timing of the leaf clusters.
    pub leaf_timing: Timing,
    /// How much slower each level runs than the level below it.
    pub slowdown: u32,
    /// Faults besides the kills.
    pub faults: TreeFaults,
    /// Worker threads, for the lone clusters measured beside the tree.
    pub threads: usize,
}

impl HierarchyConfig {
    /// Timing of the clusters at `level` (0 is the root), by the protocol's
    /// one rule ([`Timing::for_level`]).
    pub fn level_timing(&self, level: usize) -> Timing {
        let above_leaves = (self.shape.levels() - 1 - level) as u32;
        self.leaf_timing.for_level(above_leaves, self.slowdown)
    }
}

/// The last line of `ringcast-sim hierarchy`. Per-level lists start at the root.
#[derive(Clone, Debug, Serialize)]
pub struct HierarchySummary {
    /// The tree, as given.
    pub shape: String,
    /// Machines.
    pub nodes: u64,
    /// Levels of clusters.
    pub levels: usize,
    /// Clusters at every level.
    pub clusters: usize,
    /// The seed.
    pub seed: u64,
    /// Simulated seconds run.
    pub seconds: f64,
    /// Invariant violations found (0 is the goal).
    pub violations: usize,
    /// The first violations, abridged.
    pub violation_examples: Vec<String>,
    /// Status interval per level, milliseconds.
    pub interval_ms: Vec<f64>,
    /// Cold start until every cluster at every level converged.
    pub formation_ms: Option<f64>,
    /// Cold start until every cluster of the level converged.
    pub formation_ms_per_level: Vec<Option<f64>>,
    /// Supervisors killed per level (a machine that supervises at several
    /// levels counts at each).
    pub failovers: Vec<usize>,
    /// From a supervisor's death until every live member of its cluster
    /// follows one live supervisor, median per level.
    pub failover_ms_p50: Vec<Option<f64>>,
    /// The same, 99th percentile per level.
    pub failover_ms_p99: Vec<Option<f64>>,
    /// Whole sub-clusters killed.
    pub subclusters_killed: usize,
    /// From a whole sub-cluster's death until every seat of its parent lists it failed.
    pub subcluster_detect_ms_p99: Option<f64>,
    /// Parents that marked a sub-cluster failed while it had a live machine
    /// on a quiet network (a violation each).
    pub false_subcluster_failures: usize,
    /// Which faults ran besides the kills: `kills` or `all`.
    pub faults: &'static str,
    /// Storm rounds run: loss, duplication and reordering on every level,
    /// a cluster of every level split and a supervising machine paused.
    pub storms: usize,
    /// Partition rounds run, per level (root first).
    pub partitions: Vec<usize>,
    /// Pause rounds run (each pauses a machine that supervises at least one cluster).
    pub pauses: usize,
    /// Streams the root's tables count at the end.
    pub root_streams: u64,
    /// Streams every live machine reports at the end (the root must agree).
    pub machine_streams: u64,
    /// Bus and ring bytes sent and received per second by one node of one
    /// cluster (a machine, or a seat, whoever holds it), the most of any, on
    /// a quiet network.
    pub max_bytes_per_node_per_s: f64,
    /// The same, averaged over every node of every cluster.
    pub mean_bytes_per_node_per_s: f64,
    /// The most any machine moves, counting every seat it holds.
    pub max_bytes_per_machine_per_s: f64,
    /// Lone clusters of a leaf's size, run side by side with the leaf
    /// timing: the most one of their nodes moves.
    pub single_cluster_max_bytes_per_node_per_s: f64,
    /// The same single cluster, averaged over its nodes.
    pub single_cluster_mean_bytes_per_node_per_s: f64,
    /// The simulator's own running time.
    pub wall_s: f64,
}

/// A whole tree of simulated clusters and what a run watches in it.
pub struct Hierarchy {
    cfg: HierarchyConfig,
    world: TreeWorld,
    window: Duration,
    /// Machines to start later: (when, host).
    pending: Vec<(Duration, usize)>,
    /// Cross-level violations (the world keeps the safety ones).
    violations: Vec<String>,
    /// Seat failures already audited.
    audited: usize,
    /// Seats allowed to be marked failed in this round (they supervised
    /// their parent and died, or stalled, with their machine).
    churn_allowed: Vec<(usize, u32)>,
    /// Until when a parent may mark a live sub-cluster failed: network
    /// faults and pauses can cut a seat off for longer than its parent waits.
    faults_until: Duration,
    /// Per leaf cluster: when it was killed whole, and when it came back.
    dead: Vec<Option<(Duration, Option<Duration>)>>,
    false_failures: usize,
    last_unconverged: usize,
}

/// A deterministic load per machine, so the root's aggregate can be checked.
pub fn machine_load(cluster: usize, id: u32) -> Load {
    // 1 to 8 streams, so every load encodes to the same size.
    let streams = 1 + (cluster as u32).wrapping_mul(31).wrapping_add(id * 7) % 8;
    Load {
        streams,
        bytes_per_s: u64::from(streams) * 2_500_000,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Hierarchy {
    /// Builds the tree with every machine stopped.
    pub fn new(cfg: HierarchyConfig) -> Hierarchy {
        let shape: Vec<u32> = (0..cfg.shape.levels())
            .map(|l| cfg.shape.members(l))
            .collect();
        let world = TreeWorld::new(&shape, |l| cfg.level_timing(l), cfg.seed);
        let window = (cfg.leaf_timing.status_interval / 4).max(Duration::from_micros(100));
        let clusters = world.clusters.len();
        Hierarchy {
            cfg,
            world,
            window,
            pending: Vec::new(),
            violations: Vec::new(),
            audited: 0,
            churn_allowed: Vec::new(),
            faults_until: Duration::ZERO,
            dead: vec![None; clusters],
            false_failures: 0,
            last_unconverged: 0,
        }
    }

    /// The simulated tree.
    pub fn world(&self) -> &TreeWorld {
        &self.world
    }

    fn is_leaf(&self, c: usize) -> bool {
        self.world.clusters[c].children.is_empty()
    }

    fn leaves(&self) -> std::ops::Range<usize> {
        let first = (0..self.world.clusters.len())
            .find(|c| self.is_leaf(*c))
            .unwrap_or(0);
        first..self.world.clusters.len()
    }

    /// The hosts of leaf cluster `c`.
    fn hosts_of(&self, c: usize) -> Vec<usize> {
        (0..self.world.hosts.len())
            .filter(|h| self.world.hosts[*h].chain[0].0 == c)
            .collect()
    }

    fn start_host(&mut self, h: usize) {
        let (c, id) = self.world.hosts[h].chain[0];
        self.world.start(h, machine_load(c, id));
    }

    /// Advances the tree by `d`, window by window.
    pub fn advance(&mut self, d: Duration) {
        let end = self.world.elapsed() + d;
        while self.world.elapsed() < end {
            let step = self.window.min(end - self.world.elapsed());
            self.step(step);
        }
    }

    /// Advances window by window until `done` holds or `limit` passes.
    fn advance_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Hierarchy) -> bool,
    ) -> Result<Duration, Duration> {
        let start = self.world.elapsed();
        loop {
            if done(self) {
                return Ok(self.world.elapsed() - start);
            }
            if self.world.elapsed() - start >= limit {
                return Err(self.world.elapsed() - start);
            }
            let step = self.window;
            self.step(step);
        }
    }

    fn step(&mut self, step: Duration) {
        self.world.run_for(step);
        let now = self.world.elapsed();
        let due: Vec<usize> = self
            .pending
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, h)| *h)
            .collect();
        self.pending.retain(|(at, _)| *at > now);
        for h in due {
            self.start_host(h);
        }
        self.audit_seat_failures();
    }

    /// A parent may mark a sub-cluster failed only while all of it is dead,
    /// when its seat was the parent's supervisor and died with its machine,
    /// or while network faults or pauses may cut the seat off.
    fn audit_seat_failures(&mut self) {
        while self.audited < self.world.seat_failures.len() {
            let f = self.world.seat_failures[self.audited];
            self.audited += 1;
            let Some(&child) = self.world.clusters[f.parent]
                .children
                .get(f.seat as usize - 1)
            else {
                continue;
            };
            let all_dead = self.leaves_below(child).iter().all(|leaf| {
                self.dead[*leaf].is_some_and(|(killed, back)| {
                    f.at >= killed && back.is_none_or(|b| f.at <= b + self.window)
                })
            });
            if all_dead
                || self.churn_allowed.contains(&(f.parent, f.seat))
                || f.at <= self.faults_until
            {
                continue;
            }
            self.false_failures += 1;
            self.violation(format!(
                "cluster {} (level {}) marked sub-cluster {child} (its n{}) failed at {:.1} ms while the sub-cluster had live machines",
                f.parent,
                self.world.clusters[f.parent].level,
                f.seat,
                ms(f.at)
            ));
        }
    }

    /// The leaf clusters in the subtree of `c`.
    fn leaves_below(&self, c: usize) -> Vec<usize> {
        if self.is_leaf(c) {
            return vec![c];
        }
        self.world.clusters[c]
            .children
            .iter()
            .flat_map(|child| self.leaves_below(*child))
            .collect()
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(format!(
                "seed {} at {:.1} ms: {what}",
                self.cfg.seed,
                ms(self.world.elapsed())
            ));
        }
    }

    /// The first cluster that has not converged, with why.
    fn unconverged(&mut self) -> Option<(usize, String)> {
        let n = self.world.clusters.len();
        for k in 0..n {
            let c = (self.last_unconverged + k) % n;
            if let Some(why) = check::not_converged(&self.world.view(c)) {
                self.last_unconverged = c;
                return Some((c, why));
            }
        }
        None
    }

    fn limit(&self, level: usize) -> Duration {
        let timing = self.cfg.level_timing(level);
        convergence_limit(&timing, self.cfg.shape.members(level))
    }

    /// The longest convergence limit of any level (the root's).
    fn overall_limit(&self) -> Duration {
        (0..self.cfg.shape.levels())
            .map(|l| self.limit(l))
            .max()
            .unwrap_or_default()
    }

    fn wait_converged(&mut self, what: &str) -> bool {
        let limit = self.overall_limit();
        match self.advance_until(limit, |h| h.unconverged().is_none()) {
            Ok(_) => true,
            Err(_) => {
                let (c, why) = self.unconverged().unwrap_or_default();
                let level = self.world.clusters[c].level;
                let view = self.world.view(c);
                let nodes: Vec<String> = view
                    .running()
                    .iter()
                    .map(|(id, n)| {
                        let map = n.map().map(|m| {
                            let members: Vec<String> = m
                                .members
                                .iter()
                                .map(|e| format!("{}:{:?}:{}", e.id, e.status, e.incarnation))
                                .collect();
                            format!(
                                "sup {} {} v{} [{}]",
                                m.supervisor,
                                m.epoch,
                                m.version,
                                members.join(" ")
                            )
                        });
                        format!(
                            "n{id} {:?} {} {map:?} rejected {:?} received {:?}",
                            n.role(),
                            n.incarnation(),
                            n.stats().rejected,
                            n.stats()
                                .received
                                .values()
                                .map(|t| t.datagrams)
                                .sum::<u64>()
                        )
                    })
                    .collect();
                self.violation(format!(
                    "no convergence {what}: cluster {c} (level {level}): {why}; nodes: {}",
                    nodes.join("; ")
                ));
                false
            }
        }
    }

    /// Streams the root's supervisor counts, and streams every live machine reports.
    fn stream_totals(&self) -> (u64, u64) {
        let root = self
            .world
            .aggregate(0)
            .map_or(0, |(_, l)| u64::from(l.streams));
        let machines = (0..self.world.hosts.len())
            .filter(|h| self.world.is_live(*h))
            .map(|h| {
                let (c, id) = self.world.hosts[h].chain[0];
                u64::from(machine_load(c, id).streams)
            })
            .sum();
        (root, machines)
    }

    /// Every cluster's formation: every member runs and the cluster converged.
    fn formed(&self, level: usize) -> bool {
        (0..self.world.clusters.len())
            .filter(|c| self.world.clusters[*c].level == level)
            .all(|c| {
                let view = self.world.view(c);
                view.running().len() == self.world.clusters[c].members as usize
                    && check::converged(&view)
            })
    }
}

/// Bytes per second of each member of each cluster, and of each host, over
/// `window`, measured now.
fn traffic_window(h: &mut Hierarchy, window: Duration) -> (Vec<Vec<f64>>, Vec<f64>) {
    let members: Vec<Vec<u64>> = h.world.clusters.iter().map(|c| c.bytes.clone()).collect();
    let hosts: Vec<u64> = h.world.hosts.iter().map(|x| x.bytes).collect();
    h.advance(window);
    let rate = |after: u64, before: u64| (after - before) as f64 / window.as_secs_f64();
    let per_member = h
        .world
        .clusters
        .iter()
        .zip(members)
        .map(|(c, b)| c.bytes.iter().zip(b).map(|(a, b)| rate(*a, b)).collect())
        .collect();
    let per_host = h
        .world
        .hosts
        .iter()
        .zip(hosts)
        .map(|(x, b)| rate(x.bytes, b))
        .collect();
    (per_member, per_host)
}

/// How many lone clusters the traffic comparison runs: the most any node
/// moves is a maximum over many nodes, so both sides need many (a 22x22x22
/// tree has 10,648 machines; 44 lone clusters of 22 have 968).
const SINGLE_CLUSTERS: u64 = 44;

/// A single cluster of `members` with the leaf timing and the same loads:
/// (most, mean) bytes per node per second on a quiet network.
fn single_cluster_bytes(
    cfg: &HierarchyConfig,
    seed: u64,
    members: u32,
    window: Duration,
) -> (f64, f64) {
    let mut sim_cfg = SimConfig::new(seed, members);
    sim_cfg.timing = cfg.leaf_timing.clone();
    let mut sim = Sim::new(sim_cfg);
    for id in 1..=members {
        sim.start(id);
        sim.local(id, LocalEvent::Load(machine_load(1, id)));
    }
    let limit = convergence_limit(&cfg.leaf_timing, members);
    let _ = sim.run_until(limit, check::converged);
    // Settle as long as the hierarchy's leaves did before their window.
    sim.run_for(cfg.leaf_timing.notification_time * 10);
    let before: Vec<u64> = sim.machines.iter().map(|m| m.sent + m.received).collect();
    sim.run_for(window);
    let rates: Vec<f64> = sim
        .machines
        .iter()
        .zip(before)
        .map(|(m, b)| (m.sent + m.received - b) as f64 / window.as_secs_f64())
        .collect();
    let max = rates.iter().copied().fold(0.0, f64::max);
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    (max, mean)
}

/// One round of faults.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Kill the machine that supervises a random cluster of this level (and
    /// every level below it down to a leaf).
    Supervisor(usize),
    /// Kill every machine of a random leaf cluster whose seat does not
    /// supervise its parent.
    WholeLeaf,
    /// At once: loss, duplication and reordering on every level's network,
    /// a random cluster of every level split in two, and a pause of a
    /// machine that supervises at least one cluster; then heal.
    Storm,
}

/// Runs the hierarchy: a cold start, a quiet traffic measurement, then fault
/// rounds until the simulated time is used up. `progress` gets one line per phase.
pub fn run(cfg: &HierarchyConfig, progress: &mut dyn FnMut(&str)) -> HierarchySummary {
    let wall = Instant::now();
    let levels = cfg.shape.levels();
    let mut h = Hierarchy::new(cfg.clone());

    // Cold start: every machine at a random moment of the first two leaf
    // notification times.
    let stagger = cfg.leaf_timing.notification_time * 2;
    let mut pending = Vec::new();
    for host in 0..h.world.hosts.len() {
        let at = h.world.rng().gen_range(Duration::ZERO..=stagger);
        pending.push((at, host));
    }
    h.pending = pending;
    let mut formation_per_level: Vec<Option<f64>> = vec![None; levels];
    let limit = h.overall_limit() * 2;
    let formed = h.advance_until(limit, |h| {
        if !h.pending.is_empty() {
            return false;
        }
        for (level, formed) in formation_per_level.iter_mut().enumerate() {
            if formed.is_none() && h.formed(level) {
                *formed = Some(ms(h.world.elapsed()));
            }
        }
        h.unconverged().is_none()
    });
    let formation = match formed {
        Ok(d) => Some(ms(d)),
        Err(_) => {
            let (c, why) = h.unconverged().unwrap_or_default();
            h.violation(format!(
                "no convergence after the cold start: cluster {c}: {why}"
            ));
            None
        }
    };
    progress(&format!(
        "formed {} machines in {} clusters: {:?} ms (per level {:?})",
        cfg.shape.machines(),
        h.world.clusters.len(),
        formation,
        formation_per_level
    ));

    // Quiet traffic, per node of each cluster and per machine. Whole cycles
    // of full notifications (one in ten), long enough that one message more
    // or less in the window moves a node's rate by about 2%.
    let quiet = cfg.leaf_timing.notify_interval * 250;
    let (rates, per_host) = traffic_window(&mut h, quiet);
    let mut max_node: f64 = 0.0;
    let (mut sum, mut count) = (0.0, 0usize);
    for r in rates.iter().flatten() {
        max_node = max_node.max(*r);
        sum += r;
        count += 1;
    }
    let max_machine = per_host.iter().copied().fold(0.0, f64::max);
    // Several lone clusters, so the most any node moves is compared over
    // more than one cluster's nodes on both sides.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .build()
        .expect("a thread pool of a few threads can be built");
    let lone: Vec<(f64, f64)> = pool.install(|| {
        (0..SINGLE_CLUSTERS)
            .into_par_iter()
            .map(|k| single_cluster_bytes(cfg, cfg.seed + k, cfg.shape.members(levels - 1), quiet))
            .collect()
    });
    let single_max = lone.iter().map(|(max, _)| *max).fold(0.0f64, f64::max);
    let single_mean = lone.iter().map(|(_, mean)| mean).sum::<f64>() / SINGLE_CLUSTERS as f64;
    progress(&format!(
        "quiet traffic: node max {:.0} B/s, mean {:.0}, machine max {:.0}; single cluster max {:.0}, mean {:.0}",
        max_node,
        sum / count.max(1) as f64,
        max_machine,
        single_max,
        single_mean
    ));

    // Fault rounds.
    // Storms first, so that a short run still has faults at every level.
    let mut kinds: Vec<Fault> = Vec::new();
    if cfg.faults == TreeFaults::All {
        kinds.push(Fault::Storm);
    }
    kinds.extend((0..levels).rev().map(Fault::Supervisor));
    if levels > 1 {
        kinds.push(Fault::WholeLeaf);
    }
    let mut tally = Tally {
        failover: vec![Vec::new(); levels],
        detect: Vec::new(),
        storms: 0,
        partitions: vec![0; levels],
        pauses: 0,
    };
    let mut round = 0usize;
    // A round takes about a root failover and a rejoin; start one only if
    // that fits in the time left.
    let root = cfg.level_timing(0);
    let typical_round = (root.notification_time + root.upstream_timeout()) * 2;
    while h.world.elapsed() + typical_round < cfg.duration && h.violations.len() < 5 {
        let kind = kinds[round % kinds.len()];
        round += 1;
        // A random phase, so faults fall anywhere in the intervals.
        let phase = h
            .world
            .rng()
            .gen_range(Duration::ZERO..=root.status_interval);
        h.advance(phase);
        let line = match kind {
            Fault::Supervisor(level) => kill_supervisor(&mut h, &mut tally, level),
            Fault::WholeLeaf => kill_leaf(&mut h, &mut tally),
            Fault::Storm => storm_round(&mut h, &mut tally),
        };
        if let Some(line) = line {
            progress(&format!("round {round}: {line}"));
        }
    }

    // The rest of the time on a quiet network; then the root's tables must
    // count every machine's streams.
    if h.world.elapsed() < cfg.duration {
        let rest = cfg.duration - h.world.elapsed();
        h.advance(rest);
    }
    h.wait_converged("at the end");
    let agg_limit = h.overall_limit();
    let _ = h.advance_until(agg_limit, |h| {
        let (root, machines) = h.stream_totals();
        root == machines
    });
    let (root_streams, machine_streams) = h.stream_totals();
    if levels > 1 && root_streams != machine_streams {
        h.violation(format!(
            "the root counts {root_streams} streams but the machines report {machine_streams}"
        ));
    }

    let mut violations: Vec<String> = std::mem::take(&mut h.violations);
    violations.extend(h.world.violations.iter().cloned());
    let examples = violations
        .iter()
        .take(3)
        .map(|v| v.chars().take(1500).collect::<String>())
        .collect();
    let per_level = |p: f64| -> Vec<Option<f64>> {
        tally
            .failover
            .iter()
            .map(|v| {
                let mut v = v.clone();
                (!v.is_empty()).then(|| percentile(&mut v, p))
            })
            .collect()
    };
    let mut detect = tally.detect.clone();
    HierarchySummary {
        shape: cfg.shape.to_string(),
        nodes: cfg.shape.machines(),
        levels,
        clusters: h.world.clusters.len(),
        seed: cfg.seed,
        seconds: h.world.elapsed().as_secs_f64(),
        violations: violations.len(),
        violation_examples: examples,
        interval_ms: (0..levels)
            .map(|l| ms(cfg.level_timing(l).status_interval))
            .collect(),
        formation_ms: formation,
        formation_ms_per_level: formation_per_level,
        failovers: tally.failover.iter().map(Vec::len).collect(),
        failover_ms_p50: per_level(50.0),
        failover_ms_p99: per_level(99.0),
        subclusters_killed: detect.len(),
        subcluster_detect_ms_p99: (!detect.is_empty()).then(|| percentile(&mut detect, 99.0)),
        false_subcluster_failures: h.false_failures,
        faults: match cfg.faults {
            TreeFaults::Kills => "kills",
            TreeFaults::All => "all",
        },
        storms: tally.storms,
        partitions: tally.partitions.clone(),
        pauses: tally.pauses,
        root_streams,
        machine_streams,
        max_bytes_per_node_per_s: max_node.round(),
        mean_bytes_per_node_per_s: (sum / count.max(1) as f64).round(),
        max_bytes_per_machine_per_s: max_machine.round(),
        single_cluster_max_bytes_per_node_per_s: single_max.round(),
        single_cluster_mean_bytes_per_node_per_s: single_mean.round(),
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

/// What the fault rounds measured.
struct Tally {
    failover: Vec<Vec<f64>>,
    detect: Vec<f64>,
    storms: usize,
    partitions: Vec<usize>,
    pauses: usize,
}

/// Kills the machine that supervises a random cluster of `level`, waits
/// for every cluster it supervised to follow a new supervisor, and starts it again.
fn kill_supervisor(h: &mut Hierarchy, tally: &mut Tally, level: usize) -> Option<String> {
    let candidates: Vec<usize> = (0..h.world.clusters.len())
        .filter(|c| h.world.clusters[*c].level == level)
        .collect();
    let c = candidates[h.world.rng().gen_range(0..candidates.len())];
    let Some((host, _)) = h.world.supervisor_of(c) else {
        h.violation(format!("cluster {c} has no supervisor before a round"));
        return None;
    };
    let chain = h.world.supervised_by(host);
    // A seat that supervised its parent dies with its machine; the parent's
    // takeover may mark that life failed.
    h.churn_allowed = chain
        .iter()
        .filter_map(|c| h.world.clusters[*c].parent)
        .filter(|(p, _)| chain.contains(p))
        .collect();
    h.world.crash(host);
    let mut waiting: Vec<usize> = chain.clone();
    let limit = h.overall_limit();
    let started = h.world.elapsed();
    let failover = &mut tally.failover;
    let _ = h.advance_until(limit, |h| {
        waiting.retain(|c| {
            if h.world.follows_one_live_supervisor(*c) {
                failover[h.world.clusters[*c].level].push(ms(h.world.elapsed() - started));
                false
            } else {
                true
            }
        });
        waiting.is_empty()
    });
    for c in waiting {
        h.violation(format!(
            "cluster {c} (level {}) found no new supervisor after its supervisor's machine died",
            h.world.clusters[c].level
        ));
    }
    h.wait_converged("after a supervisor died");
    h.start_host(host);
    h.wait_converged("after the dead supervisor came back");
    h.churn_allowed.clear();
    Some(format!(
        "killed the supervisor of cluster {c} (level {level}), which supervised {} cluster(s)",
        chain.len()
    ))
}

/// Kills every machine of a random leaf cluster whose seat does not
/// supervise its parent, waits until the parent marks it failed, and starts
/// them again.
fn kill_leaf(h: &mut Hierarchy, tally: &mut Tally) -> Option<String> {
    let candidates: Vec<usize> = h
        .leaves()
        .filter(|c| {
            let (p, seat) = h.world.clusters[*c].parent.expect("a leaf below a root");
            h.world.supervisor_of(p).map(|(_, s)| s) != Some(seat)
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let c = candidates[h.world.rng().gen_range(0..candidates.len())];
    let (parent, seat) = h.world.clusters[c].parent.expect("a leaf below a root");
    h.dead[c] = Some((h.world.elapsed(), None));
    let hosts = h.hosts_of(c);
    for &host in &hosts {
        h.world.crash(host);
    }
    let limit = h.overall_limit();
    match h.advance_until(limit, |h| {
        h.world.all_list(parent, seat, MemberStatus::Failed)
    }) {
        Ok(d) => tally.detect.push(ms(d)),
        Err(_) => h.violation(format!(
            "the parent of dead cluster {c} never marked it failed"
        )),
    }
    h.wait_converged("after a whole sub-cluster died");
    for &host in &hosts {
        h.start_host(host);
    }
    if let Some((_, back)) = h.dead[c].as_mut() {
        *back = Some(h.world.elapsed());
    }
    h.wait_converged("after a dead sub-cluster came back");
    Some(format!(
        "killed every machine of cluster {c}; its parent marked it failed in {:?} ms",
        tally.detect.last()
    ))
}

/// Loss, duplication and reordering on every level's network, a random
/// cluster of every level split in two and a supervising machine paused,
/// all at once for about a root failover, then healed: each side of a split
/// elects its own supervisor (and its machine takes the seat above), and the
/// sides merge again by the formation rule, at every level.
fn storm_round(h: &mut Hierarchy, tally: &mut Tally) -> Option<String> {
    let root = h.cfg.level_timing(0);
    let span = root.notification_time + root.upstream_timeout();
    h.faults_until = h.world.elapsed() + span + h.overall_limit();
    let loss = h.world.rng().gen_range(0.01..0.10);
    let duplicate = h.world.rng().gen_range(0.0..0.05);
    let delay_max = h.cfg.leaf_timing.status_interval / 4;
    h.world
        .set_net(NetFaults::faulty(loss, duplicate, delay_max));
    tally.storms += 1;
    let mut split = Vec::new();
    for level in 0..h.cfg.shape.levels() {
        let candidates: Vec<usize> = (0..h.world.clusters.len())
            .filter(|c| h.world.clusters[*c].level == level)
            .collect();
        let c = candidates[h.world.rng().gen_range(0..candidates.len())];
        let members = h.world.clusters[c].members;
        let cut = h.world.rng().gen_range(1..members);
        let side: Vec<u32> = (1..=cut).collect();
        h.world.partition(c, &[&side]);
        tally.partitions[level] += 1;
        split.push(c);
    }
    // A machine that supervises some cluster, stalled for up to twice its
    // leaf cluster's failure detection time.
    let level = h.world.rng().gen_range(0..h.cfg.shape.levels());
    let candidates: Vec<usize> = (0..h.world.clusters.len())
        .filter(|c| h.world.clusters[*c].level == level)
        .collect();
    let c = candidates[h.world.rng().gen_range(0..candidates.len())];
    let leaf = h.cfg.leaf_timing.upstream_timeout();
    let pause = h.world.rng().gen_range(leaf / 4..=leaf * 2);
    let paused = h.world.supervisor_of(c).map(|(host, _)| host);
    if let Some(host) = paused {
        h.world.pause(host, pause);
        tally.pauses += 1;
    }
    h.advance(span);
    h.world.heal();
    h.world.set_net(NetFaults::clean());
    h.wait_converged("after a storm of network faults, partitions and a pause");
    Some(format!(
        "{:.0}% loss, {:.0}% duplication, delays up to {delay_max:?} on every level, clusters {split:?} split, the supervisor of cluster {c} (level {level}) paused {pause:?}, for {span:?}",
        loss * 100.0,
        duplicate * 100.0
    ))
}
