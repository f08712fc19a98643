//! Claim 13 across hosts, with players that know nothing of ringcast:
//! ffmpeg and GStreamer play an HLS rendition and curl downloads an MP4,
//! all three at once, each entering by n2's service address or the cluster
//! address, through the SIGKILL of the node they entered by, the node
//! serving them, the supervisor, and the supervisor that held their entry
//! (the cluster address), once each player has a third of the clip. Every
//! node runs in a network namespace of its own on one bridge and holds its
//! service addresses on that LAN (`ringcast-node/src/host/addresses/lan.rs`:
//! a TUN device that dies with the process, gratuitous ARP); the players run
//! in one more namespace on the same bridge, so an address that moves moves
//! between hosts, as the players' ARP caches see it. Needs root; skipped
//! (and says so) otherwise.
//!
//! The cluster: n1 (highest priority, so the supervisor) and n2 have no
//! disk; n3 and n4 share disk 1, a folder on a memory file system both see,
//! holding `movie.mp4` (an 18 s H.264/AAC clip, `+faststart`) and
//! `show/index.m3u8` (the same clip in 2 s segments). Each player must get
//! everything: ffmpeg's remux has the packets of the same remux of the files
//! (`ffprobe`, packet by packet), GStreamer (`playbin`, sinks synced to the
//! clock, so in real time) ends with EOS having rendered every video frame
//! and audio buffer, none dropped, up to the end of the clip, and curl's
//! file has the movie's SHA-256.
//!
//! What the test arranges so that the checks mean what they say:
//! - The players' stream URLs all name n3: two placements made just before
//!   the players start leave n4 (capacity 10 streams) looking busier than n3
//!   (capacity 100) for the 3 s placements count as load, so the case that
//!   kills the server kills the server of all three (each report says whose
//!   server died).
//! - curl is paced by the bridge to last about 8 s (`Net::pace`): curl
//!   7.88's `--limit-rate` alone lets a 4 MB file arrive within a second, and
//!   the kill would interrupt nothing.
//! - One loss is accepted, and reported as a LIMITATION: when the node
//!   serving ffmpeg dies, ffmpeg loses the rest of the one or two segments it
//!   was fetching from it (the current one and the next, on a second
//!   connection) that had not yet reached its receive buffer. `-re` reads a
//!   segment over its playing time, so its TCP window stays small, and
//!   ffmpeg 5.1's HLS demuxer does not ask again for the rest of a segment
//!   whose connection broke. With a receive buffer that holds a segment
//!   (`net.ipv4.tcp_rmem` default 2 MB on the players' host) it lost
//!   nothing. Any other loss fails the test.
//!
//! Everything lives in namespaces each test creates and removes (in Drop,
//! also when it fails): `rcpl<pid>-<n>n1..n4`, the players' `...cl` and the
//! bridge's own `...br`, with addresses in a 10.X.0.0/24 of that test's own
//! that exist only inside them: node h at .h, the players at .50, the
//! cluster address at .100 and node h's service address at .(100+h). The
//! files of a failed test are kept (its path is printed).

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The status and notify interval of the test clusters, in milliseconds.
/// A node is declared failed after three of them without a word.
const INTERVAL_MS: u64 = 100;
/// How long the clip plays, in seconds.
const CLIP_SECONDS: u32 = 18;
/// How long curl's download should take at its rate limit, in seconds.
const CURL_SECONDS: u64 = 8;
/// curl's local ports, `CURL_PORTS..CURL_PORTS + 64`: the bridge paces
/// the traffic to them (see `Net::pace`).
const CURL_PORTS: u16 = 40000;
/// The length of every HLS segment, in seconds.
const SEGMENT_SECONDS: f64 = 2.0;
/// The port of every service address and of the cluster address.
const SERVICE_PORT: u16 = 80;
/// The players' host (its last octet).
const CLIENT: u8 = 50;

static NEXT: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------------------
// The titles

/// Packets per stream of a media file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packets {
    video: u64,
    audio: u64,
}

/// The clip as an MP4 and as HLS, and what a player must get of it.
struct Media {
    /// Holds `movie.mp4`, `show/` and `reference.ts`.
    dir: PathBuf,
    movie_len: u64,
    movie_sha: Vec<u8>,
    /// The remux of the HLS files by ffmpeg straight from the files.
    reference: Vec<u8>,
    /// Its packets.
    packets: Packets,
    /// Their times.
    pts: Pts,
    /// The playlist's duration.
    seconds: f64,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The clip, made once per build directory (ffmpeg lavfi: testsrc2 and a
/// sine) and reused.
fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("players-netns-media-{CLIP_SECONDS}s"));
        if !dir.join("done").exists() {
            make_media(&dir);
        }
        let movie = std::fs::read(dir.join("movie.mp4")).unwrap();
        let reference = std::fs::read(dir.join("reference.ts")).unwrap();
        let playlist = std::fs::read_to_string(dir.join("show/index.m3u8")).unwrap();
        let seconds = playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .filter_map(|l| l.split(',').next()?.parse::<f64>().ok())
            .sum();
        let pts = pts(&dir.join("reference.ts")).expect("ffprobe reads the reference");
        Media {
            packets: pts.packets(),
            pts,
            dir,
            movie_len: movie.len() as u64,
            movie_sha: Sha256::digest(&movie).to_vec(),
            reference,
            seconds,
        }
    })
}

/// Makes the clip in a folder of its own, then renames it to `dir` (another
/// test process may be making it too).
fn make_media(dir: &Path) {
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("show")).unwrap();
    let ffmpeg = || {
        let mut c = Command::new("ffmpeg");
        c.args(["-nostdin", "-y", "-loglevel", "error"]);
        c
    };
    run(ffmpeg()
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &CLIP_SECONDS.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        // A key frame every 2 s exactly, so every segment is 2 s long.
        .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart"])
        .arg(tmp.join("movie.mp4")));
    run(ffmpeg()
        .arg("-i")
        .arg(tmp.join("movie.mp4"))
        .args(["-c", "copy", "-f", "hls", "-hls_time"])
        .arg(SEGMENT_SECONDS.to_string())
        .args(["-hls_playlist_type", "vod", "-hls_segment_filename"])
        .arg(tmp.join("show/seg_%03d.ts"))
        .arg(tmp.join("show/index.m3u8")));
    run(ffmpeg()
        .arg("-i")
        .arg(tmp.join("show/index.m3u8"))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(tmp.join("reference.ts")));
    std::fs::write(tmp.join("done"), "").unwrap();
    if std::fs::rename(&tmp, dir).is_err() {
        // Made meanwhile by someone else.
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

/// The presentation times of a media file's packets, per stream kind, in
/// its time base (90 kHz for MPEG-TS), in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Pts {
    video: Vec<i64>,
    audio: Vec<i64>,
}

impl Pts {
    fn packets(&self) -> Packets {
        Packets {
            video: self.video.len() as u64,
            audio: self.audio.len() as u64,
        }
    }
}

/// The packets of `path` (`ffprobe -show_packets`), or why not.
fn pts(path: &Path) -> Result<Pts, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .args([
            "stream=index,codec_type:packet=stream_index,pts",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(format!("ffprobe: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let kinds: BTreeMap<u64, String> = v["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["index"].as_u64()?, s["codec_type"].as_str()?.to_string())))
        .collect();
    let mut got = Pts::default();
    for p in v["packets"].as_array().into_iter().flatten() {
        let (Some(i), Some(t)) = (p["stream_index"].as_u64(), p["pts"].as_i64()) else {
            continue;
        };
        match kinds.get(&i).map(String::as_str) {
            Some("video") => got.video.push(t),
            Some("audio") => got.audio.push(t),
            _ => {}
        }
    }
    Ok(got)
}

/// The runs of packets of `want` (times, in file order) that `got` lacks,
/// each as its first and last time; an error when `got` has a packet that
/// `want` has not.
fn gaps(want: &[i64], got: &[i64]) -> Result<Vec<(i64, i64)>, String> {
    let have: std::collections::BTreeSet<i64> = got.iter().copied().collect();
    let known: std::collections::BTreeSet<i64> = want.iter().copied().collect();
    if let Some(extra) = have.difference(&known).next() {
        return Err(format!("a packet at {extra} the reference has not"));
    }
    let mut runs: Vec<(i64, i64)> = Vec::new();
    let mut open = false;
    for t in want {
        if have.contains(t) {
            open = false;
        } else if open {
            runs.last_mut().expect("an open run").1 = *t;
        } else {
            runs.push((*t, *t));
            open = true;
        }
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------
// The network

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Hosts in network namespaces on one bridge, removed when dropped.
struct Net {
    prefix: String,
    /// The X of 10.X.0.0/24.
    subnet: u8,
    /// The namespaces made so far, to remove.
    made: Vec<String>,
}

impl Net {
    /// The bridge, n1..n4 and the players' host `cl`.
    fn new() -> Net {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut net = Net {
            prefix: format!("rcpl{pid}-{k}"),
            subnet: (16 + (pid.wrapping_mul(4).wrapping_add(k)) % 224) as u8,
            made: Vec::new(),
        };
        let br = net.ns("br");
        net.add_ns(&br);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        // Multicast reaches every port (the bus), with no querier needed.
        ip(&[
            "-n",
            &br,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for h in 1..=4 {
            net.add_host(&format!("n{h}"), h);
        }
        net.add_host("cl", CLIENT);
        net
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn add_ns(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.made.push(ns.to_string());
    }

    /// Host `host` at 10.X.0.`octet`/24, its `eth0` on the bridge.
    fn add_host(&mut self, host: &str, octet: u8) {
        let (ns, br) = (self.ns(host), self.ns("br"));
        self.add_ns(&ns);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let port = format!("p{host}");
        ip(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &br,
        ]);
        let addr = format!("{}/24", self.addr(octet));
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &br, "link", "set", &port, "up"]);
    }

    fn addr(&self, octet: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, octet)
    }

    /// Paces what the bridge sends `host` on its ports `first..first + 64`
    /// (`first` a multiple of 64) to `bytes_per_s`, and nothing else: a
    /// client's bandwidth for one player. curl's `--limit-rate` alone does
    /// not pace a download on a LAN: curl 7.88 reads whatever its socket
    /// has, up to 100 reads, before it looks at the rate, and a 4 MB file
    /// on a LAN arrives faster than that, so the server has sent it all
    /// within a second and a kill would interrupt nothing.
    fn pace(&self, host: &str, first: u16, bytes_per_s: u64) {
        assert_eq!(first % 64, 0);
        let (br, port) = (self.ns("br"), format!("p{host}"));
        let tc = |args: &[&str]| run(Command::new("tc").args(["-n", &br]).args(args));
        tc(&[
            "qdisc", "add", "dev", &port, "root", "handle", "1:", "htb", "default", "20",
        ]);
        let rate = format!("{}bit", bytes_per_s * 8);
        tc(&[
            "class", "add", "dev", &port, "parent", "1:", "classid", "1:10", "htb", "rate", &rate,
            "ceil", &rate, "quantum", "1514",
        ]);
        tc(&[
            "class", "add", "dev", &port, "parent", "1:", "classid", "1:20", "htb", "rate",
            "10gbit", "quantum", "60000",
        ]);
        tc(&[
            "filter",
            "add",
            "dev",
            &port,
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "dport",
            &first.to_string(),
            "0xffc0",
            "flowid",
            "1:10",
        ]);
    }

    /// `program` run in `host`'s namespace (`ip netns exec` execs it, so the
    /// child is the program itself).
    fn exec(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), program]);
        for proxy in [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            c.env_remove(proxy);
        }
        c
    }

    /// What `ip -n <host> args` prints, for reports.
    fn show(&self, host: &str, args: &[&str]) -> String {
        Command::new("ip")
            .args(["-n", &self.ns(host)])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// An HTTP answer: status, `Location` and body.
type Answer = (u16, Option<String>, String);

/// One HTTP GET from namespace `ns` (on a thread that enters it),
/// redirects not followed.
fn get_in(ns: &str, url: &str, timeout_ms: u64) -> Result<Answer, String> {
    let (path, url) = (format!("/run/netns/{ns}"), url.to_string());
    std::thread::spawn(move || {
        let f = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {path}: {e}"))?;
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_millis(timeout_ms))
            .timeout(Duration::from_millis(timeout_ms))
            .build();
        let answer = |r: ureq::Response| {
            let location = r.header("location").map(String::from);
            (r.status(), location, r.into_string().unwrap_or_default())
        };
        match agent.get(&url).call() {
            Ok(r) => Ok(answer(r)),
            Err(ureq::Error::Status(_, r)) => Ok(answer(r)),
            Err(e) => Err(e.to_string()),
        }
    })
    .join()
    .expect("the HTTP thread")
}

// ---------------------------------------------------------------------------
// The cluster

/// Whom a case kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    /// The node whose address the players entered by.
    Entry,
    /// The node whose service address their stream URLs name.
    Server,
    /// The supervisor, n1.
    Supervisor,
}

/// Where the players enter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// n2's service address.
    N2,
    /// The cluster address, held by the supervisor.
    Cluster,
}

/// A cluster of four nodes in their namespaces and the players' host.
struct Case {
    name: &'static str,
    dir: PathBuf,
    file: PathBuf,
    nodes: BTreeMap<u32, Child>,
    players: Vec<Player>,
    /// Dropped last: the namespaces go once every process in them is dead.
    net: Net,
}

impl Case {
    /// Writes the cluster file and the library, and starts n1..n4.
    fn start(name: &'static str) -> Case {
        let media = media();
        let net = Net::new();
        let dir = common::test_root().join(format!("ringcast-{}", net.prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut case = Case {
            name,
            file: dir.join("cluster.toml"),
            dir,
            nodes: BTreeMap::new(),
            players: Vec::new(),
            net,
        };
        case.write_files(media);
        for h in 1..=4 {
            case.spawn(h);
        }
        case
    }

    fn write_files(&self, media: &Media) {
        std::fs::write(self.dir.join("cluster.key"), common::key_hex(0x5a)).unwrap();
        let t = INTERVAL_MS;
        let mut toml = format!(
            "[cluster]\nid = 9\nname = \"players\"\nconfig_version = 1\n\
             address = \"{}:{SERVICE_PORT}\"\nbus = \"239.255.98.1:7400\"\n\
             transport = \"multicast\"\nttl = 1\nloopback = true\nkey_file = \"cluster.key\"\n\
             priority = [1, 2, 3, 4]\n\n[timing]\nstatus_interval_ms = {t}\nnotify_interval_ms = {t}\n\
             notification_time_ms = {}\ntakeover_step_ms = {}\njoin_retry_ms = {t}\nleave_retry_ms = {t}\n\n",
            self.net.addr(100),
            3 * t,
            t / 2
        );
        let mount = self.dir.join("disks").join("d1");
        let library = mount.join("library");
        std::fs::create_dir_all(library.join("show")).unwrap();
        copy_title(&media.dir.join("movie.mp4"), &library.join("movie.mp4"));
        for f in std::fs::read_dir(media.dir.join("show")).unwrap() {
            let f = f.unwrap().path();
            copy_title(&f, &library.join("show").join(f.file_name().unwrap()));
        }
        for h in 1..=4u8 {
            // Placement prefers the node least loaded relative to its
            // capacity; n3's is ten times n4's (see `survives`).
            let max_streams = if h == 3 { 100 } else { 10 };
            toml.push_str(&format!(
                "[[node]]\nid = {h}\nring = \"{a}:7501\"\nhttp = \"{a}:8500\"\n\
                 service = \"{s}:{SERVICE_PORT}\"\ninterface = \"{a}\"\n\
                 max_streams = {max_streams}\nmax_bytes_per_s = 1000000000\n\n",
                a = self.net.addr(h),
                s = self.net.addr(100 + h),
            ));
            if h >= 3 {
                toml.push_str(&format!(
                    "[[node.disk]]\nid = 1\nmount = \"{m}\"\nprobe = \"{m}/.probe-n{h}\"\n\n",
                    m = mount.display()
                ));
            }
        }
        std::fs::write(&self.file, toml).unwrap();
    }

    fn spawn(&mut self, h: u32) {
        let log = File::create(self.dir.join(format!("node-{h}.log"))).unwrap();
        let child = self
            .net
            .exec(&format!("n{h}"), common::BIN)
            .args(["node", "--config"])
            .arg(&self.file)
            .args(["--node", &h.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ringcast node");
        self.nodes.insert(h, child);
    }

    /// SIGKILL: the node dies without a word, and its TUN device with it.
    fn kill(&mut self, h: u32) {
        if let Some(mut c) = self.nodes.remove(&h) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn get(&self, url: &str) -> Result<Answer, String> {
        get_in(&self.net.ns("cl"), url, 800)
    }

    /// A JSON answer of node `h`'s own listener, seen from the players' host.
    fn api(&self, h: u32, path: &str) -> Option<Value> {
        let url = format!("http://{}:8500{path}", self.net.addr(h as u8));
        match self.get(&url) {
            Ok((200, _, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    fn service(&self, h: u32) -> String {
        format!("{}:{SERVICE_PORT}", self.net.addr(100 + h as u8))
    }

    fn cluster_address(&self) -> String {
        format!("{}:{SERVICE_PORT}", self.net.addr(100))
    }

    /// The node whose service address `text` names first (0 for the
    /// cluster address).
    fn node_named(&self, text: &str) -> Option<u32> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|w| w.parse::<Ipv4Addr>().ok())
            .find_map(|a| (0..=4).find(|h| a == self.net.addr(100 + *h as u8)))
    }

    /// Whether every node of `nodes` follows `sup` with `ring` on its ring.
    fn agree(&self, nodes: &[u32], sup: u32, ring: &[u32]) -> bool {
        nodes.iter().all(|h| {
            self.api(*h, "/v1/cluster").is_some_and(|v| {
                let r: Vec<u64> = v["ring"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .collect();
                v["supervisor"] == sup
                    && r == ring.iter().map(|n| u64::from(*n)).collect::<Vec<_>>()
            })
        })
    }

    /// Node `observer`'s `GET /v1/addresses`: owner (0 for the cluster
    /// address) → (holder, whether `observer` has it bound).
    fn addresses(&self, observer: u32) -> Option<BTreeMap<u32, (Option<u64>, bool)>> {
        let v = self.api(observer, "/v1/addresses")?;
        Some(
            v["addresses"]
                .as_array()?
                .iter()
                .map(|a| {
                    (
                        a["owner"].as_u64().unwrap_or(0) as u32,
                        (a["holder"].as_u64(), a["bound_here"] == true),
                    )
                })
                .collect(),
        )
    }

    /// Whether, under every node of `nodes`, address `owner` is held by
    /// `holder`, and `holder` has it bound.
    fn held(&self, nodes: &[u32], owner: u32, holder: u32) -> bool {
        nodes.iter().all(|n| {
            self.addresses(*n).is_some_and(|a| {
                a.get(&owner).is_some_and(|(h, bound)| {
                    *h == Some(u64::from(holder)) && (*n != holder || *bound)
                })
            })
        })
    }

    /// Every node's address and the log's tail, `ip addr` of every host and
    /// the players' neighbours, for a failure message.
    fn describe(&self) -> String {
        let mut out = String::new();
        for h in 1..=4 {
            out.push_str(&format!("--- n{h} addresses: {:?}\n", self.addresses(h)));
            out.push_str(&self.net.show(&format!("n{h}"), &["-br", "addr"]));
            let log =
                std::fs::read_to_string(self.dir.join(format!("node-{h}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push_str("--- the players' neighbours:\n");
        out.push_str(&self.net.show("cl", &["neigh"]));
        out
    }

    /// Waits until `done` holds; panics at `limit` with the state of things.
    fn wait(&self, what: &str, limit: Duration, mut done: impl FnMut(&Case) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if done(self) {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                panic!(
                    "{}: timed out after {limit:?} waiting until {what}\n{}\nfiles in {}",
                    self.name,
                    self.describe(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks `base` to place `title` until it does: the node the redirect names.
    fn place(&self, base: &str, title: &str) -> u32 {
        let mut last = String::new();
        let start = Instant::now();
        while start.elapsed() < common::LIMIT {
            match self.get(&format!("http://{base}/v1/play/{title}")) {
                Ok((307, Some(location), _)) => {
                    return self
                        .node_named(&location)
                        .unwrap_or_else(|| panic!("a redirect to no service address: {location}"))
                }
                other => last = format!("{other:?}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{}: {base} never placed {title}: {last}\n{}",
            self.name,
            self.describe()
        );
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        for p in &mut self.players {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        for c in self.nodes.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}: files kept in {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Copies a title into a library by rename, as a library should be written.
fn copy_title(from: &Path, to: &Path) {
    let tmp = to.with_extension("part");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

// ---------------------------------------------------------------------------
// The players

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ffmpeg,
    Gstreamer,
    Curl,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ffmpeg => "ffmpeg",
            Kind::Gstreamer => "gstreamer",
            Kind::Curl => "curl",
        }
    }
}

/// A player in the players' namespace, its output and logs in the case's folder.
struct Player {
    kind: Kind,
    child: Child,
    started: Instant,
    ended: Option<(ExitStatus, Duration)>,
    out: PathBuf,
    log: PathBuf,
    /// GStreamer's debug log: basesink's buffer times and counts, the URIs
    /// souphttpsrc opens.
    debug: PathBuf,
}

impl Player {
    fn start(case: &Case, kind: Kind, base: &str) -> Player {
        let dir = &case.dir;
        let log = dir.join(format!("{}.log", kind.name()));
        let debug = dir.join("gst-debug.log");
        let media = media();
        let (out, mut cmd) = match kind {
            Kind::Ffmpeg => {
                let out = dir.join("ffmpeg.ts");
                let mut c = case.net.exec("cl", "ffmpeg");
                c.args(["-nostdin", "-y", "-loglevel", "verbose", "-re", "-i"])
                    .arg(format!("http://{base}/v1/play/show/index.m3u8"))
                    .args(["-c", "copy", "-f", "mpegts"])
                    .arg(&out);
                (out, c)
            }
            Kind::Gstreamer => {
                let mut c = case.net.exec("cl", "gst-launch-1.0");
                // Sinks that sync to the clock play in real time; basesink's
                // debug output has every buffer's times and, at the end,
                // how many buffers each sink rendered and dropped.
                c.arg("playbin")
                    .arg(format!("uri=http://{base}/v1/play/show/index.m3u8"))
                    .arg("video-sink=fakesink name=vsink sync=true")
                    .arg("audio-sink=fakesink name=asink sync=true")
                    .env(
                        "GST_DEBUG",
                        "*:2,basesink:5,souphttpsrc:5,hlsdemux:4,adaptivedemux:4",
                    )
                    .env("GST_DEBUG_NO_COLOR", "1")
                    .env("GST_DEBUG_FILE", &debug);
                (debug.clone(), c)
            }
            Kind::Curl => {
                let out = dir.join("curl.mp4");
                let rate = media.movie_len / CURL_SECONDS;
                let mut c = case.net.exec("cl", "curl");
                let ports = format!("{CURL_PORTS}-{}", CURL_PORTS + 63);
                c.args(["-sS", "-v", "--local-port", &ports])
                    .args(["-L", "--retry", "10", "--retry-all-errors", "-C", "-"])
                    .args(["--limit-rate", &rate.to_string(), "-o"])
                    .arg(&out)
                    .arg(format!("http://{base}/v1/play/movie.mp4"));
                (out, c)
            }
        };
        let f = File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {}: {e} (scripts/install-test-deps installs it)",
                    kind.name()
                )
            });
        Player {
            kind,
            child,
            started: Instant::now(),
            ended: None,
            out,
            log,
            debug,
        }
    }

    /// Notes the player's exit; whether it has ended.
    fn poll(&mut self) -> bool {
        if self.ended.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.ended = Some((st, self.started.elapsed()));
            }
        }
        self.ended.is_some()
    }

    /// How far it is, as a fraction of the whole.
    fn progress(&self, media: &Media) -> f64 {
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64;
        match self.kind {
            Kind::Ffmpeg => len(&self.out) / media.reference.len() as f64,
            Kind::Curl => len(&self.out) / media.movie_len as f64,
            Kind::Gstreamer => gst_video_span(&self.debug).map_or(0.0, |s| s / media.seconds),
        }
    }

    /// The node whose service address the player's last request went to
    /// (as its log says), if it says.
    fn server(&self, case: &Case) -> Option<u32> {
        let (file, marker) = match self.kind {
            Kind::Ffmpeg => (&self.log, "Opening 'http://"),
            Kind::Gstreamer => (&self.debug, "start(\"http://"),
            Kind::Curl => (&self.log, "Connected to "),
        };
        let text = std::fs::read_to_string(file).ok()?;
        text.lines()
            .rev()
            .filter(|l| l.contains(marker))
            .find_map(|l| case.node_named(l).filter(|n| *n != 0))
    }

    /// Whether it got everything, and what it got.
    fn verdict(&self, media: &Media, server_killed: bool) -> Result<String, String> {
        let (status, took) = self.ended.ok_or("did not end")?;
        let took = format!("{:.1} s", took.as_secs_f64());
        if !status.success() {
            return Err(format!("{status} after {took}"));
        }
        match self.kind {
            Kind::Ffmpeg => {
                let got = pts(&self.out)?;
                if got == media.pts {
                    let same =
                        std::fs::read(&self.out).map_err(|e| e.to_string())? == media.reference;
                    return Ok(format!(
                        "{} video and {} audio packets as the reference, remux {} ({took})",
                        got.video.len(),
                        got.audio.len(),
                        if same {
                            "byte-identical"
                        } else {
                            "not byte-identical"
                        }
                    ));
                }
                let lost = format!(
                    "{} video and {} audio packets of {:?}",
                    media.pts.video.len() - got.video.len(),
                    media.pts.audio.len() - got.audio.len(),
                    media.packets
                );
                let video = gaps(&media.pts.video, &got.video)?;
                let audio = gaps(&media.pts.audio, &got.audio)?;
                // Every packet, the server's death included: the new holder
                // of its address continues the connection ffmpeg had open
                // (ffmpeg 5.1's HLS demuxer never asks again for the rest
                // of a segment whose connection broke).
                let _ = server_killed;
                Err(format!(
                    "lost {lost}: video runs {video:?}, audio runs {audio:?} (times at 90 kHz)"
                ))
            }
            Kind::Gstreamer => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                if !log.contains("Got EOS from element \"playbin0\"") {
                    return Err("exit 0 without EOS".into());
                }
                let debug = std::fs::read_to_string(&self.debug).map_err(|e| e.to_string())?;
                let rendered = |sink: &str| -> Option<(u64, u64)> {
                    let l = debug
                        .lines()
                        .rev()
                        .find(|l| l.contains(&format!("<{sink}> rendered: ")))?;
                    let rest = l.split("rendered: ").nth(1)?;
                    let (r, d) = rest.split_once(", dropped: ")?;
                    Some((r.trim().parse().ok()?, d.trim().parse().ok()?))
                };
                let video = rendered("vsink").ok_or("no count of rendered video frames")?;
                let audio = rendered("asink").ok_or("no count of rendered audio buffers")?;
                let span = gst_video_span(&self.debug).unwrap_or(0.0);
                let want = (media.packets.video, 0);
                if video != want || audio != (media.packets.audio, 0) || span < media.seconds - 0.05
                {
                    return Err(format!(
                        "rendered/dropped video {video:?} (want {want:?}), audio {audio:?} \
                         (want ({}, 0)), played {span:.2} s of {:.2}",
                        media.packets.audio, media.seconds
                    ));
                }
                Ok(format!(
                    "EOS, rendered {} video frames and {} audio buffers, none dropped, \
                     position {span:.2} s of {:.2} ({took})",
                    video.0, audio.0, media.seconds
                ))
            }
            Kind::Curl => {
                let got = std::fs::read(&self.out).map_err(|e| e.to_string())?;
                if got.len() as u64 != media.movie_len
                    || Sha256::digest(&got).to_vec() != media.movie_sha
                {
                    return Err(format!(
                        "{} bytes of {}, SHA-256 differs",
                        got.len(),
                        media.movie_len
                    ));
                }
                Ok(format!("{} bytes, SHA-256 equal ({took})", got.len()))
            }
        }
    }

    /// The last lines of its log, for a failure message.
    fn tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// A GStreamer clock time (`0:00:16.660000000`) in seconds.
fn gst_time(text: &str) -> Option<f64> {
    let mut parts = text.trim().splitn(3, ':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// How much of the clip the video sink has played: the end of the last
/// buffer it rendered less the start of the first.
fn gst_video_span(debug: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(debug).ok()?;
    let times = |l: &str| -> Option<(f64, f64)> {
        let rest = l.split("chain_unlocked:<vsink> got times start: ").nth(1)?;
        let (start, end) = rest.split_once(", end: ")?;
        Some((gst_time(start)?, gst_time(end)?))
    };
    let first = text.lines().find_map(times)?;
    let last = text.lines().rev().find_map(times)?;
    Some(last.1 - first.0)
}

/// The time of day, in seconds, now (UTC, as the node logs say it).
fn time_of_day() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs_f64() % 86_400.0
}

/// How long after `since` (a time of day) a line of the log at `path` with
/// `needle` was written: the first such line at or after `since`.
fn logged_after(path: &Path, needle: &str, since: f64) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().filter(|l| l.contains(needle)).find_map(|l| {
        // `\x1b[2m2026-12-02T07:20:23.391558Z\x1b[0m ...`
        let stamp = l.split('T').nth(1)?.split('Z').next()?;
        let mut parts = stamp.splitn(3, ':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let sec: f64 = parts.next()?.parse().ok()?;
        let after = (h * 3600.0 + m * 60.0 + sec - since).rem_euclid(86_400.0);
        (after < 3600.0).then(|| Duration::from_secs_f64(after))
    })
}

// ---------------------------------------------------------------------------
// The cases

/// Starts a cluster, plays the clip with ffmpeg, GStreamer and curl at
/// `entry`, kills `victim` once each has a third of it, and checks that
/// each gets all of it.
fn survives(name: &'static str, entry: Entry, victim: Victim) {
    if !common::is_root() {
        eprintln!("skipped: {name} needs root (network namespaces, TUN devices)");
        return;
    }
    for tool in ["ffmpeg", "ffprobe", "gst-launch-1.0", "curl", "tc"] {
        let found = Command::new(tool)
            .arg(if tool == "tc" { "-V" } else { "--version" })
            .output()
            .is_ok();
        assert!(
            found,
            "{tool} is missing: scripts/install-test-deps installs it"
        );
    }
    let begun = Instant::now();
    let media = media();
    let mut case = Case::start(name);
    // Failure detection takes three intervals; everything below that waits
    // on the cluster gets many times that.
    let failover = Duration::from_millis(60 * INTERVAL_MS);
    let formed = case.wait(
        "the four nodes form one cluster under n1",
        common::LIMIT,
        |c| c.agree(&[1, 2, 3, 4], 1, &[1, 2, 3, 4]),
    );
    case.wait("every address is held by its own node", failover, |c| {
        (0..=4).all(|owner| c.held(&[1, 2, 3, 4], owner, owner.max(1)))
    });
    let base = match entry {
        Entry::N2 => case.service(2),
        Entry::Cluster => case.cluster_address(),
    };
    // Two placements before the players start: the first goes to n3 (n3
    // and n4 equally idle, the lower id wins), the second to n4 (idle);
    // for the next 3 s, while placements count as load, n4 at 1 of 10
    // streams looks busier than n3 at up to 9 of 100, so the players'
    // three streams all go to n3, and the server the case kills serves
    // all of them.
    let steer = [
        case.place(&base, "show/index.m3u8"),
        case.place(&base, "show/index.m3u8"),
    ];
    let ready = begun.elapsed();
    case.net
        .pace("cl", CURL_PORTS, media.movie_len / CURL_SECONDS);
    let kinds = [Kind::Ffmpeg, Kind::Gstreamer, Kind::Curl];
    for kind in kinds {
        let p = Player::start(&case, kind, &base);
        case.players.push(p);
    }
    // Mid-play: once each player has a third of the clip.
    let playing = Duration::from_secs_f64(media.seconds) + common::LIMIT;
    let start = Instant::now();
    loop {
        let mut ended = Vec::new();
        for p in &mut case.players {
            if p.poll() {
                ended.push(p.kind.name());
            }
        }
        assert!(
            ended.is_empty(),
            "{name}: {ended:?} ended before the kill:\n{}\nfiles in {}",
            case.players
                .iter()
                .map(|p| format!("{}: {}", p.kind.name(), p.tail()))
                .collect::<Vec<_>>()
                .join("\n"),
            case.dir.display()
        );
        if case.players.iter().all(|p| p.progress(media) >= 1.0 / 3.0) {
            break;
        }
        assert!(
            start.elapsed() < playing,
            "{name}: the players do not progress: {:?}\n{}",
            case.players
                .iter()
                .map(|p| (p.kind, p.progress(media)))
                .collect::<Vec<_>>(),
            case.describe()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let servers: Vec<(Kind, Option<u32>)> = case
        .players
        .iter()
        .map(|p| (p.kind, p.server(&case)))
        .collect();
    let killed = match victim {
        Victim::Entry if entry == Entry::Cluster => 1,
        Victim::Entry => 2,
        Victim::Supervisor => 1,
        Victim::Server => {
            let mut votes: BTreeMap<u32, usize> = BTreeMap::new();
            for s in servers.iter().filter_map(|(_, s)| *s) {
                *votes.entry(s).or_default() += 1;
            }
            votes
                .iter()
                .max_by_key(|(_, v)| **v)
                .map(|(n, _)| *n)
                .unwrap_or_else(|| panic!("{name}: no player names its server: {servers:?}"))
        }
    };
    let progress: Vec<String> = case
        .players
        .iter()
        .map(|p| format!("{} {:.0}%", p.kind.name(), 100.0 * p.progress(media)))
        .collect();
    let kill_at = Instant::now();
    let killed_at = time_of_day();
    case.kill(killed);
    let live: Vec<u32> = (1..=4).filter(|n| *n != killed).collect();
    // Where its addresses go: its own to its successor on the ring, the
    // cluster address to the new supervisor.
    let successor = live
        .iter()
        .copied()
        .find(|n| *n > killed)
        .unwrap_or(live[0]);
    // (owner, new holder, when the holder had it bound, when it answered
    // the players' host).
    type Move = (u32, u32, Option<Duration>, Option<Duration>);
    let mut moves: Vec<Move> = vec![(killed, successor, None, None)];
    if killed == 1 {
        moves.push((0, 2, None, None));
    }
    let mut snapshot = false;
    loop {
        for m in &mut moves {
            if m.2.is_none() && case.held(&live, m.0, m.1) {
                m.2 = Some(kill_at.elapsed());
            }
            if m.3.is_none() {
                let addr = if m.0 == 0 {
                    case.cluster_address()
                } else {
                    case.service(m.0)
                };
                let url = format!("http://{addr}/healthz");
                if matches!(get_in(&case.net.ns("cl"), &url, 300), Ok((200, _, _))) {
                    m.3 = Some(kill_at.elapsed());
                }
            }
        }
        if !snapshot && kill_at.elapsed() > Duration::from_secs(3) {
            // What the sockets and the players' neighbours look like once
            // the address has long moved, for the report.
            snapshot = true;
            let ss = |host: &str| {
                let out = case.net.exec(host, "ss").args(["-tanoi"]).output();
                out.map_or_else(
                    |e| e.to_string(),
                    |o| String::from_utf8_lossy(&o.stdout).into_owned(),
                )
            };
            let text = format!(
                "--- players' sockets:\n{}\n--- n{killed}'s sockets (dead process):\n{}\n--- players' neighbours:\n{}",
                ss("cl"),
                ss(&format!("n{killed}")),
                case.net.show("cl", &["neigh"])
            );
            std::fs::write(case.dir.join("after-kill.txt"), text).unwrap();
        }
        let mut all = true;
        for p in &mut case.players {
            all &= p.poll();
        }
        if all && moves.iter().all(|m| m.2.is_some() && m.3.is_some()) {
            break;
        }
        if kill_at.elapsed() > playing {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut report = format!(
        "{name}: entry {entry:?} ({base}), killed n{killed} ({victim:?}) at {} after {ready:.1?} of setup \
         (formed in {formed:.1?}; steering placements went to {steer:?}); players' servers {servers:?}\n",
        progress.join(", "),
    );
    let at =
        |t: &Option<Duration>| t.map_or("NOT within the deadline".into(), |t| format!("{t:.2?}"));
    for (owner, holder, bound, answered) in &moves {
        let (what, needle) = if *owner == 0 {
            (
                "the cluster address".to_string(),
                "now holds the cluster address".to_string(),
            )
        } else {
            (
                format!("n{owner}'s address"),
                format!("now holds the service address of n{owner} "),
            )
        };
        let log = case.dir.join(format!("node-{holder}.log"));
        let taken = logged_after(&log, &needle, killed_at);
        report.push_str(&format!(
            "  {what}: taken by n{holder} {} after the kill (its log), bound there by {} and \
             answering the players' host by {} (as polled)\n",
            at(&taken),
            at(bound),
            at(answered)
        ));
    }
    // The connections the players had open on the killed node's address,
    // as its new holder took them over.
    let successor_log =
        std::fs::read_to_string(case.dir.join(format!("node-{successor}.log"))).unwrap_or_default();
    let takeover = successor_log
        .lines()
        .rev()
        .filter(|l| l.contains("took over the connections of"))
        .filter_map(|l| l.split("took over the connections of ").nth(1))
        .map(|l| {
            l.split(" \x1b")
                .next()
                .unwrap_or(l)
                .split(" kind=")
                .next()
                .unwrap_or(l)
        })
        .next()
        .map(str::to_string);
    report.push_str(&format!(
        "  n{successor} {}\n",
        takeover
            .as_deref()
            .map_or("took over no connection".to_string(), |t| format!(
                "took over the connections of {t}"
            ))
    ));
    for l in successor_log
        .lines()
        .filter(|l| l.contains("cannot continue"))
    {
        report.push_str(&format!(
            "    {}\n",
            l.split("takeover").last().unwrap_or(l)
        ));
    }
    let continued: usize = takeover
        .as_deref()
        .and_then(|t| t.split(": ").nth(1))
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut failed = false;
    for p in &case.players {
        let served_by_victim = servers
            .iter()
            .any(|(k, s)| *k == p.kind && *s == Some(killed));
        match p.verdict(media, served_by_victim) {
            Ok(v) => report.push_str(&format!(
                "  {}: ok{}: {v}\n",
                p.kind.name(),
                if served_by_victim {
                    " (its server was killed)"
                } else {
                    ""
                }
            )),
            Err(e) => {
                failed = true;
                report.push_str(&format!("  {}: FAILED: {e}\n{}\n", p.kind.name(), p.tail()));
            }
        }
    }
    report.push_str(&format!("  case took {:.1?}\n", begun.elapsed()));
    eprintln!("{report}");
    if failed || moves.iter().any(|m| m.2.is_none() || m.3.is_none()) {
        panic!(
            "{report}\n{}\nfiles in {}",
            case.describe(),
            case.dir.display()
        );
    }
    if victim == Victim::Server {
        assert!(
            servers.iter().any(|(_, s)| *s == Some(killed)),
            "{name}: the killed node served no player"
        );
        // The players were mid-segment and mid-file on the killed server:
        // their connections were continued, not re-made.
        assert!(
            continued > 0,
            "{name}: no connection was continued\n{report}"
        );
    }
}

#[test]
fn hls_and_file_players_survive_the_death_of_the_node_they_entered_by() {
    survives("entry", Entry::N2, Victim::Entry);
}

#[test]
fn hls_and_file_players_survive_the_death_of_the_node_serving_them() {
    survives("server", Entry::N2, Victim::Server);
}

#[test]
fn hls_and_file_players_survive_the_death_of_the_supervisor() {
    survives("supervisor", Entry::N2, Victim::Supervisor);
}

#[test]
fn hls_and_file_players_survive_the_death_of_the_supervisor_holding_the_cluster_address_they_entered_by(
) {
    survives("cluster address", Entry::Cluster, Victim::Entry);
}
