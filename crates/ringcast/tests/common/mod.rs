//! A harness for tests with real node processes: writes a cluster file,
//! starts and kills `ringcast node` processes, and reads their HTTP API.
//!
//! When the tests run as root, each test first moves its thread into a fresh
//! network namespace holding nothing but loopback, so no datagram can leave
//! it; processes it starts inherit that namespace.

#![allow(dead_code)]

pub mod capture;
pub mod lan;
pub mod notify;
pub mod package;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringcast");

/// How long a condition may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(20);

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Moves this test's thread into a fresh network namespace with loopback up
/// (as root); otherwise stays on the host's loopback.
pub fn isolate_network() {
    if !is_root() {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare the network namespace");
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(st.success(), "ip link set lo up failed");
}

/// A free UDP or TCP port on 127.0.0.1 (in this thread's namespace), never
/// one this test process handed out before: the kernel may give a port just
/// released to the next bind, and two nodes of one file must not share one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = t.local_addr().unwrap().port();
        let udp_free = UdpSocket::bind(("127.0.0.1", port)).is_ok();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if udp_free && given.insert(port) {
            return port;
        }
    }
}

/// Options of a test cluster.
#[derive(Clone, Debug)]
pub struct Spec {
    pub nodes: Vec<u32>,
    pub unicast: bool,
    pub preempt: bool,
    pub interval_ms: u64,
    /// Disks: (disk id, the nodes that reach it). Mounted at `<dir>/disks/d<id>`.
    pub disks: Vec<(u32, Vec<u32>)>,
    /// Concurrent streams each node may serve.
    pub max_streams: u32,
    /// How often disks are probed; a probe fails after twice this.
    pub disk_check_interval_ms: u64,
    /// Entries of the cluster file's `[limits]` table.
    pub limits: Vec<(&'static str, u64)>,
    /// HTTPS on every node: `ringcast credentials init` in
    /// `<dir>/credentials`, named by the file (`tls_ca`, each node's
    /// `tls_cert` and `tls_key`).
    pub https: bool,
}

impl Spec {
    pub fn new(nodes: u32) -> Spec {
        Spec {
            nodes: (1..=nodes).collect(),
            unicast: false,
            preempt: true,
            interval_ms: 20,
            disks: Vec::new(),
            max_streams: 100,
            disk_check_interval_ms: 100,
            limits: Vec::new(),
            https: false,
        }
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub http: BTreeMap<u32, SocketAddr>,
    /// Claim 13: each node's service address, which outlives its process.
    pub service: BTreeMap<u32, SocketAddr>,
    /// The cluster address, held by the supervisor.
    pub address: SocketAddr,
    pub children: BTreeMap<u32, Child>,
    pub agent: ureq::Agent,
    /// With HTTPS, the cluster's CA certificate (the agent trusts it).
    pub ca: Option<PathBuf>,
}

/// Where test clusters keep their files and disks: a memory file system
/// when the machine has one, else the temporary folder. The disk probe
/// fsyncs every disk every 100 ms; on a machine busy with the rest of the
/// suite a real disk's fsync took over a second, and the probe rightly called
/// that disk hung. What these tests count must not depend on the machine's
/// disk latency (a hung disk is tested on purpose, with a disk that hangs).
pub fn test_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable =
        shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly());
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Whether `text` names the address `addr` (not merely a longer one that
/// starts with it, as 127.0.0.1:80 starts 127.0.0.1:8080).
fn names(text: &str, addr: &str) -> bool {
    text.match_indices(addr).any(|(i, _)| {
        !text[i + addr.len()..].starts_with(|c: char| c.is_ascii_digit())
            && !text[..i].ends_with(|c: char| c.is_ascii_digit() || c == '.')
    })
}

/// Reproducible test content: `len` bytes of xorshift from `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn key_hex(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

impl Cluster {
    /// Writes the cluster file (key byte 0x11) without starting anything.
    pub fn write(spec: &Spec) -> Cluster {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = test_root().join(format!("ringcast-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cluster.key"), key_hex(0x11)).unwrap();
        std::fs::write(dir.join("admin.token"), "test-admin-token").unwrap();
        let bus_port = free_port();
        let group = 100 + n % 100;
        let mut http = BTreeMap::new();
        let priority: Vec<String> = spec.nodes.iter().map(|n| n.to_string()).collect();
        let t = spec.interval_ms;
        // Claim 13: service addresses in a block of 127.0.0.0/8 of this
        // cluster's own, so clusters of concurrent tests never share one.
        let service_port = free_port();
        let block = (1 + std::process::id() % 200, n % 256);
        let service_ip = |host: u32| format!("127.{}.{}.{host}", block.0, block.1);
        let address: SocketAddr = format!("{}:{service_port}", service_ip(250))
            .parse()
            .unwrap();
        let mut service = BTreeMap::new();
        let mut toml = format!(
            "[cluster]\nid = 1\nname = \"test\"\nconfig_version = 1\naddress = \"{address}\"\nbus = \"239.255.77.{group}:{bus_port}\"\n\
             transport = \"{}\"\ninterface = \"127.0.0.1\"\nttl = 0\nloopback = true\n\
             key_file = \"cluster.key\"\nadmin_token_file = \"admin.token\"\npriority = [{}]\n\n\
             [timing]\nstatus_interval_ms = {t}\nnotify_interval_ms = {t}\nnotification_time_ms = {}\n\
             miss_limit = 3\ntakeover_step_ms = {}\npreempt = {}\n\n",
            if spec.unicast { "unicast" } else { "multicast" },
            priority.join(", "),
            t * 3,
            t / 2,
            spec.preempt,
        );
        toml = toml.replace(
            "preempt = ",
            &format!(
                "disk_check_interval_ms = {}\npreempt = ",
                spec.disk_check_interval_ms
            ),
        );
        for id in &spec.nodes {
            let ring = free_port();
            let h: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            http.insert(*id, h);
            let svc: SocketAddr = format!("{}:{service_port}", service_ip(*id))
                .parse()
                .unwrap();
            service.insert(*id, svc);
            toml.push_str(&format!(
                "[[node]]\nid = {id}\nring = \"127.0.0.1:{ring}\"\nhttp = \"{h}\"\nservice = \"{svc}\"\nmax_streams = {}\nmax_bytes_per_s = 1000000000\n\n",
                spec.max_streams
            ));
            for (disk, reached_by) in &spec.disks {
                if !reached_by.contains(id) {
                    continue;
                }
                let mount = dir.join("disks").join(format!("d{disk}"));
                std::fs::create_dir_all(mount.join("library")).unwrap();
                toml.push_str(&format!(
                    "[[node.disk]]\nid = {disk}\nmount = \"{}\"\nprobe = \"{}\"\n\n",
                    mount.display(),
                    mount.join(format!(".probe-n{id}")).display()
                ));
            }
        }
        if !spec.limits.is_empty() {
            toml.push_str("[limits]\n");
            for (name, value) in &spec.limits {
                toml.push_str(&format!("{name} = {value}\n"));
            }
        }
        let file = dir.join("cluster.toml");
        std::fs::write(&file, &toml).unwrap();
        let ca = spec.https.then(|| https(&file, &toml, &spec.nodes));
        let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_millis(500));
        if let Some(ca) = &ca {
            agent = agent.tls_config(ringcast_config::credentials::trusting(ca).unwrap());
        }
        Cluster {
            dir,
            file,
            http,
            service,
            address,
            children: BTreeMap::new(),
            ca,
            agent: agent.build(),
        }
    }

    /// Writes the cluster file and starts every node.
    pub fn start(spec: &Spec) -> Cluster {
        let mut c = Cluster::write(spec);
        for id in spec.nodes.clone() {
            c.spawn(id);
        }
        c
    }

    /// Starts node `id` from the cluster file.
    pub fn spawn(&mut self, id: u32) {
        let file = self.file.clone();
        self.spawn_with(id, &file);
    }

    /// Starts node `id` from another cluster file (a wrong key, say).
    pub fn spawn_with(&mut self, id: u32, file: &Path) {
        self.spawn_custom(id, file, &[], &[]);
    }

    /// Starts node `id` with global options before `node` (such as
    /// `--log-format json`) and extra environment variables.
    pub fn spawn_custom(&mut self, id: u32, file: &Path, global: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir.join(format!("node-{id}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(global)
            .envs(env.iter().copied())
            .args(["node", "--config"])
            .arg(file)
            .args(["--node", &id.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ringcast node");
        self.children.insert(id, child);
    }

    /// SIGKILL: the node dies without a word.
    pub fn kill(&mut self, id: u32) {
        if let Some(mut c) = self.children.remove(&id) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM: the node leaves gracefully; waits for its exit.
    pub fn terminate(&mut self, id: u32) -> std::process::ExitStatus {
        let mut c = self.children.remove(&id).expect("running node");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to node `id`'s process.
    pub fn signal(&self, id: u32, signal: nix::sys::signal::Signal) {
        let c = self.children.get(&id).expect("running node");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal).unwrap();
    }

    /// The value of the metric line of node `id` that starts with `name`
    /// (labels included, e.g. `ringcast_epoch` or
    /// `ringcast_frames_rejected_total{reason="bad_tag"}`); panics when the node exports no such series.
    pub fn metric(&self, id: u32, name: &str) -> u64 {
        let text = self.metrics(id);
        let value = text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        // A series the node does not export is a mistake in the test, not a
        // zero: a misspelt name would make every comparison with it vacuous.
        value
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("n{id} exports no series {name}:\n{text}"))
    }

    /// The library folder of disk `disk`.
    pub fn library(&self, disk: u32) -> PathBuf {
        self.dir
            .join("disks")
            .join(format!("d{disk}"))
            .join("library")
    }

    /// Writes `bytes` as title `name` on `disk` (by rename, as a library should be written).
    pub fn put_title(&self, disk: u32, name: &str, bytes: &[u8]) {
        let path = self.library(disk).join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    /// Asks node `via` where to play `title`: the redirect's Location, or the error status.
    pub fn place(&self, via: u32, title: &str) -> Result<String, u16> {
        let mut agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(2));
        if let Some(ca) = &self.ca {
            agent = agent.tls_config(ringcast_config::credentials::trusting(ca).unwrap());
        }
        let agent = agent.build();
        match agent
            .get(&format!("{}/v1/play/{title}", self.url(via)))
            .call()
        {
            Ok(r) if r.status() == 307 => Ok(r.header("location").unwrap().to_string()),
            Ok(r) => Err(r.status()),
            Err(ureq::Error::Status(code, _)) => Err(code),
            Err(_) => Err(0),
        }
    }

    /// The node whose HTTP address or service address appears in `url`
    /// (a stream URL names the serving node's service address).
    pub fn node_of(&self, url: &str) -> Option<u32> {
        self.http
            .iter()
            .chain(&self.service)
            .find(|(_, a)| names(url, &a.to_string()))
            .map(|(id, _)| *id)
    }

    pub fn running(&self) -> Vec<u32> {
        self.children.keys().copied().collect()
    }

    pub fn url(&self, id: u32) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.http[&id])
    }

    /// `GET /v1/cluster` of node `id`, or `None` if it does not answer.
    pub fn view(&self, id: u32) -> Option<Value> {
        let body = self
            .agent
            .get(&format!("{}/v1/cluster", self.url(id)))
            .call()
            .ok()?;
        body.into_json().ok()
    }

    /// The disks holding `title` in node `via`'s `GET /v1/titles`, sorted
    /// (empty when it lists no such title or does not answer).
    pub fn title_disks(&self, via: u32, title: &str) -> Vec<u64> {
        let Some(v) = self
            .agent
            .get(&format!("{}/v1/titles", self.url(via)))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
        else {
            return Vec::new();
        };
        let mut disks: Vec<u64> = v["titles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["title"] == title)
            .flat_map(|t| t["disks"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d.as_u64())
            .collect();
        disks.sort_unstable();
        disks
    }

    /// One stage of a key rotation: writes `keys` as the key file
    /// and raises the cluster file's configuration version to `version`.
    pub fn stage_keys(&self, keys: &str, version: u32) {
        replace_file(&self.dir.join("cluster.key"), keys);
        let text = std::fs::read_to_string(&self.file).unwrap();
        let text = text.replacen(
            &format!("config_version = {}", version - 1),
            &format!("config_version = {version}"),
            1,
        );
        replace_file(&self.file, &text);
    }

    pub fn metrics(&self, id: u32) -> String {
        self.agent
            .get(&format!("{}/metrics", self.url(id)))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    }

    /// Waits until `done` holds, polling; panics with the logs at the deadline.
    pub fn wait(&self, what: &str, mut done: impl FnMut(&Cluster) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if done(self) {
                return start.elapsed();
            }
            if start.elapsed() > LIMIT {
                panic!("timed out waiting until {what}\n{}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether every running node follows `sup`, lists exactly `up` as up, and agrees on the ring.
    pub fn agrees(&self, sup: u32, up: &[u32]) -> bool {
        self.agree_among(&self.running(), sup, up)
    }

    /// Whether every node of `ids` follows `sup`, lists exactly `up` as up, and agrees on the ring.
    pub fn agree_among(&self, ids: &[u32], sup: u32, up: &[u32]) -> bool {
        assert!(!ids.is_empty(), "agreement among no nodes proves nothing");
        ids.iter().all(|id| {
            let Some(v) = self.view(*id) else {
                return false;
            };
            let ups: Vec<u64> = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["status"] == "up")
                .map(|n| n["id"].as_u64().unwrap())
                .collect();
            let ring: Vec<u64> = v["ring"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .collect();
            let want: Vec<u64> = up.iter().map(|n| u64::from(*n)).collect();
            v["supervisor"] == sup && ups == want && ring == want
        })
    }

    pub fn wait_agree(&self, sup: u32, up: &[u32]) -> Duration {
        self.wait(&format!("every node follows n{sup} with {up:?} up"), |c| {
            c.agrees(sup, up)
        })
    }

    pub fn status_of(&self, observer: u32, node: u32) -> Option<String> {
        let v = self.view(observer)?;
        v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == node)
            .and_then(|n| n["status"].as_str().map(String::from))
    }

    pub fn epoch(&self, id: u32) -> u64 {
        self.view(id)
            .map_or(0, |v| v["epoch"].as_u64().unwrap_or(0))
    }

    /// Every node's view and the tail of its log, for a failure message.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for id in self.http.keys() {
            out.push_str(&format!(
                "--- n{id}: {}\n",
                self.view(*id).map_or("no answer".into(), |v| v.to_string())
            ));
            let log = std::fs::read_to_string(self.dir.join(format!("node-{id}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The status (`Ok`, `Failed`) of `disk` in the disk usage table of a
/// `GET /v1/cluster` answer, if the table has it.
pub fn disk_status(view: &Value, disk: u32) -> Option<String> {
    view["tables"]["disk_usage"]
        .as_array()?
        .iter()
        .find(|d| d["disk"] == disk)
        .and_then(|d| d["status"].as_str().map(String::from))
}

/// Child processes killed when dropped, even when the test panics.
pub struct Reap(pub Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Replaces a file at once (write a temporary file, then rename), so a node
/// rereading it never sees half of it.
pub fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Runs the ringcast binary to completion.
/// Starts `ringcast play URL --plain --max-rate RATE --out OUT`, its output
/// piped: each line says where a part is read from.
pub fn start_play(url: &str, max_rate: u64, out: &Path) -> Child {
    play_command(Command::new(BIN), url, max_rate, out)
}

/// Adds `play URL --plain --max-rate RATE --out OUT` to `cmd` (the binary,
/// or a wrapper that runs it) and starts it with its output piped.
pub fn play_command(mut cmd: Command, url: &str, max_rate: u64, out: &Path) -> Child {
    cmd.args([
        "play",
        url,
        "--plain",
        "--max-rate",
        &max_rate.to_string(),
        "--out",
    ])
    .arg(out)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start ringcast play")
}

/// Waits until the file at `path` holds at least `bytes`.
pub fn wait_len(path: &Path, bytes: u64) {
    let start = Instant::now();
    while std::fs::metadata(path).map_or(0, |m| m.len()) < bytes {
        assert!(start.elapsed() < LIMIT, "the download does not progress");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn ringcast(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run ringcast")
}

/// HTTPS for the cluster file `file` (whose text is `toml`): credentials
/// made for it in `credentials` beside it, then named by it. Returns the
/// CA certificate.
fn https(file: &Path, toml: &str, nodes: &[u32]) -> PathBuf {
    let dir = file.parent().unwrap().join("credentials");
    let out = Command::new(BIN)
        .args(["credentials", "init", "--config"])
        .arg(file)
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut text = toml.replace(
        "config_version = 1\n",
        "config_version = 1\ntls_ca = \"credentials/ca.crt\"\n",
    );
    for id in nodes {
        text = text.replace(
            &format!("[[node]]\nid = {id}\n"),
            &format!(
                "[[node]]\nid = {id}\ntls_cert = \"credentials/node-{id}.crt\"\ntls_key = \"credentials/node-{id}.key\"\n"
            ),
        );
    }
    std::fs::write(file, text).unwrap();
    dir.join("ca.crt")
}
