//! Claim 5 and DESIGN section 7: a hierarchy of clusters in the simulator.
//!
//! Every cluster of the tree is its own simulated world ([`Sim`]) with its own
//! bus and ring. A leaf cluster's members are machines; a parent cluster's
//! members are seats, one per sub-cluster. The seat of a sub-cluster runs on
//! the machine that supervises the sub-cluster: when that supervisor changes
//! (takeover, preemption, crash), the old seat stops without a word and the
//! new supervisor starts the seat again with a newer life, which the parent
//! takes as a rejoin, not a failure. When every machine of a sub-cluster is
//! dead, nobody holds its seat and the parent's ring declares it failed.
//!
//! The worlds advance in lockstep windows of virtual time, in parallel; seats
//! follow their supervisors at every window boundary (a window is a quarter
//! of the leaf status interval, so a seat moves within 5 ms at LAN timing),
//! deepest level first, so a machine that supervises at several levels stops
//! at every level at the same boundary. Each level runs slower than the one
//! below it by `slowdown`, so a sub-cluster's failover fits well inside its
//! parent's failure detection time.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use ringcast_proto::event::{Event, LocalEvent};
use ringcast_proto::tables::aggregate;
use ringcast_proto::{Capacity, ClusterId, MemberStatus, NodeId, Timing};
use ringcast_proto::{Incarnation, Load};
use serde::Serialize;
use thiserror::Error;

use crate::campaign::{convergence_limit, percentile};
use crate::check;
use crate::world::{Sim, SimConfig};

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
    /// Worker threads.
    pub threads: usize,
}

impl HierarchyConfig {
    /// Timing of the clusters at `level` (0 is the root).
    pub fn level_timing(&self, level: usize) -> Timing {
        let above_leaves = self.shape.levels() - 1 - level;
        if above_leaves == 0 {
            return self.leaf_timing.clone();
        }
        let factor = self.slowdown.max(1).pow(above_leaves as u32);
        Timing::with_interval(
            self.leaf_timing.status_interval * factor,
            self.leaf_timing.miss_limit.get(),
        )
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
    /// (a violation each).
    pub false_subcluster_failures: usize,
    /// Streams the root's tables count at the end.
    pub root_streams: u64,
    /// Streams every live machine reports at the end (the root must agree).
    pub machine_streams: u64,
    /// Bus and ring bytes sent and received per second by one node of one
    /// cluster (a machine, or a seat), the most of any, on a quiet network.
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

/// One cluster of the tree and its world.
struct Cluster {
    level: usize,
    /// The parent cluster and the seat's member id in it.
    parent: Option<(usize, u32)>,
    /// The sub-cluster of each member id (id - 1), for clusters above the leaves.
    children: Vec<usize>,
    world: Sim,
    /// The supervisor (member id and life) whose seat runs in the parent.
    seat: Option<(u32, Incarnation)>,
    /// The load last handed to the seat.
    pushed: Option<Load>,
    /// When it was killed whole, and when it came back.
    dead: Option<(Duration, Option<Duration>)>,
}

/// A whole hierarchy of simulated clusters.
pub struct Hierarchy {
    cfg: HierarchyConfig,
    clusters: Vec<Cluster>,
    elapsed: Duration,
    window: Duration,
    rng: ChaCha8Rng,
    pool: rayon::ThreadPool,
    /// Machines to start later: (when, leaf cluster, member id).
    pending: Vec<(Duration, usize, u32)>,
    /// Cross-level violations (each world keeps its own too).
    violations: Vec<String>,
    /// Events of parent worlds already looked at, per cluster.
    seen_events: Vec<Vec<usize>>,
    /// Seats allowed to be marked failed in this round (they supervised
    /// their parent and died with their machine).
    churn_allowed: Vec<(usize, u32)>,
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
        let threads = cfg.threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool of a few threads can be built");
        let mut clusters: Vec<Cluster> = Vec::new();
        let mut level_start = 0;
        clusters.push(Self::cluster(&cfg, 0, None, 0));
        for level in 0..cfg.shape.levels() - 1 {
            let level_end = clusters.len();
            for parent in level_start..level_end {
                for id in 1..=cfg.shape.members(level) {
                    let index = clusters.len();
                    clusters.push(Self::cluster(&cfg, level + 1, Some((parent, id)), index));
                    clusters[parent].children.push(index);
                }
            }
            level_start = level_end;
        }
        let window = cfg.leaf_timing.status_interval / 4;
        let seen_events = clusters
            .iter()
            .map(|c| vec![0; c.world.machines.len()])
            .collect();
        Hierarchy {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            clusters,
            elapsed: Duration::ZERO,
            window: window.max(Duration::from_micros(100)),
            pool,
            pending: Vec::new(),
            violations: Vec::new(),
            seen_events,
            churn_allowed: Vec::new(),
            false_failures: 0,
            last_unconverged: 0,
        }
    }

    fn cluster(
        cfg: &HierarchyConfig,
        level: usize,
        parent: Option<(usize, u32)>,
        index: usize,
    ) -> Cluster {
        let seed = cfg.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut sim_cfg = SimConfig::new(seed, cfg.shape.members(level));
        sim_cfg.timing = cfg.level_timing(level);
        let mut world = Sim::new(sim_cfg);
        for m in &mut world.machines {
            m.cfg.cluster = ClusterId(index as u32 + 1);
        }
        Cluster {
            level,
            parent,
            children: Vec::new(),
            world,
            seat: None,
            pushed: None,
            dead: None,
        }
    }

    fn is_leaf(&self, cluster: usize) -> bool {
        self.clusters[cluster].children.is_empty()
    }

    fn leaves(&self) -> std::ops::Range<usize> {
        let first = self
            .clusters
            .iter()
            .position(|c| c.children.is_empty())
            .unwrap_or(0);
        first..self.clusters.len()
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Starts a leaf machine now, with its load.
    fn start_machine(&mut self, cluster: usize, id: u32) {
        let world = &mut self.clusters[cluster].world;
        world.start(id);
        world.local(id, LocalEvent::Load(machine_load(cluster, id)));
    }

    /// Kills a leaf machine and, at once, every seat it holds.
    fn kill_machine(&mut self, cluster: usize, id: u32) {
        self.clusters[cluster].world.crash(id);
        self.sync_seats();
    }

    /// Advances every world by `d`, window by window.
    pub fn advance(&mut self, d: Duration) {
        let end = self.elapsed + d;
        while self.elapsed < end {
            let step = self.window.min(end - self.elapsed);
            self.step(step);
        }
    }

    /// Advances window by window until `done` holds or `limit` passes.
    fn advance_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Hierarchy) -> bool,
    ) -> Result<Duration, Duration> {
        let start = self.elapsed;
        loop {
            if done(self) {
                return Ok(self.elapsed - start);
            }
            if self.elapsed - start >= limit {
                return Err(self.elapsed - start);
            }
            let step = self.window;
            self.step(step);
        }
    }

    fn step(&mut self, step: Duration) {
        let clusters = &mut self.clusters;
        self.pool.install(|| {
            clusters.par_iter_mut().for_each(|c| c.world.run_for(step));
        });
        self.elapsed += step;
        let now = self.elapsed;
        let due: Vec<(usize, u32)> = self
            .pending
            .iter()
            .filter(|(at, _, _)| *at <= now)
            .map(|(_, c, id)| (*c, *id))
            .collect();
        self.pending.retain(|(at, _, _)| *at > now);
        for (c, id) in due {
            self.start_machine(c, id);
        }
        self.sync_seats();
        self.push_loads();
        self.audit_parent_events();
    }

    /// Seats follow their sub-cluster's supervisor, deepest level first.
    fn sync_seats(&mut self) {
        for c in (0..self.clusters.len()).rev() {
            let Some((parent, slot)) = self.clusters[c].parent else {
                continue;
            };
            let speaker = self.clusters[c].world.speaker();
            if speaker == self.clusters[c].seat {
                continue;
            }
            let capacity = self.aggregate(c).map(|(cap, _)| cap);
            let had_seat = self.clusters[c].seat.is_some();
            let parent_world = &mut self.clusters[parent].world;
            if had_seat {
                parent_world.crash(slot);
            }
            if let Some(capacity) = capacity.filter(|_| speaker.is_some()) {
                parent_world.machines[slot as usize - 1].cfg.capacity = capacity;
                parent_world.start(slot);
            }
            self.clusters[c].seat = speaker;
            self.clusters[c].pushed = None;
        }
    }

    /// Claim 5: the capacity and load a sub-cluster reports through its
    /// seat, summed over the members its supervisor lists up.
    fn aggregate(&self, cluster: usize) -> Option<(Capacity, Load)> {
        let world = &self.clusters[cluster].world;
        let (id, _) = world.speaker()?;
        let node = world.machine(id).node.as_ref()?;
        Some(aggregate(node.map()?, node.tables()?))
    }

    /// Hands each seat its sub-cluster's current load when it changed.
    fn push_loads(&mut self) {
        for c in 0..self.clusters.len() {
            let Some((parent, slot)) = self.clusters[c].parent else {
                continue;
            };
            if self.clusters[c].seat.is_none() {
                continue;
            }
            let Some((_, load)) = self.aggregate(c) else {
                continue;
            };
            if self.clusters[c].pushed != Some(load) {
                self.clusters[parent]
                    .world
                    .local(slot, LocalEvent::Load(load));
                self.clusters[c].pushed = Some(load);
            }
        }
    }

    /// A parent may mark a sub-cluster failed only while all of it is dead,
    /// or when its seat was the parent's supervisor and died with its machine.
    fn audit_parent_events(&mut self) {
        for p in 0..self.clusters.len() {
            if self.clusters[p].children.is_empty() {
                continue;
            }
            for i in 0..self.clusters[p].world.machines.len() {
                let total = self.clusters[p].world.machines[i].events.len();
                let from = self.seen_events[p][i];
                if total == from {
                    continue;
                }
                self.seen_events[p][i] = total;
                let declared: Vec<(Duration, NodeId)> = self.clusters[p].world.machines[i].events
                    [from..total]
                    .iter()
                    .filter_map(|(at, e)| match e {
                        Event::NodeFailed { node, .. } => Some((*at, *node)),
                        _ => None,
                    })
                    .collect();
                for (at, node) in declared {
                    let Some(&child) = self.clusters[p].children.get(node.0 as usize - 1) else {
                        continue;
                    };
                    let all_dead = match self.clusters[child].dead {
                        Some((killed, back)) => {
                            at >= killed && back.is_none_or(|b| at <= b + self.window)
                        }
                        None => false,
                    };
                    if all_dead || self.churn_allowed.contains(&(p, node.0)) {
                        continue;
                    }
                    self.false_failures += 1;
                    self.violation(format!(
                        "cluster {p} (level {}) marked sub-cluster {child} (its {node}) failed at {:.1} ms while the sub-cluster had live machines",
                        self.clusters[p].level,
                        ms(at)
                    ));
                }
            }
        }
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(format!(
                "seed {} at {:.1} ms: {what}",
                self.cfg.seed,
                ms(self.elapsed)
            ));
        }
    }

    /// The first cluster that has not converged, with why.
    fn unconverged(&mut self) -> Option<(usize, String)> {
        let n = self.clusters.len();
        for k in 0..n {
            let c = (self.last_unconverged + k) % n;
            if let Some(why) = check::not_converged(&self.clusters[c].world) {
                self.last_unconverged = c;
                return Some((c, why));
            }
        }
        None
    }

    /// The leaf machine that holds cluster `c`'s supervision, following
    /// supervisors down the tree.
    fn holder(&self, mut c: usize) -> Option<(usize, u32)> {
        loop {
            let (id, _) = self.clusters[c].world.speaker()?;
            if self.is_leaf(c) {
                return Some((c, id));
            }
            c = self.clusters[c].children[id as usize - 1];
        }
    }

    /// The clusters whose supervision machine `(leaf, id)` holds, deepest first.
    fn supervised_by(&self, leaf: usize, id: u32) -> Vec<usize> {
        let mut chain = Vec::new();
        let mut c = leaf;
        let mut member = id;
        loop {
            match self.clusters[c].world.speaker() {
                Some((s, _)) if s == member => chain.push(c),
                _ => break,
            }
            match self.clusters[c].parent {
                Some((parent, slot)) => {
                    c = parent;
                    member = slot;
                }
                None => break,
            }
        }
        chain
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
                let level = self.clusters[c].level;
                self.violation(format!(
                    "no convergence {what}: cluster {c} (level {level}): {why}"
                ));
                false
            }
        }
    }

    /// Streams the root's supervisor counts, and streams every live machine reports.
    fn stream_totals(&self) -> (u64, u64) {
        let root = self.aggregate(0).map_or(0, |(_, l)| u64::from(l.streams));
        let machines = self
            .leaves()
            .flat_map(|c| {
                self.clusters[c]
                    .world
                    .machines
                    .iter()
                    .filter(|m| m.is_live())
                    .map(move |m| u64::from(machine_load(c, m.id.0).streams))
            })
            .sum();
        (root, machines)
    }
}

/// Bytes per second of each node of each world over `window`, measured now.
fn traffic_window(h: &mut Hierarchy, window: Duration) -> Vec<Vec<f64>> {
    let before: Vec<Vec<u64>> = h
        .clusters
        .iter()
        .map(|c| {
            c.world
                .machines
                .iter()
                .map(|m| m.sent + m.received)
                .collect()
        })
        .collect();
    h.advance(window);
    h.clusters
        .iter()
        .zip(before)
        .map(|(c, b)| {
            c.world
                .machines
                .iter()
                .zip(b)
                .map(|(m, b)| (m.sent + m.received - b) as f64 / window.as_secs_f64())
                .collect()
        })
        .collect()
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

/// What a fault round kills.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The machine that supervises a random cluster of this level (and every
    /// level below it down to a leaf).
    Supervisor(usize),
    /// Every machine of a random leaf cluster whose seat does not supervise its parent.
    WholeLeaf,
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
    for c in h.leaves() {
        for id in 1..=cfg.shape.members(levels - 1) {
            let at = h.rng.gen_range(Duration::ZERO..=stagger);
            pending.push((at, c, id));
        }
    }
    h.pending = pending;
    let mut formation_per_level: Vec<Option<f64>> = vec![None; levels];
    let limit = h.overall_limit() * 2;
    let formed = h.advance_until(limit, |h| {
        if !h.pending.is_empty() {
            return false;
        }
        for (level, formed) in formation_per_level.iter_mut().enumerate() {
            if formed.is_none()
                && h.clusters.iter().filter(|c| c.level == level).all(|c| {
                    c.world.live().len() == c.world.machines.len() && check::converged(&c.world)
                })
            {
                *formed = Some(ms(h.elapsed));
            }
        }
        h.pending.is_empty() && h.unconverged().is_none()
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
        h.clusters.len(),
        formation,
        formation_per_level
    ));

    // Quiet traffic, per node of each cluster and per machine.
    // Whole cycles of full notifications (one in ten), long enough that one
    // message more or less in the window moves a node's rate by about 2%.
    let quiet = cfg.leaf_timing.notify_interval * 250;
    let rates = traffic_window(&mut h, quiet);
    let mut max_node: f64 = 0.0;
    let (mut sum, mut count) = (0.0, 0usize);
    for r in rates.iter().flatten() {
        max_node = max_node.max(*r);
        sum += r;
        count += 1;
    }
    let mut per_machine: Vec<Vec<f64>> = rates.clone();
    for c in 0..h.clusters.len() {
        if let Some((parent, slot)) = h.clusters[c].parent {
            if let Some((leaf, id)) = h.holder(c) {
                let seat = rates[parent][slot as usize - 1];
                per_machine[leaf][id as usize - 1] += seat;
            }
        }
    }
    let max_machine = h
        .leaves()
        .flat_map(|c| per_machine[c].iter().copied())
        .fold(0.0, f64::max);
    // Several lone clusters, so the most any node moves is compared over
    // more than one cluster's nodes on both sides.
    let lone: Vec<(f64, f64)> = (0..SINGLE_CLUSTERS)
        .into_par_iter()
        .map(|k| single_cluster_bytes(cfg, cfg.seed + k, cfg.shape.members(levels - 1), quiet))
        .collect();
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
    let mut kinds: Vec<Fault> = (0..levels).rev().map(Fault::Supervisor).collect();
    if levels > 1 {
        kinds.push(Fault::WholeLeaf);
    }
    let mut failover: Vec<Vec<f64>> = vec![Vec::new(); levels];
    let mut detect: Vec<f64> = Vec::new();
    let mut round = 0usize;
    let round_budget = h.overall_limit();
    // A round takes about a root failover and a rejoin; start one only if
    // that fits in the time left.
    let root = cfg.level_timing(0);
    let typical_round = (root.notification_time + root.upstream_timeout()) * 2;
    while h.elapsed + typical_round < cfg.duration && h.violations.len() < 5 {
        let kind = kinds[round % kinds.len()];
        round += 1;
        // A random phase, so kills fall anywhere in the intervals.
        let phase = h
            .rng
            .gen_range(Duration::ZERO..=cfg.level_timing(0).status_interval);
        h.advance(phase);
        match kind {
            Fault::Supervisor(level) => {
                let candidates: Vec<usize> = (0..h.clusters.len())
                    .filter(|c| h.clusters[*c].level == level)
                    .collect();
                let c = candidates[h.rng.gen_range(0..candidates.len())];
                let Some((leaf, id)) = h.holder(c) else {
                    h.violation(format!(
                        "cluster {c} has no supervisor before round {round}"
                    ));
                    continue;
                };
                let chain = h.supervised_by(leaf, id);
                // A seat that supervised its parent dies with its machine;
                // the parent's takeover may mark that life failed.
                h.churn_allowed = chain
                    .iter()
                    .filter_map(|c| h.clusters[*c].parent)
                    .filter(|(p, _)| chain.contains(p))
                    .collect();
                h.kill_machine(leaf, id);
                let mut waiting: Vec<usize> = chain.clone();
                let limit = round_budget;
                let started = h.elapsed;
                let _ = h.advance_until(limit, |h| {
                    waiting.retain(|c| {
                        if h.clusters[*c].world.follows_one_live_supervisor() {
                            failover[h.clusters[*c].level].push(ms(h.elapsed - started));
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
                        h.clusters[c].level
                    ));
                }
                h.wait_converged("after a supervisor died");
                progress(&format!(
                    "round {round}: killed the supervisor of cluster {c} (level {level}), which supervised {} cluster(s)",
                    chain.len()
                ));
                h.start_machine(leaf, id);
                h.wait_converged("after the dead supervisor came back");
                h.churn_allowed.clear();
            }
            Fault::WholeLeaf => {
                let candidates: Vec<usize> = h
                    .leaves()
                    .filter(|c| {
                        let (p, slot) = h.clusters[*c].parent.expect("a leaf below a root");
                        h.clusters[p].world.speaker().map(|s| s.0) != Some(slot)
                    })
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let c = candidates[h.rng.gen_range(0..candidates.len())];
                let (parent, slot) = h.clusters[c].parent.expect("a leaf below a root");
                h.clusters[c].dead = Some((h.elapsed, None));
                for id in 1..=cfg.shape.members(levels - 1) {
                    h.kill_machine(c, id);
                }
                let limit = round_budget;
                let result = h.advance_until(limit, |h| {
                    let world = &h.clusters[parent].world;
                    let live = world.live();
                    !live.is_empty() && world.all_list(&live, slot, MemberStatus::Failed)
                });
                match result {
                    Ok(d) => detect.push(ms(d)),
                    Err(_) => h.violation(format!(
                        "the parent of dead cluster {c} never marked it failed"
                    )),
                }
                h.wait_converged("after a whole sub-cluster died");
                progress(&format!(
                    "round {round}: killed every machine of cluster {c}; its parent marked it failed in {:?} ms",
                    detect.last()
                ));
                for id in 1..=cfg.shape.members(levels - 1) {
                    h.start_machine(c, id);
                }
                if let Some((_, back)) = h.clusters[c].dead.as_mut() {
                    *back = Some(h.elapsed);
                }
                h.wait_converged("after a dead sub-cluster came back");
            }
        }
    }

    // The rest of the time on a quiet network; then the root's tables must
    // count every machine's streams.
    if h.elapsed < cfg.duration {
        let rest = cfg.duration - h.elapsed;
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
    for (i, c) in h.clusters.iter().enumerate() {
        for v in &c.world.violations {
            violations.push(format!("cluster {i} (level {}): {v}", c.level));
        }
    }
    let examples = violations
        .iter()
        .take(3)
        .map(|v| {
            let mut short = String::new();
            let _ = write!(short, "{}", v.chars().take(600).collect::<String>());
            short
        })
        .collect();
    let per_level = |p: f64| -> Vec<Option<f64>> {
        failover
            .iter()
            .map(|v| {
                let mut v = v.clone();
                (!v.is_empty()).then(|| percentile(&mut v, p))
            })
            .collect()
    };
    HierarchySummary {
        shape: cfg.shape.to_string(),
        nodes: cfg.shape.machines(),
        levels,
        clusters: h.clusters.len(),
        seed: cfg.seed,
        seconds: h.elapsed.as_secs_f64(),
        violations: violations.len(),
        violation_examples: examples,
        interval_ms: (0..levels)
            .map(|l| ms(cfg.level_timing(l).status_interval))
            .collect(),
        formation_ms: formation,
        formation_ms_per_level: formation_per_level,
        failovers: failover.iter().map(Vec::len).collect(),
        failover_ms_p50: per_level(50.0),
        failover_ms_p99: per_level(99.0),
        subclusters_killed: detect.len(),
        subcluster_detect_ms_p99: (!detect.is_empty()).then(|| percentile(&mut detect, 99.0)),
        false_subcluster_failures: h.false_failures,
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
