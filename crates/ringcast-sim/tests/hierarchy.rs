//! Claim 5 on the simulator: a tree of clusters whose seats follow their
//! sub-cluster's supervisor, through supervisor deaths at every level and a
//! whole sub-cluster's death.

use std::time::Duration;

use ringcast_proto::Timing;
use ringcast_sim::hierarchy::{self, HierarchyConfig, Shape, TreeFaults};

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
