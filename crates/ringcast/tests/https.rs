//! HTTPS on every node (SECURITY.md): the cluster file names the CA and
//! each node's certificate, which `ringcast credentials init` makes valid
//! for every service address. An unmodified `curl --cacert` plays a title
//! over HTTPS through a SIGKILL of the serving node, byte-exact.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{isolate_network, random_bytes, Cluster, Reap, Spec, BIN, LIMIT};
use sha2::{Digest, Sha256};

/// `curl --cacert ca` of `url` with `args`.
fn curl(ca: &Path, url: &str, args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed by scripts/install-test-deps")
}

#[test]
fn curl_plays_over_https_byte_exact_through_a_sigkill_of_the_serving_node() {
    isolate_network();
    let mut spec = Spec::new(3);
    spec.disks = vec![(1, vec![2, 3])];
    spec.https = true;
    let mut c = Cluster::start(&spec);
    let ca = c.ca.clone().expect("an HTTPS cluster has a CA");
    // Large enough that the socket's buffers cannot hold the rest when the
    // serving node dies: the player must resume elsewhere.
    let movie = random_bytes(24 << 20, 21);
    c.put_title(1, "movie.mp4", &movie);
    let play = format!("https://{}/v1/play/movie.mp4", c.http[&1]);

    // Placement answers over HTTPS with an HTTPS redirect to a service
    // address, under the node certificate's name for it.
    let start = Instant::now();
    let location = loop {
        let out = curl(
            &ca,
            &play,
            &["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"],
        );
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(url) = said.strip_prefix("307 ") {
            break url.to_string();
        }
        assert!(
            start.elapsed() < LIMIT,
            "never placed over HTTPS: {said} {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(location.starts_with("https://"), "{location}");
    assert!(
        c.service
            .values()
            .any(|s| location.contains(&s.to_string())),
        "the redirect names a service address: {location}"
    );
    // Nothing is served in clear on a node's port.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{}/v1/cluster", c.http[&1]))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");

    let out = c.dir.join("curl.mp4");
    let player = Command::new("curl")
        .args(["-sS", "-L", "--cacert"])
        .arg(&ca)
        .args(["--retry", "10", "--retry-all-errors", "--retry-delay", "1"])
        .args(["-C", "-", "--limit-rate", "4M", "-o"])
        .arg(&out)
        .arg(&play)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Reap(vec![player]);
    let start = Instant::now();
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 1 << 20 {
        if start.elapsed() > LIMIT {
            let mut player = guard.0.remove(0);
            let _ = player.kill();
            let said = player.wait_with_output().unwrap();
            panic!(
                "curl does not progress over HTTPS: {}",
                String::from_utf8_lossy(&said.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The serving node is the one that served bytes (the probe above read
    // none): TLS copies through the socket's buffers, so the response may
    // no longer be active while the player is still behind.
    let serving = [2, 3].into_iter().find(|n| {
        let metrics = curl(&ca, &format!("https://{}/metrics", c.http[n]), &[]);
        String::from_utf8_lossy(&metrics.stdout).lines().any(|l| {
            l.strip_prefix("ringcast_served_bytes_total ")
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
    });
    let victim = serving.expect("n2 or n3 serves the stream");
    c.kill(victim);
    let survivor = if victim == 2 { 3 } else { 2 };
    let status = guard.0[0].wait().unwrap();
    assert!(status.success(), "curl failed");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), movie.len());
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&movie),
        "SHA-256 of curl's download over HTTPS"
    );
    // The rest came from the other node that reaches the disk.
    let metrics = curl(&ca, &format!("https://{}/metrics", c.http[&survivor]), &[]);
    let served = String::from_utf8_lossy(&metrics.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("ringcast_served_bytes_total ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(
        served > 0.0,
        "n{survivor} served the rest after n{victim} died"
    );

    // The operator's tools speak HTTPS too: from the cluster file's tls_ca,
    // or --cacert.
    let status = Command::new(BIN)
        .args(["status", "--json", "--config"])
        .arg(&c.file)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let view: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(view["supervisor"].is_u64(), "{view}");
    let copy = c.dir.join("play.mp4");
    let played = Command::new(BIN)
        .arg("--cacert")
        .arg(&ca)
        .args(["play", &play, "--plain", "--out"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(played.status.success(), "{played:?}");
    assert_eq!(
        Sha256::digest(std::fs::read(&copy).unwrap()),
        Sha256::digest(&movie)
    );
}

#[test]
fn a_capture_of_a_player_and_an_operator_over_https_holds_no_token_no_secret_and_no_video() {
    isolate_network();
    if !common::is_root() {
        return; // capturing needs root; CI runs the suite as root
    }
    let mut spec = Spec::new(3);
    spec.disks = vec![(1, vec![2, 3])];
    spec.https = true;
    let c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3]);
    let ca = c.ca.clone().unwrap();
    let movie = random_bytes(2 << 20, 31);
    c.put_title(1, "movie.mp4", &movie);
    let mut location = String::new();
    let copy = c.dir.join("copy.mp4");
    // Every TCP and UDP packet on loopback: the bus and ring, the
    // placement, the stream, an admin request.
    let bytes = common::capture::captured_filter(&c.dir, "tcp or udp", || {
        c.wait("the title is placeable over HTTPS", |c| {
            c.place(1, "movie.mp4").map(|l| location = l).is_ok()
        });
        let out = curl(
            &ca,
            &format!("{}/v1/play/movie.mp4", c.url(1)),
            &["-L", "--limit-rate", "8M", "-o", copy.to_str().unwrap()],
        );
        assert!(out.status.success(), "{out:?}");
        let config = c
            .agent
            .get(&format!("{}/v1/config", c.url(2)))
            .set("Authorization", "Bearer test-admin-token")
            .call()
            .unwrap();
        assert_eq!(config.status(), 200);
    });
    assert_eq!(
        Sha256::digest(std::fs::read(&copy).unwrap()),
        Sha256::digest(&movie)
    );
    assert!(
        bytes.len() > movie.len(),
        "the capture holds the stream: {} bytes",
        bytes.len()
    );
    let token = location
        .split("/v1/streams/")
        .nth(1)
        .and_then(|t| t.split('/').next())
        .expect("the placement names a stream token");
    let contains = common::capture::contains;
    assert!(
        !contains(&bytes, token.as_bytes()),
        "a stream token was captured"
    );
    assert!(
        !contains(&bytes, b"test-admin-token"),
        "the admin token was captured"
    );
    let key = common::key_hex(0x11);
    assert!(
        !contains(&bytes, key.as_bytes()) && !contains(&bytes, &[0x11; 32]),
        "the cluster key was captured"
    );
    for at in (0..movie.len() - 64).step_by(movie.len() / 16) {
        assert!(
            !contains(&bytes, &movie[at..at + 64]),
            "the video's bytes at {at} were captured"
        );
    }
}
