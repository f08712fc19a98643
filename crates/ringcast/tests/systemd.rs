//! A node under a service manager, through the real binary: the test plays
//! systemd's side of sd_notify(3) with a datagram socket of its own and
//! reads what the node tells it (READY once joined, the watchdog's pings
//! while the protocol loop runs and none while it is stopped, RELOADING then
//! READY on SIGHUP, STOPPING on SIGTERM).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::notify::Manager;
use common::{isolate_network, Cluster, Spec, BIN, LIMIT};
use nix::sys::signal::Signal;

/// The watchdog timeout handed to the node; it pings every half of it.
const WATCHDOG: Duration = Duration::from_millis(400);

/// Whether process `pid` is stopped (state `T` in /proc).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

#[test]
fn a_node_tells_systemd_ready_watchdog_reloading_and_stopping() {
    isolate_network();
    let mut c = Cluster::write(&Spec::new(2));
    c.spawn(1);
    c.wait_agree(1, &[1]);
    let manager = Manager::bind(&c.dir.join("notify.sock"));
    // Node 2 as systemd starts it: `$WATCHDOG_PID` must name the node's own
    // process, so a shell exports its pid and becomes the node.
    let log = std::fs::File::create(c.dir.join("node-2.log")).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(["node", "--config"])
        .arg(&c.file)
        .args(["--node", "2"])
        .env("NOTIFY_SOCKET", c.dir.join("notify.sock"))
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start ringcast node");
    let pid = child.id();
    c.children.insert(2, child);

    // READY only once the map lists the node: a unit ordered after this
    // one starts beside a member, not a process still looking for its cluster.
    let ready = manager.expect("READY=1", || c.describe());
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("member")),
        "READY without a status line naming the role: {ready:?}"
    );
    assert_eq!(
        c.status_of(1, 2).as_deref(),
        Some("up"),
        "READY came before the supervisor listed the node\n{}",
        c.describe()
    );

    // The watchdog is pinged while the loop runs.
    for _ in 0..3 {
        manager.expect("WATCHDOG=1", || c.describe());
    }

    // A stopped loop sends nothing: systemd would restart the node. Three
    // ping periods of silence are asked, counted after the stop took hold.
    c.signal(2, Signal::SIGSTOP);
    c.wait("node 2 is stopped", |_| stopped(pid));
    manager.drain();
    let quiet_until = Instant::now() + WATCHDOG / 2 * 3;
    let heard = manager.next(quiet_until);
    assert_eq!(heard, None, "a stopped node notified the service manager");
    c.signal(2, Signal::SIGCONT);
    manager.expect("WATCHDOG=1", || c.describe());

    // SIGHUP: RELOADING with the monotonic clock in the same message, then READY.
    c.wait_agree(1, &[1, 2]);
    manager.drain();
    c.signal(2, Signal::SIGHUP);
    let reloading = manager.expect("RELOADING=1", || c.describe());
    assert!(
        reloading.lines().any(|l| l
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|v| v.parse::<u64>().is_ok())),
        "RELOADING without MONOTONIC_USEC: {reloading:?}"
    );
    manager.expect("READY=1", || c.describe());

    // SIGTERM: STOPPING, and a clean exit.
    let stopping = {
        c.signal(2, Signal::SIGTERM);
        manager.expect("STOPPING=1", || c.describe())
    };
    assert!(
        stopping.contains("STATUS="),
        "STOPPING without a status: {stopping:?}"
    );
    let mut child = c.children.remove(&2).unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "node 2 exited {status}");
}
