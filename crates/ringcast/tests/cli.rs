//! The command line through the real binary: `config check` on broken files,
//! `status --json`, `events`, `up` with Ctrl-C, and nodes fed by `config serve`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{isolate_network, ringcast, Cluster, Spec, BIN, LIMIT};

fn check(text: &str) -> (bool, String) {
    let c = Cluster::write(&Spec::new(3));
    std::fs::write(&c.file, text).unwrap();
    let out = ringcast(&["config", "check", c.file.to_str().unwrap()]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn base_text() -> String {
    let c = Cluster::write(&Spec::new(3));
    std::fs::read_to_string(&c.file).unwrap()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

#[test]
fn config_check_accepts_a_good_file() {
    let c = Cluster::write(&Spec::new(3));
    let out = ringcast(&["config", "check", c.file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (3 nodes"));
}

#[test]
fn config_check_names_the_line_and_field_of_each_broken_file() {
    let good = base_text();
    // (what, broken text, field, needle for the expected line)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "duplicate id",
            good.replacen("id = 3\n", "id = 2\n", 1),
            "node.id",
            "",
        ),
        (
            "priority missing a node",
            good.replace("priority = [1, 2, 3]", "priority = [1, 2]"),
            "cluster.priority",
            "priority = [1, 2]",
        ),
        (
            "non-multicast bus",
            {
                let bus = good
                    .lines()
                    .find(|l| l.starts_with("bus = "))
                    .unwrap()
                    .to_string();
                good.replace(&bus, "bus = \"10.1.2.3:7400\"")
            },
            "cluster.bus",
            "bus = \"10.1.2.3:7400\"",
        ),
        (
            "unknown key",
            good.replace("ttl = 0\n", "ttl = 0\nmulticast_hops = 2\n"),
            "cluster.multicast_hops",
            "multicast_hops",
        ),
    ];
    for (what, text, field, needle) in cases {
        let (ok, stderr) = check(&text);
        assert!(!ok, "{what}: accepted");
        assert!(stderr.contains(field), "{what}: {stderr}");
        let line = if needle.is_empty() {
            // The second definition of node 2.
            text.lines()
                .enumerate()
                .filter(|(_, l)| *l == "id = 2")
                .nth(1)
                .map(|(i, _)| i + 1)
                .unwrap()
        } else {
            line_of(&text, needle)
        };
        assert!(
            stderr.contains(&format!("cluster.toml:{line}: {field}")),
            "{what}: expected line {line}: {stderr}"
        );
    }
}

#[test]
fn status_json_gives_supervisor_epoch_and_every_node() {
    isolate_network();
    let c = Cluster::start(&Spec::new(3));
    c.wait_agree(1, &[1, 2, 3]);
    let out = ringcast(&["status", "--json", "--config", c.file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["supervisor"], 1);
    assert!(v["epoch"].as_u64().unwrap() >= 1);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["status"], "up");
        let role = if n["id"] == 1 { "supervisor" } else { "member" };
        assert_eq!(n["role"], role);
    }
    let table = ringcast(&["status", "--url", &c.url(2)]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("supervisor n1") && text.contains("ring: n1 -> n2 -> n3"),
        "{text}"
    );
}

#[test]
fn status_of_a_cluster_that_is_not_running_says_so() {
    let c = Cluster::write(&Spec::new(2));
    let out = ringcast(&["status", "--config", c.file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node of the cluster answered"));
}

#[test]
fn events_follow_a_failure_as_it_happens() {
    isolate_network();
    let mut c = Cluster::start(&Spec::new(3));
    c.wait_agree(1, &[1, 2, 3]);
    let mut follower = Command::new(BIN)
        .args(["events", "--json", "--url", &c.url(1)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let _follower = common::Reap(vec![follower]);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The stream starts with what already happened: n3 joined.
    let deadline = Instant::now() + LIMIT;
    let mut seen = Vec::new();
    let saw = |rx: &mpsc::Receiver<String>, kind: &str, node: u64, seen: &mut Vec<String>| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {kind} event for n{node}; saw {seen:#?}"));
        let e: serde_json::Value = serde_json::from_str(&line).unwrap();
        seen.push(line);
        if e["kind"] == kind && e["node"] == node {
            return;
        }
    };
    saw(&rx, "joined", 3, &mut seen);
    c.kill(3);
    saw(&rx, "failed", 3, &mut seen);
}

#[test]
fn up_starts_a_local_cluster_and_ctrl_c_makes_every_node_leave() {
    isolate_network();
    let dir = std::env::temp_dir().join(format!("ringcast-up-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut up = Command::new(BIN)
        .args(["up", "--nodes", "3", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    // `node <id> <listener> service <service address>`, then
    // `cluster <cluster address>`: every address a player may be given.
    let mut urls = Vec::new();
    for id in 1..=3 {
        let line = lines.next().unwrap().unwrap();
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words.len(), 5, "{line}");
        assert_eq!(words[..2], ["node", &id.to_string()], "{line}");
        assert!(words[2].starts_with("http://127.0.0.1:"), "{line}");
        assert_eq!(words[3], "service", "{line}");
        assert!(words[4].starts_with("http://127."), "{line}");
        assert_ne!(words[2], words[4], "{line}");
        urls.push(words[2].to_string());
        urls.push(words[4].to_string());
    }
    let line = lines.next().unwrap().unwrap();
    let (head, address) = line.split_once(' ').unwrap();
    assert_eq!(head, "cluster", "{line}");
    assert!(address.starts_with("http://127."), "{line}");
    urls.push(address.to_string());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(500))
        .build();
    let formed = || {
        urls.iter().all(|u| {
            agent
                .get(&format!("{u}/v1/cluster"))
                .call()
                .ok()
                .and_then(|r| r.into_json::<serde_json::Value>().ok())
                .is_some_and(|v| {
                    v["supervisor"] == 1 && v["ring"].as_array().is_some_and(|r| r.len() == 3)
                })
        })
    };
    let start = Instant::now();
    while !formed() {
        assert!(start.elapsed() < LIMIT, "the local cluster did not form");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = up.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < LIMIT, "up did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut up.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("every node leaves"), "{stderr}");
    // Every node logged that it left the cluster, and none answers any more.
    for id in 1..=3 {
        let log = std::fs::read_to_string(dir.join(format!("node-{id}.log"))).unwrap();
        assert!(log.contains("left the cluster"), "node {id}: {log}");
    }
    assert!(urls
        .iter()
        .all(|u| agent.get(&format!("{u}/healthz")).call().is_err()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nodes_fed_by_the_configuration_service_form_a_cluster() {
    isolate_network();
    let c = Cluster::write(&Spec::new(3));
    let listen = format!("127.0.0.1:{}", common::free_port());
    let svc = Command::new(BIN)
        .args(["config", "serve"])
        .arg(&c.file)
        .args(["--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _svc = common::Reap(vec![svc]);
    let cache = c.dir.join("cache");
    let nodes: Vec<_> = (1..=3)
        .map(|id| {
            Command::new(BIN)
                .args([
                    "node",
                    "--config-url",
                    &format!("http://{listen}"),
                    "--cache-dir",
                ])
                .arg(&cache)
                .args(["--node", &id.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let _nodes = common::Reap(nodes);
    c.wait("the served nodes form one cluster", |c| {
        c.agree_among(&[1, 2, 3], 1, &[1, 2, 3])
    });
    assert!(
        cache.join("node-1.json").exists(),
        "the configuration is cached"
    );
}

#[test]
fn bad_command_lines_get_one_clear_sentence() {
    let out = ringcast(&["node", "--node", "-3", "--config", "/nonexistent.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--node must be a positive node id"), "{err}");
    let out = ringcast(&["node", "--node", "1", "--config", "/nonexistent.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent.toml"), "{err}");
    let out = ringcast(&["up", "--nodes", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes must be between 1 and 64"));
}

#[test]
fn a_short_soak_counts_declarations_takeovers_and_streams_on_a_starved_machine() {
    // `bench soak` runs real nodes, real `ringcast play` streams and
    // a busy thread; its report counts from the nodes' own metrics. The
    // 10-minute soak and its figures are a benchmark (README), not a test.
    isolate_network();
    let out = ringcast(&[
        "bench",
        "soak",
        "--minutes",
        "0.1",
        "--nodes",
        "3",
        "--streams",
        "2",
        "--hog-threads",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["minutes"], 0.1);
    assert_eq!(report["nodes"], 3);
    assert_eq!(report["hog_threads"], 1);
    assert_eq!(report["streams_lost"], 0, "{report:#}\n{stderr}");
    assert!(
        report["streams_completed"].as_u64().unwrap() >= 2,
        "each stream started ran to its end: {report:#}"
    );
    for key in ["false_declarations", "false_takeovers"] {
        assert!(report[key].is_u64(), "{key}: {report:#}");
    }
}
