//! Real node processes on a real bus: formation, takeover, failure detection,
//! join, preemption, leave, the unicast bus and a wrong key.

mod common;

use common::{isolate_network, Cluster, Spec};

#[test]
fn five_nodes_form_one_cluster_with_the_highest_priority_as_supervisor() {
    isolate_network();
    let c = Cluster::start(&Spec::new(5));
    c.wait_agree(1, &[1, 2, 3, 4, 5]);
    let v = c.view(3).unwrap();
    assert_eq!(v["node_role"], "member");
    let roles: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["supervisor", "member", "member", "member", "member"]
    );
    assert_eq!(c.view(1).unwrap()["node_role"], "supervisor");
}

#[test]
fn sigkill_of_the_supervisor_hands_over_to_the_next_priority_with_a_higher_epoch() {
    isolate_network();
    let mut c = Cluster::start(&Spec::new(5));
    c.wait_agree(1, &[1, 2, 3, 4, 5]);
    let epoch = c.epoch(2);
    c.kill(1);
    c.wait_agree(2, &[2, 3, 4, 5]);
    assert!(c.epoch(3) > epoch, "the epoch grew");
    assert_eq!(c.status_of(4, 1).as_deref(), Some("failed"));
}

#[test]
fn sigkill_of_a_member_marks_it_failed_everywhere_and_closes_the_ring() {
    isolate_network();
    let mut c = Cluster::start(&Spec::new(5));
    c.wait_agree(1, &[1, 2, 3, 4, 5]);
    c.kill(3);
    c.wait_agree(1, &[1, 2, 4, 5]);
    for id in c.running() {
        assert_eq!(c.status_of(id, 3).as_deref(), Some("failed"), "at n{id}");
    }
    let v = c.view(4).unwrap();
    assert_eq!(v["upstream"], 2, "the ring closed around n3");
    let m = c.metrics(4);
    let declared = m
        .lines()
        .find_map(|l| l.strip_prefix("ringcast_failure_declarations_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(declared >= Some(1), "n4 declared its upstream: {m}");
}

#[test]
fn a_new_node_joins_and_a_higher_priority_node_preempts() {
    isolate_network();
    let mut c = Cluster::write(&Spec::new(5));
    for id in 2..=4 {
        c.spawn(id);
    }
    c.wait_agree(2, &[2, 3, 4]);
    c.spawn(5);
    c.wait_agree(2, &[2, 3, 4, 5]);
    c.spawn(1);
    c.wait_agree(1, &[1, 2, 3, 4, 5]);
}

#[test]
fn a_higher_priority_node_does_not_preempt_when_preemption_is_off() {
    isolate_network();
    let mut spec = Spec::new(4);
    spec.preempt = false;
    // Slower timers: this test also asserts no takeover ever happens, which a
    // starved machine could otherwise cause at 20 ms.
    spec.interval_ms = 100;
    let mut c = Cluster::write(&spec);
    // Without preemption the first supervisor stays: start n2 alone first.
    c.spawn(2);
    c.wait_agree(2, &[2]);
    c.spawn(3);
    c.spawn(4);
    c.wait_agree(2, &[2, 3, 4]);
    c.spawn(1);
    c.wait_agree(2, &[1, 2, 3, 4]);
    // It stays that way: n1 is a member for good.
    let epoch = c.epoch(1);
    c.wait("n1 has sent status around the ring a while", |c| {
        c.metrics(1).lines().any(|l| {
            l.starts_with("ringcast_messages_sent_total{channel=\"ring\",kind=\"status\"}")
                && l.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()) > Some(50)
        })
    });
    assert!(c.agrees(2, &[1, 2, 3, 4]));
    assert_eq!(c.epoch(1), epoch);
}

#[test]
fn a_member_and_then_the_supervisor_leave_gracefully() {
    isolate_network();
    let mut c = Cluster::start(&Spec::new(4));
    c.wait_agree(1, &[1, 2, 3, 4]);
    assert!(c.terminate(3).success());
    c.wait_agree(1, &[1, 2, 4]);
    assert_eq!(c.status_of(2, 3).as_deref(), Some("left"));
    // The supervisor hands over: it is marked left, not failed.
    assert!(c.terminate(1).success());
    c.wait_agree(2, &[2, 4]);
    assert_eq!(c.status_of(4, 1).as_deref(), Some("left"));
}

#[test]
fn the_unicast_bus_forms_and_takes_over_like_multicast() {
    isolate_network();
    let mut spec = Spec::new(4);
    spec.unicast = true;
    let mut c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3, 4]);
    c.kill(1);
    c.wait_agree(2, &[2, 3, 4]);
}

#[test]
fn a_node_with_the_wrong_key_cannot_join_or_disturb_the_cluster() {
    isolate_network();
    let mut c = Cluster::write(&Spec::new(4));
    for id in 1..=3 {
        c.spawn(id);
    }
    c.wait_agree(1, &[1, 2, 3]);
    // Node 4 runs with another key.
    let other = c.dir.join("other.toml");
    let text = std::fs::read_to_string(&c.file)
        .unwrap()
        .replace("cluster.key", "other.key");
    std::fs::write(&other, text).unwrap();
    std::fs::write(c.dir.join("other.key"), common::key_hex(0x22)).unwrap();
    c.spawn_with(4, &other);
    c.wait("the others reject n4's frames", |c| {
        // Every reason is listed from the start: the count must grow.
        c.metrics(1).lines().any(|l| {
            l.strip_prefix("ringcast_frames_rejected_total{reason=\"bad_tag\"} ")
                .and_then(|n| n.parse::<u64>().ok())
                > Some(0)
        })
    });
    // n4 alone is its own supervisor; the others never list it.
    c.wait("n4 supervises itself alone", |c| {
        c.view(4)
            .is_some_and(|v| v["supervisor"] == 4 && v["nodes"].as_array().unwrap().len() == 1)
    });
    let running: Vec<u32> = vec![1, 2, 3];
    for id in running {
        let v = c.view(id).unwrap();
        assert_eq!(v["supervisor"], 1);
        assert!(v["nodes"].as_array().unwrap().iter().all(|n| n["id"] != 4));
    }
}

#[test]
fn leave_over_http_needs_the_admin_token() {
    isolate_network();
    let mut c = Cluster::start(&Spec::new(3));
    c.wait_agree(1, &[1, 2, 3]);
    let url = format!("{}/v1/leave", c.url(3));
    let denied = c.agent.post(&url).call();
    assert!(
        matches!(denied, Err(ureq::Error::Status(401, _))),
        "{denied:?}"
    );
    let wrong = c
        .agent
        .post(&url)
        .set("Authorization", "Bearer nope")
        .call();
    assert!(matches!(wrong, Err(ureq::Error::Status(401, _))));
    let ok = c
        .agent
        .post(&url)
        .set("Authorization", "Bearer test-admin-token")
        .call()
        .unwrap();
    assert_eq!(ok.status(), 202);
    c.children.remove(&3).map(|mut ch| ch.wait());
    c.wait_agree(1, &[1, 2]);
    assert_eq!(c.status_of(1, 3).as_deref(), Some("left"));
}

/// `curl` of `url` from source address `from` with `token`: the status and
/// the Retry-After header, if any.
fn admin_get(from: &str, url: &str, token: &str) -> (u16, Option<String>) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--interface", from, "-o", "/dev/null", "-D", "-"])
        .args(["-H", &format!("Authorization: Bearer {token}"), url])
        .output()
        .expect("curl is installed by scripts/install-test-deps");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let retry = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_string())
    });
    (status, retry)
}

#[test]
fn guessing_the_admin_token_is_bounded_per_address() {
    isolate_network();
    let c = Cluster::start(&Spec::new(2));
    c.wait_agree(1, &[1, 2]);
    let url = format!("{}/v1/config", c.url(1));
    for guess in 0..10 {
        assert_eq!(
            admin_get("127.0.0.9", &url, &format!("guess-{guess}")).0,
            401
        );
    }
    // The budget is spent: even the right token is not looked at.
    let (status, retry) = admin_get("127.0.0.9", &url, "test-admin-token");
    assert_eq!(status, 429);
    assert!(retry.is_some(), "Retry-After is given");
    // Another address is not held back by the first one's guesses.
    assert_eq!(admin_get("127.0.0.10", &url, "test-admin-token").0, 200);
    // The budget refills (one attempt a second): the right token works again.
    c.wait("the guesser's budget refills", |_| {
        admin_get("127.0.0.9", &url, "test-admin-token").0 == 200
    });
}

#[test]
fn a_restarted_node_starts_above_its_last_life_even_if_the_clock_went_back() {
    // Replay windows refuse lower lives: a node restarted below its last
    // one would be deaf. The node keeps its last life beside the cluster file.
    isolate_network();
    let mut c = Cluster::write(&Spec::new(3));
    let far = 9_000_000_000_000u64; // far above any wall-clock millisecond today
    std::fs::create_dir_all(c.dir.join("state")).unwrap();
    std::fs::write(c.dir.join("state").join("node-2.life"), format!("{far}\n")).unwrap();
    for id in 1..=3 {
        c.spawn(id);
    }
    c.wait_agree(1, &[1, 2, 3]);
    let life = |c: &Cluster| {
        c.view(1).unwrap()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == 2)
            .and_then(|n| n["incarnation"].as_u64())
            .unwrap()
    };
    assert_eq!(life(&c), far + 1);
    // A restart goes above that again, and the cluster hears it.
    c.kill(2);
    c.spawn(2);
    c.wait("n2 is back with a newer life", |c| {
        c.agrees(1, &[1, 2, 3]) && life(c) == far + 2
    });
}
