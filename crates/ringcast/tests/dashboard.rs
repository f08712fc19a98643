//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromedriver`, started by the test on a loopback port) shows a
//! cluster of real node processes, and shows a SIGKILLed node fail, with its
//! failure in the event timeline, without reloading the page.
//!
//! As root the test runs in its own network namespace with only loopback
//! (see `common::isolate_network`); chromedriver and Chromium, started from
//! the test's thread, are in it too. Chromium only ever loads loopback URLs,
//! resolves no host name and runs none of its background services.
//!
//! The screenshot of the page after the failure is saved under
//! `$CARGO_TARGET_TMPDIR/test-artifacts/`, and copied to the path in
//! `RINGCAST_DASHBOARD_PNG` when that is set (this is how `docs/dashboard.png`
//! is made).

mod common;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, isolate_network, Cluster, Spec};
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// How long one condition of the page may take on a slow, busy machine.
const DEADLINE: Duration = Duration::from_secs(60);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, in a process group of its own with the browser it
/// starts: the whole group is killed when dropped, so a failing test leaves
/// no browser behind.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds the browser and its driver, or fails saying how to install them.
fn browser() -> (PathBuf, PathBuf) {
    let found = |p: &str| Path::new(p).exists().then(|| PathBuf::from(p));
    match (found(CHROMIUM), found(CHROMEDRIVER)) {
        (Some(b), Some(d)) => (b, d),
        _ => panic!(
            "the dashboard test needs Debian's chromium and chromium-driver \
             ({CHROMIUM}, {CHROMEDRIVER}); run scripts/install-test-deps as root \
             (apt-get install chromium chromium-driver)"
        ),
    }
}

/// chromedriver, and the browser it starts, with `home` as their home
/// folder (where Chromium finds the certificates it trusts).
fn start_driver(driver: &Path, log: &Path, home: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(driver)
        .process_group(0)
        .env("HOME", home)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver { child, port };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < DEADLINE,
            "chromedriver did not listen on 127.0.0.1:{port} within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

/// Chromium for a test: headless, its own profile, nothing but the pages it is sent to.
fn capabilities(binary: &Path, profile: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.display()),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        "--disable-default-apps".into(),
        "--disable-domain-reliability".into(),
        "--disable-client-side-phishing-detection".into(),
        "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication".into(),
        "--metrics-recording-only".into(),
        "--safebrowsing-disable-auto-update".into(),
        // No name resolves: only the loopback addresses the test gives
        // (node listeners on 127.0.0.1, service addresses elsewhere in 127/8).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.*".into(),
        "--mute-audio".into(),
        "--window-size=1500,1150".into(),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": binary, "args": args },
    });
    caps.as_object().cloned().unwrap_or_default()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `script` in the page until it returns something other than null or
/// false, or fails at the deadline with what the page shows.
async fn wait_for(client: &Client, cluster: &Cluster, what: &str, script: &str) -> Value {
    let start = Instant::now();
    let mut last: Value;
    loop {
        match client.execute(script, vec![]).await {
            Ok(v) if !v.is_null() && v != Value::Bool(false) => return v,
            Ok(v) => last = v,
            Err(e) => last = Value::String(format!("script error: {e}")),
        }
        if start.elapsed() > DEADLINE {
            if let Ok(png) = client.screenshot().await {
                let _ = std::fs::write(artifacts().join("dashboard-timeout.png"), png);
            }
            let text = client
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            let player = client
                .execute("return window.ringcastDashboard.player.join('\\n')", vec![])
                .await
                .unwrap_or_default();
            panic!(
                "the page did not show that {what} within {DEADLINE:?} (last: {last})\n\
                 --- page text:\n{}\n--- player:\n{}\n--- cluster:\n{}",
                text.as_str().unwrap_or_default(),
                player.as_str().unwrap_or_default(),
                cluster.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `[node, status, role]` of every row of the node table, once all `n` are there.
const ROWS: &str = "const rows = Array.from(document.querySelectorAll('table.nodes tbody tr'));
    return rows.map(r => [Number(r.dataset.node), r.dataset.status, r.dataset.role]);";

/// A short HLS rendition made with ffmpeg (1 s segments), as (name, bytes).
fn hls_title(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let out = dir.join("hls-source");
    std::fs::create_dir_all(&out).unwrap();
    let made = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25")
        .args([
            "-t",
            "30",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
        ])
        .args(["-pix_fmt", "yuv420p", "-f", "hls", "-hls_time", "1"])
        .args(["-hls_playlist_type", "vod", "-hls_segment_filename"])
        .arg(out.join("seg_%03d.ts"))
        .arg(out.join("index.m3u8"))
        .status();
    match made {
        Ok(st) if st.success() => {}
        other => panic!(
            "the dashboard test makes its video with ffmpeg ({other:?}); run \
             scripts/install-test-deps as root (apt-get install ffmpeg)"
        ),
    }
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("show/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// A script: `[serving node, playhead]` once the video plays past `past`
/// seconds without error, its last segment from a node other than `not`.
fn playing_from(past: f64, not: u32) -> String {
    format!(
        "const v = document.getElementById('video');
         const m = /from n(\\d+)/.exec(document.getElementById('player-status').textContent);
         const ok = v.currentTime > {past} && !v.error && m && Number(m[1]) !== {not};
         return ok ? [Number(m[1]), v.currentTime] : null;"
    )
}

/// A home folder whose NSS database (`~/.pki/nssdb`, which Chromium reads)
/// trusts the CA certificate `ca` for web sites.
fn home_trusting(home: &Path, ca: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .expect("certutil (libnss3-tools) is installed by scripts/install-test-deps");
        assert!(out.status.success(), "certutil {args:?}: {out:?}");
    };
    run(&["-N", "-d", &db, "--empty-password"]);
    run(&[
        "-A",
        "-d",
        &db,
        "-t",
        "C,,",
        "-n",
        "ringcast test CA",
        "-i",
        &ca.display().to_string(),
    ]);
}

#[test]
fn the_dashboard_shows_a_killed_node_fail_and_its_event_and_keeps_playing_without_reloading() {
    dashboard_through_a_failure(false);
}

/// The same over HTTPS: the page, its API calls, the other nodes' event
/// streams and the player's segments, every origin https, trusted through
/// the cluster's CA (SECURITY.md).
#[test]
fn over_https_the_dashboard_shows_a_killed_node_fail_and_keeps_playing() {
    dashboard_through_a_failure(true);
}

fn dashboard_through_a_failure(https: bool) {
    isolate_network();
    let (chromium, chromedriver) = browser();
    let mut spec = Spec::new(4);
    spec.https = https;
    // Slower timers than the protocol tests: a browser shares the two cores.
    spec.interval_ms = 100;
    // Disk probes with fsync can take longer than 200 ms while Chromium
    // decodes video on a loaded machine; this test is about the page.
    spec.disk_check_interval_ms = 1000;
    spec.disks = vec![
        (1, vec![1, 2]),
        (2, vec![2, 3]),
        (3, vec![3, 4]),
        (4, vec![4, 1]),
    ];
    let mut c = Cluster::start(&spec);
    // The video is on disk 3 only, so n3 or n4 serves it: the test kills
    // whichever does.
    for (name, bytes) in hls_title(&c.dir) {
        c.put_title(3, &name, &bytes);
    }
    c.wait_agree(1, &[1, 2, 3, 4]);

    let profile = c.dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let home = c.dir.join("browser-home");
    if let Some(ca) = &c.ca {
        home_trusting(&home, ca);
    }
    std::fs::create_dir_all(&home).unwrap();
    let driver = start_driver(&chromedriver, &c.dir.join("chromedriver.log"), &home);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let started = Instant::now();
        let client = ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities(&chromium, &profile))
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless Chromium");
        // n2 is a member: its page follows the supervisor n1.
        let page = format!("{}/", c.url(2));
        client.goto(&page).await.unwrap();
        client
            .execute("window.__sameDocument = 'yes'; return true;", vec![])
            .await
            .unwrap();

        wait_for(
            &client,
            &c,
            "four nodes up with n1 as supervisor",
            &format!(
                "{ROWS}
                 const ok = rows.length === 4 && rows.every(r => r[1] === 'up')
                   && rows.every(r => r[2] === (r[0] === 1 ? 'supervisor' : 'member'))
                   && document.getElementById('summary').dataset.supervisor === '1'
                   && document.querySelectorAll('svg.ring g.node[data-status=\"up\"]').length === 4
                   && document.querySelectorAll('svg.ring path.edge').length === 4
                   && document.getElementById('live').dataset.state === 'live';
                 return ok ? rows : null;"
            ),
        )
        .await;
        let shown = started.elapsed();
        // The tables are there too: every disk, and the title in the player.
        wait_for(
            &client,
            &c,
            "four disks and the title",
            "return document.querySelectorAll('table.disk-usage tbody tr').length === 4
               && Array.from(document.querySelectorAll('#title-select option'))
                    .some(o => o.value === 'show/index.m3u8');",
        )
        .await;

        // Play it, and find the node that serves its segments.
        client
            .execute(
                "document.getElementById('title-select').value = 'show/index.m3u8';
                 document.getElementById('play').click(); return true;",
                vec![],
            )
            .await
            .unwrap();
        let serving = wait_for(
            &client,
            &c,
            "the video playing from n3 or n4",
            &playing_from(1.0, 0),
        )
        .await;
        let victim = serving[0].as_u64().unwrap() as u32;
        assert!(victim == 3 || victim == 4, "disk 3 is reached by n3 and n4 only: {serving}");

        let killed = Instant::now();
        c.kill(victim);
        let failed = wait_for(
            &client,
            &c,
            "the killed node failed, in the table, on the ring and in the timeline",
            &format!(
                "const row = document.querySelector('table.nodes tbody tr[data-node=\"{victim}\"]');
                 const dot = document.querySelector('svg.ring g.node[data-node=\"{victim}\"]');
                 const ev = document.querySelector('#timeline li[data-kind=\"failed\"][data-node=\"{victim}\"]');
                 const ok = row && row.dataset.status === 'failed' && dot
                   && dot.dataset.status === 'failed' && ev
                   && document.querySelectorAll('svg.ring path.edge').length === 3;
                 return ok ? ev.textContent : null;"
            ),
        )
        .await;
        let seen_failed = killed.elapsed();
        // The supervisor's own record of it, from the supervisor's event
        // stream (another origin of the cluster, allowed by CORS).
        wait_for(
            &client,
            &c,
            "the supervisor's marked_failed event",
            &format!(
                "return !!document.querySelector(
                   '#timeline li[data-kind=\"marked_failed\"][data-node=\"{victim}\"][data-observer=\"1\"]');"
            ),
        )
        .await;
        // The video goes on: segments now come from the survivor, and the
        // playhead moves on past the buffer it had.
        let resumed = wait_for(
            &client,
            &c,
            "the video playing on from the other node",
            &playing_from(serving[1].as_f64().unwrap() + 8.0, victim),
        )
        .await;
        let same = client
            .execute("return window.__sameDocument || null;", vec![])
            .await
            .unwrap();
        assert_eq!(same, json!("yes"), "the page was not reloaded");
        let violations = client
            .execute("return window.ringcastDashboard.violations;", vec![])
            .await
            .unwrap();
        assert_eq!(
            violations,
            json!([]),
            "the page breaks its Content-Security-Policy"
        );

        let player = client
            .execute("return window.ringcastDashboard.player;", vec![])
            .await
            .unwrap();
        eprintln!("player log:\n{}", player.as_array().map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n")).unwrap_or_default());
        // The admin actions: n2 drained from the page shows as draining,
        // with an Undrain button that puts it back.
        client
            .execute(
                "document.getElementById('token').value = 'test-admin-token';
                 document.querySelector('button[data-drain=\"2\"]').click(); return true;",
                vec![],
            )
            .await
            .unwrap();
        wait_for(
            &client,
            &c,
            "n2 shown draining, with an Undrain button",
            "const row = document.querySelector('table.nodes tbody tr[data-node=\"2\"]');
             const b = document.querySelector('button[data-drain=\"2\"]');
             return row && row.dataset.status === 'draining' && b.textContent === 'Undrain' ? true : null;",
        )
        .await;
        let drain_state = |c: &Cluster| -> Option<Value> {
            c.agent
                .get(&format!("{}/v1/drain", c.url(2)))
                .call()
                .ok()?
                .into_json()
                .ok()
        };
        c.wait("n2 says it drains", |c| {
            drain_state(c).is_some_and(|v| v["draining"] == true)
        });
        client
            .execute(
                "document.querySelector('button[data-drain=\"2\"]').click(); return true;",
                vec![],
            )
            .await
            .unwrap();
        wait_for(
            &client,
            &c,
            "n2 shown up again, with a Drain button",
            "const row = document.querySelector('table.nodes tbody tr[data-node=\"2\"]');
             const b = document.querySelector('button[data-drain=\"2\"]');
             return row && row.dataset.status === 'up' && b.textContent === 'Drain' ? true : null;",
        )
        .await;
        c.wait("n2 says it serves again", |c| {
            drain_state(c).is_some_and(|v| v["draining"] == false)
        });

        let png = client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let saved = artifacts().join(if https {
            "dashboard-failover-https.png"
        } else {
            "dashboard-failover.png"
        });
        std::fs::write(&saved, &png).unwrap();
        if let Some(copy) = std::env::var_os("RINGCAST_DASHBOARD_PNG") {
            std::fs::write(&copy, &png).unwrap();
        }
        eprintln!(
            "dashboard showed the cluster {:.1} s after opening; n{victim} (serving the video \
             at {:.1} s) failed on the page {:.1} s after SIGKILL ({}); the video played on \
             from n{} to {:.1} s; screenshot {}",
            shown.as_secs_f64(),
            serving[1].as_f64().unwrap_or_default(),
            seen_failed.as_secs_f64(),
            failed.as_str().unwrap_or_default().trim(),
            resumed[0],
            resumed[1].as_f64().unwrap_or_default(),
            saved.display()
        );
        client.close().await.unwrap();
    });
    drop(driver);
}
