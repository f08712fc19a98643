//! Streaming through real node processes and real files: placement and the
//! signed redirect, byte-exact resume when the serving node is killed,
//! admission control, refused tokens and paths, and disk failures.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{isolate_network, random_bytes, start_play, wait_len, Cluster, Reap, Spec, LIMIT};
use sha2::{Digest, Sha256};

/// Three nodes; disk 1 is shared by n2 and n3; disk 2 is n1's alone.
fn cluster(max_streams: u32) -> Cluster {
    let mut spec = Spec::new(3);
    spec.disks = vec![(1, vec![2, 3]), (2, vec![1])];
    spec.max_streams = max_streams;
    let c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3]);
    c
}

fn wait_placeable(c: &Cluster, title: &str) -> String {
    let mut last = Err(0);
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        last = c.place(2, title);
        if let Ok(loc) = &last {
            return loc.clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{title} never became playable: {last:?}\n{}", c.describe());
}

fn get(url: &str) -> Result<(u16, Vec<u8>), u16> {
    match ureq::get(url).call() {
        Ok(r) => {
            let status = r.status();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
            Ok((status, body))
        }
        Err(ureq::Error::Status(code, _)) => Err(code),
        Err(_) => Err(0),
    }
}

#[test]
fn a_title_is_placed_on_a_node_that_reaches_it_and_served_byte_exact() {
    isolate_network();
    let c = cluster(10);
    let movie = random_bytes(3 << 20, 7);
    c.put_title(1, "movie.mp4", &movie);
    let location = wait_placeable(&c, "movie.mp4");
    let node = c.node_of(&location).expect("the redirect names a node");
    assert!(
        [2, 3].contains(&node),
        "disk 1 is reached by n2 and n3, not n{node}"
    );
    assert!(
        location.contains("/v1/streams/") && location.ends_with("/movie.mp4"),
        "{location}"
    );
    let (status, body) = get(&location).unwrap();
    assert_eq!(status, 200);
    assert!(body == movie, "the bytes differ");
    let cors = ureq::head(&location).call().unwrap();
    assert_eq!(
        cors.header("access-control-allow-origin"),
        Some("*"),
        "browser players may read it"
    );
    // Titles in a folder (an HLS rendition) work too, with the playlist rewritten.
    c.put_title(1, "show/seg_000.ts", &random_bytes(1000, 3));
    c.put_title(
        1,
        "show/index.m3u8",
        b"#EXTM3U\n#EXTINF:2.0,\nseg_000.ts\n#EXT-X-ENDLIST\n",
    );
    let playlist = wait_placeable(&c, "show/index.m3u8");
    let (_, text) = get(&playlist).unwrap();
    let text = String::from_utf8(text).unwrap();
    // Claim 13: the stream is placed once; its segments go straight to the
    // serving node's service address under the stream's token.
    let segment = text
        .lines()
        .find(|l| l.ends_with("/show/seg_000.ts"))
        .unwrap_or_else(|| panic!("a segment URI: {text}"));
    let server = c.node_of(&playlist).unwrap();
    assert!(
        segment.starts_with(&format!("http://{}/v1/streams/", c.service[&server])),
        "{segment} names the serving node's service address"
    );
    let (status, body) = get(segment).unwrap();
    assert_eq!((status, body.len()), (200, 1000));
}

#[test]
fn sigkill_of_the_serving_node_halfway_and_ringcast_play_completes_byte_exact() {
    isolate_network();
    let mut c = cluster(10);
    let movie = random_bytes(4 << 20, 11);
    c.put_title(1, "movie.mp4", &movie);
    wait_placeable(&c, "movie.mp4");
    let out = c.dir.join("download.mp4");
    let mut play = start_play(&format!("{}/v1/play/movie.mp4", c.url(1)), 2_000_000, &out);
    let mut lines = BufReader::new(play.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("reading from "), "{first}");
    let serving = c.node_of(&first).expect("a node's address");
    wait_len(&out, 1 << 20);
    c.kill(serving);
    let stderr = play.stderr.take().unwrap();
    let mut guard = Reap(vec![play]);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = guard.0[0].wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut { stderr }, &mut err).unwrap();
    assert!(status.success(), "{err}\n{rest:?}");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&movie),
        "SHA-256 of the download"
    );
    let resumed = rest
        .iter()
        .find(|l| l.starts_with("reading from "))
        .expect("a resume");
    let other = c.node_of(resumed).unwrap();
    assert_ne!(other, serving, "resumed from another node: {rest:?}");
}

#[test]
fn beyond_capacity_the_answer_is_503_with_retry_after() {
    isolate_network();
    // n2 and n3 reach disk 1; one stream each.
    let c = cluster(1);
    c.put_title(1, "a.mp4", &random_bytes(1000, 1));
    wait_placeable(&c, "a.mp4");
    // The wait took one placement; one more fits, the third does not.
    assert!(c.place(1, "a.mp4").is_ok());
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    match agent.get(&format!("{}/v1/play/a.mp4", c.url(3))).call() {
        Err(ureq::Error::Status(503, r)) => {
            assert!(r.header("retry-after").is_some(), "Retry-After is set");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // The refusal is counted where operators look: the entry node's play
    // answers and 503s, and the supervisor's placements.
    let sample = |id: u32, name: &str| {
        c.metrics(id)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        sample(3, "ringcast_play_responses_total{code=\"503\"}"),
        1.0
    );
    assert_eq!(
        sample(3, "ringcast_unavailable_responses_total{route=\"play\"}"),
        1.0
    );
    assert!(sample(1, "ringcast_placements_total{outcome=\"no_capacity\"}") >= 1.0);
    assert!(sample(1, "ringcast_placements_total{outcome=\"placed\"}") >= 2.0);
}

/// `curl` from source address `from` of every URL in one process (one
/// keep-alive connection); the HTTP status of each.
fn statuses_from(from: &str, urls: &[String]) -> Vec<u16> {
    let out = Command::new("curl")
        .args(["-s", "--interface", from, "--max-time", "20"])
        .args(
            urls.iter()
                .flat_map(|u| ["-o", "/dev/null", "-w", "%{http_code}\n", u.as_str()]),
        )
        .output()
        .expect("curl is installed by scripts/install-test-deps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect()
}

#[test]
fn one_address_cannot_reserve_the_capacity_of_everyone_else() {
    isolate_network();
    // Disk 1 on n2 and n3, 30 streams each: 60 in all. Without a limit,
    // 100 placements that never stream would reserve all of it.
    let c = cluster(30);
    c.put_title(1, "a.mp4", &random_bytes(1000, 3));
    wait_placeable(&c, "a.mp4");
    let urls: Vec<String> = (0..100)
        .map(|i| format!("{}/v1/play/a.mp4?stream={}", c.url(3), 1000 + i))
        .collect();
    let started = Instant::now();
    let codes = statuses_from("127.0.0.9", &urls);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(codes.len(), 100, "{codes:?}");
    let placed = codes.iter().filter(|c| **c == 307).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(placed + limited, 100, "only redirects and 429: {codes:?}");
    // The default: a burst of 32, then 4 a second.
    let most = 32.0 + 4.0 * elapsed + 1.0;
    assert!(
        placed >= 32 && placed as f64 <= most,
        "{placed} placed in {elapsed:.1} s: {codes:?}"
    );
    // Another address still gets a stream: the capacity was not taken.
    let codes = statuses_from("127.0.0.10", &[urls[0].replace("stream=1000", "stream=7")]);
    assert_eq!(codes, [307], "another address is placed");
    let limited_count = c
        .metrics(3)
        .lines()
        .find_map(|l| {
            l.strip_prefix("ringcast_placements_total{outcome=\"client_limit\"} ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    assert_eq!(
        limited_count as usize, limited,
        "counted where it was refused"
    );
}

#[test]
fn forged_expired_and_traversing_requests_are_refused() {
    isolate_network();
    let c = cluster(10);
    c.put_title(1, "movie.mp4", &random_bytes(1000, 5));
    std::fs::write(c.dir.join("secret.txt"), "do not serve").unwrap();
    let location = wait_placeable(&c, "movie.mp4");
    // Altering one character of the token breaks its signature.
    let (head, tail) = location.split_once("/v1/streams/").unwrap();
    let (token, title) = tail.split_once('/').unwrap();
    let mut forged: Vec<char> = token.chars().collect();
    forged[3] = if forged[3] == '0' { '1' } else { '0' };
    let forged: String = forged.into_iter().collect();
    assert_eq!(
        get(&format!("{head}/v1/streams/{forged}/{title}")),
        Err(403)
    );
    // The right token for another title is refused.
    assert_eq!(
        get(&format!("{head}/v1/streams/{token}/other.mp4")),
        Err(403)
    );
    // Traversal through the play URL: 400 or 404, never the file.
    for bad in [
        "..%2Fsecret.txt",
        "%2E%2E/secret.txt",
        "a/../../secret.txt",
        ".hidden",
        "a%00b",
    ] {
        match c.place(2, bad) {
            Err(400) | Err(404) => {}
            other => panic!("{bad}: expected 400 or 404, got {other:?}"),
        }
    }
}

#[test]
fn a_shared_disk_failing_for_both_nodes_moves_streams_to_a_replica() {
    isolate_network();
    let c = cluster(10);
    let movie = random_bytes(100_000, 9);
    c.put_title(1, "movie.mp4", &movie);
    let first = wait_placeable(&c, "movie.mp4");
    let on = c.node_of(&first).unwrap();
    assert!([2, 3].contains(&on), "only n2 and n3 reach disk 1");
    // One node's probe location breaks: only that node's path is broken.
    let probe = |n: u32| c.dir.join("disks").join("d1").join(format!(".probe-n{n}"));
    let _ = std::fs::remove_file(probe(on));
    std::fs::create_dir_all(probe(on).join("blocked")).unwrap();
    c.wait("the broken path is avoided", |c| {
        let v = c.view(1).unwrap();
        let broken = v["tables"]["topology"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| {
                row["node"] == on
                    && row["disks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|l| l["disk"] == 1 && l["status"] == "Broken")
            });
        broken
            && c.place(1, "movie.mp4")
                .is_ok_and(|l| c.node_of(&l) != Some(on))
    });
    // A replica appears on disk 2 (n1's); then both nodes' probes of disk 1
    // fail: the disk is declared failed and the replica serves.
    c.put_title(2, "movie.mp4", &movie);
    for n in [2, 3] {
        let _ = std::fs::remove_file(probe(n));
        std::fs::create_dir_all(probe(n).join("blocked")).unwrap();
    }
    c.wait("disk 1 is declared failed", |c| {
        c.view(3).is_some_and(|v| {
            v["tables"]["disk_usage"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["disk"] == 1 && d["status"] == "Failed")
        })
    });
    let mut location = String::new();
    c.wait("the replica on disk 2 (n1's) is placed", |c| {
        c.place(2, "movie.mp4").is_ok_and(|l| {
            location = l;
            c.node_of(&location) == Some(1)
        })
    });
    let got = ureq::get(&location).call();
    let body = match got {
        Ok(r) => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut b).unwrap();
            b
        }
        Err(ureq::Error::Status(code, r)) => {
            panic!("{code}: {}", r.into_string().unwrap_or_default())
        }
        Err(e) => panic!("{e}"),
    };
    assert!(body == movie);
}

#[test]
fn curl_with_retry_and_continue_survives_the_serving_node_dying() {
    isolate_network();
    let mut c = cluster(10);
    let movie = random_bytes(4 << 20, 13);
    c.put_title(1, "movie.mp4", &movie);
    wait_placeable(&c, "movie.mp4");
    let out = c.dir.join("curl.mp4");
    let curl = Command::new("curl")
        .args([
            "-sS",
            "-L",
            "--retry",
            "10",
            "--retry-all-errors",
            "--retry-delay",
            "1",
            "-C",
            "-",
            "--limit-rate",
            "2M",
            "-o",
        ])
        .arg(&out)
        .arg(format!("{}/v1/play/movie.mp4", c.url(1)))
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl is installed by scripts/install-test-deps");
    let mut guard = Reap(vec![curl]);
    let start = Instant::now();
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 1 << 20 {
        assert!(start.elapsed() < LIMIT, "curl does not progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Whichever of n2 and n3 serves it now dies.
    let serving = [2, 3].into_iter().find(|n| {
        c.metrics(*n)
            .lines()
            .any(|l| l == "ringcast_streams_active 1")
    });
    let victim = serving.unwrap_or(2);
    c.kill(victim);
    let status = guard.0[0].wait().unwrap();
    assert!(status.success(), "curl failed");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), movie.len());
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&movie),
        "SHA-256 of curl's download"
    );
}

#[test]
fn ffmpeg_reads_the_hls_rendition_through_the_cluster_while_a_node_dies() {
    isolate_network();
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        panic!("ffmpeg is missing: scripts/install-test-deps installs it");
    }
    // n1 is the entry and has no disk; n2, n3, n4 share disk 1.
    let mut spec = Spec::new(4);
    spec.disks = vec![(1, vec![2, 3, 4])];
    let mut c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3, 4]);
    // A real HLS rendition: 12 s of video in 2 s segments.
    let src = c.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let made = Command::new("ffmpeg")
        .args([
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "12",
        ])
        .args([
            "-c:v",
            "libx264",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "ultrafast",
        ])
        .args([
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_filename",
        ])
        .arg(src.join("seg_%03d.ts"))
        .arg(src.join("index.m3u8"))
        .status()
        .unwrap();
    assert!(made.success());
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        c.put_title(1, &format!("show/{name}"), &std::fs::read(&f).unwrap());
    }
    wait_placeable(&c, "show/index.m3u8");
    // The same remux from the files themselves is the reference.
    let reference = c.dir.join("reference.ts");
    let st = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-i"])
        .arg(src.join("index.m3u8"))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&reference)
        .status()
        .unwrap();
    assert!(st.success());
    let out = c.dir.join("through-cluster.ts");
    let ff = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-re", "-i"])
        .arg(format!("{}/v1/play/show/index.m3u8", c.url(1)))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Reap(vec![ff]);
    // Once ffmpeg has read a few segments, the node serving them dies.
    let start = Instant::now();
    let served = |c: &Cluster, n: u32| {
        c.metrics(n)
            .lines()
            .find_map(|l| {
                l.strip_prefix("ringcast_stream_requests_total ")
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let victim = loop {
        if let Some(n) = [2, 3, 4].into_iter().find(|n| served(&c, *n) >= 3) {
            break n;
        }
        assert!(start.elapsed() < LIMIT, "ffmpeg does not read segments");
        std::thread::sleep(Duration::from_millis(20));
    };
    c.kill(victim);
    let status = guard.0[0].wait().unwrap();
    assert!(status.success(), "ffmpeg failed");
    let got = std::fs::read(&out).unwrap();
    let want = std::fs::read(&reference).unwrap();
    assert_eq!(got.len(), want.len(), "same length as the local remux");
    assert!(
        got == want,
        "the remux through the cluster equals the local one"
    );
}
