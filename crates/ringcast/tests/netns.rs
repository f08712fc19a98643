//! Three hosts in network namespaces joined by a bridge, as real processes:
//! multicast between them; a minority cut off by link down while a stream
//! plays, which yields two supervisors and heals into one with the stream
//! byte-exact; a one-way link (made in the transport, `RINGCAST_TEST_FAULTS`,
//! since `tc netem` is not available); a flapping link.
//! Each test reports how long the cluster took to converge after the fault
//! ended. Needs root; skipped (and says so) otherwise.
//!
//! Everything lives in namespaces the test creates and removes: the hosts
//! `rc<pid>-<n>h1..3` and the bridge's own namespace `rc<pid>-<n>br`, with
//! addresses in 10.254.0.0/24 that exist only inside them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use common::lan::Lan;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hosts h1..hN at 10.254.0.1..N on one bridge.
struct Net(Lan);

impl Net {
    fn new(hosts: u32) -> Net {
        let named: Vec<(String, String)> = (1..=hosts)
            .map(|h| (format!("h{h}"), format!("10.254.0.{h}/24")))
            .collect();
        let refs: Vec<(&str, &str)> = named
            .iter()
            .map(|(h, a)| (h.as_str(), a.as_str()))
            .collect();
        Net(Lan::new("", &refs))
    }

    fn host(&self, h: u32) -> String {
        self.0.ns(&format!("h{h}"))
    }

    /// Cuts (or restores) host `h`'s link to the bridge.
    fn link(&self, h: u32, up: bool) {
        self.0.link(&format!("h{h}"), up);
    }
}

/// The supervisor node `h` follows, in its own words.
fn own_supervisor(net: &Net, h: u32) -> Option<u64> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.host(h),
            common::BIN,
            "status",
            "--json",
            "--no-follow",
            "--url",
        ])
        .arg(format!("http://10.254.0.{h}:8500"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["supervisor"].as_u64()
}

/// Waits until `done` holds; returns how long it took (an upper bound: each
/// look asks every host through `ip netns exec`).
fn wait(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < common::LIMIT,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    eprintln!("{what}: after {took:?}");
    took
}

/// The title every host's disk holds, the same bytes and modification time.
const MOVIE_BYTES: u32 = 4 << 20;

/// Three node processes, one per host, and their files.
struct Hosts {
    net: Net,
    dir: PathBuf,
    children: Vec<Child>,
    interval_ms: u64,
}

impl Hosts {
    /// Starts node `h` on host `h` for h in 1..=3 (priority 1, 2, 3), each
    /// with a disk and a fault file it watches. `movie.mp4` is on the disks
    /// of hosts 2 and 3 only, so the player on host 1 is always served
    /// across the bridge.
    fn start(interval_ms: u64) -> Hosts {
        let net = Net::new(3);
        let dir = std::env::temp_dir().join(format!("ringcast-{}", net.0.prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cluster.key"), common::key_hex(0x33)).unwrap();
        let t = interval_ms;
        let mut toml = format!(
            "[cluster]\nid = 7\nname = \"bridge\"\nconfig_version = 1\nbus = \"239.255.99.1:7400\"\n\
             transport = \"multicast\"\nttl = 1\nloopback = true\nkey_file = \"cluster.key\"\n\
             priority = [1, 2, 3]\n\n[timing]\nstatus_interval_ms = {t}\nnotify_interval_ms = {t}\n\
             notification_time_ms = {}\ntakeover_step_ms = {}\njoin_retry_ms = {t}\nleave_retry_ms = {t}\n\n",
            3 * t,
            t / 2
        );
        let movie = movie();
        let mtime = SystemTime::now();
        for h in 1..=3 {
            let mount = dir.join(format!("disk-h{h}"));
            let lib = mount.join("library");
            std::fs::create_dir_all(&lib).unwrap();
            if h != 1 {
                std::fs::write(lib.join("movie.part"), &movie).unwrap();
                let f = std::fs::File::options()
                    .write(true)
                    .open(lib.join("movie.part"))
                    .unwrap();
                f.set_modified(mtime).unwrap();
                std::fs::rename(lib.join("movie.part"), lib.join("movie.mp4")).unwrap();
            }
            toml.push_str(&format!(
                "[[node]]\nid = {h}\nring = \"10.254.0.{h}:7501\"\nhttp = \"10.254.0.{h}:8500\"\n\
                 interface = \"10.254.0.{h}\"\nmax_streams = 10\nmax_bytes_per_s = 1000000000\n\n\
                 [[node.disk]]\nid = {h}\nmount = \"{m}\"\nprobe = \"{m}/.probe\"\n\n",
                m = mount.display()
            ));
        }
        let file = dir.join("cluster.toml");
        std::fs::write(&file, toml).unwrap();
        let children = (1..=3)
            .map(|h| {
                let log = std::fs::File::create(dir.join(format!("node-{h}.log"))).unwrap();
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &net.host(h),
                        common::BIN,
                        "node",
                        "--config",
                    ])
                    .arg(&file)
                    .args(["--node", &h.to_string()])
                    .env("RINGCAST_TEST_FAULTS", dir.join(format!("faults-h{h}")))
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap()
            })
            .collect();
        Hosts {
            net,
            dir,
            children,
            interval_ms,
        }
    }

    /// Whether every host of `hosts` follows `sup`.
    fn all_follow(&self, sup: u64, hosts: &[u32]) -> bool {
        hosts
            .iter()
            .all(|h| own_supervisor(&self.net, *h) == Some(sup))
    }

    /// Makes host `h` drop everything it receives from `from` (or, with
    /// `None`, nothing), by rewriting the file it watches.
    fn drop_from(&self, h: u32, from: Option<u32>) {
        let rules = from.map_or(String::new(), |f| format!("drop_from 10.254.0.{f}\n"));
        common::replace_file(&self.dir.join(format!("faults-h{h}")), &rules);
    }

    /// Waits until all three follow n1 again after a fault ended, and says
    /// how that compares with three notification intervals.
    fn wait_healed(&self, fault: &str) -> Duration {
        let took = wait(&format!("after {fault}, n1 is the only supervisor"), || {
            self.all_follow(1, &[1, 2, 3])
        });
        eprintln!(
            "{fault}: converged {took:?} after the fault ended (three notification intervals: {} ms; measured by polling every host)",
            3 * self.interval_ms
        );
        took
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn movie() -> Vec<u8> {
    (0..MOVIE_BYTES)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// A `ringcast play` of the movie from host 1's namespace, entering at n1.
struct Play {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    out: PathBuf,
}

impl Play {
    fn start(hosts: &Hosts, bytes_per_s: u64) -> Play {
        let out = hosts.dir.join("download.mp4");
        let mut ip = Command::new("ip");
        ip.args(["netns", "exec", &hosts.net.host(1), common::BIN]);
        let mut child = common::play_command(
            ip,
            "http://10.254.0.1:8500/v1/play/movie.mp4",
            bytes_per_s,
            &out,
        );
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Play { child, lines, out }
    }

    /// The host serving the first part.
    fn first_host(&mut self) -> u32 {
        let first = self.lines.next().unwrap().unwrap();
        let host = first
            .split("10.254.0.")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("no host in {first:?}"));
        common::wait_len(&self.out, 1 << 20);
        host
    }

    /// Reads the player's lines until it resumes from `host` (it gives up
    /// on a silent connection after its read timeout, 3 s).
    fn wait_resumed_from(&mut self, host: u32) {
        let mut seen = Vec::new();
        let from = format!("reading from 10.254.0.{host}:8500");
        for line in self.lines.by_ref().map_while(Result::ok) {
            if line.starts_with(&from) {
                return;
            }
            seen.push(line);
        }
        panic!("the player ended without resuming from host {host}: {seen:?}");
    }

    /// Waits for the download to end and checks every byte.
    fn finish(mut self) -> Vec<String> {
        let rest: Vec<String> = self.lines.by_ref().map_while(Result::ok).collect();
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(status.success(), "{err}\n{rest:?}");
        assert_eq!(
            Sha256::digest(std::fs::read(&self.out).unwrap()),
            Sha256::digest(movie()),
            "SHA-256 of the download"
        );
        rest
    }
}

/// Three hosts formed into one cluster under n1, at 20 ms timing; `None`
/// (and a line saying why) when not root.
fn formed_hosts() -> Option<Hosts> {
    if !common::is_root() {
        eprintln!("skipped: creating network namespaces needs root");
        return None;
    }
    let hosts = Hosts::start(20);
    wait("the three hosts form one cluster under n1", || {
        hosts.all_follow(1, &[1, 2, 3])
    });
    Some(hosts)
}

#[test]
fn a_minority_cut_off_supervises_itself_and_heals_into_one_cluster_without_losing_the_stream() {
    let Some(hosts) = formed_hosts() else {
        return;
    };
    // A stream from host 1, served by host 2 or 3; the host serving it is
    // cut off until the player has gone on from the other.
    let mut play = Play::start(&hosts, 1_000_000);
    let serving = play.first_host();
    assert_ne!(serving, 1, "host 1 has no copy of the title");
    let rest: Vec<u32> = (1..=3).filter(|h| *h != serving).collect();
    hosts.net.link(serving, false);
    wait(
        "the cut-off host supervises itself, the rest the highest of them",
        || {
            hosts.all_follow(u64::from(serving), &[serving])
                && hosts.all_follow(u64::from(rest[0]), &rest)
        },
    );
    play.wait_resumed_from(5 - serving);
    hosts.net.link(serving, true);
    hosts.wait_healed("a minority cut off");
    play.finish();
}

#[test]
fn a_one_way_link_ends_in_one_supervisor_when_it_heals_and_the_stream_goes_on() {
    let Some(hosts) = formed_hosts() else {
        return;
    };
    let mut play = Play::start(&hosts, 1_000_000);
    play.first_host();
    // n2 hears nothing from n1; n1 and n3 hear everyone.
    hosts.drop_from(2, Some(1));
    wait("n2, deaf to n1, takes over for itself", || {
        own_supervisor(&hosts.net, 2) == Some(2)
    });
    hosts.drop_from(2, None);
    hosts.wait_healed("a one-way link");
    play.finish();
}

#[test]
fn a_flapping_link_ends_in_one_supervisor_once_it_stays_up() {
    let Some(hosts) = formed_hosts() else {
        return;
    };
    let mut play = Play::start(&hosts, 1_000_000);
    let serving = play.first_host();
    // The serving host's link goes down and up eight times: down for longer
    // than the failure detection time, up for about as long; the fault ends
    // with the last time it comes up.
    for i in 0..8 {
        hosts.net.link(serving, false);
        std::thread::sleep(Duration::from_millis(150));
        hosts.net.link(serving, true);
        if i < 7 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    hosts.wait_healed("a flapping link");
    play.finish();
}
