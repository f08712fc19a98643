//! Tests of trees of clusters (claim 5): checks, settings, local trees.

use std::time::Duration;

use ringcast_proto::{ClusterId, NodeId};

use super::*;

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A root (100) of sub-clusters 10 and 20; 10 holds nodes 1 and 2, 20
/// holds node 3.
const TREE: &str = r#"[cluster]
id = 100
name = "root"
config_version = 2
bus = "239.255.9.1:7400"
interface = "127.0.0.1"
ttl = 0
key_file = "cluster.key"
priority = [20, 10]

[timing]
status_interval_ms = 100
notify_interval_ms = 100
notification_time_ms = 300

[[subcluster]]
id = 10
name = "east"
bus = "239.255.9.2:7400"
priority = [1, 2]

[[subcluster]]
id = 20
name = "west"
bus = "239.255.9.3:7400"
priority = [3]

[subcluster.timing]
status_interval_ms = 30
notify_interval_ms = 30
notification_time_ms = 90

[[node]]
id = 1
ring = "127.0.0.1:7501"
http = "127.0.0.1:8501"
max_streams = 100
max_bytes_per_s = 1000
seats = ["127.0.0.1:7601"]

[[node]]
id = 2
ring = "127.0.0.1:7502"
http = "127.0.0.1:8502"
max_streams = 50
max_bytes_per_s = 500
seats = ["127.0.0.1:7602"]

[[node]]
id = 3
ring = "127.0.0.1:7503"
http = "127.0.0.1:8503"
max_streams = 10
max_bytes_per_s = 100
seats = ["127.0.0.1:7603"]
"#;

/// Loads `text` as a cluster file beside a key file.
fn load_text(text: &str) -> Result<ClusterFile, ConfigFileError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.key"), KEY_HEX).unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    load(&path)
}

fn problems(text: &str) -> Vec<String> {
    match load_text(text) {
        Ok(_) => Vec::new(),
        Err(ConfigFileError::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| format!("{}:{}: {}", p.line, p.field, p.message))
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

fn with_tree<T>(text: &str, f: impl FnOnce(&ClusterFile) -> T) -> T {
    f(&load_text(text).unwrap())
}

#[test]
fn a_tree_gives_each_node_its_cluster_and_a_seat_in_the_parent() {
    with_tree(TREE, |file| {
        assert!(file.is_hierarchy());
        let s = file.node_settings(NodeId(2)).unwrap();
        assert_eq!(s.proto.cluster, ClusterId(10));
        assert_eq!(s.proto.priority, vec![NodeId(1), NodeId(2)]);
        assert_eq!(s.proto.bus, "239.255.9.2:7400".parse().unwrap());
        assert_eq!(s.cluster_name, "east");
        assert_eq!(s.seats.len(), 1);
        let seat = &s.seats[0];
        assert_eq!(seat.proto.cluster, ClusterId(100));
        assert_eq!(
            seat.proto.node,
            NodeId(10),
            "the seat is the sub-cluster's id"
        );
        assert_eq!(seat.proto.priority, vec![NodeId(20), NodeId(10)]);
        assert_eq!(seat.proto.addrs.ring, "127.0.0.1:7602".parse().unwrap());
        assert_eq!(seat.proto.addrs.http, s.proto.addrs.http);
        assert_eq!(seat.proto.capacity.max_streams, 150, "1 and 2 summed");
        assert_eq!(
            seat.proto.timing.status_interval,
            Duration::from_millis(100)
        );
        assert!(seat.proto.disks.is_empty());
        assert_eq!(seat.cluster_name, "root");
        let west = file.node_settings(NodeId(3)).unwrap();
        assert_eq!(west.proto.timing.status_interval, Duration::from_millis(30));
        s.validate().unwrap();
        // The JSON the configuration service sends keeps the seats.
        let json = serde_json::to_string(&s).unwrap();
        let back: crate::settings::NodeSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let infos = file.clusters();
        let names: Vec<(&str, usize)> = infos.iter().map(|c| (c.name.as_str(), c.level)).collect();
        assert_eq!(names, vec![("root", 0), ("west", 1), ("east", 1)]);
        assert_eq!(infos[1].parent, Some(ClusterId(100)));
    });
}

#[test]
fn a_node_in_two_clusters_is_reported_at_the_second() {
    let text = TREE.replace("priority = [3]", "priority = [3, 1]");
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.contains("subcluster.priority")
            && p.contains("names node 1, already a member of cluster 10")),
        "{p:#?}"
    );
}

#[test]
fn a_cycle_of_subclusters_is_reported() {
    // 10 names 20 and 20 names 10: neither hangs below the root.
    let text = TREE
        .replace("priority = [20, 10]", "priority = [30]")
        .replace("priority = [1, 2]", "priority = [20, 1, 2]")
        .replace("priority = [3]", "priority = [10, 3]")
        .replace(
            "[[node]]\nid = 1",
            "[[subcluster]]\nid = 30\nname = \"x\"\nbus = \"239.255.9.4:7400\"\npriority = [4]\n\n[[node]]\nid = 4\nring = \"127.0.0.1:7504\"\nhttp = \"127.0.0.1:8504\"\nmax_streams = 1\nmax_bytes_per_s = 1\nseats = [\"127.0.0.1:7604\"]\n\n[[node]]\nid = 1",
        );
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.contains("is its own ancestor")),
        "{p:#?}"
    );
}

#[test]
fn two_clusters_on_one_bus_are_reported() {
    let text = TREE.replace("239.255.9.3:7400", "239.255.9.2:7400");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.contains("subcluster.bus") && p.contains("already cluster 10's bus")),
        "{p:#?}"
    );
}

#[test]
fn a_cluster_mixing_nodes_and_subclusters_is_reported() {
    let text = TREE
        .replace("priority = [20, 10]", "priority = [20, 10, 3]")
        .replace("priority = [3]", "priority = [2]")
        .replace("priority = [1, 2]", "priority = [1]");
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.contains("mixes nodes and sub-clusters")),
        "{p:#?}"
    );
}

#[test]
fn missing_seats_and_shared_ids_and_orphans_are_reported() {
    let text = TREE.replace("seats = [\"127.0.0.1:7603\"]\n", "");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.contains("node.seats") && p.contains("needs 1 seat address")),
        "{p:#?}"
    );
    let text = TREE.replace("id = 20\n", "id = 3\n");
    let p = problems(&text);
    assert!(p.iter().any(|p| p.contains("share one id space")), "{p:#?}");
    let text = TREE.replace("priority = [20, 10]", "priority = [20]");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.contains("sub-cluster 10 is a member of no cluster")),
        "{p:#?}"
    );
    let text = TREE.replace("bus = \"239.255.9.1:7400\"\n", "transport = \"unicast\"\n");
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.contains("needs multicast buses")),
        "{p:#?}"
    );
}

#[test]
fn shapes_parse_and_bad_ones_say_why() {
    assert_eq!(parse_shape("3x3"), Ok(vec![3, 3]));
    assert_eq!(parse_shape("2x2x2"), Ok(vec![2, 2, 2]));
    assert_eq!(parse_shape("3"), Err(ShapeError::OneLevel));
    assert_eq!(parse_shape("3x0"), Err(ShapeError::Zero));
    assert!(matches!(parse_shape("3xa"), Err(ShapeError::Syntax(_))));
    assert_eq!(parse_shape("1x1x1x1x1x1x1"), Err(ShapeError::TooDeep(7)));
    assert!(matches!(
        parse_shape("9x9"),
        Err(ShapeError::TooMany { machines: 81, .. })
    ));
}

#[test]
fn a_local_tree_loads_with_every_machine_seated_in_each_ancestor() {
    let dir = tempfile::tempdir().unwrap();
    let path = local_hierarchy(dir.path(), &[2, 2, 2], None, true).unwrap();
    let file = load(&path).unwrap();
    assert_eq!(file.node_ids().len(), 8);
    let clusters = file.clusters();
    assert_eq!(clusters.len(), 1 + 2 + 4);
    assert_eq!(clusters[0].level, 0);
    for id in file.node_ids() {
        let s = file.node_settings(id).unwrap();
        assert_eq!(s.seats.len(), 2);
        assert_eq!(s.proto.disks.len(), 2, "its own disk and its neighbour's");
        // Each level above runs slower than the one below.
        assert!(s.seats[0].proto.timing.status_interval > s.proto.timing.status_interval);
        assert!(s.seats[1].proto.timing.status_interval > s.seats[0].proto.timing.status_interval);
        assert_eq!(s.seats[1].proto.capacity.max_streams, 400);
    }
}

#[test]
fn every_level_of_a_local_tree_runs_the_protocols_one_timing_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = local_hierarchy(dir.path(), &[2, 2, 2], None, false).unwrap();
    let file = load(&path).unwrap();
    let s = file.node_settings(NodeId(1)).unwrap();
    let levels = std::iter::once(&s).chain(&s.seats);
    for (above, settings) in (0..).zip(levels) {
        let expected = ringcast_proto::Timing::lan().for_level(above, LOCAL_SLOWDOWN);
        assert_eq!(settings.proto.timing, expected, "{above} levels above");
    }
}

#[test]
fn a_local_tree_file_starts_with_its_comments_and_serialized_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = local_hierarchy(dir.path(), &[2, 2], None, false).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("# A local tree of ringcast clusters (2x2)"),
        "{text}"
    );
    let body: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(body["timing"]["status_interval_ms"].as_integer(), Some(100));
    assert_eq!(body["subcluster"].as_array().unwrap().len(), 2);
    assert_eq!(body["node"].as_array().unwrap().len(), 4);
}
