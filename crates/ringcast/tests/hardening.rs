//! Hardening against hostile inputs, with real node processes on loopback: a flood of
//! garbage, forged and replayed datagrams from another address is rate
//! limited and the ring keeps running; a cluster key rotates in three stages
//! without a failure; hostile HTTP clients do not disturb a stream that
//! `ringcast play` downloads. Hostile clients bind 127.0.0.2 and up, so
//! they are other hosts to the nodes (which run on 127.0.0.1).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{isolate_network, key_hex, Cluster, Reap, Spec, LIMIT};
use ringcast_proto::frame::{Keyring, Sealer};
use ringcast_proto::{ClusterId, Incarnation, KeyId, NodeId};
use sha2::{Digest, Sha256};

/// The ring and bus interval of the tests that assert nothing is ever
/// declared failed (as `cluster.rs` does for the same reason).
const SLOW_INTERVAL_MS: u64 = 100;

const KEY_OLD: [u8; 32] = [0x11; 32];
const KEY_NEW: [u8; 32] = [0x22; 32];

/// Node `id`'s ring address and life, as node 1 lists them.
fn member(c: &Cluster, id: u32) -> (SocketAddr, u64) {
    let v = c.view(1).expect("n1 answers");
    let n = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .expect("the node is listed");
    (
        n["ring"].as_str().unwrap().parse().unwrap(),
        n["incarnation"].as_u64().unwrap(),
    )
}

/// The bus group of the cluster file.
fn bus_group(c: &Cluster) -> SocketAddr {
    let text = std::fs::read_to_string(&c.file).unwrap();
    let line = text.lines().find(|l| l.starts_with("bus = ")).unwrap();
    line.trim_start_matches("bus = ")
        .trim_matches('"')
        .parse()
        .unwrap()
}

/// Counters that must not move while a cluster is attacked: failure
/// declarations, supervisor changes and the epoch, per node.
fn calm(c: &Cluster) -> Vec<(u64, u64, u64)> {
    (1..=3)
        .map(|id| {
            (
                c.metric(id, "ringcast_failure_declarations_total"),
                c.metric(id, "ringcast_supervisor_changes_total"),
                c.metric(id, "ringcast_epoch"),
            )
        })
        .collect()
}

/// CPU time (user and system) each node process has used so far.
fn nodes_cpu(c: &Cluster) -> Vec<Duration> {
    c.children
        .values()
        .map(|child| {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
            // Fields after the command name (which ends with ')'): utime and
            // stime are the 12th and 13th, in clock ticks.
            let rest = stat.rsplit(')').next().unwrap_or_default();
            let ticks: u64 = rest
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum();
            let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .unwrap_or(100) as u64;
            Duration::from_millis(ticks * 1000 / hz.max(1))
        })
        .collect()
}

/// A UDP socket on `from` that can also send to the loopback multicast bus.
fn udp_from(from: &str) -> std::net::UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    let ip: std::net::Ipv4Addr = from.parse().unwrap();
    s.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into()).unwrap();
    s.set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)
        .unwrap();
    s.set_multicast_ttl_v4(0).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.into()
}

#[test]
fn a_flood_of_garbage_forged_and_replayed_datagrams_is_rate_limited_and_the_ring_keeps_running() {
    isolate_network();
    let mut spec = Spec::new(3);
    // Slower timers than the LAN default: this test asserts that nothing is
    // ever declared, which a machine starved by other work could otherwise
    // cause at 20 ms whatever the flood.
    spec.interval_ms = SLOW_INTERVAL_MS;
    let c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3]);
    // The supervisor has sent every node far more than a replay window of
    // notifications on the bus.
    // (50 notifications and as many status messages: its frame counter is
    // above 16 + the 64 of a replay window.)
    c.wait("n1 has sent 50 notifications", |c| {
        c.metric(
            1,
            "ringcast_messages_sent_total{channel=\"bus\",kind=\"notify\"}",
        ) > 50
    });
    let before = calm(&c);
    let status_before: Vec<u64> = (1..=3)
        .map(|id| {
            c.metric(
                id,
                "ringcast_messages_received_total{channel=\"ring\",kind=\"status\"}",
            )
        })
        .collect();
    let (_, life1) = member(&c, 1);
    let mut targets: Vec<SocketAddr> = (1..=3).map(|id| member(&c, id).0).collect();
    targets.push(bus_group(&c));

    // The supervisor's first frames of its current life, which every member
    // heard long ago (the flooder holds the key to make them, as a replay
    // of captured frames would be): each costs the receiver an HMAC before
    // it is refused as a replay.
    let keyring = Keyring::new(KeyId(1), KEY_OLD);
    let mut sealer = Sealer::new(ClusterId(1), 1, NodeId(1), Incarnation(life1), 1400);
    let replays: Vec<Vec<u8>> = (0..16u8)
        .map(|i| sealer.seal(&keyring, &[i; 200]).unwrap().remove(0))
        .collect();
    // The same with a broken tag: forgeries.
    let forged: Vec<Vec<u8>> = replays
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let last = f.len() - 1;
            f[last] ^= 0x5a;
            f
        })
        .collect();
    let garbage: Vec<Vec<u8>> = (0..64u32)
        .map(|i| (0..(i * 23 % 1400)).map(|j| (j * 31 + i) as u8).collect())
        .collect();

    // A few seconds of flood from 127.0.0.2, paced to what one loopback
    // can carry beside the nodes on a small machine.
    const RATE: f64 = 40_000.0;
    const FOR: Duration = Duration::from_secs(3);
    let flooder = udp_from("127.0.0.2");
    let cpu_before = nodes_cpu(&c);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut i = 0usize;
    while start.elapsed() < FOR {
        for _ in 0..64 {
            let frame = match i % 3 {
                0 => &garbage[i % garbage.len()],
                1 => &forged[i % forged.len()],
                _ => &replays[i % replays.len()],
            };
            let to = targets[i % targets.len()];
            if flooder.send_to(frame, to).is_ok() {
                sent += 1;
            }
            i += 1;
        }
        let ahead = sent as f64 / RATE - start.elapsed().as_secs_f64();
        if ahead > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(ahead));
        }
    }
    let took = start.elapsed();
    let cpu: Vec<Duration> = nodes_cpu(&c)
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| after.saturating_sub(*before))
        .collect();

    // The flood was cut off by the per-sender limit at every node...
    let limited: Vec<u64> = (1..=3)
        .map(|id| {
            c.metric(
                id,
                "ringcast_frames_rejected_total{reason=\"rate_limited\"}",
            )
        })
        .collect();
    let refused: Vec<String> = (1..=3)
        .map(|id| {
            c.metrics(id)
                .lines()
                .filter(|l| l.starts_with("ringcast_frames_rejected_total{"))
                .map(|l| {
                    l.trim_start_matches("ringcast_frames_rejected_total")
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    eprintln!(
        "flood: {sent} datagrams in {took:?} ({:.0}/s) to {} targets; node CPU time meanwhile {cpu:?}; \
         rate_limited per node {limited:?}; refused {refused:?}",
        sent as f64 / took.as_secs_f64(),
        targets.len()
    );
    // Each node got about half the flood's share of two targets (its ring
    // port and the bus); nearly all of it was dropped unread.
    let per_node = sent / targets.len() as u64 * 2;
    for (id, n) in (1..=3).zip(&limited) {
        assert!(
            *n > per_node / 2,
            "n{id} dropped only {n} of about {per_node} flood datagrams unread"
        );
    }
    // ... and the ring kept running: status messages went round, nobody was
    // declared failed, the supervisor and its epoch did not change.
    for id in 1..=3u32 {
        let now = c.metric(
            id,
            "ringcast_messages_received_total{channel=\"ring\",kind=\"status\"}",
        );
        let during = now - status_before[id as usize - 1];
        let expected = took.as_millis() as u64 / SLOW_INTERVAL_MS;
        assert!(
            during > expected / 2,
            "n{id} received {during} status messages during the flood (about {expected} expected)"
        );
    }
    assert!(c.agrees(1, &[1, 2, 3]), "{}", c.describe());
    assert_eq!(calm(&c), before, "declarations, supervisor changes, epochs");
}

/// Whether node `id` runs configuration `version` sealing with key `seal`
/// and accepting exactly `keys`.
fn runs(c: &Cluster, id: u32, version: u32, seal: u8, keys: &[u8]) -> bool {
    let m = c.metrics(id);
    let listed: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("ringcast_cluster_key{"))
        .collect();
    c.metric(id, "ringcast_config_version") == u64::from(version)
        && listed.len() == keys.len()
        && keys.iter().all(|k| {
            let usage = if *k == seal { "seal" } else { "accept" };
            listed
                .contains(&format!("ringcast_cluster_key{{id=\"{k}\",use=\"{usage}\"}} 1").as_str())
        })
}

/// Places `title` through node 1 and reads it back: tokens are signed by the
/// supervisor and checked by the serving node, each under its own keys.
fn plays(c: &Cluster, title: &str, bytes: &[u8]) {
    let mut location = Err(0);
    c.wait(&format!("{title} is placed"), |c| {
        location = c.place(1, title);
        location.is_ok()
    });
    let body = ureq::get(&location.unwrap())
        .call()
        .expect("the stream is served");
    let mut got = Vec::new();
    body.into_reader().read_to_end(&mut got).unwrap();
    assert!(got == bytes, "the bytes of {title}");
}

/// Sends n2's authentic-looking frame under key `key` (an earlier life of
/// n2, so that once authenticated it is refused as stale and changes
/// nothing) to node 1's ring port.
fn old_life_frame(c: &Cluster, key: (u8, [u8; 32]), version: u32) {
    let keyring = Keyring::new(KeyId(key.0), key.1);
    let mut sealer = Sealer::new(ClusterId(1), version, NodeId(2), Incarnation(1), 1400);
    let frame = sealer.seal(&keyring, b"stale").unwrap().remove(0);
    let s = udp_from("127.0.0.2");
    s.send_to(&frame, member(c, 1).0).unwrap();
}

#[test]
fn a_key_rotates_in_three_stages_on_a_running_cluster_without_a_failure() {
    isolate_network();
    let mut spec = Spec::new(3);
    spec.disks = vec![(1, vec![2, 3])];
    spec.interval_ms = SLOW_INTERVAL_MS;
    let c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3]);
    let movie: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    c.put_title(1, "movie.mp4", &movie);
    plays(&c, "movie.mp4", &movie);
    let before = calm(&c);
    let (old, new) = (key_hex(0x11), key_hex(0x22));
    let stages = [
        // Stage 1: every node accepts the new key, still seals with the old.
        (format!("1:{old}\n2:{new}\n"), 2, 1, vec![1, 2]),
        // Stage 2: every node seals with the new key, still accepts the old.
        (format!("2:{new}\n1:{old}\n"), 3, 2, vec![2, 1]),
        // Stage 3: the old key is dropped.
        (format!("2:{new}\n"), 4, 2, vec![2]),
    ];
    for (keys, version, seal, accepted) in stages {
        c.stage_keys(&keys, version);
        // One node is told; the others see its newer configuration version
        // on the bus and reload theirs.
        c.signal(3, nix::sys::signal::Signal::SIGHUP);
        c.wait(&format!("every node runs version {version}"), |c| {
            (1..=3).all(|id| runs(c, id, version, seal, &accepted))
        });
        assert!(c.agrees(1, &[1, 2, 3]), "{}", c.describe());
        plays(&c, "movie.mp4", &movie);
        if version == 3 {
            // The old key still authenticates: the frame reaches the replay
            // check, which refuses the earlier life.
            let stale = "ringcast_frames_rejected_total{reason=\"stale_incarnation\"}";
            let n = c.metric(1, stale);
            old_life_frame(&c, (1, KEY_OLD), version);
            c.wait("the old-key frame is authenticated", |c| {
                c.metric(1, stale) > n
            });
        }
    }
    // After stage 3, a frame under the old key is refused before anything else.
    let unknown = "ringcast_frames_rejected_total{reason=\"unknown_key\"}";
    assert_eq!(
        c.metric(1, unknown),
        0,
        "no frame was refused during the rotation"
    );
    old_life_frame(&c, (1, KEY_OLD), 4);
    c.wait("the old-key frame is refused", |c| {
        c.metric(1, unknown) == 1
    });
    // The new key authenticates.
    let stale = "ringcast_frames_rejected_total{reason=\"stale_incarnation\"}";
    let n = c.metric(1, stale);
    old_life_frame(&c, (2, KEY_NEW), 4);
    c.wait("the new-key frame is authenticated", |c| {
        c.metric(1, stale) > n
    });
    for id in 1..=3 {
        assert_eq!(
            c.metric(id, "ringcast_frames_rejected_total{reason=\"bad_tag\"}"),
            0,
            "n{id}"
        );
        assert!(c.metric(id, "ringcast_config_reloads_total{result=\"applied\"}") >= 3);
        assert_eq!(
            c.metric(id, "ringcast_config_reloads_total{result=\"failed\"}"),
            0
        );
    }
    assert!(c.agrees(1, &[1, 2, 3]));
    assert_eq!(calm(&c), before, "declarations, supervisor changes, epochs");
}

// ---------------------------------------------------------------------------
// Hostile HTTP clients against real nodes

fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let ip: IpAddr = from.parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(ip, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// Reads until the server closes the connection, for at most `limit`.
fn drain(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    got
}

/// Runs `round` in a loop on its own thread until `stop`.
fn attack(
    stop: &Arc<AtomicBool>,
    rounds: &Arc<AtomicU64>,
    round: impl Fn() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let (stop, rounds) = (stop.clone(), rounds.clone());
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            round();
            rounds.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[test]
fn hostile_http_clients_do_not_disturb_a_stream_that_ringcast_play_downloads() {
    isolate_network();
    let mut spec = Spec::new(3);
    spec.disks = vec![(1, vec![2, 3])];
    spec.interval_ms = SLOW_INTERVAL_MS;
    spec.limits = vec![
        ("http_head_timeout_ms", 1000),
        ("http_max_client_connections", 8),
        ("http_client_requests_per_s", 20),
        ("http_client_request_burst", 20),
    ];
    let c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3]);
    let movie: Vec<u8> = (0..(8u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    c.put_title(1, "movie.mp4", &movie);
    plays(&c, "movie.mp4", &movie[..]);

    // Every node is attacked from its own set of addresses.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds: Vec<Arc<AtomicU64>> = (0..5).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut attackers = Vec::new();
    for id in 1..=3u32 {
        let to = c.http[&id];
        let host = |k: u32| format!("127.0.{id}.{}", 10 + k);
        let (slow, big, flood, hoard, junk) = (host(0), host(1), host(2), host(3), host(4));
        for _ in 0..2 {
            let slow = slow.clone();
            attackers.push(attack(&stop, &rounds[0], move || {
                if let Ok(mut s) = connect_from(&slow, to) {
                    // One byte every 100 ms, never ending the head.
                    for b in b"GET /v1/cluster HTTP/1.1\r\nHost: t\r\nX-Slow: "
                        .iter()
                        .chain([b'x'; 64].iter())
                    {
                        if s.write_all(&[*b]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }));
        }
        attackers.push(attack(&stop, &rounds[1], move || {
            if let Ok(mut s) = connect_from(&big, to) {
                let head = format!(
                    "GET /v1/cluster HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                    "b".repeat(40_000)
                );
                let _ = s.write_all(head.as_bytes());
                drain(&mut s, Duration::from_secs(2));
            }
        }));
        attackers.push(attack(&stop, &rounds[2], move || {
            if let Ok(mut s) = connect_from(&flood, to) {
                let _ = s.write_all(
                    "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                        .repeat(100)
                        .as_bytes(),
                );
                let _ =
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                drain(&mut s, Duration::from_secs(2));
            }
        }));
        attackers.push(attack(&stop, &rounds[3], move || {
            let held: Vec<_> = (0..12)
                .filter_map(|_| connect_from(&hoard, to).ok())
                .collect();
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        }));
        attackers.push(attack(&stop, &rounds[4], move || {
            if let Ok(mut s) = connect_from(&junk, to) {
                let _ = s.write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n");
                drain(&mut s, Duration::from_secs(2));
            }
        }));
    }
    let refused = |c: &Cluster, id: u32, reason: &str| {
        c.metric(
            id,
            &format!("ringcast_http_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    let reasons = [
        "rate_limited",
        "client_connections",
        "head_too_large",
        "malformed",
        "head_timeout",
    ];
    c.wait("every node refuses every attack", |c| {
        (1..=3).all(|id| reasons.iter().all(|r| refused(c, id, r) > 0))
    });

    // The download, resumable and checked, while the attacks go on.
    let out = c.dir.join("download.mp4");
    let play = common::start_play(&format!("{}/v1/play/movie.mp4", c.url(1)), 4_000_000, &out);
    let mut guard = Reap(vec![play]);
    let stdout = guard.0[0].stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = guard.0[0].wait().unwrap();
    let mut err = String::new();
    guard.0[0]
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let during: Vec<Vec<u64>> = (1..=3)
        .map(|id| reasons.iter().map(|r| refused(&c, id, r)).collect())
        .collect();
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    assert!(status.success(), "{err}\n{lines:?}");
    let serving = c
        .node_of(&lines[0])
        .expect("the first line names the serving node");
    let resumes = lines
        .iter()
        .filter(|l| l.starts_with("reading from "))
        .count();
    assert_eq!(resumes, 1, "one uninterrupted read: {lines:?}");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&movie),
        "SHA-256 of the download"
    );
    eprintln!(
        "served by n{serving}; refused per node ({reasons:?}): {during:?}; attack rounds {:?}",
        rounds
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    );
    assert!(c.agrees(1, &[1, 2, 3]));
    let _ = LIMIT;
}
