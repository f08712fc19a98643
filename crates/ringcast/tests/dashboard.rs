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

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
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

fn start_driver(driver: &Path, log: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(driver)
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
        // No name resolves: only the loopback addresses the test gives.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".into(),
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
    let mut last = Value::Null;
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
            panic!(
                "the page did not show that {what} within {DEADLINE:?} (last: {last})\n\
                 --- page text:\n{}\n--- cluster:\n{}",
                text.as_str().unwrap_or_default(),
                cluster.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `[node, status, role]` of every row of the node table, once all `n` are there.
const ROWS: &str = "const rows = Array.from(document.querySelectorAll('table.nodes tbody tr'));
    return rows.map(r => [Number(r.dataset.node), r.dataset.status, r.dataset.role]);";

#[test]
fn the_dashboard_shows_a_killed_node_fail_and_its_event_without_reloading() {
    isolate_network();
    let (chromium, chromedriver) = browser();
    let mut spec = Spec::new(4);
    // Slower timers than the protocol tests: a browser shares the two cores.
    spec.interval_ms = 100;
    spec.disks = vec![
        (1, vec![1, 2]),
        (2, vec![2, 3]),
        (3, vec![3, 4]),
        (4, vec![4, 1]),
    ];
    let mut c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3, 4]);
    c.put_title(1, "movie.mp4", &[0u8; 4096]);

    let profile = c.dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let driver = start_driver(&chromedriver, &c.dir.join("chromedriver.log"));
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
                    .some(o => o.value === 'movie.mp4');",
        )
        .await;

        let killed = Instant::now();
        c.kill(3);
        let failed = wait_for(
            &client,
            &c,
            "n3 failed, in the table, on the ring and in the timeline",
            "const row = document.querySelector('table.nodes tbody tr[data-node=\"3\"]');
             const dot = document.querySelector('svg.ring g.node[data-node=\"3\"]');
             const ev = document.querySelector('#timeline li[data-kind=\"failed\"][data-node=\"3\"]');
             const ok = row && row.dataset.status === 'failed' && dot
               && dot.dataset.status === 'failed' && ev
               && document.querySelectorAll('svg.ring path.edge').length === 3;
             return ok ? ev.textContent : null;",
        )
        .await;
        let seen_failed = killed.elapsed();
        // The supervisor's own record of it, from the supervisor's event
        // stream (another origin of the cluster, allowed by CORS).
        wait_for(
            &client,
            &c,
            "the supervisor's marked_failed event for n3",
            "return !!document.querySelector(
               '#timeline li[data-kind=\"marked_failed\"][data-node=\"3\"][data-observer=\"1\"]');",
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

        let png = client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let saved = artifacts().join("dashboard-failover.png");
        std::fs::write(&saved, &png).unwrap();
        if let Some(copy) = std::env::var_os("RINGCAST_DASHBOARD_PNG") {
            std::fs::write(&copy, &png).unwrap();
        }
        eprintln!(
            "dashboard showed the cluster {:.1} s after opening, n3 failed {:.1} s after SIGKILL \
             ({}); screenshot {}",
            shown.as_secs_f64(),
            seen_failed.as_secs_f64(),
            failed.as_str().unwrap_or_default().trim(),
            saved.display()
        );
        client.close().await.unwrap();
    });
    drop(driver);
}
