//! Draining through the real binary: `ringcast drain` takes the node
//! serving an `ffmpeg -re` HLS reading and a `curl` MP4 download out of
//! service while they play. Both finish complete and byte-exact with no
//! retry and no error, the node reports empty, `ringcast undrain` puts a
//! node back, and no failure is declared.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{isolate_network, random_bytes, Cluster, Reap, Spec, BIN, LIMIT};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Node `of`'s service address's holder under node `observer`'s map.
fn holder(c: &Cluster, observer: u32, of: u32) -> Option<u64> {
    let body: Value = c
        .agent
        .get(&format!("{}/v1/addresses", c.url(observer)))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    body["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["owner"].as_u64() == Some(u64::from(of)))?["holder"]
        .as_u64()
}

/// Stream requests node `n` has answered.
fn served(c: &Cluster, n: u32) -> u64 {
    c.metric(n, "ringcast_stream_requests_total")
}

fn ringcast(c: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&c.file)
        .output()
        .expect("run ringcast")
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A 12 s HLS rendition in 2 s segments under `show/`, and its local remux
/// (the reference a player's copy must equal).
fn hls(c: &Cluster) -> Vec<u8> {
    let src = c.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let made = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x240:rate=25", "-t", "12"])
        .args(["-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p"])
        .args(["-preset", "ultrafast", "-f", "hls", "-hls_time", "2"])
        .args(["-hls_playlist_type", "vod", "-hls_segment_filename"])
        .arg(src.join("seg_%03d.ts"))
        .arg(src.join("index.m3u8"))
        .status()
        .expect("ffmpeg is installed by scripts/install-test-deps");
    assert!(made.success());
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        c.put_title(1, &format!("show/{name}"), &std::fs::read(&f).unwrap());
    }
    let reference = c.dir.join("reference.ts");
    let st = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-i"])
        .arg(src.join("index.m3u8"))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&reference)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(&reference).unwrap()
}

fn finish(child: &mut Child, name: &str) -> String {
    let status = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).unwrap();
    }
    assert!(status.success(), "{name} failed: {err}");
    err
}

#[test]
fn a_drained_node_hands_its_players_on_with_no_gap_and_reports_empty() {
    isolate_network();
    // n1 supervises and has no disk; n2 and n3 share disk 1.
    let mut spec = Spec::new(3);
    spec.disks = vec![(1, vec![2, 3])];
    let c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3]);
    // Larger than loopback's socket buffers hold, so that n2 still sends
    // it when it drains.
    let movie = random_bytes(16 << 20, 41);
    c.put_title(1, "movie.mp4", &movie);
    let reference = hls(&c);

    // n3 out of service first, so that both players start on n2.
    let out = ringcast(&c, &["drain", "3", "--wait-seconds", "20"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("node 3: empty"), "{}", said(&out));
    c.wait("n3's address moved to n1, the next node that serves", |c| {
        (1..=3).all(|o| holder(c, o, 3) == Some(1))
    });

    for title in ["movie.mp4", "show/index.m3u8"] {
        c.wait(&format!("{title} is placeable, on n2"), |c| {
            c.place(1, title).is_ok_and(|at| c.node_of(&at) == Some(2))
        });
    }
    let entry = format!("http://{}", c.address);
    let curl_out = c.dir.join("curl.mp4");
    let hls_out = c.dir.join("ffmpeg.ts");
    let mut players = Reap(vec![
        Command::new("curl")
            .args(["-sS", "-L", "--fail", "--limit-rate", "2M", "-o"])
            .arg(&curl_out)
            .arg(format!("{entry}/v1/play/movie.mp4"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl is installed by scripts/install-test-deps"),
        Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error", "-re", "-i"])
            .arg(format!("{entry}/v1/play/show/index.m3u8"))
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(&hls_out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ]);
    // Both play from n2: curl's body is being sent, ffmpeg read segments.
    let start = Instant::now();
    while !(c.metric(2, "ringcast_streams_active") >= 1 && served(&c, 2) >= 3) {
        if start.elapsed() > LIMIT {
            let exits: Vec<_> = players
                .0
                .iter_mut()
                .map(|p| p.try_wait().unwrap())
                .collect();
            panic!(
                "the players do not play from n2 (n2: {} active, {} requests; n3: {} requests; players {exits:?})\n{}",
                c.metric(2, "ringcast_streams_active"),
                served(&c, 2),
                served(&c, 3),
                c.describe()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(served(&c, 3), 0, "n3 served while drained");

    // n3 back, then n2 out while both play.
    let out = ringcast(&c, &["undrain", "3"]);
    assert!(out.status.success(), "{}", said(&out));
    c.wait("n3 holds its own address again", |c| {
        (1..=3).all(|o| holder(c, o, 3) == Some(3))
    });
    let drained_at = served(&c, 2);
    let out = ringcast(&c, &["drain", "2", "--wait-seconds", "60"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("node 2: empty"), "{}", said(&out));
    assert_eq!(c.metric(2, "ringcast_streams_active"), 0);
    assert!(
        (1..=3).all(|o| holder(&c, o, 2) == Some(3)),
        "n2's address is not with n3\n{}",
        c.describe()
    );

    // Both finish complete and exact, with nothing retried.
    let curl_err = finish(&mut players.0[0], "curl");
    assert!(curl_err.trim().is_empty(), "curl said: {curl_err}");
    let got = std::fs::read(&curl_out).unwrap();
    assert_eq!(got.len(), movie.len(), "curl's length");
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&movie),
        "curl's SHA-256"
    );
    let ffmpeg_err = finish(&mut players.0[1], "ffmpeg");
    assert!(ffmpeg_err.trim().is_empty(), "ffmpeg said: {ffmpeg_err}");
    let got = std::fs::read(&hls_out).unwrap();
    assert_eq!(got.len(), reference.len(), "ffmpeg's remux length");
    assert!(got == reference, "ffmpeg's remux equals the local one");
    // The rest of the rendition came from n3, which held n2's address.
    assert!(
        served(&c, 3) >= 1,
        "n3 served nothing after n2 drained (n2 served {} of its requests after the drain began)",
        served(&c, 2) - drained_at
    );

    // Nothing was declared failed; every node is up on one ring.
    for observer in 1..=3 {
        for node in 1..=3 {
            assert_eq!(
                c.status_of(observer, node).as_deref(),
                Some("up"),
                "n{observer} lists n{node}\n{}",
                c.describe()
            );
        }
        assert_eq!(
            c.metric(observer, "ringcast_failure_declarations_total"),
            0,
            "n{observer} declared a failure"
        );
    }
    let state: Value = c
        .agent
        .get(&format!("{}/v1/drain", c.url(2)))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(state["empty"], true, "{state}");
}
