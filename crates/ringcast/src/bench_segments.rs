//! `ringcast bench segments`: the workload video servers see. C concurrent
//! players each play an HLS rendition as a player does: `GET` the playlist
//! through the cluster's play URL (redirects followed), parse it, then `GET`
//! every segment in order (URIs resolved against the playlist's final URL,
//! redirects followed), over one persistent connection per host, and loop
//! (each loop a new stream: the playlist is asked again) until the run ends.
//! With `--vs-nginx` the same players read the same files from nginx
//! (sendfile on, keep-alive), a plain static playlist and its segments, in
//! runs alternating with the cluster's in the same process. Everything stays
//! on 127.0.0.1. The client is `bench_hls_client.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringcast_sim::campaign::percentile;
use serde::Serialize;

use crate::bench_hls_client::{parse_playlist, Fail, Player, Playlist, Segment, Url};
use crate::bench_interrupt::{catch_interrupts, check_interrupted};
use crate::bench_nginx::{ensure_nginx, nginx_version, Nginx};
use crate::bench_stream::{round, rss_kb, write_random_file, Scratch};
use crate::up_cmd::{Layout, Library, LocalCluster};

/// Options of `ringcast bench segments`.
#[derive(clap::Args, Debug)]
pub struct SegmentsArgs {
    /// Concurrent players (1 to 1024).
    #[arg(long, default_value_t = 64)]
    pub clients: u32,
    /// Also measure nginx (installed from Debian when missing) with the same load.
    #[arg(long)]
    pub vs_nginx: bool,
    /// Seconds of load against each server, split into --rounds runs.
    #[arg(long, default_value_t = 20)]
    pub seconds: u32,
    /// Size of each segment, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub segment_bytes: u64,
    /// Segments in the rendition's playlist.
    #[arg(long, default_value_t = 10)]
    pub segments: u32,
    /// Runs per server, alternating: ringcast, nginx, ringcast, nginx...
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Each loop of a player asks the play URL without its stream id: a new
    /// stream per loop (by default a player keeps one stream, `?stream=ID`).
    #[arg(long)]
    pub new_stream_each_loop: bool,
    /// Directory for the library, cluster and nginx files (temporary by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The machine the bench ran on.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo.
    pub cpu: String,
    /// CPUs available to the bench.
    pub cores: usize,
    /// /proc/sys/kernel/osrelease.
    pub kernel: String,
}

/// The last line of `ringcast bench segments`.
#[derive(Debug, Serialize)]
pub struct SegmentsReport {
    /// Concurrent players.
    pub clients: u32,
    /// Bytes per segment.
    pub segment_bytes: u64,
    /// Segments per playlist.
    pub segments_per_playlist: u32,
    /// Seconds of load per server, and the runs it was split into.
    pub seconds: u32,
    pub rounds: u32,
    /// Whether each loop of a player was a new stream.
    pub new_stream_each_loop: bool,
    /// Segments received whole per second through the cluster, median of the runs.
    pub cluster_segments_per_s: f64,
    /// The same from nginx (with `--vs-nginx`).
    pub nginx_segments_per_s: Option<f64>,
    /// `cluster_segments_per_s / nginx_segments_per_s`.
    pub ratio: Option<f64>,
    /// Each run's rate, in order.
    pub cluster_runs_segments_per_s: Vec<f64>,
    pub nginx_runs_segments_per_s: Vec<f64>,
    /// Segment body bytes per second, 10^6 (from the medians).
    pub cluster_mb_s: f64,
    pub nginx_mb_s: Option<f64>,
    /// Segment request until its first body byte (redirects included), all runs.
    pub cluster_ttfb_ms_p50: f64,
    pub cluster_ttfb_ms_p99: f64,
    pub nginx_ttfb_ms_p50: Option<f64>,
    pub nginx_ttfb_ms_p99: Option<f64>,
    /// Playlist request until its body is read and parsed, median.
    pub cluster_playlist_ms_p50: f64,
    pub nginx_playlist_ms_p50: Option<f64>,
    /// Failed requests (playlists and segments) of both servers.
    pub errors: u64,
    pub cluster_errors: u64,
    pub nginx_errors: u64,
    /// Failures by server and kind, e.g. `cluster.status_503`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// A few failure messages.
    pub error_samples: Vec<String>,
    /// Redirects followed per segment received from the cluster.
    pub cluster_redirects_per_segment: f64,
    /// Share of the cluster's segments that came over a node connection
    /// which had carried a play request before (served by the node's API
    /// server, not its sendfile path), percent.
    pub cluster_segments_on_api_connections_pct: f64,
    /// CPU time of the load generator (this process) per second of load,
    /// percent of one core.
    pub cluster_generator_cpu_pct: f64,
    pub nginx_generator_cpu_pct: Option<f64>,
    /// TCP connections opened per player per run.
    pub cluster_connects_per_player: f64,
    pub nginx_connects_per_player: Option<f64>,
    /// Growth of the node processes' summed VmRSS from before the load to its
    /// peak during the cluster's runs, divided by the concurrent streams.
    pub memory_per_stream_bytes: f64,
    /// Nodes declared failed while the load ran (nothing was killed, so
    /// every one is false), and supervisor takeovers: from the nodes' logs.
    pub cluster_false_declarations: u64,
    pub cluster_supervisor_takeovers: u64,
    pub rss_before_kb: u64,
    pub rss_peak_kb: u64,
    pub machine: Machine,
    /// What was measured, in words.
    pub setup: String,
}

/// The rendition's folder in the library.
const FOLDER: &str = "bench";
/// Nodes in the local cluster.
const NODES: u32 = 3;
/// How long a server may take to serve a first full pass.
const READY: Duration = Duration::from_secs(30);

/// Counters the players add to while a run goes on.
#[derive(Default)]
struct Live {
    segments: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    abort: AtomicBool,
}

/// What players measured: one player's, one run's or one server's sum.
#[derive(Default)]
struct Stats {
    segments: u64,
    ttfb_ms: Vec<f64>,
    playlist_ms: Vec<f64>,
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    connects: u64,
    redirects: u64,
    via_api: u64,
}

impl Stats {
    fn fail(&mut self, what: &str, e: &Fail) {
        *self.errors.entry(e.kind()).or_default() += 1;
        if self.samples.len() < 3 {
            self.samples.push(format!("{what}: {e}"));
        }
    }

    fn add(&mut self, o: Stats) {
        self.segments += o.segments;
        self.ttfb_ms.extend(o.ttfb_ms);
        self.playlist_ms.extend(o.playlist_ms);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for s in o.samples {
            if self.samples.len() < 3 && !self.samples.contains(&s) {
                self.samples.push(s);
            }
        }
        self.connects += o.connects;
        self.redirects += o.redirects;
        self.via_api += o.via_api;
    }

    fn errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Fetches the playlist at `entry` (and, from a master playlist, its first
/// variant) and returns its segments.
async fn playlist(p: &mut Player, entry: &Url) -> Result<Vec<Segment>, Fail> {
    let mut url = entry.clone();
    for _ in 0..2 {
        let a = p.get(&url, true, None).await?;
        let text = String::from_utf8_lossy(&a.body);
        match parse_playlist(&text, &a.url)? {
            Playlist::Media(segments) => return Ok(segments),
            Playlist::Master(variant) => url = variant,
        }
    }
    Err(Fail::Protocol(format!(
        "{entry}: a master playlist naming a master playlist"
    )))
}

/// Waits after a failure as a player would: `Retry-After` (at most 1 s) on
/// 429 and 503, a moment otherwise; never past the deadline.
async fn back_off(e: &Fail, deadline: Instant) {
    let wait = match e {
        Fail::Status(429 | 503, after, _) => Duration::from_secs(after.unwrap_or(1).min(1)),
        _ => Duration::ZERO,
    }
    .max(Duration::from_millis(20));
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(wait.min(left)).await;
}

/// A number that differs from run to run.
fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    });
    u64::from_le_bytes(b) ^ u64::from(std::process::id())
}

/// One player: the rendition at `entry`, over and over, until `deadline`.
async fn play(entry: Url, expect: u64, deadline: Instant, live: Arc<Live>) -> Stats {
    let mut p = Player::new();
    let mut s = Stats::default();
    let going = |live: &Live| Instant::now() < deadline && !live.abort.load(Ordering::Relaxed);
    while going(&live) {
        let asked = Instant::now();
        let segments = match playlist(&mut p, &entry).await {
            Ok(v) => v,
            Err(e) => {
                s.fail(&format!("playlist {entry}"), &e);
                live.errors.fetch_add(1, Ordering::Relaxed);
                back_off(&e, deadline).await;
                continue;
            }
        };
        s.playlist_ms.push(asked.elapsed().as_secs_f64() * 1000.0);
        for seg in segments {
            if !going(&live) {
                break;
            }
            let asked = Instant::now();
            let want = (!seg.init).then_some(expect);
            match p.get(&seg.url, false, want).await {
                Ok(a) => {
                    let first = a.first_byte.unwrap_or_else(Instant::now);
                    s.ttfb_ms
                        .push(first.duration_since(asked).as_secs_f64() * 1000.0);
                    s.redirects += u64::from(a.redirects);
                    s.via_api += u64::from(a.via_api_connection);
                    if !seg.init {
                        s.segments += 1;
                        live.segments.fetch_add(1, Ordering::Relaxed);
                    }
                    live.bytes.fetch_add(a.len, Ordering::Relaxed);
                }
                Err(e) => {
                    s.fail(&format!("segment {}", seg.url), &e);
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    back_off(&e, deadline).await;
                }
            }
        }
    }
    s.connects = p.connects;
    s
}

/// One full pass over the rendition at each entry, retried until it works
/// (the supervisor needs every disk's catalog first) within [`READY`].
async fn warm_up(entries: &[Url], expect: u64) -> Result<()> {
    for entry in entries {
        let start = Instant::now();
        loop {
            let mut p = Player::new();
            let last = match playlist(&mut p, entry).await {
                Ok(segments) => {
                    let mut failed = None;
                    for seg in segments {
                        let want = (!seg.init).then_some(expect);
                        if let Err(e) = p.get(&seg.url, false, want).await {
                            failed = Some(format!("{}: {e}", seg.url));
                            break;
                        }
                    }
                    match failed {
                        None => break,
                        Some(f) => f,
                    }
                }
                Err(e) => format!("{entry}: {e}"),
            };
            check_interrupted()?;
            if start.elapsed() > READY {
                bail!(
                    "{entry} was not served in full within {} s: {last}",
                    READY.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// CPU time this process has used, seconds (user and system, all threads).
fn self_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    ticks / if hz > 0 { hz as f64 } else { 100.0 }
}

/// One run: `clients` players, player i on entry i mod n, for `secs`;
/// progress on stderr; samples the summed RSS of `pids`. With `stream_ids`
/// each player asks with a stream id of its own. Returns the stats,
/// the wall time (until the last segment begun before the end is in), the
/// peak RSS, kB, and this process's CPU seconds.
async fn run(
    label: &str,
    entries: &[Url],
    opts: &SegmentsArgs,
    secs: f64,
    pids: &[u32],
    stream_ids: bool,
) -> Result<(Stats, f64, Option<u64>, f64)> {
    let live = Arc::new(Live::default());
    let cpu = self_cpu_s();
    let seed = seed();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..opts.clients as usize)
        .map(|i| {
            let mut entry = entries[i % entries.len()].clone();
            if stream_ids {
                // One player, one stream: every loop asks with the same id.
                let id = (seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 1;
                let sep = if entry.target.contains('?') { '&' } else { '?' };
                entry.target.push_str(&format!("{sep}stream={id}"));
            }
            tokio::spawn(play(entry, opts.segment_bytes, deadline, live.clone()))
        })
        .collect();
    let mut peak: Option<u64> = None;
    let mut next_report = start + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if check_interrupted().is_err() {
            live.abort.store(true, Ordering::Relaxed);
        }
        if !pids.is_empty() {
            if let Ok(kb) = rss_kb(pids) {
                peak = Some(peak.map_or(kb, |p| p.max(kb)));
            }
        }
        let now = Instant::now();
        if now >= next_report {
            let t = now.duration_since(start).as_secs_f64();
            let n = live.segments.load(Ordering::Relaxed);
            eprintln!(
                "{label}: {t:.1} s, {n} segments, {:.1} segments/s, {:.0} MB/s, {} errors",
                n as f64 / t,
                live.bytes.load(Ordering::Relaxed) as f64 / 1e6 / t,
                live.errors.load(Ordering::Relaxed)
            );
            next_report += Duration::from_secs(1);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = self_cpu_s() - cpu;
    let mut stats = Stats::default();
    for h in handles {
        stats.add(h.await.context("a player task panicked")?);
    }
    check_interrupted()?;
    eprintln!(
        "{label}: done: {} segments in {wall:.2} s = {:.1} segments/s, TTFB p50 {:.2} ms, {} errors",
        stats.segments,
        stats.segments as f64 / wall,
        percentile(&mut stats.ttfb_ms.clone(), 50.0),
        stats.errors()
    );
    Ok((stats, wall, peak, cpu))
}

/// Failure declarations and supervisor takeovers the nodes logged past
/// `starts` (the events' kind and message read the same in text and JSON logs).
fn log_events(logs: &[PathBuf], starts: &[u64]) -> (u64, u64) {
    let (mut declared, mut takeovers) = (0, 0);
    for (log, start) in logs.iter().zip(starts) {
        let text = std::fs::read(log).unwrap_or_default();
        let new = String::from_utf8_lossy(text.get(*start as usize..).unwrap_or_default());
        declared += new.matches("\"declared\"").count() as u64;
        takeovers += new.matches("became supervisor (Takeover").count() as u64;
    }
    (declared, takeovers)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = ["model name", "Model", "Hardware", "cpu model"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel,
    }
}

/// Writes the rendition: `segments` random segments and a VOD playlist of
/// relative URIs, in `lib/bench/`.
fn write_rendition(lib: &std::path::Path, opts: &SegmentsArgs) -> Result<()> {
    let dir = lib.join(FOLDER);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut m3u8 = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n",
    );
    for i in 0..opts.segments {
        let name = format!("seg_{i:03}.ts");
        write_random_file(&dir.join(&name), opts.segment_bytes)?;
        m3u8.push_str(&format!("#EXTINF:2.000,\n{name}\n"));
    }
    m3u8.push_str("#EXT-X-ENDLIST\n");
    let path = dir.join("index.m3u8");
    std::fs::write(&path, m3u8).with_context(|| format!("cannot write {}", path.display()))
}

fn check(opts: &SegmentsArgs) -> Result<()> {
    if !(1..=1024).contains(&opts.clients) {
        bail!("--clients must be between 1 and 1024, not {}", opts.clients);
    }
    if !(1..=600).contains(&opts.seconds) {
        bail!("--seconds must be between 1 and 600, not {}", opts.seconds);
    }
    if !(1..=20).contains(&opts.rounds) || opts.seconds < opts.rounds {
        bail!(
            "--rounds must be between 1 and 20 and at most --seconds, not {}",
            opts.rounds
        );
    }
    if !(1..=256 << 20).contains(&opts.segment_bytes) {
        bail!(
            "--segment-bytes must be between 1 and 256 MiB, not {}",
            opts.segment_bytes
        );
    }
    if !(1..=1000).contains(&opts.segments)
        || u64::from(opts.segments) * opts.segment_bytes > 4 << 30
    {
        bail!(
            "--segments must be between 1 and 1000 and hold at most 4 GiB, not {}",
            opts.segments
        );
    }
    Ok(())
}

/// Runs the segments benchmark.
pub fn segments(opts: &SegmentsArgs) -> Result<SegmentsReport> {
    check(opts)?;
    catch_interrupts();
    let machine = machine();
    // Fail before the long setup, not after it.
    let nginx_exe = opts.vs_nginx.then(ensure_nginx).transpose()?;
    let scratch = Scratch::named(opts.dir.as_deref(), "segments")?;
    let root = scratch.path.clone();
    let lib = root.join("library");
    eprintln!(
        "writing {} random segments of {} bytes and their playlist into {} ...",
        opts.segments,
        opts.segment_bytes,
        lib.join(FOLDER).display()
    );
    write_rendition(&lib, opts)?;
    check_interrupted()?;

    let cluster_dir = root.join("cluster");
    // A previous run's disks would hold links to older files: start clean.
    let old_disks = cluster_dir.join("disks");
    if old_disks.exists() {
        std::fs::remove_dir_all(&old_disks)
            .with_context(|| format!("cannot remove {}", old_disks.display()))?;
    }
    eprintln!(
        "ringcast: starting {NODES} node processes in {}",
        cluster_dir.display()
    );
    let mut cluster = LocalCluster::start(
        &Layout::Nodes(NODES),
        Some(&cluster_dir),
        &Library::Dir(lib.clone()),
    )?;
    let sup = cluster.wait_formed(READY)?;
    let pids: Vec<u32> = cluster
        .nodes
        .iter()
        .filter_map(|(_, _, c)| c.as_ref().map(Child::id))
        .collect();
    if pids.len() != NODES as usize {
        bail!("a node process of the local cluster is not running");
    }
    let plays = cluster
        .nodes
        .iter()
        .map(|(_, base, _)| {
            let play = format!("{}/v1/play/{FOLDER}/index.m3u8", base.trim_end_matches('/'));
            Url::parse(&play).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<Result<Vec<Url>>>()?;

    let mut nginx = None;
    let mut nginx_line = "nginx not run (no --vs-nginx)".to_string();
    if let Some(exe) = &nginx_exe {
        let version = nginx_version(exe);
        let ready = format!("/{FOLDER}/seg_000.ts");
        let server = Nginx::start(exe, &root.join("nginx"), &lib, &ready, opts.segment_bytes)?;
        eprintln!(
            "nginx: {version} serving {} on {}",
            lib.display(),
            server.addr
        );
        nginx_line = format!(
            "nginx: {version}, worker_processes auto, sendfile on, tcp_nopush on, keep-alive \
             (keepalive_requests 100000), access_log off, root = the same library folder, the \
             playlist and segments served as plain files (relative segment URIs, no redirect)"
        );
        let url = Url::parse(&format!("http://{}/{FOLDER}/index.m3u8", server.addr))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        nginx = Some((server, url));
    }

    // The players' address, 127.0.0.1, is a member's: a node exempts it from
    // the per-client request rate only once it refreshes its members' list
    // after the cluster formed. Before that the load would meet 429s.
    std::thread::sleep(2 * ringcast_node::daemon::EXEMPT_REFRESH);
    check_interrupted()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(machine.cores)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(warm_up(&plays, opts.segment_bytes))?;
    eprintln!(
        "ringcast: formed (supervisor n{sup}), every node serves {FOLDER}/index.m3u8 in full"
    );
    if let Some((_, url)) = &nginx {
        rt.block_on(warm_up(std::slice::from_ref(url), opts.segment_bytes))?;
    }

    let secs = f64::from(opts.seconds) / f64::from(opts.rounds);
    let logs: Vec<PathBuf> = cluster
        .nodes
        .iter()
        .map(|(id, _, _)| cluster.dir().join(format!("node-{id}.log")))
        .collect();
    let log_starts: Vec<u64> = logs
        .iter()
        .map(|l| std::fs::metadata(l).map_or(0, |m| m.len()))
        .collect();
    let rss_before = rss_kb(&pids)?;
    let mut rss_peak = rss_before;
    let (mut c_all, mut n_all) = (Stats::default(), Stats::default());
    let (mut c_rates, mut n_rates) = (Vec::new(), Vec::new());
    // (CPU seconds of the generator, wall seconds) per server.
    let (mut c_cpu, mut n_cpu) = ((0.0, 0.0), (0.0, 0.0));
    for r in 1..=opts.rounds {
        let label = format!("ringcast run {r}/{}", opts.rounds);
        let (s, wall, peak, cpu) = rt.block_on(run(
            &label,
            &plays,
            opts,
            secs,
            &pids,
            !opts.new_stream_each_loop,
        ))?;
        c_cpu = (c_cpu.0 + cpu, c_cpu.1 + wall);
        rss_peak = rss_peak.max(peak.unwrap_or(rss_before));
        c_rates.push(s.segments as f64 / wall);
        c_all.add(s);
        if let Some((_, url)) = &nginx {
            let label = format!("nginx run {r}/{}", opts.rounds);
            let (s, wall, _, cpu) = rt.block_on(run(
                &label,
                std::slice::from_ref(url),
                opts,
                secs,
                &[],
                false,
            ))?;
            n_cpu = (n_cpu.0 + cpu, n_cpu.1 + wall);
            n_rates.push(s.segments as f64 / wall);
            n_all.add(s);
        }
    }
    drop(rt);
    let (declarations, takeovers) = log_events(&logs, &log_starts);
    if declarations + takeovers > 0 {
        eprintln!(
            "ringcast: under the load, {declarations} false failure declarations and \
             {takeovers} supervisor takeovers (see the node logs in {})",
            cluster.dir().display()
        );
    }
    cluster.stop();
    drop(cluster);
    drop(nginx);
    if c_all.segments == 0 {
        bail!("no segment was received from the cluster");
    }
    if opts.vs_nginx && n_all.segments == 0 {
        bail!("no segment was received from nginx");
    }

    let runs = f64::from(opts.rounds) * f64::from(opts.clients);
    let mb = opts.segment_bytes as f64 / 1e6;
    let c_rate = median(&c_rates);
    let n_rate = opts.vs_nginx.then(|| median(&n_rates));
    let p = |v: &Vec<f64>, q: f64| round(percentile(&mut v.clone(), q), 3);
    let with_nginx = |v: f64| opts.vs_nginx.then_some(v);
    let mut errors_by_kind = BTreeMap::new();
    for (server, s) in [("cluster", &c_all), ("nginx", &n_all)] {
        for (k, v) in &s.errors {
            errors_by_kind.insert(format!("{server}.{k}"), *v);
        }
    }
    let mut error_samples = c_all.samples.clone();
    error_samples.extend(n_all.samples.iter().cloned());
    let growth_kb = rss_peak.saturating_sub(rss_before);
    let cores = machine.cores;
    let setup = format!(
        "{cores} cpus, everything on loopback 127.0.0.1; one HLS rendition of {n} random \
         segments of {b} bytes (one inode per file, hard-linked into the ringcast disks, in the \
         page cache) and a VOD playlist of relative URIs; {c} concurrent players on a tokio \
         runtime of {cores} threads in this process, each: GET the playlist (redirects \
         followed), parse it, GET each segment in order (URIs resolved against the playlist's \
         final URL, redirects followed), one persistent HTTP/1.1 connection per player per host \
         (reconnected when closed), every segment checked for 200 and its length, bodies \
         discarded in the kernel (recv MSG_TRUNC); then again (the playlist asked again) until \
         the run ends, {streams}. {s} s per server in {r} runs of {secs:.1} s alternating \
         ringcast, nginx; segments/s = whole segments per second of wall time (until the last \
         segment begun before the end is in), median of the runs; TTFB = segment request until \
         its first body byte, redirects included, over all runs. ringcast: {NODES} node \
         processes, player i asks node i mod {NODES} (the players' address, 127.0.0.1, is a \
         member's, so the per-client request rate limit does not apply: the bench waits for the \
         nodes to exempt it); memory_per_stream_bytes = growth of \
         the nodes' summed VmRSS from before the first run to its peak (sampled every 100 ms), \
         per concurrent player; false declarations and takeovers counted in the nodes' logs \
         from the first run to the last. {nginx_line}",
        n = opts.segments,
        b = opts.segment_bytes,
        c = opts.clients,
        s = opts.seconds,
        r = opts.rounds,
        streams = if opts.new_stream_each_loop {
            "each loop a new stream (the play URL asked without a stream id)"
        } else {
            "each player one stream throughout (the play URL asked with ?stream=ID)"
        },
    );
    Ok(SegmentsReport {
        clients: opts.clients,
        segment_bytes: opts.segment_bytes,
        segments_per_playlist: opts.segments,
        seconds: opts.seconds,
        rounds: opts.rounds,
        new_stream_each_loop: opts.new_stream_each_loop,
        cluster_segments_per_s: round(c_rate, 1),
        nginx_segments_per_s: n_rate.map(|r| round(r, 1)),
        ratio: n_rate.filter(|r| *r > 0.0).map(|r| round(c_rate / r, 3)),
        cluster_runs_segments_per_s: c_rates.iter().map(|r| round(*r, 1)).collect(),
        nginx_runs_segments_per_s: n_rates.iter().map(|r| round(*r, 1)).collect(),
        cluster_mb_s: round(c_rate * mb, 1),
        nginx_mb_s: n_rate.map(|r| round(r * mb, 1)),
        cluster_ttfb_ms_p50: p(&c_all.ttfb_ms, 50.0),
        cluster_ttfb_ms_p99: p(&c_all.ttfb_ms, 99.0),
        nginx_ttfb_ms_p50: with_nginx(p(&n_all.ttfb_ms, 50.0)),
        nginx_ttfb_ms_p99: with_nginx(p(&n_all.ttfb_ms, 99.0)),
        cluster_playlist_ms_p50: p(&c_all.playlist_ms, 50.0),
        nginx_playlist_ms_p50: with_nginx(p(&n_all.playlist_ms, 50.0)),
        errors: c_all.errors() + n_all.errors(),
        cluster_errors: c_all.errors(),
        nginx_errors: n_all.errors(),
        errors_by_kind,
        error_samples,
        cluster_redirects_per_segment: round(c_all.redirects as f64 / c_all.segments as f64, 3),
        cluster_segments_on_api_connections_pct: round(
            100.0 * c_all.via_api as f64 / c_all.segments as f64,
            1,
        ),
        cluster_generator_cpu_pct: round(100.0 * c_cpu.0 / c_cpu.1, 1),
        nginx_generator_cpu_pct: with_nginx(round(100.0 * n_cpu.0 / n_cpu.1.max(1e-9), 1)),
        cluster_connects_per_player: round(c_all.connects as f64 / runs, 2),
        nginx_connects_per_player: with_nginx(round(n_all.connects as f64 / runs, 2)),
        memory_per_stream_bytes: round(growth_kb as f64 * 1024.0 / f64::from(opts.clients), 0),
        cluster_false_declarations: declarations,
        cluster_supervisor_takeovers: takeovers,
        rss_before_kb: rss_before,
        rss_peak_kb: rss_peak,
        machine,
        setup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let opts = |clients, seconds, rounds, segment_bytes, segments| SegmentsArgs {
            clients,
            vs_nginx: false,
            seconds,
            segment_bytes,
            segments,
            rounds,
            new_stream_each_loop: false,
            dir: None,
        };
        for (o, word) in [
            (opts(0, 20, 3, 1, 1), "--clients"),
            (opts(1025, 20, 3, 1, 1), "--clients"),
            (opts(1, 0, 1, 1, 1), "--seconds"),
            (opts(1, 2, 3, 1, 1), "--rounds"),
            (opts(1, 20, 0, 1, 1), "--rounds"),
            (opts(1, 20, 3, 0, 1), "--segment-bytes"),
            (opts(1, 20, 3, 1, 0), "--segments"),
            (opts(1, 20, 3, 256 << 20, 17), "--segments"),
        ] {
            let e = segments(&o).unwrap_err().to_string();
            assert!(e.contains(word), "{e}");
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
