//! Random campaigns: many seeds, each a cold start, a period of random faults,
//! a heal, and two measurements on a quiet network (supervisor failover and
//! member failure detection). Safety is checked after every step; liveness is
//! a deadline for convergence after the faults end. With streams
//! ([`crate::streams`]) disks break and hang too, and placement, reassignment
//! and the service addresses are checked after every step as well.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use ringcast_proto::{damping, placement, MemberStatus, NodeId, Role, Timing};
use serde::Serialize;

use crate::check;
use crate::serving::{self, ServingLoad};
use crate::streams::{self, Health, Layout, StreamStats, Streams, StreamsConfig};
use crate::world::{NetFaults, Sim, SimConfig};

/// Which faults a campaign injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Faults {
    /// None: a quiet network; no live node may ever be marked failed.
    None,
    /// Safety mode: loss, duplication, reordering, partitions, crashes,
    /// restarts, pauses and leaves of any node; safety is checked after
    /// every step, convergence once the faults end.
    All,
    /// Liveness mode: the same faults, but only outside a healthy majority
    /// (never crashed, paused or left, never split, at most 5% loss); the
    /// majority must never go longer than [`liveness_bound`] without one
    /// live supervisor that all of it follows.
    Minority,
}

/// How a campaign runs.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// Nodes per seed.
    pub nodes: u32,
    /// First seed.
    pub first_seed: u64,
    /// Number of seeds.
    pub seeds: u64,
    /// Faults.
    pub faults: Faults,
    /// Protocol timing.
    pub timing: Timing,
    /// Virtual time of the fault phase.
    pub fault_time: Duration,
    /// Worker threads.
    pub threads: usize,
    /// Streams per node, when the stream layer runs (titles on disks,
    /// players, the stream book, service addresses; [`crate::streams`]).
    pub streams: Option<u32>,
    /// Measure the steady traffic under a serving cluster's load
    /// ([`crate::serving`]) instead of a quiet one's.
    pub serving: bool,
}

/// What one seed found.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Simulated time the seed ran, and the wall-clock time it took.
    pub ran: (Duration, Duration),
    /// Invariant violations, each with its trace.
    pub violations: Vec<String>,
    /// Cold start until converged.
    pub formation: Option<Duration>,
    /// Supervisor killed until every survivor follows the new one.
    pub failover: Option<Duration>,
    /// Member killed until every survivor lists it failed.
    pub detect: Option<Duration>,
    /// Bytes sent and received per node per second in a second of steady
    /// traffic (with streams, while every player streams).
    pub bytes_per_node_per_s: f64,
    /// Liveness mode: the longest the majority went unserved.
    pub majority_unserved: Option<Duration>,
    /// Violations by kind (all of them, not only the first few kept).
    pub kinds: BTreeMap<&'static str, u64>,
    /// What the stream layer counted, when it ran.
    pub streams: Option<StreamStats>,
}

/// The campaign's summary: the last line of `ringcast-sim campaign`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Nodes per seed.
    pub nodes: u32,
    /// "none", "all" (safety mode) or "minority" (liveness mode).
    pub faults: &'static str,
    /// Liveness mode: the longest the healthy majority went without a
    /// supervisor it all followed, 99th percentile over seeds, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub majority_unserved_ms_p99: Option<f64>,
    /// Violations found (seeds with at least one).
    pub violations: u64,
    /// Violations by kind, over every seed: "protocol" (DESIGN section 8,
    /// convergence, takeover, detection) and with streams "capacity",
    /// "stream" and "address".
    pub violations_by_kind: BTreeMap<&'static str, u64>,
    /// With streams: placements answered, over every seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams_placed: Option<u64>,
    /// With streams: asks answered without a placement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams_refused: Option<u64>,
    /// With streams: streams the supervisors' books moved on a reassignment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams_moved: Option<u64>,
    /// With streams: times a node began serving a stream beyond its
    /// `max_streams`, whoever placed it (not a violation: the two
    /// supervisors of a split that heals, or a new supervisor and the
    /// answers of the one before it, each place by what they know).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams_over_capacity: Option<u64>,
    /// With streams: service addresses a node took over from another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses_moved: Option<u64>,
    /// With streams: the longest a servable stream went unserved, worst seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_unserved_ms_max: Option<f64>,
    /// With streams: the bound of that (check 2) with one node down; each
    /// further node down on the player's side adds a failure detection step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_bound_ms: Option<f64>,
    /// With streams: the longest an address was held by two live nodes of
    /// a component or by none, worst seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_gap_ms_max: Option<f64>,
    /// With streams: the bound of that (check 3) with one node down; each
    /// further node down in the component adds a failure detection step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_bound_ms: Option<f64>,
    /// Seeds that failed, first few.
    pub failing_seeds: Vec<u64>,
    /// Formation time, median, milliseconds of simulated time.
    pub formation_ms_p50: f64,
    /// Formation time, 99th percentile.
    pub formation_ms_p99: f64,
    /// Supervisor failover, median.
    pub failover_ms_p50: f64,
    /// Supervisor failover, 99th percentile.
    pub failover_ms_p99: f64,
    /// Member failure detection, median.
    pub detect_ms_p50: f64,
    /// Member failure detection, 99th percentile.
    pub detect_ms_p99: f64,
    /// Bus and ring bytes sent and received per node per second (median over
    /// seeds), in a second of steady traffic: on the quiet network, or with
    /// streams while every player streams.
    pub bytes_per_node_per_s: f64,
    /// Whether the bytes were measured under a serving load ([`crate::serving`]).
    pub serving: bool,
    /// Status interval, milliseconds.
    pub status_interval_ms: f64,
    /// Missed periods before a failure declaration.
    pub miss_limit: u32,
    /// Wall-clock seconds the campaign took.
    pub wall_s: f64,
    /// Simulated seconds of the seed that ran slowest against real time.
    pub virtual_s_slowest: f64,
    /// Wall-clock seconds per simulated second of that seed, on its worker:
    /// below 1, the simulator runs faster than real time.
    pub wall_per_virtual_s: f64,
}

/// Liveness mode: the longest a healthy majority may go without a supervisor
/// it all follows: the last-ranked node's takeover wait after a missed
/// notification, and a ring's detection, three times over.
pub fn liveness_bound(timing: &Timing, nodes: u32) -> Duration {
    (timing.notification_time + timing.takeover_step * nodes + timing.upstream_timeout()) * 3
}

/// The deadline for convergence once the network is quiet.
pub fn convergence_limit(timing: &Timing, nodes: u32) -> Duration {
    // Every node may need a notification time, its rank delay, a few join
    // retries and a ring lap of detection; a generous multiple of them.
    let rank_delay = timing.takeover_step * nodes;
    (timing.notification_time * 2 + rank_delay + timing.upstream_timeout() * 4) * 10
}

/// Runs one seed.
pub fn run_seed(seed: u64, cfg: &CampaignConfig) -> SeedReport {
    let started = std::time::Instant::now();
    let mut sim_cfg = SimConfig::new(seed, cfg.nodes);
    sim_cfg.timing = cfg.timing.clone();
    sim_cfg.strict_failures = cfg.faults == Faults::None;
    let mut sim = Sim::new(sim_cfg);
    let mut report = SeedReport {
        seed,
        ..SeedReport::default()
    };
    let limit = convergence_limit(&cfg.timing, cfg.nodes);
    if let Some(per_node) = cfg.streams {
        enable_streams(&mut sim, cfg, per_node, seed);
    }
    let mut serving = cfg.serving.then(|| {
        let load = ServingLoad::new(Layout::random(cfg.nodes, sim.rng()), seed);
        for (h, host) in sim.machines.iter_mut().enumerate() {
            load.layout().apply(h, &mut host.cfg);
        }
        load
    });

    // Cold start, staggered over two notification times.
    let stagger = cfg.timing.notification_time * 2;
    let mut order: Vec<u32> = (1..=cfg.nodes).collect();
    order.shuffle(sim.rng());
    for id in order {
        let gap = sim
            .rng()
            .gen_range(Duration::ZERO..=stagger / cfg.nodes.max(1));
        sim.run_for(gap);
        sim.start(id);
    }
    match sim.run_until(limit, check::converged) {
        Ok(_) => report.formation = Some(sim.elapsed()),
        Err(_) => {
            let why = check::not_converged(&sim).unwrap_or_default();
            sim.violation(format!("no convergence after cold start: {why}"));
        }
    }

    // Steady traffic on a quiet network: once the last change of the
    // formation has had its repeats (a transient, not the steady cost).
    // With streams, while every player streams (loads and disk reports
    // changing as in a serving cluster), from a second after they start.
    // Under a serving load, from once the first reports have gone round
    // the ring and their changes been notified, over a refresh period (in
    // which every node publishes what waited once).
    sim.run_for(cfg.timing.notify_interval * (ringcast_proto::announce::REPEATS + 1));
    if sim.with_streams(|s, now| s.start_players(now)).is_some() {
        sim.run_for(Duration::from_secs(1));
    }
    let mut window = Duration::from_secs(1);
    if let Some(load) = serving.as_mut() {
        let ring = cfg.nodes as usize;
        serve_for(&mut sim, load, placement::reservation(&cfg.timing, ring));
        window = window.max(damping::load_refresh(&cfg.timing, ring));
    }
    let before = sim.traffic;
    match serving.as_mut() {
        Some(load) => serve_for(&mut sim, load, window),
        None => sim.run_for(window),
    }
    let bytes = (sim.traffic.sent - before.sent) + (sim.traffic.received - before.received);
    report.bytes_per_node_per_s = bytes as f64 / f64::from(cfg.nodes) / window.as_secs_f64();

    if cfg.faults == Faults::Minority {
        report.majority_unserved = Some(inject_minority_faults(&mut sim, cfg));
        heal_everything(&mut sim);
        if sim.run_until(limit, check::converged).is_err() {
            let why = check::not_converged(&sim).unwrap_or_default();
            sim.violation(format!("no convergence after the faults ended: {why}"));
        }
    }
    if cfg.faults == Faults::All {
        inject_faults(&mut sim, cfg);
        heal_everything(&mut sim);
        if sim.run_until(limit, check::converged).is_err() {
            let why = check::not_converged(&sim).unwrap_or_default();
            sim.violation(format!("no convergence after the faults ended: {why}"));
        }
    }
    if cfg.faults != Faults::None {
        fail_disks_on_a_quiet_network(&mut sim, cfg);
    }

    if sim.violations.is_empty() {
        report.failover = measure_failover(&mut sim, cfg, limit);
    }
    if sim.violations.is_empty() {
        report.detect = measure_detection(&mut sim, cfg, limit);
    }
    if let Some(s) = sim.streams() {
        // Long enough for whatever is still open to be served or overdue;
        // then, once converged, every address has exactly one holder.
        let missing = cfg.nodes - sim.live().len() as u32;
        let settle = s.config().stream_bound(missing) + cfg.timing.status_interval;
        sim.run_for(settle);
        if sim.run_until(limit, check::converged).is_ok() {
            let gaps = sim.streams().map(Streams::open_address_gaps);
            for gap in gaps.unwrap_or_default() {
                sim.violation_of("address", format!("converged, yet {gap}"));
            }
        }
    }
    report.streams = sim.streams().map(|s| s.stats(sim.now()));
    report.ran = (sim.elapsed(), started.elapsed());
    report.violations = std::mem::take(&mut sim.violations);
    report.kinds = std::mem::take(&mut sim.kinds);
    report
}

/// Runs `sim` for `time` under `load`, every node reporting each tick.
fn serve_for(sim: &mut Sim, load: &mut ServingLoad, time: Duration) {
    let end = sim.now() + time;
    while sim.now() < end {
        for (id, event) in load.tick() {
            sim.report(id, event);
        }
        sim.run_for(serving::TICK.min(end - sim.now()));
    }
}

/// Gives every host the disks and capacity of a random [`Layout`] and
/// turns the stream layer on, `per_node` streams per node.
fn enable_streams(sim: &mut Sim, cfg: &CampaignConfig, per_node: u32, seed: u64) {
    let layout = Layout::random(cfg.nodes, sim.rng());
    for (h, host) in sim.machines.iter_mut().enumerate() {
        layout.apply(h, &mut host.cfg);
    }
    let streams = per_node.saturating_mul(cfg.nodes);
    let scfg = StreamsConfig::new(streams, cfg.nodes, &cfg.timing, seed);
    sim.enable_streams(Streams::new(scfg, layout));
}

/// With streams: breaks or hangs a random working disk, or brings back a
/// failed one.
fn disk_fault(sim: &mut Sim, restore: bool) {
    let Some(s) = sim.streams() else {
        return;
    };
    let candidates = if restore {
        let mut v = s.disks().with_health(Health::Broken);
        v.extend(s.disks().with_health(Health::Hung));
        v
    } else {
        s.disks().with_health(Health::Ok)
    };
    let Some(disk) = candidates.choose(sim.rng()).copied() else {
        return;
    };
    let health = match (restore, sim.rng().gen_bool(0.5)) {
        (true, _) => Health::Ok,
        (false, true) => Health::Broken,
        (false, false) => Health::Hung,
    };
    sim.with_streams(|s, now| s.set_health(disk, health, now));
}

/// With streams: on the quiet network, one disk breaks and another hangs,
/// for long enough that every node reaching them reports them failed.
fn fail_disks_on_a_quiet_network(sim: &mut Sim, cfg: &CampaignConfig) {
    if sim.streams().is_none() {
        return;
    }
    disk_fault(sim, false);
    disk_fault(sim, false);
    let t = &cfg.timing;
    sim.run_for(
        t.disk_check_interval
            + streams::probe_timeout(t)
            + streams::failover_bound(t, cfg.nodes, 1),
    );
}

fn inject_faults(sim: &mut Sim, cfg: &CampaignConfig) {
    let n = cfg.nodes;
    let loss = sim.rng().gen_range(0.0..0.15);
    let duplicate = sim.rng().gen_range(0.0..0.05);
    let delay_max = Duration::from_micros(sim.rng().gen_range(500..5000));
    sim.set_net(NetFaults::faulty(loss, duplicate, delay_max));
    let end = sim.now() + cfg.fault_time;
    while sim.now() < end {
        let gap = Duration::from_millis(sim.rng().gen_range(20..300));
        sim.run_for(gap);
        let id = sim.rng().gen_range(1..=n);
        let running = sim.machine(id).node().is_some();
        match sim.rng().gen_range(0..10) {
            0 | 1 if running && sim.live().len() > 1 => sim.crash(id),
            2 | 3 if !running || !sim.machine(id).is_live() => sim.start(id),
            4 => {
                let mut ids: Vec<u32> = (1..=n).collect();
                ids.shuffle(sim.rng());
                let cut = sim.rng().gen_range(1..n.max(2)) as usize;
                let (a, b) = ids.split_at(cut.min(ids.len()));
                let (a, b) = (a.to_vec(), b.to_vec());
                sim.partition(&[&a, &b]);
            }
            5 => sim.heal(),
            6 if running => {
                let pause = Duration::from_millis(sim.rng().gen_range(10..300));
                sim.pause(id, pause);
            }
            7 if running => sim.leave(id),
            8 => disk_fault(sim, false),
            9 => disk_fault(sim, true),
            _ => {}
        }
    }
}

/// Liveness mode: faults outside a random healthy majority; returns the
/// longest the majority went without one live supervisor it all followed
/// (a violation beyond [`liveness_bound`]).
fn inject_minority_faults(sim: &mut Sim, cfg: &CampaignConfig) -> Duration {
    let n = cfg.nodes;
    let mut ids: Vec<u32> = (1..=n).collect();
    ids.shuffle(sim.rng());
    let majority: Vec<u32> = ids[..(n / 2 + 1) as usize].to_vec();
    let minority: Vec<u32> = ids[(n / 2 + 1) as usize..].to_vec();
    let loss = sim.rng().gen_range(0.0..0.05);
    let duplicate = sim.rng().gen_range(0.0..0.05);
    let delay_max = Duration::from_micros(sim.rng().gen_range(500..5000));
    sim.set_net(NetFaults::faulty(loss, duplicate, delay_max));
    let bound = liveness_bound(&cfg.timing, n);
    let tick = Duration::from_millis(5);
    let end = sim.now() + cfg.fault_time;
    let (mut unserved_since, mut worst) = (None, Duration::ZERO);
    let mut next_fault = sim.now();
    while sim.now() < end {
        sim.run_for(tick);
        let now = sim.now();
        if majority_served(sim, &majority) {
            unserved_since = None;
        } else {
            let since = *unserved_since.get_or_insert(now);
            worst = worst.max(now - since);
        }
        if now < next_fault || minority.is_empty() {
            continue;
        }
        next_fault = now + Duration::from_millis(sim.rng().gen_range(20..300));
        let id = minority[sim.rng().gen_range(0..minority.len())];
        let running = sim.machine(id).node().is_some();
        match sim.rng().gen_range(0..10) {
            0 | 1 if running => sim.crash(id),
            2 | 3 if !running || !sim.machine(id).is_live() => sim.start(id),
            4 => {
                // The majority stays in one piece, with some of the minority.
                let mut cut: Vec<u32> = minority
                    .iter()
                    .copied()
                    .filter(|_| sim.rng().gen_bool(0.5))
                    .collect();
                if cut.is_empty() {
                    cut.push(id);
                }
                sim.partition(&[&cut]);
            }
            5 => sim.heal(),
            6 if running => {
                let pause = Duration::from_millis(sim.rng().gen_range(10..300));
                sim.pause(id, pause);
            }
            7 if running => sim.leave(id),
            8 => disk_fault(sim, false),
            9 => disk_fault(sim, true),
            _ => {}
        }
    }
    if worst > bound {
        sim.violation(format!(
            "the healthy majority {majority:?} went {worst:?} without a supervisor it all followed (bound {bound:?})"
        ));
    }
    worst
}

/// Whether every node of `majority` follows one supervisor that runs and
/// supervises (it may be outside the majority).
fn majority_served(sim: &Sim, majority: &[u32]) -> bool {
    let Some(sup) = sim.machine(majority[0]).node().and_then(|n| n.supervisor()) else {
        return false;
    };
    let follows = majority
        .iter()
        .all(|id| sim.machine(*id).node().and_then(|n| n.supervisor()) == Some(sup));
    let supervises = sim
        .machines
        .get((sup.0 as usize).wrapping_sub(1))
        .and_then(|m| m.node())
        .is_some_and(|n| n.role() == Role::Supervisor);
    follows && supervises
}

fn heal_everything(sim: &mut Sim) {
    sim.set_net(NetFaults::clean());
    sim.heal();
    // Most failed disks come back too; the others stay failed.
    let failed: Vec<_> = sim.streams().map_or_else(Vec::new, |s| {
        let mut v = s.disks().with_health(Health::Broken);
        v.extend(s.disks().with_health(Health::Hung));
        v
    });
    for disk in failed {
        if sim.rng().gen_bool(0.7) {
            sim.with_streams(|s, now| s.set_health(disk, Health::Ok, now));
        }
    }
    // Restart nodes that left or crashed, except a few that stay dead so the
    // converged map must show them failed.
    let n = sim.config.nodes;
    for id in 1..=n {
        let m = sim.machine(id);
        let running = m.is_live();
        if !running && (sim.live().len() < 2 || sim.rng().gen_bool(0.7)) {
            sim.start(id);
        }
    }
}

fn measure_failover(sim: &mut Sim, cfg: &CampaignConfig, limit: Duration) -> Option<Duration> {
    let phase = sim
        .rng()
        .gen_range(Duration::ZERO..cfg.timing.notify_interval);
    sim.run_for(phase);
    let live = sim.live();
    if live.len() < 2 {
        return None;
    }
    let sup = *live
        .iter()
        .find(|id| sim.node(**id).role() == Role::Supervisor)?;
    sim.crash(sup);
    let survivors: Vec<u32> = sim.live();
    let next = *survivors.iter().min()?;
    let result = sim.run_until(limit, |s| {
        survivors
            .iter()
            .filter(|id| s.machine(**id).is_live())
            .all(|id| s.machine(*id).node().and_then(|n| n.supervisor()) == Some(NodeId(next)))
    });
    match result {
        Ok(d) => {
            if sim.run_until(limit, check::converged).is_err() {
                let why = check::not_converged(sim).unwrap_or_default();
                sim.violation(format!("no convergence after the supervisor died: {why}"));
            }
            Some(d)
        }
        Err(_) => {
            sim.violation(format!("n{next} did not take over from n{sup} in time"));
            None
        }
    }
}

fn measure_detection(sim: &mut Sim, cfg: &CampaignConfig, limit: Duration) -> Option<Duration> {
    let phase = sim
        .rng()
        .gen_range(Duration::ZERO..cfg.timing.status_interval);
    sim.run_for(phase);
    let members: Vec<u32> = sim
        .live()
        .into_iter()
        .filter(|id| sim.node(*id).role() == Role::Member)
        .collect();
    let victim = *members.choose(sim.rng())?;
    sim.crash(victim);
    let survivors = sim.live();
    // A survivor may still finish a leave it began during the faults; once
    // it has left it no longer follows the map.
    match sim.run_until(limit, |s| {
        let live: Vec<u32> = survivors
            .iter()
            .copied()
            .filter(|id| s.machine(*id).is_live())
            .collect();
        s.all_list(&live, victim, MemberStatus::Failed)
    }) {
        Ok(d) => Some(d),
        Err(_) => {
            sim.violation(format!(
                "n{victim}'s failure was not seen by every survivor in time"
            ));
            None
        }
    }
}

/// The nearest-rank percentile `p` (0-100) of `values`; 0 when empty. Shared by
/// every benchmark so their figures mean the same.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs every seed on `threads` workers; `progress` is told after each seed.
pub fn run(
    cfg: &CampaignConfig,
    progress: impl Fn(&SeedReport, u64) + Sync,
) -> (Summary, Vec<SeedReport>) {
    let started = std::time::Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..cfg.threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cfg.seeds {
                    break;
                }
                let report = run_seed(cfg.first_seed + i, cfg);
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(&report, finished);
                reports
                    .lock()
                    .expect("no worker panics while holding it")
                    .push(report);
            });
        }
    });
    let mut reports = reports.into_inner().expect("workers are done");
    reports.sort_by_key(|r| r.seed);
    let collect = |f: &dyn Fn(&SeedReport) -> Option<f64>| -> Vec<f64> {
        reports.iter().filter_map(f).collect()
    };
    let mut formation = collect(&|r| r.formation.map(ms));
    let mut failover = collect(&|r| r.failover.map(ms));
    let mut detect = collect(&|r| r.detect.map(ms));
    let mut bytes = collect(&|r| Some(r.bytes_per_node_per_s));
    let mut unserved = collect(&|r| r.majority_unserved.map(ms));
    let failing: Vec<u64> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| r.seed)
        .collect();
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in &reports {
        for (k, n) in &r.kinds {
            *by_kind.entry(k).or_default() += n;
        }
    }
    let with_streams = cfg.streams.is_some();
    let stream_stats: Vec<StreamStats> = reports.iter().filter_map(|r| r.streams).collect();
    let sum =
        |f: fn(&StreamStats) -> u64| with_streams.then(|| stream_stats.iter().map(f).sum::<u64>());
    let worst = |f: fn(&StreamStats) -> Duration| {
        with_streams.then(|| ms(stream_stats.iter().map(f).max().unwrap_or_default()))
    };
    let bounds = StreamsConfig::new(0, cfg.nodes, &cfg.timing, 0);
    let ratio = |(virt, wall): (Duration, Duration)| {
        wall.as_secs_f64() / virt.as_secs_f64().max(f64::MIN_POSITIVE)
    };
    let slowest = reports
        .iter()
        .max_by(|a, b| ratio(a.ran).total_cmp(&ratio(b.ran)));
    let summary = Summary {
        seeds: cfg.seeds,
        nodes: cfg.nodes,
        faults: match cfg.faults {
            Faults::None => "none",
            Faults::All => "all",
            Faults::Minority => "minority",
        },
        majority_unserved_ms_p99: (!unserved.is_empty()).then(|| percentile(&mut unserved, 99.0)),
        violations: failing.len() as u64,
        violations_by_kind: by_kind,
        streams_placed: sum(|s| s.placed),
        streams_refused: sum(|s| s.refused),
        streams_moved: sum(|s| s.moved),
        streams_over_capacity: sum(|s| s.over_capacity),
        addresses_moved: sum(|s| s.addresses_moved),
        stream_unserved_ms_max: worst(|s| s.longest_unserved),
        stream_bound_ms: with_streams.then(|| ms(bounds.stream_bound(1))),
        address_gap_ms_max: worst(|s| s.longest_address_gap),
        address_bound_ms: with_streams.then(|| ms(bounds.address_bound(1))),
        failing_seeds: failing.iter().take(20).copied().collect(),
        formation_ms_p50: percentile(&mut formation, 50.0),
        formation_ms_p99: percentile(&mut formation, 99.0),
        failover_ms_p50: percentile(&mut failover, 50.0),
        failover_ms_p99: percentile(&mut failover, 99.0),
        detect_ms_p50: percentile(&mut detect, 50.0),
        detect_ms_p99: percentile(&mut detect, 99.0),
        bytes_per_node_per_s: percentile(&mut bytes, 50.0).round(),
        status_interval_ms: ms(cfg.timing.status_interval),
        miss_limit: cfg.timing.miss_limit.get(),
        serving: cfg.serving,
        wall_s: started.elapsed().as_secs_f64(),
        virtual_s_slowest: slowest.map_or(0.0, |r| r.ran.0.as_secs_f64()),
        wall_per_virtual_s: slowest.map_or(0.0, |r| ratio(r.ran)),
    };
    (summary, reports)
}
