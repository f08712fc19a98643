//! Claim 13 on the wire, on one machine: players that know nothing of
//! ringcast enter by a service address or the cluster address (never a
//! process's own listener), and their downloads finish byte-exact through
//! the SIGKILL of the node they entered by, the node serving them, the
//! supervisor, and the supervisor that was also their entry. The same cases
//! with HLS players and addresses that move between hosts run in network
//! namespaces (`players_netns.rs`).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{isolate_network, random_bytes, start_play, wait_len, Cluster, Reap, Spec, LIMIT};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// n1 supervises and has no disk, n2 has no disk (an entry), n3 and n4
/// share disk 1 with the title.
fn cluster(title: &[u8]) -> Cluster {
    let mut spec = Spec::new(4);
    spec.disks = vec![(1, vec![3, 4])];
    let c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3, 4]);
    c.put_title(1, "movie.mp4", title);
    c
}

/// The holder of every service address under node `observer`'s map.
fn holders(c: &Cluster, observer: u32) -> Option<Vec<(Option<u64>, Option<u64>)>> {
    let body: Value = c
        .agent
        .get(&format!("{}/v1/addresses", c.url(observer)))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    Some(
        body["addresses"]
            .as_array()?
            .iter()
            .map(|a| (a["owner"].as_u64(), a["holder"].as_u64()))
            .collect(),
    )
}

/// Waits until `base` (a service or cluster address) places the title.
fn wait_playable(c: &Cluster, base: &str) {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(2))
        .build();
    let start = Instant::now();
    loop {
        let status = match agent.get(&format!("{base}/v1/play/movie.mp4")).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(_) => 0,
        };
        if status == 307 {
            return;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{base} never placed the title (last answer {status})\n{}",
            c.describe()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn curl(url: &str, out: &std::path::Path) -> Child {
    Command::new("curl")
        .args(["-sS", "-L", "--retry", "10", "--retry-all-errors"])
        .args(["--retry-delay", "1", "-C", "-", "--limit-rate", "2M", "-o"])
        .arg(out)
        .arg(url)
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl is installed by scripts/install-test-deps")
}

/// Whom a case kills.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// The node whose service address the player entered by.
    Entry,
    /// The node serving the stream.
    Server,
    /// The supervisor.
    Supervisor,
}

/// Plays the title with curl and `ringcast play` from `entry` (n2's service
/// address, or the cluster address), kills `victim` once both have a
/// quarter of it, and checks both finish byte-exact.
fn survives(entry_is_cluster: bool, victim: Victim) {
    isolate_network();
    let movie = random_bytes(4 << 20, 29);
    let mut c = cluster(&movie);
    let base = if entry_is_cluster {
        format!("http://{}", c.address)
    } else {
        format!("http://{}", c.service[&2])
    };
    c.wait(
        "n2's service address and the cluster address are held",
        |c| {
            holders(c, 2)
                .is_some_and(|h| h.contains(&(Some(2), Some(2))) && h.contains(&(None, Some(1))))
        },
    );
    wait_playable(&c, &base);
    let url = format!("{base}/v1/play/movie.mp4");
    let (curl_out, play_out) = (c.dir.join("curl.mp4"), c.dir.join("play.mp4"));
    let mut players = Reap(vec![
        curl(&url, &curl_out),
        start_play(&url, 2_000_000, &play_out),
    ]);
    wait_len(&curl_out, 1 << 20);
    wait_len(&play_out, 1 << 20);
    let serving = [3, 4].into_iter().find(|n| {
        c.metrics(*n)
            .lines()
            .any(|l| l.starts_with("ringcast_streams_active ") && !l.ends_with(" 0"))
    });
    let killed = match victim {
        Victim::Entry if entry_is_cluster => 1,
        Victim::Entry => 2,
        Victim::Server => serving.expect("n3 or n4 serves the title"),
        Victim::Supervisor => 1,
    };
    c.kill(killed);
    for (child, out, name) in [(0, &curl_out, "curl"), (1, &play_out, "ringcast play")] {
        let status = players.0[child].wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = players.0[child].stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        assert!(
            status.success(),
            "{name} failed after n{killed} died ({victim:?}): {err}"
        );
        let got = std::fs::read(out).unwrap();
        assert_eq!(got.len(), movie.len(), "{name}'s length");
        assert_eq!(
            Sha256::digest(&got),
            Sha256::digest(&movie),
            "SHA-256 of {name}'s download"
        );
    }
    // The dead node's address is held by a live node again.
    c.wait(
        "the dead node's service address moved to a live node",
        |c| {
            holders(c, 3).is_some_and(|h| {
                h.iter().any(|(owner, holder)| {
                    *owner == Some(u64::from(killed))
                        && holder.is_some_and(|n| n != u64::from(killed))
                })
            })
        },
    );
}

#[test]
fn downloads_survive_the_death_of_the_node_they_entered_by() {
    survives(false, Victim::Entry);
}

#[test]
fn downloads_survive_the_death_of_the_node_serving_them() {
    survives(false, Victim::Server);
}

#[test]
fn downloads_survive_the_death_of_the_supervisor() {
    survives(false, Victim::Supervisor);
}

#[test]
fn downloads_survive_the_death_of_the_supervisor_that_held_their_entry_the_cluster_address() {
    survives(true, Victim::Entry);
}

#[test]
fn a_service_address_serves_again_once_its_node_restarts() {
    isolate_network();
    let movie = random_bytes(1 << 20, 31);
    let mut c = cluster(&movie);
    c.kill(3);
    c.wait("n3's address moved to n4", |c| {
        holders(c, 2).is_some_and(|h| h.contains(&(Some(3), Some(4))))
    });
    // The address answers while its node is dead: n4 holds it.
    let base = format!("http://{}", c.service[&3]);
    let healthz = |c: &Cluster| c.agent.get(&format!("{base}/healthz")).call().is_ok();
    c.wait("n3's address answers, held by n4", healthz);
    c.spawn(3);
    c.wait("n3 holds its own address again", |c| {
        holders(c, 3).is_some_and(|h| h.contains(&(Some(3), Some(3))))
    });
    c.wait("n3's address answers again", healthz);
    wait_playable(&c, &base);
}
