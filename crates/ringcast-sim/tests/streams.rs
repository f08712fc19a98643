//! Claim 13 and DESIGN 6 on the simulator: streams placed through the
//! supervisor's book, moved when their node or disk fails, and service
//! addresses held by exactly one node, checked after every step; and the
//! checks catch a wrong holder rule or a wrong placement.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ringcast_proto::placement::reservation;
use ringcast_proto::DiskId;
use ringcast_sim::campaign::{self, CampaignConfig, Faults};
use ringcast_sim::check;
use ringcast_sim::streams::{Bug, Health, Layout, Streams, StreamsConfig};
use ringcast_sim::world::{Sim, SimConfig};

/// A formed cluster of `nodes` with `streams` players, all started.
fn world(seed: u64, nodes: u32, streams: u32, bug: Option<Bug>) -> Sim {
    let mut sim = Sim::new(SimConfig::new(seed, nodes));
    let layout = Layout::random(nodes, &mut ChaCha8Rng::seed_from_u64(seed));
    for (h, host) in sim.machines.iter_mut().enumerate() {
        layout.apply(h, &mut host.cfg);
    }
    let mut cfg = StreamsConfig::new(streams, nodes, &sim.config.timing, seed);
    cfg.bug = bug;
    sim.enable_streams(Streams::new(cfg, layout));
    sim.start_all();
    sim.run_until(Duration::from_secs(5), check::converged)
        .expect("formation");
    sim.with_streams(|s, now| s.start_players(now));
    // Placements count as load for a reservation besides the nodes'
    // reports: past it, every stream that can be served is.
    sim.run_for(reservation(&sim.config.timing, nodes as usize) + Duration::from_secs(1));
    sim
}

fn kinds(sim: &Sim) -> Vec<&'static str> {
    sim.kinds.keys().copied().collect()
}

fn served(sim: &Sim) -> usize {
    sim.streams().map_or(0, Streams::served)
}

#[test]
fn a_campaign_with_streams_and_every_fault_finds_no_violation() {
    let cfg = CampaignConfig {
        nodes: 8,
        first_seed: 7000,
        seeds: 50,
        faults: Faults::All,
        timing: ringcast_proto::Timing::lan(),
        fault_time: Duration::from_secs(2),
        threads: 2,
        streams: Some(2),
        serving: false,
    };
    let (summary, reports) = campaign::run(&cfg, |_, _| {});
    let failures: Vec<String> = reports.iter().flat_map(|r| r.violations.clone()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(summary.violations, 0);
    assert!(summary.violations_by_kind.is_empty(), "{summary:?}");
    // The campaign exercised what it checks.
    assert!(summary.streams_placed.unwrap_or(0) > 50 * 16, "{summary:?}");
    assert!(summary.streams_moved.unwrap_or(0) > 0, "{summary:?}");
    assert!(summary.addresses_moved.unwrap_or(0) > 0, "{summary:?}");
}

#[test]
fn a_healthy_cluster_serves_every_stream_and_moves_those_of_a_dead_node() {
    let mut sim = world(1, 6, 8, None);
    assert_eq!(served(&sim), 8, "{}", sim.trace());
    // Kill a node that serves something (not the supervisor, n1).
    let victim = (2..=6)
        .find(|id| {
            let stats = sim.streams().unwrap();
            stats.addresses().held(*id as usize - 1).len() == 1 && sim.machine(*id).node().is_some()
        })
        .unwrap();
    sim.crash(victim);
    sim.run_for(Duration::from_secs(5));
    assert!(sim.violations.is_empty(), "{}", sim.violations.join("\n\n"));
    let stats = sim.streams().unwrap().stats(sim.now());
    assert!(
        stats.addresses_moved >= 1,
        "n{victim}'s address moved: {stats:?}"
    );
    assert_eq!(served(&sim), 8, "{stats:?}");
}

#[test]
fn a_new_supervisor_places_the_streams_of_its_cluster_afresh() {
    // A seed where the supervisor, n1, serves streams itself.
    let mut sim = (2..)
        .map(|seed| world(seed, 5, 10, None))
        .find(|sim| sim.streams().unwrap().served_by(0) > 0)
        .unwrap();
    assert_eq!(sim.streams().unwrap().waiting(), 0);
    let placed = sim.streams().unwrap().stats(sim.now()).placed;
    sim.crash(1);
    sim.run_for(Duration::from_secs(5));
    assert!(sim.violations.is_empty(), "{}", sim.violations.join("\n\n"));
    let s = sim.streams().unwrap();
    assert!(
        s.stats(sim.now()).placed > placed,
        "n2 placed n1's streams again"
    );
    assert_eq!(s.waiting(), 0, "{}", sim.trace());
}

#[test]
fn the_streams_of_a_hung_disk_move_once_its_probes_time_out() {
    let mut sim = world(3, 6, 12, None);
    // Hang the disk that serves the most streams.
    let busiest = (1..=6)
        .max_by_key(|d| {
            sim.streams()
                .unwrap()
                .layout()
                .titles
                .iter()
                .filter(|t| t.contains(&DiskId(*d)))
                .count()
        })
        .unwrap();
    sim.with_streams(|s, now| s.set_health(DiskId(busiest), Health::Hung, now));
    sim.run_for(Duration::from_secs(8));
    assert!(sim.violations.is_empty(), "{}", sim.violations.join("\n\n"));
    let sup = sim.node(1);
    let status = sup.tables().unwrap().disk(DiskId(busiest)).unwrap().status;
    assert_eq!(status, ringcast_proto::tables::DiskStatus::Failed);
}

// ----- the checks catch bugs -----

#[test]
fn a_holder_rule_that_leaves_a_dead_nodes_address_with_it_is_caught() {
    let mut sim = world(4, 5, 5, Some(Bug::DeadNodesKeepTheirAddresses));
    assert!(sim.violations.is_empty(), "{}", sim.violations.join("\n\n"));
    sim.crash(4);
    sim.run_for(Duration::from_secs(3));
    assert!(kinds(&sim).contains(&"address"), "{:?}", sim.kinds);
    assert!(
        sim.violations[0].contains("Node(NodeId(4)) held by no live node"),
        "{}",
        sim.violations[0]
    );
}

#[test]
fn placement_over_capacity_is_caught() {
    // Three times the streams the cluster can take.
    let mut sim = world(5, 4, 60, Some(Bug::IgnoreCapacity));
    sim.run_for(Duration::from_secs(1));
    assert!(kinds(&sim).contains(&"capacity"), "{:?}", sim.kinds);
    // The same cluster placing by the real tables stays within capacity.
    let mut sim = world(5, 4, 60, None);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.violations.is_empty(), "{}", sim.violations.join("\n\n"));
}

#[test]
fn placement_that_ignores_failed_disks_is_caught() {
    let mut sim = world(6, 6, 12, Some(Bug::IgnoreDiskFailures));
    for d in [1, 2] {
        sim.with_streams(|s, now| s.set_health(DiskId(d), Health::Broken, now));
    }
    sim.run_for(Duration::from_secs(15));
    assert!(kinds(&sim).contains(&"stream"), "{:?}", sim.kinds);
    // The real placement moves them.
    let mut sim = world(6, 6, 12, None);
    for d in [1, 2] {
        sim.with_streams(|s, now| s.set_health(DiskId(d), Health::Broken, now));
    }
    sim.run_for(Duration::from_secs(15));
    assert!(sim.violations.is_empty(), "{}", sim.violations.join("\n\n"));
}
