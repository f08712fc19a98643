//! `ringcast bench stream`: C concurrent clients download one title through
//! a local ringcast cluster of 3 node processes and, with `--vs-nginx`, the
//! very same file from nginx (sendfile on), with the same load generator, on
//! the same machine, in the same run. Everything stays on 127.0.0.1.
//!
//! Each ringcast download is what a player does: `GET /v1/play/{title}` on
//! some node (a 307 chosen by the supervisor), then a fresh connection to the
//! `Location` (the zero-copy data path). Each nginx download is the second
//! step alone, so ringcast's figure includes one placement per download.
//!
//! With `--tls` the nodes serve HTTPS under credentials made for the run,
//! nginx serves TLS with node 1's certificate, and the clients speak TLS
//! (rustls) to both.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringcast_sim::campaign::percentile;
use serde::Serialize;

use crate::bench_interrupt::{catch_interrupts, check_interrupted, interrupted};
use crate::bench_nginx::{ensure_nginx, nginx_version, Nginx};
use crate::up_cmd::{Layout, Library, LocalCluster};

/// Options of `ringcast bench stream`.
pub struct StreamBenchOptions {
    /// Concurrent clients (1 to 512).
    pub clients: u32,
    /// Also measure nginx serving the same file.
    pub vs_nginx: bool,
    /// Seconds each run generates load (1 to 600).
    pub seconds: u32,
    /// Size of the title, MiB (1 to 4096).
    pub file_mb: u32,
    /// Where the library, cluster and nginx files go (a temporary folder,
    /// removed afterwards, by default).
    pub dir: Option<PathBuf>,
    /// HTTPS: the cluster's nodes and nginx serve TLS with the same kind
    /// of certificate (the nodes' CA), and the clients speak TLS.
    pub tls: bool,
}

/// The last line of `ringcast bench stream --json`.
#[derive(Debug, Serialize)]
pub struct StreamReport {
    /// Concurrent clients.
    pub clients: u32,
    /// Seconds of load per run.
    pub seconds: u32,
    /// Size of the title, MiB.
    pub file_mb: u32,
    /// Body bytes received through ringcast per second of wall time, 10^6 bytes.
    pub ringcast_mb_s: f64,
    /// The same from nginx, with `--vs-nginx`.
    pub nginx_mb_s: Option<f64>,
    /// `ringcast_mb_s / nginx_mb_s`.
    pub ratio: Option<f64>,
    /// Time to the first body byte of a ringcast stream request, median.
    pub ttfb_ms_p50: f64,
    /// ... 99th percentile.
    pub ttfb_ms_p99: f64,
    /// The same for nginx, 99th percentile.
    pub nginx_ttfb_ms_p99: Option<f64>,
    /// Growth of the nodes' summed resident memory under load, per client.
    pub rss_kb_per_stream: f64,
    /// Whether the streams were HTTPS.
    pub tls: bool,
    /// Whether the kernel encrypted the records (kernel TLS, which keeps
    /// `sendfile`): ringcast has no kernel TLS yet, and copies through
    /// rustls.
    pub kernel_tls: bool,
    /// CPUs of the machine the bench ran on.
    pub cpus: usize,
    /// What was measured, in words.
    pub setup: String,
}

/// The title every client reads.
const TITLE: &str = "bench.mp4";
/// Nodes in the local cluster.
const NODES: u32 = 3;
/// The buffer each client reads a body into (and discards).
pub(crate) const BUF: usize = 256 * 1024;
/// A server silent for this long has failed the bench.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MIB: u64 = 1 << 20;

/// Runs the streaming benchmark.
pub fn stream(opts: &StreamBenchOptions) -> Result<StreamReport> {
    if !(1..=512).contains(&opts.clients) {
        bail!("--clients must be between 1 and 512, not {}", opts.clients);
    }
    if !(1..=600).contains(&opts.seconds) {
        bail!("--seconds must be between 1 and 600, not {}", opts.seconds);
    }
    if !(1..=4096).contains(&opts.file_mb) {
        bail!("--file-mb must be between 1 and 4096, not {}", opts.file_mb);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    catch_interrupts();
    // Fail before the long ringcast run, not after it.
    let nginx_exe = if opts.vs_nginx {
        Some(ensure_nginx()?)
    } else {
        None
    };

    let scratch = Scratch::new(opts.dir.as_deref())?;
    let root = scratch.path.clone();
    let lib = root.join("library");
    std::fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let size = u64::from(opts.file_mb) * MIB;
    eprintln!(
        "writing a random {} MiB title into {} ...",
        opts.file_mb,
        lib.display()
    );
    write_random_file(&lib.join(TITLE), size)?;
    check_interrupted()?;

    // ringcast.
    let cluster_dir = root.join("cluster");
    // A previous run's disks would hold links to an older file: start clean.
    let old_disks = cluster_dir.join("disks");
    if old_disks.exists() {
        std::fs::remove_dir_all(&old_disks)
            .with_context(|| format!("cannot remove {}", old_disks.display()))?;
    }
    eprintln!(
        "ringcast: starting {NODES} node processes in {}",
        cluster_dir.display()
    );
    let mut cluster = LocalCluster::start_with(
        &Layout::Nodes(NODES),
        Some(&cluster_dir),
        &Library::Dir(lib.clone()),
        crate::LogFormat::Text,
        opts.tls,
    )?;
    let sup = cluster.wait_formed(Duration::from_secs(30))?;
    check_interrupted()?;
    let plays: Vec<String> = cluster
        .nodes
        .iter()
        .map(|(_, base, _)| format!("{}/v1/play/{TITLE}", base.trim_end_matches('/')))
        .collect();
    for play in &plays {
        loopback(play)?;
    }
    wait_playable(&plays, Duration::from_secs(30))?;
    eprintln!("ringcast: formed (supervisor n{sup}), every node places {TITLE}");
    let pids: Vec<u32> = cluster
        .nodes
        .iter()
        .filter_map(|(_, _, c)| c.as_ref().map(Child::id))
        .collect();
    if pids.len() != NODES as usize {
        bail!("a node process of the local cluster is not running");
    }
    let rss_before = rss_kb(&pids)?;
    let rc = run_load("ringcast", &Target::Ringcast(plays), opts, size, &pids)?;
    cluster.stop();
    drop(cluster);
    let rss_growth = rc
        .rss_mid_kb
        .unwrap_or(rss_before)
        .saturating_sub(rss_before);
    let rss_kb_per_stream = rss_growth as f64 / f64::from(opts.clients);

    // nginx.
    let mut nginx_line = String::from("nginx not run (no --vs-nginx)");
    let nginx = match nginx_exe {
        None => None,
        Some(exe) => {
            let version = nginx_version(&exe);
            // With TLS, nginx presents node 1's certificate (valid for
            // 127.0.0.1, made by the cluster's CA): the same kind of
            // certificate and key as the nodes.
            let creds = cluster_dir.join("credentials");
            let (cert, key) = (creds.join("node-1.crt"), creds.join("node-1.key"));
            let tls = opts.tls.then_some((cert.as_path(), key.as_path()));
            let server = Nginx::start_tls(
                &exe,
                &root.join("nginx"),
                &lib,
                &format!("/{TITLE}"),
                size,
                tls,
            )?;
            eprintln!(
                "nginx: {version} serving {} on {}",
                lib.display(),
                server.addr
            );
            let url = format!("{}://{}/{TITLE}", server.scheme, server.addr);
            let run = run_load("nginx", &Target::Direct(url), opts, size, &[])?;
            drop(server);
            nginx_line = format!(
                "{version}: worker_processes auto, sendfile on, tcp_nopush on, access_log off, \
                 root = the same library folder, each download one GET of the file{} \
                 ({} downloads)",
                if opts.tls {
                    ", ssl with node 1's certificate (TLS 1.2 and 1.3, no kernel TLS)"
                } else {
                    ""
                },
                run.downloads
            );
            Some(run)
        }
    };

    let mut ttfb = rc.ttfb_ms.clone();
    let nginx_mb_s = nginx.as_ref().map(|n| round(n.mb_s, 1));
    let ratio = nginx
        .as_ref()
        .filter(|n| n.mb_s > 0.0)
        .map(|n| round(rc.mb_s / n.mb_s, 3));
    let nginx_ttfb_ms_p99 = nginx
        .as_ref()
        .map(|n| round(percentile(&mut n.ttfb_ms.clone(), 99.0), 3));
    let mut place_ms = rc.place_ms.clone();
    let placement = format!(
        "play request p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut place_ms, 50.0),
        percentile(&mut place_ms, 99.0)
    );
    let refused = if rc.refused > 0 {
        format!(
            ", {} placements refused with 503 (retried after Retry-After, at most 1 s)",
            rc.refused
        )
    } else {
        String::new()
    };
    let setup = format!(
        "{cpus} cpus, everything on loopback 127.0.0.1; one random {mb} MiB file (one inode, \
         hard-linked into the ringcast disks, in the page cache); {c} concurrent client threads \
         for {s} s per run, each download on a new TCP connection (Connection: close), the body \
         read into a 256 KiB buffer and discarded, every download checked for its full length; \
         MB = 10^6 bytes of body per second of wall time (until the last download started \
         before the end finishes); TTFB = connect + request until the first body byte of the \
         file request. ringcast: {NODES} node processes, each client one stream (one stream \
         id), each download = GET /v1/play?stream=ID (a 307 placed by the supervisor, the \
         nodes asked in turn; counted in the wall time, not in TTFB) + GET of the stream URL, \
         served {served} ({d} downloads, {placement}{refused}); rss_kb_per_stream = \
         growth of the nodes' summed VmRSS from before the load to mid-run, per client. \
         {nginx_line}",
        mb = opts.file_mb,
        c = opts.clients,
        s = opts.seconds,
        d = rc.downloads,
        served = if opts.tls {
            "over HTTPS (rustls in the node, the file copied through the TLS stream: this \
             kernel offers no kernel TLS, so no sendfile)"
        } else {
            "with sendfile(2)"
        },
    );
    Ok(StreamReport {
        clients: opts.clients,
        seconds: opts.seconds,
        file_mb: opts.file_mb,
        ringcast_mb_s: round(rc.mb_s, 1),
        nginx_mb_s,
        ratio,
        ttfb_ms_p50: round(percentile(&mut ttfb, 50.0), 3),
        ttfb_ms_p99: round(percentile(&mut ttfb, 99.0), 3),
        nginx_ttfb_ms_p99,
        rss_kb_per_stream: round(rss_kb_per_stream, 1),
        tls: opts.tls,
        kernel_tls: false,
        cpus,
        setup,
    })
}

pub(crate) fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Nearest-rank percentile.
/// The bench's working folder; a temporary one is removed when dropped.
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
    remove: bool,
}

impl Scratch {
    pub(crate) fn new(dir: Option<&Path>) -> Result<Scratch> {
        Scratch::named(dir, "stream")
    }

    /// A scratch folder: `dir`, kept, or a temporary one named after the bench, removed.
    pub(crate) fn named(dir: Option<&Path>, bench: &str) -> Result<Scratch> {
        let (path, remove) = match dir {
            Some(d) => (d.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("ringcast-bench-{bench}-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch { path, remove })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A seed that differs from run to run.
fn seed() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32
}

/// Writes `size` pseudo-random bytes (incompressible, nothing to dedupe).
pub(crate) fn write_random_file(path: &Path, size: u64) -> Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut state = seed() | 1;
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        let n = left.min(MIB) as usize;
        file.write_all(&chunk[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
        check_interrupted()?;
    }
    file.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The address of an `http://127.0.0.1:PORT/...` URL and its path; any other
/// host is refused, so the bench never talks to anything but this machine.
fn loopback(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .with_context(|| format!("{url} is not an http:// or https:// URL"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = host
        .parse()
        .with_context(|| format!("{url} does not name an address and port"))?;
    // Loopback only (127.0.0.0/8: the nodes' listeners on 127.0.0.1, the
    // service addresses of a local cluster elsewhere in it).
    if !addr.ip().is_loopback() {
        bail!("{url} is not on loopback (127.0.0.0/8); the bench talks to this machine only");
    }
    Ok((addr, path.to_string()))
}

fn play_agent() -> ureq::Agent {
    crate::http::builder()
        .redirects(0)
        .timeout_connect(Duration::from_secs(2))
        .timeout(IO_TIMEOUT)
        .build()
}

/// What a play request answered.
enum Placed {
    /// The stream URL.
    At(String),
    /// 503: try again after this long.
    Busy(Duration),
}

fn place(agent: &ureq::Agent, play: &str) -> Result<Placed> {
    match agent.get(play).call() {
        Ok(r) if (300..400).contains(&r.status()) => {
            let loc = r
                .header("location")
                .map(String::from)
                .with_context(|| format!("{play}: a redirect without Location"))?;
            let _ = r.into_string();
            if loc.starts_with('/') {
                let (addr, _) = loopback(play)?;
                return Ok(Placed::At(crate::http::base(addr) + &loc));
            }
            Ok(Placed::At(loc))
        }
        Ok(r) => bail!("{play} answered {} instead of a redirect", r.status()),
        Err(ureq::Error::Status(503, r)) => {
            let secs = r
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            Ok(Placed::Busy(Duration::from_secs(secs)))
        }
        Err(ureq::Error::Status(code, r)) => {
            let body = r.into_string().unwrap_or_default();
            bail!("{play} answered {code}: {}", body.trim())
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("cannot reach {play}"))),
    }
}

/// Polls every node's play URL until each answers with a redirect (the
/// supervisor needs the disks' catalogs first).
pub(crate) fn wait_playable(plays: &[String], limit: Duration) -> Result<()> {
    let agent = play_agent();
    let deadline = Instant::now() + limit;
    for play in plays {
        loop {
            let last = match place(&agent, play) {
                Ok(Placed::At(_)) => break,
                Ok(Placed::Busy(_)) => "503".to_string(),
                Err(e) => format!("{e:#}"),
            };
            check_interrupted()?;
            if Instant::now() > deadline {
                bail!(
                    "{play} did not redirect within {} s (last answer: {last})",
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// One download: a fresh connection, `GET path`, the head parsed, the body
/// read into `buf` and discarded. Returns (time to first body byte, body bytes).
pub(crate) fn fetch(url: &str, buf: &mut [u8], expect: u64) -> Result<(Duration, u64)> {
    let (addr, path) = loopback(url)?;
    let started = Instant::now();
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("cannot connect to {addr}"))?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    sock.set_nodelay(true)?;
    if url.starts_with("https://") {
        let tls = crate::http::tls_client()
            .context("an https:// URL, and the bench has no CA to trust")?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let conn = rustls::ClientConnection::new(tls, name)
            .with_context(|| format!("cannot start TLS with {addr}"))?;
        let stream = rustls::StreamOwned::new(conn, sock);
        return read_response(stream, url, &path, addr, started, buf, expect);
    }
    read_response(sock, url, &path, addr, started, buf, expect)
}

/// [`fetch`] on a connected stream, plain or TLS.
fn read_response(
    mut sock: impl Read + Write,
    url: &str,
    path: &str,
    addr: SocketAddr,
    started: Instant,
    buf: &mut [u8],
    expect: u64,
) -> Result<(Duration, u64)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes())
        .with_context(|| format!("cannot send the request to {addr}"))?;
    let mut filled = 0;
    let head_end = loop {
        let n = sock
            .read(&mut buf[filled..])
            .with_context(|| format!("{url}: no response head"))?;
        if n == 0 {
            bail!("{url}: the connection closed before the response head");
        }
        filled += n;
        if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if filled == buf.len() {
            bail!("{url}: the response head is too large");
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .with_context(|| format!("{url}: the response head is not text"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("{url}: no status line"))?;
    if status != 200 {
        let first = head.lines().next().unwrap_or_default();
        bail!("{url} answered {first}");
    }
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .with_context(|| format!("{url}: no Content-Length"))?;
    if len != expect {
        bail!("{url}: Content-Length {len}, but the title has {expect} bytes");
    }
    let mut got = (filled - head_end) as u64;
    let mut ttfb = (got > 0).then(|| started.elapsed());
    while got < len {
        let n = sock
            .read(buf)
            .with_context(|| format!("{url}: the body broke at byte {got}"))?;
        if n == 0 {
            break;
        }
        if ttfb.is_none() {
            ttfb = Some(started.elapsed());
        }
        got += n as u64;
    }
    if got != len {
        bail!("{url}: received {got} of {len} body bytes");
    }
    Ok((ttfb.unwrap_or_else(|| started.elapsed()), got))
}

/// What the clients read from.
enum Target {
    /// Play URLs of every node, asked in turn; each download follows the redirect.
    Ringcast(Vec<String>),
    /// The file's URL.
    Direct(String),
}

/// What one run measured.
struct Run {
    mb_s: f64,
    ttfb_ms: Vec<f64>,
    /// Time of each answered play request (ringcast only).
    place_ms: Vec<f64>,
    downloads: u64,
    refused: u64,
    rss_mid_kb: Option<u64>,
}

/// Per client: TTFB of each download and 503s seen.
struct ClientResult {
    ttfb_ms: Vec<f64>,
    place_ms: Vec<f64>,
    refused: u64,
}

fn client(
    index: usize,
    target: &Target,
    deadline: Instant,
    size: u64,
    bytes: &AtomicU64,
    abort: &AtomicBool,
) -> Result<ClientResult> {
    let agent = play_agent();
    // One client is one stream: every download of it asks the play URL
    // with the same stream id, as `ringcast play` does when it resumes.
    let stream = (seed() ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 1;
    let mut buf = vec![0u8; BUF];
    let mut out = ClientResult {
        ttfb_ms: Vec::new(),
        place_ms: Vec::new(),
        refused: 0,
    };
    let mut turn = index;
    while Instant::now() < deadline && !abort.load(Ordering::Relaxed) {
        let url = match target {
            Target::Direct(url) => url.clone(),
            Target::Ringcast(plays) => {
                let play = format!("{}?stream={stream}", plays[turn % plays.len()]);
                turn += 1;
                let asked = Instant::now();
                match place(&agent, &play)? {
                    Placed::At(loc) => {
                        out.place_ms.push(asked.elapsed().as_secs_f64() * 1000.0);
                        loc
                    }
                    Placed::Busy(wait) => {
                        out.refused += 1;
                        let left = deadline.saturating_duration_since(Instant::now());
                        std::thread::sleep(wait.min(Duration::from_secs(1)).min(left));
                        continue;
                    }
                }
            }
        };
        let (ttfb, n) = fetch(&url, &mut buf, size)?;
        out.ttfb_ms.push(ttfb.as_secs_f64() * 1000.0);
        bytes.fetch_add(n, Ordering::Relaxed);
    }
    Ok(out)
}

/// Runs `opts.clients` clients against `target` for `opts.seconds`, printing
/// progress; samples the summed RSS of `pids` at mid-run.
fn run_load(
    label: &str,
    target: &Target,
    opts: &StreamBenchOptions,
    size: u64,
    pids: &[u32],
) -> Result<Run> {
    let bytes = AtomicU64::new(0);
    let abort = AtomicBool::new(false);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(u64::from(opts.seconds));
    let mid = start + Duration::from_secs_f64(f64::from(opts.seconds) / 2.0);
    eprintln!(
        "{label}: {} clients for {} s ...",
        opts.clients, opts.seconds
    );
    let (results, wall, rss_mid_kb) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..opts.clients as usize)
            .map(|i| {
                let (bytes, abort) = (&bytes, &abort);
                s.spawn(move || {
                    let r = client(i, target, deadline, size, bytes, abort);
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        let mut rss_mid = None;
        let mut next_report = start + Duration::from_secs(1);
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
            if interrupted() {
                abort.store(true, Ordering::Relaxed);
            }
            let now = Instant::now();
            if rss_mid.is_none() && now >= mid && !pids.is_empty() {
                rss_mid = rss_kb(pids).ok();
            }
            if now >= next_report {
                let secs = now.duration_since(start).as_secs_f64();
                let b = bytes.load(Ordering::Relaxed);
                eprintln!(
                    "{label}: {secs:.1} s, {:.0} MB, {:.1} MB/s so far",
                    b as f64 / 1e6,
                    b as f64 / 1e6 / secs
                );
                next_report += Duration::from_secs(1);
            }
        }
        let wall = start.elapsed();
        let results: Vec<Result<ClientResult>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
            })
            .collect();
        (results, wall, rss_mid)
    });
    check_interrupted()?;
    let mut ttfb_ms = Vec::new();
    let mut place_ms = Vec::new();
    let mut refused = 0;
    for r in results {
        let r = r.with_context(|| format!("{label}: a download failed"))?;
        ttfb_ms.extend(r.ttfb_ms);
        place_ms.extend(r.place_ms);
        refused += r.refused;
    }
    if !pids.is_empty() && rss_mid_kb.is_none() {
        bail!("{label}: could not read the nodes' memory at mid-run");
    }
    let total = bytes.load(Ordering::Relaxed);
    let mb_s = total as f64 / 1e6 / wall.as_secs_f64();
    eprintln!(
        "{label}: done: {} downloads, {:.0} MB in {:.1} s = {mb_s:.1} MB/s",
        ttfb_ms.len(),
        total as f64 / 1e6,
        wall.as_secs_f64()
    );
    if ttfb_ms.is_empty() {
        bail!("{label}: no download completed in {} s", opts.seconds);
    }
    Ok(Run {
        mb_s,
        downloads: ttfb_ms.len() as u64,
        ttfb_ms,
        place_ms,
        refused,
        rss_mid_kb,
    })
}

/// Summed VmRSS of `pids`, kB.
pub(crate) fn rss_kb(pids: &[u32]) -> Result<u64> {
    let mut sum = 0;
    for pid in pids {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kb = text
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("{path} has no VmRSS"))?;
        sum += kb;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_followed() {
        let (addr, path) = loopback("http://127.0.0.1:8501/v1/streams/t/a.mp4").unwrap();
        assert_eq!(addr.port(), 8501);
        assert_eq!(path, "/v1/streams/t/a.mp4");
        assert!(loopback("http://10.0.0.1:80/x").is_err());
        assert!(
            loopback("http://127.67.144.2:80/x").is_ok(),
            "a local service address"
        );
        assert!(loopback("http://example.com/x").is_err());
        assert!(loopback("https://127.0.0.1:1/x").is_ok());
        assert!(loopback("ftp://127.0.0.1:1/x").is_err());
    }

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 50.0);
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut [], 99.0), 0.0);
    }

    #[test]
    fn options_are_checked() {
        let opts = |clients, seconds, file_mb| StreamBenchOptions {
            clients,
            vs_nginx: false,
            seconds,
            file_mb,
            dir: None,
            tls: false,
        };
        for (o, word) in [
            (opts(0, 1, 1), "--clients"),
            (opts(513, 1, 1), "--clients"),
            (opts(1, 0, 1), "--seconds"),
            (opts(1, 601, 1), "--seconds"),
            (opts(1, 1, 0), "--file-mb"),
            (opts(1, 1, 4097), "--file-mb"),
        ] {
            let e = stream(&o).unwrap_err().to_string();
            assert!(e.contains(word), "{e}");
        }
    }
}
