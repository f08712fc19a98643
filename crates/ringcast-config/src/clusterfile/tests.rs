//! Tests of loading and checking cluster files, and of the local cluster.

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcast_proto::{
    Capacity, ClusterId, DiskAccess, DiskId, KeyId, NodeAddrs, NodeConfig, NodeId, Timing,
};

use super::*;
use crate::settings::{key_from_hex, BusMode, Limits, NodeSettings};

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

const VALID: &str = r#"# a test cluster
[cluster]
id = 7
name = "test"
config_version = 3
bus = "239.255.42.1:7400"
transport = "multicast"
interface = "127.0.0.1"
ttl = 0
loopback = true
key_file = "cluster.key"
admin_token_file = "admin.token"
priority = [2, 1, 3]
mtu = 1400
servers = ["127.0.0.1:7000"]

[timing]
status_interval_ms = 25
notify_interval_ms = 25
notification_time_ms = 75
miss_limit = 3

[[node]]
id = 1
ring = "127.0.0.1:7501"
http = "127.0.0.1:8501"
max_streams = 100
max_bytes_per_s = 1250000000

[[node.disk]]
id = 1
mount = "/srv/d1"
probe = "/srv/d1/.ringcast-probe"

[[node]]
id = 2
ring = "127.0.0.1:7502"
http = "127.0.0.1:8502"
max_streams = 50
max_bytes_per_s = 625000000

[[node.disk]]
id = 1
mount = "/mnt/shared"
probe = "/mnt/shared/.ringcast-probe"

[[node.disk]]
id = 2
mount = "/srv/d2"
probe = "/srv/d2/.ringcast-probe"

[[node]]
id = 3
ring = "127.0.0.1:7503"
http = "127.0.0.1:8503"
max_streams = 10
max_bytes_per_s = 125000000
"#;

/// Writes `text` as cluster.toml beside a valid key file and admin token.
fn write_cluster(dir: &Path, text: &str) -> PathBuf {
    fs::write(dir.join("cluster.key"), format!("{KEY_HEX}\n")).unwrap();
    fs::write(dir.join("admin.token"), "let-me-in\n").unwrap();
    let path = dir.join("cluster.toml");
    fs::write(&path, text).unwrap();
    path
}

fn problems_of(text: &str) -> Vec<Problem> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), text);
    match load(&path) {
        Err(ConfigFileError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not in the text"))
}

/// The `nth` (from 0) line containing `needle`.
fn nth_line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not in the text {nth} times"))
}

fn assert_one_problem(problems: &[Problem], field: &str, line: usize, says: &str) {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_problem(problems, field, line, says);
}

fn assert_problem(problems: &[Problem], field: &str, line: usize, says: &str) {
    let found = problems
        .iter()
        .any(|p| p.field == field && p.line == line && p.message.contains(says));
    assert!(
        found,
        "no problem `{field}` at line {line} saying {says:?} in {problems:#?}"
    );
    let text = problems
        .iter()
        .find(|p| p.field == field && p.line == line)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        text.contains(&format!("cluster.toml:{line}: {field}: ")),
        "{text}"
    );
}

fn ring(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[test]
fn a_valid_file_yields_the_settings_of_each_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), VALID);
    let file = load(&path).unwrap();
    assert_eq!(file.node_ids(), vec![NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(file.config_version(), 3);
    assert_eq!(file.admin_token(), Some("let-me-in"));
    assert_eq!(file.path(), path);
    assert_eq!(
        file.http_addr(NodeId(3)),
        Some("127.0.0.1:8503".parse().unwrap())
    );
    assert_eq!(file.http_addr(NodeId(9)), None);

    let group: SocketAddrV4 = "239.255.42.1:7400".parse().unwrap();
    let mut timing = Timing::with_interval(Duration::from_millis(25), 3);
    timing.notification_time = Duration::from_millis(75);
    timing.takeover_step = Timing::lan().takeover_step;
    timing.join_retry = Timing::lan().join_retry;
    timing.leave_retry = Timing::lan().leave_retry;
    let expected = NodeSettings {
        proto: NodeConfig {
            cluster: ClusterId(7),
            node: NodeId(2),
            config_version: 3,
            bus: SocketAddr::V4(group),
            priority: vec![NodeId(2), NodeId(1), NodeId(3)],
            addrs: NodeAddrs {
                ring: ring(7502),
                http: "127.0.0.1:8502".parse().unwrap(),
            },
            disks: vec![
                DiskAccess {
                    id: DiskId(1),
                    mount: "/mnt/shared".into(),
                    probe_path: "/mnt/shared/.ringcast-probe".into(),
                },
                DiskAccess {
                    id: DiskId(2),
                    mount: "/srv/d2".into(),
                    probe_path: "/srv/d2/.ringcast-probe".into(),
                },
            ],
            capacity: Capacity {
                max_streams: 50,
                max_bytes_per_s: 625_000_000,
            },
            servers: vec!["127.0.0.1:7000".parse().unwrap()],
            timing,
            mtu: 1400,
        },
        bus: BusMode::Multicast {
            group,
            interface: Ipv4Addr::LOCALHOST,
            ttl: 0,
            loopback: true,
        },
        keys: vec![(KeyId(1), key_from_hex(KEY_HEX).unwrap())],
        admin_token_sha256: Some(crate::admin::AdminDigest::of("let-me-in")),
        cluster_name: "test".into(),
        limits: Limits::default(),
        seats: Vec::new(),
        service: Default::default(),
        tls: None,
    };
    assert_eq!(file.node_settings(NodeId(2)).unwrap(), expected);
    for id in file.node_ids() {
        let settings = file.node_settings(id).unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.proto.node, id);
        assert_eq!(settings.proto.addrs.ring, ring(7500 + id.0 as u16));
    }
    assert_eq!(
        file.node_settings(NodeId(1)).unwrap().proto.disks[0].mount,
        "/srv/d1"
    );
}

#[test]
fn asking_for_a_node_the_file_does_not_define_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = load(&write_cluster(dir.path(), VALID)).unwrap();
    let err = file.node_settings(NodeId(9)).unwrap_err();
    assert!(matches!(
        err,
        ConfigFileError::UnknownNode {
            node: NodeId(9),
            ..
        }
    ));
    assert!(
        err.to_string().contains("defines no node with id 9"),
        "{err}"
    );
}

#[test]
fn debug_of_a_cluster_file_never_prints_the_key_or_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = load(&write_cluster(dir.path(), VALID)).unwrap();
    let text = format!("{file:?}");
    assert!(!text.contains("let-me-in"), "{text}");
    assert!(!text.contains("keys"), "{text}");
}

#[test]
fn a_unicast_file_gives_each_node_every_other_node_as_a_peer() {
    let text = VALID
        .replace("transport = \"multicast\"", "transport = \"unicast\"")
        .replace("bus = \"239.255.42.1:7400\"\n", "")
        .replace("interface = \"127.0.0.1\"\n", "")
        .replace("ttl = 0\n", "")
        .replace("loopback = true\n", "");
    let dir = tempfile::tempdir().unwrap();
    let file = load(&write_cluster(dir.path(), &text)).unwrap();
    let settings = file.node_settings(NodeId(2)).unwrap();
    let peers = vec![(NodeId(1), ring(7501)), (NodeId(3), ring(7503))];
    assert_eq!(settings.bus, BusMode::Unicast { peers });
    assert_eq!(settings.proto.bus, ring(7502));
    settings.validate().unwrap();
}

#[test]
fn a_unicast_file_may_keep_its_multicast_settings_unused() {
    let text = VALID
        .replace("transport = \"multicast\"", "transport = \"unicast\"")
        .replace("239.255.42.1:7400", "10.1.2.3:7400");
    let dir = tempfile::tempdir().unwrap();
    let file = load(&write_cluster(dir.path(), &text)).unwrap();
    let settings = file.node_settings(NodeId(1)).unwrap();
    assert!(matches!(settings.bus, BusMode::Unicast { .. }));
    assert_eq!(settings.proto.bus, ring(7501));
}

#[test]
fn duplicate_node_ids_are_reported_with_the_line_of_the_second() {
    let text = VALID
        .replace("id = 3\n", "id = 2\n")
        .replace("priority = [2, 1, 3]", "priority = [2, 1]");
    let problems = problems_of(&text);
    let first = line_of(&text, "ring = \"127.0.0.1:7502\"") - 1;
    let second = line_of(&text, "ring = \"127.0.0.1:7503\"") - 1;
    assert_one_problem(
        &problems,
        "node.id",
        second,
        &format!("node 2 is defined twice (first at line {first})"),
    );
}

#[test]
fn a_priority_list_missing_a_node_is_reported_with_its_line() {
    let text = VALID.replace("priority = [2, 1, 3]", "priority = [2, 1]");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.priority",
        line_of(&text, "priority = "),
        "does not name node 3",
    );
}

#[test]
fn a_priority_list_naming_an_unknown_node_is_reported_at_the_entry() {
    let text = VALID.replace(
        "priority = [2, 1, 3]",
        "priority = [\n  2,\n  1,\n  3,\n  9,\n]",
    );
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.priority",
        line_of(&text, "  9,"),
        "names node 9, which no [[node]] table defines",
    );
}

#[test]
fn a_priority_list_repeating_a_node_is_reported_at_the_repeat() {
    let text = VALID.replace(
        "priority = [2, 1, 3]",
        "priority = [\n  2,\n  1,\n  3,\n  1,\n]",
    );
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.priority",
        nth_line_of(&text, "  1,", 1),
        "names node 1 more than once",
    );
}

#[test]
fn an_empty_priority_list_is_reported() {
    let text = VALID.replace("priority = [2, 1, 3]", "priority = []");
    let problems = problems_of(&text);
    let line = line_of(&text, "priority = ");
    assert_problem(&problems, "cluster.priority", line, "is empty");
    assert_problem(&problems, "cluster.priority", line, "does not name node 1");
}

#[test]
fn a_bus_address_that_is_not_multicast_is_reported_with_its_line() {
    let text = VALID.replace("239.255.42.1:7400", "10.1.2.3:7400");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.bus",
        line_of(&text, "bus = "),
        "10.1.2.3:7400 is not a multicast address",
    );
}

#[test]
fn a_bus_address_that_does_not_parse_is_reported_with_its_line() {
    let text = VALID.replace("239.255.42.1:7400", "239.255.42.1");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.bus",
        line_of(&text, "bus = "),
        "socket address",
    );
}

#[test]
fn without_an_interface_each_node_multicasts_from_its_ring_address() {
    let text = VALID.replace("interface = \"127.0.0.1\"\n", "");
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), &text);
    let file = load(&path).expect("a multicast file may leave the interface to each node");
    for id in file.node_ids() {
        let settings = file.node_settings(id).unwrap();
        let BusMode::Multicast { interface, .. } = settings.bus else {
            panic!("multicast expected");
        };
        let SocketAddr::V4(ring) = settings.proto.addrs.ring else {
            panic!("IPv4 ring expected");
        };
        assert_eq!(interface, *ring.ip());
    }
}

#[test]
fn a_node_may_name_its_own_multicast_interface() {
    let text = VALID.replacen(
        "[[node]]\nid = 1\n",
        "[[node]]\nid = 1\ninterface = \"127.0.0.9\"\n",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), &text);
    let file = load(&path).unwrap();
    let BusMode::Multicast { interface, .. } = file.node_settings(NodeId(1)).unwrap().bus else {
        panic!("multicast expected");
    };
    assert_eq!(interface, Ipv4Addr::new(127, 0, 0, 9));
}

#[test]
fn an_unknown_key_is_reported_with_its_name_and_line() {
    let text = VALID.replace("mtu = 1400\n", "mtu = 1400\nmulticast_ttl = 4\n");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.multicast_ttl",
        line_of(&text, "multicast_ttl"),
        "unknown field `multicast_ttl`",
    );
}

#[test]
fn an_unknown_key_in_a_disk_table_is_reported_with_its_name_and_line() {
    let text = VALID.replace(
        "mount = \"/srv/d2\"\n",
        "mount = \"/srv/d2\"\nsize_gb = 100\n",
    );
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.disk.size_gb",
        line_of(&text, "size_gb"),
        "unknown field `size_gb`",
    );
}

#[test]
fn limits_are_read_from_their_table_and_bad_ones_reported_at_their_line() {
    let text =
        format!("{VALID}\n[limits]\nhttp_client_requests_per_s = 5\nbus_refused_burst = 7\n");
    let dir = tempfile::tempdir().unwrap();
    let file = load(&write_cluster(dir.path(), &text)).unwrap();
    let limits = file.node_settings(NodeId(1)).unwrap().limits;
    assert_eq!(limits.http.client_requests.per_second, 5);
    assert_eq!(limits.bus.refused.burst, 7);
    assert_eq!(limits.http.max_head, Limits::default().http.max_head);

    let text = format!("{VALID}\n[limits]\nhttp_max_head_bytes = 100\nfloods = 3\n");
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].field, "limits.http_max_head_bytes");
    assert_eq!(problems[0].line, line_of(&text, "http_max_head_bytes"));
    assert!(
        problems[0].message.contains("from 1024 to 65536"),
        "{problems:?}"
    );
    assert_eq!(problems[1].field, "limits.floods");
    assert_eq!(problems[1].line, line_of(&text, "floods"));
    assert!(
        problems[1].message.contains("unknown limit"),
        "{problems:?}"
    );
}

#[test]
fn an_unknown_table_is_reported_with_its_name_and_line() {
    let text = format!("{VALID}\n[extras]\nx = 1\n");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "extras",
        line_of(&text, "[extras]"),
        "unknown field",
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported_with_its_field_and_line() {
    let text = VALID.replace("max_streams = 50", "max_streams = \"fifty\"");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.max_streams",
        line_of(&text, "max_streams = \"fifty\""),
        "invalid type",
    );
}

#[test]
fn a_missing_required_key_is_reported_with_the_line_of_its_table() {
    let text = VALID.replace("max_streams = 10\n", "");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.max_streams",
        nth_line_of(&text, "[[node]]", 2),
        "missing field",
    );
}

#[test]
fn a_wrong_type_inside_a_multi_line_list_names_the_list_and_the_entry_line() {
    let text = VALID.replace(
        "priority = [2, 1, 3]",
        "priority = [\n  2,\n  \"one\",\n  3,\n]",
    );
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.priority",
        line_of(&text, "\"one\""),
        "invalid type",
    );
}

#[test]
fn a_key_given_twice_is_reported_at_the_second() {
    let text = VALID.replace("mtu = 1400\n", "mtu = 1400\nmtu = 1500\n");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.mtu",
        line_of(&text, "mtu = 1500"),
        "duplicate key",
    );
}

#[test]
fn a_file_without_a_cluster_table_is_reported() {
    let text = "[timing]\nmiss_limit = 3\n";
    let problems = problems_of(text);
    assert_one_problem(&problems, "cluster", 1, "missing field `cluster`");
}

#[test]
fn two_nodes_with_the_same_ring_address_are_reported() {
    let text = VALID.replace("ring = \"127.0.0.1:7503\"", "ring = \"127.0.0.1:7501\"");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.ring",
        nth_line_of(&text, "ring = \"127.0.0.1:7501\"", 1),
        "127.0.0.1:7501 is already node 1's address",
    );
}

#[test]
fn two_nodes_with_the_same_http_address_are_reported() {
    let text = VALID.replace("http = \"127.0.0.1:8503\"", "http = \"127.0.0.1:8502\"");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.http",
        nth_line_of(&text, "http = \"127.0.0.1:8502\"", 1),
        "already node 2's address",
    );
}

#[test]
fn a_node_address_no_one_can_reach_is_reported() {
    let text = VALID.replace("ring = \"127.0.0.1:7503\"", "ring = \"0.0.0.0:7503\"");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.ring",
        line_of(&text, "0.0.0.0:7503"),
        "not an address other nodes can reach",
    );
}

#[test]
fn the_same_disk_twice_in_one_node_is_reported() {
    let text = VALID.replace("id = 2\nmount = \"/srv/d2\"", "id = 1\nmount = \"/srv/d2\"");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.disk.id",
        line_of(&text, "mount = \"/srv/d2\"") - 1,
        "disk 1 appears twice in node 2's disk list",
    );
}

#[test]
fn a_disk_shared_by_nodes_with_different_mount_points_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let file = load(&write_cluster(dir.path(), VALID)).unwrap();
    let one = file.node_settings(NodeId(1)).unwrap().proto.disks;
    let two = file.node_settings(NodeId(2)).unwrap().proto.disks;
    assert_eq!(one[0].id, two[0].id);
    assert_ne!(one[0].mount, two[0].mount);
}

#[test]
fn a_relative_disk_path_is_reported() {
    let text = VALID.replace(
        "probe = \"/srv/d2/.ringcast-probe\"",
        "probe = \"d2/probe\"",
    );
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.disk.probe",
        line_of(&text, "d2/probe"),
        "is not an absolute path",
    );
}

#[test]
fn a_missing_key_file_is_reported_naming_the_key_file() {
    let text = VALID.replace("cluster.key", "missing.key");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.key_file",
        line_of(&text, "key_file"),
        "cannot read the key file",
    );
    assert!(problems[0].message.contains("missing.key"), "{problems:?}");
}

#[test]
fn a_key_file_without_64_hex_characters_is_reported_naming_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), VALID);
    fs::write(dir.path().join("cluster.key"), "# key\nnot-a-key\n").unwrap();
    let Err(ConfigFileError::Invalid { problems, .. }) = load(&path) else {
        panic!("a bad key file was accepted");
    };
    assert_one_problem(
        &problems,
        "cluster.key_file",
        line_of(VALID, "key_file"),
        "cluster.key:2 does not hold 64 hexadecimal characters",
    );
}

#[test]
fn a_key_file_with_two_keys_gives_a_keyring_for_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), VALID);
    let other = "ff".repeat(32);
    fs::write(
        dir.path().join("cluster.key"),
        format!("5:{other}\n4:{KEY_HEX}\n"),
    )
    .unwrap();
    let file = load(&path).unwrap();
    let settings = file.node_settings(NodeId(1)).unwrap();
    let ids: Vec<KeyId> = settings.keys.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![KeyId(5), KeyId(4)]);
    assert_eq!(settings.keys[0].1, [0xff; 32]);
    let keyring = format!("{:?}", settings.keyring());
    assert!(keyring.contains("sending: KeyId(5)"), "{keyring}");
}

#[test]
fn a_key_file_with_three_keys_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), VALID);
    fs::write(
        dir.path().join("cluster.key"),
        format!("{KEY_HEX}\n{KEY_HEX}\n{KEY_HEX}\n"),
    )
    .unwrap();
    let Err(ConfigFileError::Invalid { problems, .. }) = load(&path) else {
        panic!("three keys were accepted");
    };
    assert_one_problem(
        &problems,
        "cluster.key_file",
        line_of(VALID, "key_file"),
        "third key",
    );
}

#[test]
fn an_empty_admin_token_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), VALID);
    fs::write(dir.path().join("admin.token"), "\n").unwrap();
    let Err(ConfigFileError::Invalid { problems, .. }) = load(&path) else {
        panic!("an empty token was accepted");
    };
    assert_one_problem(
        &problems,
        "cluster.admin_token_file",
        line_of(VALID, "admin_token_file"),
        "admin.token must hold one token",
    );
}

#[test]
fn a_zero_timing_value_is_reported_with_its_field_and_line() {
    let text = VALID.replace("status_interval_ms = 25", "status_interval_ms = 0");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "timing.status_interval_ms",
        line_of(&text, "status_interval_ms"),
        "must be greater than zero",
    );
}

#[test]
fn a_notification_time_shorter_than_two_notifications_is_reported() {
    let text = VALID.replace("notification_time_ms = 75", "notification_time_ms = 30");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "timing.notification_time_ms",
        line_of(&text, "notification_time_ms"),
        "notification_time_ms (30 ms) must be at least twice notify_interval_ms (25 ms)",
    );
}

#[test]
fn a_timing_value_of_more_than_an_hour_is_reported() {
    let text = VALID.replace("miss_limit = 3", "miss_limit = 3\njoin_retry_ms = 3600001");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "timing.join_retry_ms",
        line_of(&text, "join_retry_ms"),
        "longer than one hour",
    );
}

#[test]
fn a_zero_miss_limit_is_reported() {
    let text = VALID.replace("miss_limit = 3", "miss_limit = 0");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "timing.miss_limit",
        line_of(&text, "miss_limit"),
        "at least 1",
    );
}

#[test]
fn an_mtu_out_of_range_is_reported() {
    let text = VALID.replace("mtu = 1400", "mtu = 100");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "cluster.mtu",
        line_of(&text, "mtu = "),
        "outside 256..=65000",
    );
}

#[test]
fn a_node_config_the_protocol_rejects_is_reported_at_the_node() {
    let disks: String = (1..=300)
        .map(|i| format!("[[node.disk]]\nid = {i}\nmount = \"/d{i}\"\nprobe = \"/d{i}/p\"\n"))
        .collect();
    let text = format!("{VALID}\n{disks}");
    let problems = problems_of(&text);
    assert_one_problem(
        &problems,
        "node.disk",
        line_of(&text, "ring = \"127.0.0.1:7503\"") - 1,
        "node 3: the disk access list names 300 disks",
    );
}

#[test]
fn several_problems_in_one_file_are_all_reported_in_line_order() {
    let text = VALID
        .replace("239.255.42.1:7400", "10.1.2.3:7400")
        .replace("priority = [2, 1, 3]", "priority = [2, 1, 4]")
        .replace("status_interval_ms = 25", "status_interval_ms = 0")
        .replace("http = \"127.0.0.1:8503\"", "http = \"127.0.0.1:8501\"");
    let problems = problems_of(&text);
    let priority = line_of(&text, "priority = ");
    assert_problem(
        &problems,
        "cluster.bus",
        line_of(&text, "bus = "),
        "not a multicast",
    );
    assert_problem(&problems, "cluster.priority", priority, "names node 4");
    assert_problem(
        &problems,
        "cluster.priority",
        priority,
        "does not name node 3",
    );
    assert_problem(
        &problems,
        "timing.status_interval_ms",
        line_of(&text, "status_interval_ms"),
        "greater than zero",
    );
    assert_problem(
        &problems,
        "node.http",
        nth_line_of(&text, "127.0.0.1:8501", 1),
        "already node 1's address",
    );
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(problems.windows(2).all(|w| w[0].line <= w[1].line));
}

#[test]
fn the_error_lists_each_problem_as_file_line_field_message() {
    let dir = tempfile::tempdir().unwrap();
    let text = VALID.replace("priority = [2, 1, 3]", "priority = [2, 1]");
    let path = write_cluster(dir.path(), &text);
    let err = load(&path).unwrap_err().to_string();
    let line = line_of(&text, "priority = ");
    let expected = format!(
        "{}:{line}: cluster.priority: does not name node 3",
        path.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(
        err.starts_with(&format!("{} has 1 problem:", path.display())),
        "{err}"
    );
}

#[test]
fn a_missing_cluster_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere.toml");
    let err = load(&path).unwrap_err();
    assert!(matches!(err, ConfigFileError::Read { .. }));
    assert!(err.to_string().contains("nowhere.toml"), "{err}");
}

#[test]
fn a_toml_syntax_error_is_reported_with_its_line() {
    let text = VALID.replace("name = \"test\"", "name = \"test");
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, line_of(&text, "name = "), "{problems:#?}");
}

#[test]
fn local_cluster_writes_a_file_that_loads_with_distinct_ports() {
    let dir = tempfile::tempdir().unwrap();
    let path = local_cluster(dir.path(), 5, None).unwrap();
    let file = load(&path).unwrap();
    assert_eq!(file.node_ids(), (1..=5).map(NodeId).collect::<Vec<_>>());
    assert!(file.admin_token().is_some_and(|t| t.len() == 32));
    let mut ports = BTreeSet::new();
    let mut group = None;
    for id in file.node_ids() {
        let s = file.node_settings(id).unwrap();
        assert_eq!(s.proto.timing, Timing::lan());
        assert_eq!(s.proto.addrs.ring.ip(), Ipv4Addr::LOCALHOST);
        assert_eq!(s.proto.addrs.http.ip(), Ipv4Addr::LOCALHOST);
        assert!(ports.insert(s.proto.addrs.ring.port()));
        assert!(ports.insert(s.proto.addrs.http.port()));
        let BusMode::Multicast {
            group: g,
            interface,
            ttl,
            ..
        } = s.bus
        else {
            panic!("a local cluster is multicast");
        };
        assert_eq!((interface, ttl), (Ipv4Addr::LOCALHOST, 0));
        assert_eq!(&g.ip().octets()[..2], &[239, 255]);
        group = Some(g);
    }
    assert!(
        ports.insert(group.unwrap().port()),
        "the bus port is shared"
    );
}

#[cfg(unix)]
#[test]
fn local_cluster_keeps_the_key_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    local_cluster(dir.path(), 1, None).unwrap();
    for name in ["cluster.key", "admin.token"] {
        let mode = fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} is readable by others");
    }
}

#[test]
fn local_cluster_with_a_base_port_uses_consecutive_ports() {
    let dir = tempfile::tempdir().unwrap();
    let file = load(&local_cluster(dir.path(), 3, Some(20000)).unwrap()).unwrap();
    let two = file.node_settings(NodeId(2)).unwrap();
    assert_eq!(two.proto.bus.port(), 20000);
    assert_eq!(two.proto.addrs.ring, ring(20002));
    assert_eq!(
        file.http_addr(NodeId(3)),
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 20006)))
    );
}

#[test]
fn local_cluster_refuses_zero_nodes_and_ports_past_65535() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        local_cluster(dir.path(), 0, None),
        Err(ConfigFileError::NodeCount(0))
    ));
    assert!(matches!(
        local_cluster(dir.path(), 10, Some(65530)),
        Err(ConfigFileError::PortRange { .. })
    ));
}

/// A cluster file of `n` nodes with `disks` disks each, at `mtu`.
fn cluster_of(n: u32, disks: u32, mtu: usize) -> String {
    let ids: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let mut text = format!(
        "[cluster]\nid = 7\nname = \"big\"\nconfig_version = 1\nbus = \"239.255.42.1:7400\"\ninterface = \"127.0.0.1\"\n\
         ttl = 0\nloopback = true\nkey_file = \"cluster.key\"\nmtu = {mtu}\npriority = [{}]\n",
        ids.join(", ")
    );
    for i in 1..=n {
        text.push_str(&format!(
            "\n[[node]]\nid = {i}\nring = \"127.0.{}.{}:7500\"\nhttp = \"127.0.{}.{}:8500\"\n\
             max_streams = 100\nmax_bytes_per_s = 1000000000\n",
            i / 250,
            i % 250 + 1,
            i / 250,
            i % 250 + 1
        ));
        for d in 0..disks {
            let disk = i * 100_000 + d;
            text.push_str(&format!(
                "\n[[node.disk]]\nid = {disk}\nmount = \"/srv/d{disk}\"\nprobe = \"/srv/d{disk}/.p\"\n"
            ));
        }
    }
    text
}

#[test]
fn a_cluster_whose_state_the_protocol_cannot_carry_is_refused_with_the_figures() {
    // Notifications carry changes and a whole state is pulled in parts, so
    // 1,024 nodes fit at the default MTU; a node with 4,000 disks does not
    // (its disk reports exceed one message), and the check says how large,
    // how many frames, and what the protocol carries.
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), &cluster_of(1024, 2, 1400));
    assert!(load(&path).is_ok(), "{:?}", load(&path).err());
    let text = cluster_of(3, 4000, 1400);
    let problems = problems_of(&text);
    let p = problems
        .iter()
        .find(|p| p.field == "cluster.mtu")
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert_eq!(p.line, line_of(&text, "mtu = 1400"));
    for says in [
        "3 members",
        "12000 disk paths",
        "frames at MTU 1400",
        "at most 64 frames",
    ] {
        assert!(p.message.contains(says), "{says}: {}", p.message);
    }
}

#[test]
fn https_names_the_ca_and_every_nodes_certificate_and_key() {
    let with_ca = VALID.replace(
        "servers = [\"127.0.0.1:7000\"]",
        "servers = [\"127.0.0.1:7000\"]\ntls_ca = \"tls/ca.crt\"",
    );
    let node = |n: u32| format!("id = {n}\nring = \"127.0.0.1:750{n}\"");
    let with_certs = |text: &str, nodes: &[u32]| {
        let mut text = text.to_string();
        for n in nodes {
            text = text.replace(
                &node(*n),
                &format!(
                    "{}\ntls_cert = \"tls/node-{n}.crt\"\ntls_key = \"tls/node-{n}.key\"",
                    node(*n)
                ),
            );
        }
        text
    };
    // Every node with its files: the settings carry the resolved paths.
    let dir = tempfile::tempdir().unwrap();
    let path = write_cluster(dir.path(), &with_certs(&with_ca, &[1, 2, 3]));
    let settings = load(&path).unwrap().node_settings(NodeId(2)).unwrap();
    let tls = settings.tls.expect("node 2 serves HTTPS");
    assert_eq!(tls.ca, dir.path().join("tls/ca.crt"));
    assert_eq!(tls.cert, dir.path().join("tls/node-2.crt"));
    // The CA without node 3's files.
    let text = with_certs(&with_ca, &[1, 2]);
    assert_one_problem(
        &problems_of(&text),
        "node.tls_cert",
        line_of(&text, "127.0.0.1:7503") - 1,
        "give node 3 a tls_cert and tls_key",
    );
    // A node's files without the CA.
    let text = with_certs(VALID, &[1]);
    assert_one_problem(
        &problems_of(&text),
        "node.tls_cert",
        line_of(&text, "tls_cert"),
        "no tls_ca",
    );
    // A certificate without its key.
    let text = with_certs(&with_ca, &[1, 2, 3]).replace("tls_key = \"tls/node-3.key\"\n", "");
    assert_problem(
        &problems_of(&text),
        "node.tls_cert",
        line_of(&text, "tls/node-3.crt"),
        "give its tls_key too",
    );
}
