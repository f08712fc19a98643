//! Live reload through the real binary: a cluster fed by the configuration
//! service follows a changed cluster file with no restart and no signal.
//! A new priority list makes its new top node supervisor by preemption; a
//! node the file no longer defines leaves; no node is declared failed.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{isolate_network, replace_file, Cluster, Reap, Spec, BIN, LIMIT};
use serde_json::Value;

/// Supervisor, ring and the ids listed up, as node `id` sees them.
fn seen(c: &Cluster, id: u32) -> Option<(u64, Vec<u64>, Vec<u64>)> {
    let v: Value = c.view(id)?;
    let ring = v["ring"]
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let up = v["nodes"]
        .as_array()?
        .iter()
        .filter(|n| n["status"] == "up")
        .filter_map(|n| n["id"].as_u64())
        .collect();
    Some((v["supervisor"].as_u64()?, ring, up))
}

/// The life number node `id` reports for itself (it grows on a restart).
fn life(c: &Cluster, id: u32) -> u64 {
    c.view(id)
        .and_then(|v| {
            let nodes = v["nodes"].as_array()?.clone();
            nodes.iter().find(|n| n["id"] == id)?["incarnation"].as_u64()
        })
        .unwrap_or_else(|| panic!("node {id} reports no life\n{}", c.describe()))
}

#[test]
fn a_changed_priority_list_reaches_running_nodes_through_the_configuration_service() {
    isolate_network();
    let mut c = Cluster::write(&Spec::new(3));
    let listen = format!("127.0.0.1:{}", common::free_port());
    let service = Command::new(BIN)
        .args(["config", "serve"])
        .arg(&c.file)
        .args(["--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _service = Reap(vec![service]);
    for id in 1..=3u32 {
        let log = std::fs::File::create(c.dir.join(format!("node-{id}.log"))).unwrap();
        let child = Command::new(BIN)
            .args([
                "node",
                "--config-url",
                &format!("http://{listen}"),
                "--cache-dir",
            ])
            .arg(c.dir.join(format!("cache-{id}")))
            .args(["--node", &id.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        c.children.insert(id, child);
    }
    c.wait_agree(1, &[1, 2, 3]);
    let lives: Vec<u64> = (1..=3).map(|id| life(&c, id)).collect();
    let pids: Vec<u32> = (1..=3).map(|id| c.children[&id].id()).collect();

    // What a node runs is shown only to an operator, and never its secrets.
    let url = format!("{}/v1/config", c.url(1));
    match c.agent.get(&url).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("GET /v1/config without the admin token: {other:?}"),
    }
    let token = std::fs::read_to_string(c.dir.join("admin.token")).unwrap();
    let shown = c
        .agent
        .get(&url)
        .set("Authorization", &format!("Bearer {}", token.trim()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let key = std::fs::read_to_string(c.dir.join("cluster.key")).unwrap();
    assert!(shown.contains("\"priority\""), "{shown}");
    assert!(
        !shown.contains(token.trim()) && !shown.contains(key.trim()),
        "GET /v1/config shows a secret: {shown}"
    );

    // `config check --against-running` says beforehand what a reload can do.
    let text = std::fs::read_to_string(&c.file).unwrap();
    assert!(text.contains("priority = [1, 2, 3]"), "{text}");
    let candidate = c.dir.join("candidate.toml");
    let check = |text: &str| {
        std::fs::write(&candidate, text).unwrap();
        let out = common::ringcast(&[
            "config",
            "check",
            candidate.to_str().unwrap(),
            "--against-running",
        ]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let (ok, said) = check(&text);
    assert!(ok && said.matches("runs this file").count() == 3, "{said}");
    let slower = text
        .replace("status_interval_ms = 20", "status_interval_ms = 30")
        .replace("config_version = 1", "config_version = 2");
    assert_ne!(slower, text);
    let (ok, said) = check(&slower);
    assert!(
        !ok,
        "a timing change passed the check against running nodes: {said}"
    );
    for id in 1..=3 {
        assert!(
            said.contains(&format!("node {id}: timing differ from what it runs: they take effect only when the node restarts")),
            "{said}"
        );
    }
    let unbumped = text.replace("priority = [1, 2, 3]", "priority = [3, 1, 2]");
    let (ok, said) = check(&unbumped);
    assert!(!ok && said.contains("config_version is still 1"), "{said}");
    let text = unbumped.replace("config_version = 1", "config_version = 2");
    let (ok, said) = check(&text);
    assert!(
        ok && said.matches("applies every change at once").count() == 3,
        "{said}"
    );

    // Node 3 to the top of the list. Nobody is signalled: each node reads
    // the service's version and reloads.
    replace_file(&c.file, &text);
    c.wait("node 3 supervises a ring in the new order", |c| {
        (1..=3).all(|id| seen(c, id) == Some((3, vec![3, 1, 2], vec![1, 2, 3])))
    });
    for id in 1..=3u32 {
        let status = c.children.get_mut(&id).unwrap().try_wait().unwrap();
        assert_eq!(status, None, "node {id} exited");
        assert_eq!(
            c.children[&id].id(),
            pids[id as usize - 1],
            "node {id} was restarted"
        );
        assert_eq!(
            life(&c, id),
            lives[id as usize - 1],
            "node {id} started a new life"
        );
        assert_eq!(c.metric(id, "ringcast_config_version"), 2, "node {id}");
        assert!(
            c.metric(id, "ringcast_config_reloads_total{result=\"applied\"}") >= 1,
            "node {id} counted no applied reload"
        );
        let failed = c
            .view(id)
            .and_then(|v| v["nodes"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|n| n["status"] == "failed")
            .count();
        assert_eq!(failed, 0, "node {id} lists a failed node\n{}", c.describe());
    }

    // Node 2 out of the file: it leaves, and the others list it left.
    let text = std::fs::read_to_string(&c.file).unwrap();
    let start = text.find("[[node]]\nid = 2\n").expect("node 2's table");
    let end = text[start + 1..]
        .find("[[node]]")
        .map_or(text.len(), |i| start + 1 + i);
    let text = format!("{}{}", &text[..start], &text[end..])
        .replace("priority = [3, 1, 2]", "priority = [3, 1]")
        .replace("config_version = 2", "config_version = 3");
    replace_file(&c.file, &text);
    let mut node2 = c.children.remove(&2).unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = node2.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 did not leave when the file dropped it\n{}",
            c.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "node 2 exited {status}");
    c.wait("the others list node 2 left, on a ring of 3 and 1", |c| {
        [1, 3].iter().all(|id| {
            c.status_of(*id, 2).as_deref() == Some("left")
                && seen(c, *id).is_some_and(|(sup, ring, _)| sup == 3 && ring == [3, 1])
        })
    });
    for id in [1, 3] {
        assert_eq!(
            life(&c, id),
            lives[id as usize - 1],
            "node {id} started a new life"
        );
    }
}
