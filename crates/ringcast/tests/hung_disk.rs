//! A disk that hangs, as a hung NFS or iSCSI mount does: every call on it
//! blocks, none fails. Disk 2 is a FUSE mount (`scripts/hangfs.py`) passing
//! through to a folder until the test makes every operation on it block.
//!
//! The cluster: n1 reaches disk 1 (a replica of every title of disk 2); n2
//! and n3 reach disk 2, the one that hangs; n2 also reaches disk 3, healthy
//! and its own. While a stream of a title on disk 2 and a stream of a title
//! on disk 3 are both served by n2, disk 2 hangs, and players holding stream
//! URLs of disk 2's title on n2 and n3 ask them again (a range, as a
//! browser's video element resumes). Then:
//!
//! - disk 2 is declared failed in the tables, disks 1 and 3 never are, and no
//!   node is ever declared failed;
//! - every node's `GET /v1/cluster` answers within a second throughout
//!   (polled every 100 ms on each node);
//! - the stream of disk 2 completes byte-exact, resumed from the replica;
//! - the stream of disk 3 on the same node never stalls: its output never
//!   goes two seconds without growing.
//!
//! Needs root and `/dev/fuse` (skipped otherwise, saying so), and fusepy
//! (`scripts/install-test-deps` installs python3-fusepy and fuse3). The mount
//! is released and detached when the test ends, even when it panics; the
//! script also releases any hang by itself after a while and detaches when
//! this process dies.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{disk_status, is_root, isolate_network, start_play, Cluster, Reap, Spec, LIMIT};
use serde_json::Value;

/// The FUSE script, from the workspace root.
const HANGFS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/hangfs.py");

/// The disk that hangs, the replica's disk (n1's) and n2's healthy disk.
const HUNG: u32 = 2;
const REPLICA: u32 = 1;
const HEALTHY: u32 = 3;

/// What this test allows: an API answer slower than this is a failure, and so is
/// a healthy stream whose output does not grow for this long.
const API_BOUND: Duration = Duration::from_secs(1);
const STALL_BOUND: Duration = Duration::from_secs(2);
/// Players asking their stream URL of the hung disk's title again, per node
/// that reaches it: more than a node has async workers (two).
const REREQUESTS: usize = 3;
/// How often each node's API is asked.
const API_POLL: Duration = Duration::from_millis(100);
/// How long the watchers wait for an answer: far above the bound, so that a
/// slow answer is measured, not only noticed.
const API_PATIENCE: Duration = Duration::from_secs(4);
/// `ringcast play` gives up on a connection that delivers nothing for this
/// long and resumes elsewhere (`crates/ringcast/src/play_cmd.rs`, its read
/// timeout).
const PLAY_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// What loopback sockets can hold between a node and a slow reader (send and
/// receive buffers; about 5 MB measured): a stalled node goes unnoticed by
/// the client for this much at its rate.
const SOCKET_BUFFERS: u64 = 6 << 20;

/// The stream of the disk that hangs, and the one of n2's healthy disk: fast
/// enough that the socket buffers hide under a second of a stall.
const HUNG_RATE: u64 = 4 << 20;
const HUNG_SIZE: usize = 48 << 20;
const HEALTHY_RATE: u64 = 8 << 20;
const HEALTHY_SIZE: usize = 128 << 20;

/// The modification time of every copy of a title: a replica is the same
/// version (same ETag) only with the same time.
fn title_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// How long after its first probe timeout a hung disk may take to be
/// declared failed: the probe's timeout (twice the probe interval, never
/// under a second: docs/streaming.md), a few more probes (for counts of
/// failed probes), the reports' way round the ring, and a second for a busy
/// machine.
fn disk_failure_within(spec: &Spec) -> Duration {
    let interval = Duration::from_millis(spec.disk_check_interval_ms);
    let probe_timeout = (interval * 2).max(Duration::from_secs(1));
    probe_timeout
        + interval * 5
        + Duration::from_millis(spec.interval_ms * 10)
        + Duration::from_secs(1)
}

/// Bytes that look random, fast (eight at a time).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A Python interpreter that has fusepy (Debian's module is `fusepy`, PyPI's
/// is `fuse`).
fn fusepy_python() -> Option<String> {
    let probe = "try:\n import fusepy\nexcept ImportError:\n from fuse import FUSE";
    ["/usr/bin/python3", "python3"].into_iter().find_map(|py| {
        Command::new(py)
            .args(["-c", probe])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
            .map(|_| py.to_string())
    })
}

/// Whether a file system is mounted at `path` (by this mount namespace).
fn mounted(path: &Path) -> bool {
    let want = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// `scripts/hangfs.py` mounted at `mount`. Dropping it releases any hang,
/// detaches the mount and ends the script, in that order, so no test leaves
/// a hung mount behind, even when it panics.
struct HangFs {
    child: Child,
    mount: PathBuf,
    control: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl HangFs {
    /// Mounts `backing` at `mount` and waits until the mount answers.
    fn mount(python: &str, backing: &Path, mount: &Path, scratch: &Path) -> HangFs {
        std::fs::create_dir_all(backing.join("library")).unwrap();
        std::fs::create_dir_all(mount).unwrap();
        let control = scratch.join("hangfs.hang");
        let state = scratch.join("hangfs.state");
        let log = scratch.join("hangfs.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(python)
            .arg(HANGFS)
            .arg(backing)
            .arg(mount)
            .arg("--control")
            .arg(&control)
            .arg("--state")
            .arg(&state)
            // Far beyond this test: only a safety net.
            .args(["--max-hang", "120"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start scripts/hangfs.py");
        let mut fs = HangFs {
            child,
            mount: mount.to_path_buf(),
            control,
            state,
            log,
        };
        let start = Instant::now();
        while !(mounted(mount) && fs.state() == "open") {
            if let Ok(Some(st)) = fs.child.try_wait() {
                panic!("hangfs.py exited ({st}) before mounting:\n{}", fs.log());
            }
            assert!(
                start.elapsed() < LIMIT,
                "hangfs.py did not mount {} within {LIMIT:?}:\n{}",
                mount.display(),
                fs.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        fs
    }

    fn state(&self) -> String {
        std::fs::read_to_string(&self.state)
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Makes every operation on the mount block; returns once it does.
    fn hang(&self) {
        std::fs::write(&self.control, b"hang\n").unwrap();
        self.wait_state("hung");
    }

    /// Lets every blocked operation go on.
    fn release(&self) {
        let _ = std::fs::remove_file(&self.control);
        self.wait_state("open");
    }

    fn wait_state(&self, want: &str) {
        let start = Instant::now();
        while self.state() != want {
            assert!(
                start.elapsed() < LIMIT,
                "hangfs.py never became {want}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the script logged (each blocked operation, with the caller's pid).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HangFs {
    fn drop(&mut self) {
        // Release first: nothing may stay blocked on the mount.
        let _ = std::fs::remove_file(&self.control);
        let start = Instant::now();
        while self.state() == "hung" && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Then detach it at once, whatever still uses it.
        let detached = ["fusermount3 -u -z", "umount -l"].iter().any(|cmd| {
            let mut words = cmd.split(' ');
            Command::new(words.next().unwrap())
                .args(words)
                .arg(&self.mount)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !detached && mounted(&self.mount) {
            eprintln!("could not detach {}", self.mount.display());
        }
        // The script ends once the last user of the detached mount is gone;
        // nodes still holding files open keep it, so it is not waited for long.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes title `name` on `disk` with the modification time every copy has
/// (checked: a copy of another time is another version, and `ringcast play`
/// would refuse to resume on it).
fn put_title_at(c: &Cluster, disk: u32, name: &str, bytes: &[u8]) {
    c.put_title(disk, name, bytes);
    let path = c.library(disk).join(name);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(title_time()).unwrap();
    drop(file);
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(
        mtime,
        title_time(),
        "the modification time of {}",
        path.display()
    );
}

/// What one answer of one node's `GET /v1/cluster` showed.
#[derive(Clone, Debug)]
struct Sample {
    node: u32,
    at: Instant,
    took: Duration,
    /// The error when there was no usable answer.
    error: Option<String>,
    /// Nodes of the map not `up`, with their status.
    not_up: Vec<(u64, String)>,
    ring: Vec<u64>,
    supervisor: Option<u64>,
    /// Status of each disk in the disk usage table.
    disks: BTreeMap<u32, String>,
    /// Paths (node, disk) the topology table lists as broken.
    broken: Vec<(u64, u64)>,
}

fn sample(node: u32, at: Instant, took: Duration, answer: Result<Value, String>) -> Sample {
    let mut s = Sample {
        node,
        at,
        took,
        error: None,
        not_up: Vec::new(),
        ring: Vec::new(),
        supervisor: None,
        disks: BTreeMap::new(),
        broken: Vec::new(),
    };
    let v = match answer {
        Ok(v) => v,
        Err(e) => {
            s.error = Some(e);
            return s;
        }
    };
    for n in v["nodes"].as_array().into_iter().flatten() {
        if n["status"] != "up" {
            let status = n["status"].as_str().unwrap_or("?").to_string();
            s.not_up.push((n["id"].as_u64().unwrap_or(0), status));
        }
    }
    s.ring = v["ring"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    s.supervisor = v["supervisor"].as_u64();
    for disk in [REPLICA, HUNG, HEALTHY] {
        if let Some(status) = disk_status(&v, disk) {
            s.disks.insert(disk, status);
        }
    }
    for row in v["tables"]["topology"].as_array().into_iter().flatten() {
        for link in row["disks"].as_array().into_iter().flatten() {
            if link["status"] == "Broken" {
                let node = row["node"].as_u64().unwrap_or(0);
                s.broken.push((node, link["disk"].as_u64().unwrap_or(0)));
            }
        }
    }
    s
}

/// One thread per node asking `GET /v1/cluster` every [`API_POLL`], each
/// answer timed, until stopped.
struct Watchers {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watchers {
    fn start(c: &Cluster) -> Watchers {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let threads = c
            .http
            .keys()
            .map(|id| {
                let (id, url) = (*id, format!("{}/v1/cluster", c.url(*id)));
                let (stop, samples) = (stop.clone(), samples.clone());
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new().timeout(API_PATIENCE).build();
                    while !stop.load(Ordering::Relaxed) {
                        let at = Instant::now();
                        let answer = agent
                            .get(&url)
                            .call()
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.into_json::<Value>().map_err(|e| e.to_string()));
                        let took = at.elapsed();
                        samples.lock().unwrap().push(sample(id, at, took, answer));
                        if let Some(rest) = API_POLL.checked_sub(at.elapsed()) {
                            std::thread::sleep(rest);
                        }
                    }
                })
            })
            .collect();
        Watchers {
            stop,
            samples,
            threads,
        }
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Stops every thread and returns every sample.
    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        self.samples()
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A running `ringcast play`, its output lines timestamped as they come.
struct Player {
    out: PathBuf,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    first: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    exit: Option<(Instant, std::process::ExitStatus)>,
}

impl Player {
    fn start(reap: &mut Reap, url: &str, rate: u64, out: PathBuf) -> Player {
        let mut child = start_play(url, rate, &out);
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, first) = mpsc::channel();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l.lock().unwrap().push((Instant::now(), line.clone()));
                let _ = tx.send(line);
            }
        });
        let err = Arc::new(Mutex::new(String::new()));
        let e = err.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            *e.lock().unwrap() = s;
        });
        reap.0.push(child);
        Player {
            out,
            lines,
            first,
            stderr: err,
            exit: None,
        }
    }

    /// The first line (`reading from HOST at byte 0`).
    fn first_line(&self) -> String {
        self.first
            .recv_timeout(LIMIT)
            .expect("ringcast play says where it reads from")
    }

    fn len(&self) -> u64 {
        std::fs::metadata(&self.out).map_or(0, |m| m.len())
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }
}

/// The longest time the output of a player did not grow while it ran.
#[derive(Default)]
struct Growth {
    len: u64,
    since: Option<Instant>,
    longest: Duration,
    /// When the longest pause started, and the length then.
    longest_at: Option<(Instant, u64)>,
}

impl Growth {
    fn observe(&mut self, len: u64, now: Instant) {
        let since = *self.since.get_or_insert(now);
        if len != self.len {
            self.len = len;
            self.since = Some(now);
        } else if now - since > self.longest {
            self.longest = now - since;
            self.longest_at = Some((since, len));
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Names the node and thread behind the caller pid that hangfs logs for a
/// blocked operation (`... (pid TID)`): the threads of the node processes.
fn annotate(line: &str, nodes: &BTreeMap<u32, u32>) -> String {
    let Some(tid) = line
        .rsplit_once("(pid ")
        .and_then(|(_, rest)| rest.trim_end_matches(')').parse::<u32>().ok())
    else {
        return line.to_string();
    };
    let owner = nodes
        .iter()
        .find(|(_, pid)| Path::new(&format!("/proc/{pid}/task/{tid}")).exists())
        .map(|(id, _)| *id);
    let read =
        |what: &str| std::fs::read_to_string(format!("/proc/{tid}/{what}")).unwrap_or_default();
    let (comm, wchan) = (read("comm"), read("wchan"));
    match owner {
        Some(id) => format!(
            "{line}: n{id}'s thread {:?}, waiting in {:?}",
            comm.trim(),
            wchan.trim()
        ),
        None => format!("{line}: not a node's thread (now)"),
    }
}

/// Where `got` and `want` first differ, or `None` when they are equal.
fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    if got == want {
        return None;
    }
    Some(
        got.iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len())),
    )
}

#[test]
fn a_hung_disk_is_declared_failed_while_every_node_answers_and_its_node_streams_on() {
    if !is_root() {
        eprintln!("skipped: the hung disk test mounts a FUSE file system, which needs root");
        return;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: /dev/fuse is missing, so no FUSE file system can be mounted");
        return;
    }
    let python = fusepy_python().unwrap_or_else(|| {
        panic!(
            "no python3 with fusepy: scripts/install-test-deps installs python3-fusepy and fuse3"
        )
    });
    isolate_network();
    let mut spec = Spec::new(3);
    spec.disks = vec![(REPLICA, vec![1]), (HUNG, vec![2, 3]), (HEALTHY, vec![2])];
    let mut c = Cluster::write(&spec);
    let mount = c.dir.join("disks").join(format!("d{HUNG}"));
    // The harness made the disk's library folder; the backing holds it instead.
    std::fs::remove_dir(mount.join("library")).unwrap();
    let fs = HangFs::mount(&python, &c.dir.join("backing"), &mount, &c.dir);
    for id in spec.nodes.clone() {
        c.spawn(id);
    }
    c.wait_agree(1, &[1, 2, 3]);
    let node_pids: BTreeMap<u32, u32> = c.children.iter().map(|(id, p)| (*id, p.id())).collect();

    let hung_title = random_bytes(HUNG_SIZE, 21);
    let healthy_title = random_bytes(HEALTHY_SIZE, 23);
    put_title_at(&c, HUNG, "hung.mp4", &hung_title);
    put_title_at(&c, HEALTHY, "steady.mp4", &healthy_title);
    // Listed, not placed: a placement counts as load for 3 s and would steer
    // the stream below away from n2.
    c.wait("both titles are listed", |c| {
        c.title_disks(1, "hung.mp4") == [u64::from(HUNG)]
            && c.title_disks(1, "steady.mp4") == [u64::from(HEALTHY)]
    });

    let watchers = Watchers::start(&c);
    let mut reap = Reap(Vec::new());
    // With no load anywhere, the lowest id among n2 and n3 serves disk 2's title.
    let hung = Player::start(
        &mut reap,
        &format!("{}/v1/play/hung.mp4", c.url(1)),
        HUNG_RATE,
        c.dir.join("hung.out"),
    );
    let first = hung.first_line();
    assert_eq!(
        c.node_of(&first),
        Some(2),
        "the premise: n2 serves disk {HUNG}'s title: {first}"
    );
    // Players that hold a stream URL of disk 2's title on n2 or n3 and ask
    // it again with a range, as a browser's video element resumes: taken now,
    // while only n2 and n3 can serve the title, and sent once it hangs.
    let mut urls: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for _ in 0..REREQUESTS * 8 {
        if [2, 3]
            .iter()
            .all(|n| urls.get(n).map_or(0, Vec::len) >= REREQUESTS)
        {
            break;
        }
        let location = c.place(1, "hung.mp4").expect("disk 2's title is placed");
        let node = c.node_of(&location).expect("the redirect names a node");
        urls.entry(node).or_default().push(location);
    }
    for n in [2, 3] {
        let got = urls.get(&n).map_or(0, Vec::len);
        assert!(
            got >= REREQUESTS,
            "the premise: {REREQUESTS} stream URLs on n{n}, got {urls:?}"
        );
    }
    let urls: Vec<(u32, String)> = urls
        .into_iter()
        .flat_map(|(n, list)| list.into_iter().take(REREQUESTS).map(move |u| (n, u)))
        .collect();
    for (_, url) in &urls {
        let status = ureq::head(url).call().map(|r| r.status());
        assert!(
            matches!(status, Ok(200)),
            "the premise: {url} answers: {status:?}"
        );
    }
    // Now the replica on n1's disk, with the same time (the same version).
    put_title_at(&c, REPLICA, "hung.mp4", &hung_title);
    c.wait("the replica is listed", |c| {
        c.title_disks(1, "hung.mp4") == [u64::from(REPLICA), u64::from(HUNG)]
    });
    // Only n2 reaches disk 3.
    let steady = Player::start(
        &mut reap,
        &format!("{}/v1/play/steady.mp4", c.url(1)),
        HEALTHY_RATE,
        c.dir.join("steady.out"),
    );
    let first = steady.first_line();
    assert_eq!(
        c.node_of(&first),
        Some(2),
        "only n2 reaches disk {HEALTHY}: {first}"
    );
    let started = Instant::now();
    while steady.len() < 1 << 20 || hung.len() < 1 << 20 {
        assert!(started.elapsed() < LIMIT, "the streams do not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let hung_len_at_hang = hung.len();
    assert!(
        hung_len_at_hang < HUNG_SIZE as u64 / 2,
        "the stream of disk {HUNG} is too far along ({hung_len_at_hang} bytes) to test a resume"
    );

    fs.hang();
    let hang_at = Instant::now();
    let rerequests: Vec<_> = urls
        .into_iter()
        .map(|(node, url)| {
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(API_PATIENCE).build();
                let at = Instant::now();
                let answer = match agent.get(&url).set("Range", "bytes=0-65535").call() {
                    Ok(r) => format!("{}", r.status()),
                    Err(ureq::Error::Status(code, _)) => format!("{code}"),
                    Err(e) => format!("no answer ({e})"),
                };
                (node, at.elapsed(), answer)
            })
        })
        .collect();

    // Deadlines from the timing: the disk's failure; the hung stream's
    // stall (what the sockets hold, then the client's read timeout) and the
    // rest of it; the healthy stream's own length.
    let failure_within = disk_failure_within(&spec);
    let at_rate = |bytes: u64, rate: u64| Duration::from_secs_f64(bytes as f64 / rate as f64);
    let hung_done_by = hang_at
        + failure_within.max(at_rate(SOCKET_BUFFERS, HUNG_RATE) + PLAY_READ_TIMEOUT)
        + at_rate(HUNG_SIZE as u64 - hung_len_at_hang, HUNG_RATE).mul_f64(1.5)
        + Duration::from_secs(3);
    let steady_done_by =
        started + at_rate(HEALTHY_SIZE as u64, HEALTHY_RATE).mul_f64(1.3) + Duration::from_secs(3);
    let deadline = hung_done_by.max(steady_done_by);

    let mut players = [hung, steady];
    let mut growth = [Growth::default(), Growth::default()];
    let mut disk_failed_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        for (i, p) in players.iter_mut().enumerate() {
            if p.exit.is_none() {
                growth[i].observe(p.len(), now);
                if let Some(st) = reap.0[i].try_wait().unwrap() {
                    p.exit = Some((now, st));
                }
            }
        }
        if disk_failed_at.is_none() {
            disk_failed_at = watchers
                .samples()
                .iter()
                .find(|s| s.node == 1 && s.disks.get(&HUNG).map(String::as_str) == Some("Failed"))
                .map(|s| s.at);
        }
        let done = players.iter().all(|p| p.exit.is_some()) && disk_failed_at.is_some();
        if done || now > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let samples = watchers.finish();
    let rerequests: Vec<(u32, Duration, String)> = rerequests
        .into_iter()
        .filter_map(|t| t.join().ok())
        .collect();
    let ended = Instant::now();
    for child in &mut reap.0 {
        let _ = child.kill();
        let _ = child.wait();
    }
    // While still blocked: which node's thread waits where.
    let blocked_ops: Vec<String> = fs.log().lines().map(|l| annotate(l, &node_pids)).collect();
    let views = c.describe();
    fs.release();
    let [hung, steady] = players;

    // What happened, relative to the hang.
    let rel = |t: Instant| -> String {
        if t >= hang_at {
            format!("+{}", secs(t - hang_at))
        } else {
            format!("-{}", secs(hang_at - t))
        }
    };
    let mut problems: Vec<String> = Vec::new();
    let mut report = String::new();
    // Any answer will do (503 with Retry-After, a redirect, the bytes from
    // another disk), but an answer: never a hung connection.
    for (n, took, answer) in &rerequests {
        if answer.starts_with("no answer") {
            problems.push(format!(
                "a stream request for disk {HUNG} at n{n} got {answer} after {}",
                secs(*took)
            ));
        }
    }
    report.push_str(&format!(
        "range requests of stream URLs of disk {HUNG} sent at the hang: {:?}\n",
        rerequests
            .iter()
            .map(|(n, took, answer)| format!("n{n}: {answer} after {}", secs(*took)))
            .collect::<Vec<_>>()
    ));

    // The disk is declared failed, the others never are, no node is.
    match disk_failed_at {
        Some(t) if t <= hang_at + failure_within => {}
        Some(t) => problems.push(format!(
            "disk {HUNG} declared failed only at {} (bound {})",
            rel(t),
            secs(failure_within)
        )),
        None => problems.push(format!(
            "disk {HUNG} never declared failed by n1 (the supervisor) within {} of the hang",
            secs(ended - hang_at)
        )),
    }
    for id in c.http.keys() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.node == *id).collect();
        let worst = mine.iter().map(|s| s.took).max().unwrap_or_default();
        report.push_str(&format!(
            "n{id}'s GET /v1/cluster: {} answers, the slowest in {} ms\n",
            mine.len(),
            worst.as_millis()
        ));
        let seen = samples
            .iter()
            .find(|s| s.node == *id && s.disks.get(&HUNG).map(String::as_str) == Some("Failed"));
        report.push_str(&format!(
            "n{id} sees disk {HUNG} failed: {}\n",
            seen.map_or("never".into(), |s| rel(s.at))
        ));
    }
    let mut wrong_disks = Vec::new();
    let mut nodes_down = Vec::new();
    let mut slow: BTreeMap<u32, Vec<&Sample>> = BTreeMap::new();
    for s in &samples {
        for disk in [REPLICA, HEALTHY] {
            if s.disks.get(&disk).is_some_and(|st| st != "Ok") {
                wrong_disks.push(format!(
                    "n{} at {}: disk {disk} {:?}",
                    s.node,
                    rel(s.at),
                    s.disks
                ));
            }
        }
        if s.broken.iter().any(|(_, d)| *d != u64::from(HUNG)) {
            wrong_disks.push(format!(
                "n{} at {}: broken paths {:?}",
                s.node,
                rel(s.at),
                s.broken
            ));
        }
        if !s.not_up.is_empty()
            || (s.error.is_none() && (s.ring != [1, 2, 3] || s.supervisor != Some(1)))
        {
            nodes_down.push(format!(
                "n{} at {}: not up {:?}, ring {:?}, supervisor {:?}",
                s.node,
                rel(s.at),
                s.not_up,
                s.ring,
                s.supervisor
            ));
        }
        if s.took > API_BOUND || s.error.is_some() {
            slow.entry(s.node).or_default().push(s);
        }
    }
    if !wrong_disks.is_empty() {
        problems.push(format!(
            "a healthy disk or path was declared failed ({} answers), first: {}",
            wrong_disks.len(),
            wrong_disks[..wrong_disks.len().min(3)].join("; ")
        ));
    }
    if !nodes_down.is_empty() {
        problems.push(format!(
            "a node was declared failed or left the ring ({} answers), first: {}",
            nodes_down.len(),
            nodes_down[..nodes_down.len().min(3)].join("; ")
        ));
    }
    for (id, list) in &slow {
        let worst = list.iter().map(|s| s.took).max().unwrap_or_default();
        let shown: Vec<String> = list
            .iter()
            .take(4)
            .map(|s| {
                format!(
                    "at {} took {}{}",
                    rel(s.at),
                    secs(s.took),
                    s.error
                        .as_ref()
                        .map_or(String::new(), |e| format!(" ({e})"))
                )
            })
            .collect();
        problems.push(format!(
            "n{id}'s GET /v1/cluster was slower than {} or failed {} times of {}, worst {}: {}",
            secs(API_BOUND),
            list.len(),
            samples.iter().filter(|s| s.node == *id).count(),
            secs(worst),
            shown.join("; ")
        ));
    }

    // The stream of the hung disk: complete, byte-exact, from the replica.
    let hung_lines = hung.lines();
    let resumed = hung_lines
        .iter()
        .filter(|(t, _)| *t > hang_at)
        .find_map(|(t, l)| c.node_of(l).map(|n| (*t, n, l.clone())));
    report.push_str(&format!(
        "stream of disk {HUNG}: {} of {HUNG_SIZE} bytes, {} at the hang, longest pause {} from {}, parts {:?}, exit {:?}\n",
        hung.len(),
        hung_len_at_hang,
        secs(growth[0].longest),
        growth[0].longest_at.map_or("-".into(), |(t, n)| format!("{} at byte {n}", rel(t))),
        hung_lines.iter().map(|(t, l)| format!("{} {l}", rel(*t))).collect::<Vec<_>>(),
        hung.exit.map(|(t, st)| format!("{st} at {}", rel(t)))
    ));
    match hung.exit {
        Some((_, st)) if st.success() => {
            let got = std::fs::read(&hung.out).unwrap_or_default();
            if let Some(at) = first_difference(&got, &hung_title) {
                problems.push(format!(
                    "the stream of disk {HUNG} completed but differs from byte {at} ({} bytes)",
                    got.len()
                ));
            }
            match resumed {
                Some((_, 1, _)) => {}
                other => problems.push(format!(
                    "the stream of disk {HUNG} did not resume from n1's replica after the hang: {other:?}"
                )),
            }
        }
        Some((_, st)) => problems.push(format!(
            "the stream of disk {HUNG} failed ({st}): {}",
            hung.stderr.lock().unwrap().trim()
        )),
        None => problems.push(format!(
            "the stream of disk {HUNG} did not complete within {} of the hang ({} of {HUNG_SIZE} bytes)",
            secs(ended - hang_at),
            hung.len()
        )),
    }

    // The stream of n2's healthy disk: never a pause of two seconds.
    report.push_str(&format!(
        "stream of disk {HEALTHY}: {} of {HEALTHY_SIZE} bytes, longest pause {} from {}, parts {:?}, exit {:?}\n",
        steady.len(),
        secs(growth[1].longest),
        growth[1].longest_at.map_or("-".into(), |(t, n)| format!("{} at byte {n}", rel(t))),
        steady.lines().iter().map(|(t, l)| format!("{} {l}", rel(*t))).collect::<Vec<_>>(),
        steady.exit.map(|(t, st)| format!("{st} at {}", rel(t)))
    ));
    if growth[1].longest > STALL_BOUND {
        problems.push(format!(
            "the stream of n2's healthy disk {HEALTHY} stalled for {} from {}",
            secs(growth[1].longest),
            growth[1]
                .longest_at
                .map_or("-".into(), |(t, n)| format!("{} at byte {n}", rel(t)))
        ));
    }
    match steady.exit {
        Some((_, st)) if st.success() => {
            let got = std::fs::read(&steady.out).unwrap_or_default();
            if let Some(at) = first_difference(&got, &healthy_title) {
                problems.push(format!(
                    "the stream of disk {HEALTHY} completed but differs from byte {at}"
                ));
            }
        }
        Some((_, st)) => problems.push(format!(
            "the stream of disk {HEALTHY} failed ({st}): {}",
            steady.stderr.lock().unwrap().trim()
        )),
        None => problems.push(format!(
            "the stream of disk {HEALTHY} did not complete ({} of {HEALTHY_SIZE} bytes)",
            steady.len()
        )),
    }

    if !problems.is_empty() {
        let ops = &blocked_ops;
        panic!(
            "{} problem(s) with disk {HUNG} hung:\n- {}\n\n{report}\nnode pids {node_pids:?}, hangfs pid {}; \
             what hangfs blocked ({} lines, the last 40):\n{}\n\nthe nodes at the end:\n{views}",
            problems.len(),
            problems.join("\n- "),
            fs.pid(),
            ops.len(),
            ops[ops.len().saturating_sub(40)..].join("\n"),
        );
    }
    eprintln!("{report}");
    // Nodes go before the mount, so the script ends as soon as it is detached.
    for id in c.running() {
        c.kill(id);
    }
    drop(fs);
}
