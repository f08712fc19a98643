//! Claim 5 on the simulator: a tree of clusters whose seats follow their
//! sub-cluster's supervisor, through supervisor deaths at every level and a
//! whole sub-cluster's death.

use std::time::Duration;

use ringcast_proto::{Load, MemberStatus, NodeId, Timing};
use ringcast_sim::check::{self, ClusterView};
use ringcast_sim::hierarchy::{self, HierarchyConfig, Shape, TreeFaults};
use ringcast_sim::tree::TreeWorld;

fn run(shape: &str, seconds: u64, seed: u64) -> hierarchy::HierarchySummary {
    let cfg = HierarchyConfig {
        shape: shape.parse().expect("a valid shape"),
        seed,
        duration: Duration::from_secs(seconds),
        leaf_timing: Timing::lan(),
        slowdown: 3,
        faults: TreeFaults::Kills,
        threads: 2,
    };
    hierarchy::run(&cfg, &mut |_| {})
}

#[test]
fn a_three_level_tree_survives_supervisor_deaths_at_every_level_and_a_dead_subcluster() {
    let s = run("3x3x4", 40, 7);
    assert_eq!(s.violations, 0, "{:#?}", s.violation_examples);
    assert_eq!((s.nodes, s.levels, s.clusters), (36, 3, 13));
    assert!(s.formation_ms.is_some());
    // Supervisors died at every level, and each level recovered.
    for level in 0..3 {
        assert!(
            s.failovers[level] > 0,
            "no failover at level {level}: {s:?}"
        );
        assert!(s.failover_ms_p99[level].is_some());
    }
    assert!(s.subclusters_killed > 0, "{s:?}");
    assert!(s.subcluster_detect_ms_p99.is_some());
    assert_eq!(s.false_subcluster_failures, 0);
    // The root's tables count every machine's streams.
    assert_eq!(s.root_streams, s.machine_streams);
    assert!(s.root_streams > 0);
}

#[test]
fn a_machine_in_a_tree_moves_no_more_than_a_node_of_a_single_cluster() {
    let s = run("8x8", 12, 3);
    assert_eq!(s.violations, 0, "{:#?}", s.violation_examples);
    // A node of any cluster of the tree carries its own cluster's traffic
    // only: within 10% of a node of a lone cluster of the leaf's size.
    assert!(
        s.max_bytes_per_node_per_s <= s.single_cluster_max_bytes_per_node_per_s * 1.1,
        "{s:?}"
    );
}

#[test]
fn shapes_are_checked() {
    assert!("22x22x22".parse::<Shape>().is_ok());
    assert!("1x3".parse::<Shape>().is_err());
    assert!("3x".parse::<Shape>().is_err());
    assert!("65x2".parse::<Shape>().is_err());
    assert!("64x64x64x64".parse::<Shape>().is_err());
}

/// A 3x3 tree (a root of three seats over three leaf clusters of three
/// machines) at LAN timing, formed.
fn formed_tree(seed: u64) -> TreeWorld {
    let leaf = Timing::lan();
    let mut w = TreeWorld::new(&[3, 3], |level| leaf.for_level(1 - level as u32, 3), seed);
    for h in 0..w.hosts.len() {
        w.start(h, Load::default());
    }
    let limit = Duration::from_secs(20);
    w.run_until(limit, |w| {
        (0..w.clusters.len())
            .all(|c| w.view(c).running().len() == 3 && check::converged(&w.view(c)))
    })
    .expect("the tree forms");
    w
}

/// The capacity the root's supervisor lists for seat `seat`.
fn root_capacity(w: &TreeWorld, seat: u32) -> Option<u32> {
    let (h, _) = w.supervisor_of(0)?;
    let tables = w.hosts[h].node(1)?.tables()?;
    tables.usage(NodeId(seat)).map(|u| u.capacity.max_streams)
}

/// Claim 5, run by the daemon's own seat code (`ringcast_proto::Machine`):
/// a seat announces its sub-cluster's summed capacity, and when that
/// announcement is lost it announces it again until the parent's tables
/// show it. (The real-process twin is `crates/ringcast/tests/hierarchy.rs`.)
#[test]
fn a_seat_reannounces_its_subclusters_capacity_after_the_announcement_is_lost() {
    let mut w = formed_tree(11);
    let limit = Duration::from_secs(5);
    w.run_until(limit, |w| (1..=3).all(|s| root_capacity(w, s) == Some(300)))
        .expect("every seat announces 3 x 100 streams");
    // Leaf cluster 2 (seat 2 of the root, which seat 1 supervises) loses a
    // machine that does not supervise it, while every datagram of the
    // root's network is lost.
    let leaf = w.clusters[0].children[1];
    let (sup, _) = w.supervisor_of(leaf).expect("leaf 1 has a supervisor");
    let victim = (0..w.hosts.len())
        .find(|h| w.hosts[*h].chain[0].0 == leaf && *h != sup)
        .expect("leaf 2 has another machine");
    w.set_cluster_loss(0, 1.0);
    w.crash(victim);
    w.run_until(limit, |w| {
        w.hosts[sup]
            .machine
            .as_ref()
            .and_then(|m| m.aggregate(0))
            .is_some_and(|(c, _)| c.max_streams == 200)
    })
    .expect("the leaf's supervisor sums 2 x 100 streams");
    // Within the root's failure detection, so no seat is declared failed.
    w.run_for(Duration::from_millis(60));
    w.set_cluster_loss(0, 0.0);
    assert_eq!(
        root_capacity(&w, 2),
        Some(300),
        "the first announcement was lost"
    );
    w.run_until(limit, |w| root_capacity(w, 2) == Some(200))
        .expect("the seat announces 200 streams again until the root's tables show it");
    assert!(w.seat_failures.is_empty(), "{:?}", w.seat_failures);
    assert!(w.violations.is_empty(), "{:#?}", w.violations);
}

/// Claim 5: when a sub-cluster's supervisor dies, the machine that takes
/// over the sub-cluster takes its seat with a newer life, and the parent
/// never marks the sub-cluster failed.
#[test]
fn a_subclusters_takeover_hands_its_seat_to_the_new_supervisor_without_a_failure() {
    let mut w = formed_tree(12);
    let leaf = w.clusters[0].children[1];
    let (old, seat) = w.supervisor_of(leaf).expect("leaf 2 has a supervisor");
    assert_eq!(seat, 1, "the highest priority supervises");
    let old_life = w.hosts[old]
        .node(1)
        .expect("it holds the seat")
        .incarnation();
    w.crash(old);
    let limit = Duration::from_secs(5);
    w.run_until(limit, |w| {
        w.supervisor_of(leaf).is_some_and(|(h, _)| {
            w.hosts[h].node(1).is_some() && w.all_list(0, 2, MemberStatus::Up)
        }) && (0..w.clusters.len()).all(|c| check::converged(&w.view(c)))
    })
    .expect("the new supervisor of leaf 2 holds seat 2 and the root lists it up");
    let (new, _) = w.supervisor_of(leaf).unwrap();
    assert_ne!(new, old);
    let new_life = w.hosts[new].node(1).unwrap().incarnation();
    assert!(new_life > old_life, "{new_life} is newer than {old_life}");
    let (root_sup, _) = w.supervisor_of(0).unwrap();
    let listed = w.hosts[root_sup]
        .node(1)
        .unwrap()
        .map()
        .unwrap()
        .member(NodeId(2))
        .unwrap();
    assert_eq!(
        (listed.status, listed.incarnation),
        (MemberStatus::Up, new_life)
    );
    assert!(
        w.seat_failures.is_empty(),
        "the root marked a seat failed: {:?}",
        w.seat_failures
    );
    assert!(w.violations.is_empty(), "{:#?}", w.violations);
}

/// Claim 5 under every fault at every level: loss, duplication,
/// reordering, partitions of clusters at each level and pauses of
/// supervising machines, besides the kills; every cluster converges after
/// each round and the root counts every machine's streams.
#[test]
fn a_tree_converges_at_every_level_through_network_faults_partitions_and_pauses() {
    let cfg = HierarchyConfig {
        shape: "3x3x3".parse().expect("a valid shape"),
        seed: 5,
        duration: Duration::from_secs(40),
        leaf_timing: Timing::lan(),
        slowdown: 3,
        faults: TreeFaults::All,
        threads: 2,
    };
    let s = hierarchy::run(&cfg, &mut |_| {});
    assert_eq!(s.violations, 0, "{:#?}", s.violation_examples);
    assert!(s.storms > 0 && s.pauses > 0, "{s:?}");
    assert!(
        s.partitions.iter().all(|p| *p > 0),
        "a partition at every level: {s:?}"
    );
    assert_eq!(s.root_streams, s.machine_streams);
}
