//! `ringcast bench soak`: a local cluster at LAN timing serving streams
//! while a CPU hog saturates every core, counting what a
//! starved machine must not do: declare a live node failed, or take over
//! from a live supervisor. Nothing is killed during the soak, so every
//! failure declaration and every takeover counted is a false one.
//!
//! The streams are real `ringcast play` processes reading a title through
//! placement and the zero-copy data path, each checked byte for byte when
//! it ends; one that fails or differs is a lost stream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bench_interrupt::{catch_interrupts, check_interrupted};
use crate::bench_stream::{wait_playable, write_random_file, Scratch};
use crate::http;
use crate::up_cmd::{Layout, Library, LocalCluster};

/// Options of `ringcast bench soak`.
pub struct SoakOptions {
    /// How long the soak runs.
    pub minutes: f64,
    /// Nodes of the local cluster.
    pub nodes: u32,
    /// Streams playing at once.
    pub streams: u32,
    /// Busy threads of the CPU hog (default: one per core).
    pub hog_threads: Option<usize>,
    /// Where the cluster and its logs go (temporary by default).
    pub dir: Option<PathBuf>,
}

/// The last line of `ringcast bench soak`.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    /// Minutes soaked.
    pub minutes: f64,
    /// Nodes of the cluster.
    pub nodes: u32,
    /// Status and notification interval of the cluster, milliseconds.
    pub interval_ms: u64,
    /// Busy threads of the hog.
    pub hog_threads: usize,
    /// CPUs of the machine.
    pub cpus: usize,
    /// Failure declarations made by any node (every one is false: no node died).
    pub false_declarations: u64,
    /// Supervisor takeovers (epochs begun; every one is false).
    pub false_takeovers: u64,
    /// Streams that ended byte-exact.
    pub streams_completed: u64,
    /// Streams that failed or ended with other bytes.
    pub streams_lost: u64,
    /// The machine's 1-minute load average at the end.
    pub load_average: Option<f64>,
    /// What was measured, in words.
    pub setup: String,
}

/// The title every stream reads.
const TITLE: &str = "soak.mp4";
/// Its size.
const TITLE_BYTES: u64 = 8 << 20;
/// The rate each stream reads at: a stream lasts about 8 s.
pub(crate) const STREAM_RATE: u64 = 1 << 20;

/// A stream being played.
pub(crate) struct Stream {
    pub(crate) child: Child,
    pub(crate) out: PathBuf,
    /// The player's own messages (its resumes and why), kept beside the
    /// output so a stream that ends wrong can say why.
    pub(crate) log: PathBuf,
}

impl Stream {
    /// Why the stream ended wrong, in the player's own last lines.
    pub(crate) fn why(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(6)..].join("\n  ")
    }

    /// Removes the output and the log once the stream is counted.
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The hog's threads and the streams playing; dropping it (at the end, or
/// on an error or Ctrl-C) stops the hog and kills the players.
struct Load {
    stop: Arc<AtomicBool>,
    hogs: Vec<std::thread::JoinHandle<()>>,
    streams: Vec<Option<Stream>>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.hogs.drain(..) {
            let _ = h.join();
        }
        for s in self.streams.iter_mut().flatten() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

/// What every node's metrics say now: declarations made, summed, and the
/// highest epoch any node has seen.
fn counters(agent: &ureq::Agent, bases: &[String]) -> Result<(u64, u64)> {
    let mut declarations = 0;
    let mut epoch = 0;
    for base in bases {
        let text = agent
            .get(&format!("{base}/metrics"))
            .call()
            .with_context(|| format!("cannot read {base}/metrics"))?
            .into_string()?;
        declarations += sample(&text, "ringcast_failure_declarations_total")
            .with_context(|| format!("{base}/metrics has no failure declarations"))?;
        epoch = epoch.max(
            sample(&text, "ringcast_epoch")
                .with_context(|| format!("{base}/metrics has no epoch"))?,
        );
    }
    Ok((declarations, epoch))
}

/// The value of the unlabelled series `name` in a Prometheus text page.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Busy threads that run until `stop` is set.
fn hog(threads: usize, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x: u64 = 1;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..10_000 {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect()
}

pub(crate) fn start_stream(url: &str, out: &Path) -> Result<Stream> {
    let log = out.with_extension("log");
    let stderr =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(std::env::current_exe().context("cannot find this program")?)
        .args([
            "play",
            url,
            "--plain",
            "--max-rate",
            &STREAM_RATE.to_string(),
            "--out",
        ])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("cannot start ringcast play")?;
    Ok(Stream {
        child,
        out: out.to_path_buf(),
        log,
    })
}

/// Whether a finished stream ended well with the title's bytes.
/// A local cluster of node processes serving one title of random bytes,
/// formed and playable from every node: what the benchmarks that play a
/// title start from.
pub(crate) struct TitleCluster {
    /// The benchmark's scratch directory (the library, the cluster, the
    /// players' output).
    pub scratch: Scratch,
    /// The title's SHA-256, to check each play byte for byte.
    pub digest: Vec<u8>,
    /// The running cluster; dropping it stops the nodes.
    pub cluster: LocalCluster,
    /// The supervisor it formed under.
    pub sup: u32,
    /// Every node's HTTP base URL.
    pub bases: Vec<String>,
    /// Every node's play URL of the title.
    pub plays: Vec<String>,
}

impl TitleCluster {
    /// Starts `nodes` node processes for benchmark `bench` in `dir` (or a
    /// scratch directory) with a library of `title` (its name and size),
    /// and waits until they formed within `formed_within` and every node
    /// plays the title.
    pub(crate) fn start(
        bench: &str,
        dir: Option<&Path>,
        nodes: u32,
        title: (&str, u64),
        formed_within: Duration,
    ) -> Result<TitleCluster> {
        let (name, bytes) = title;
        let scratch = Scratch::named(dir, bench)?;
        let lib = scratch.path.join("library");
        std::fs::create_dir_all(&lib)
            .with_context(|| format!("cannot create {}", lib.display()))?;
        write_random_file(&lib.join(name), bytes)?;
        let digest = Sha256::digest(std::fs::read(lib.join(name))?).to_vec();
        let cluster_dir = scratch.path.join("cluster");
        eprintln!(
            "{bench}: starting {nodes} node processes in {}",
            cluster_dir.display()
        );
        let cluster = LocalCluster::start(
            &Layout::Nodes(nodes),
            Some(&cluster_dir),
            &Library::Dir(lib.clone()),
        )?;
        let sup = cluster.wait_formed(formed_within)?;
        let bases: Vec<String> = cluster.nodes.iter().map(|n| n.1.clone()).collect();
        let plays: Vec<String> = bases
            .iter()
            .map(|b| format!("{}/v1/play/{name}", b.trim_end_matches('/')))
            .collect();
        wait_playable(&plays, Duration::from_secs(30))?;
        Ok(TitleCluster {
            scratch,
            digest,
            cluster,
            sup,
            bases,
            plays,
        })
    }
}

pub(crate) fn stream_ok(status: std::process::ExitStatus, out: &Path, digest: &[u8]) -> bool {
    status.success()
        && std::fs::read(out).is_ok_and(|bytes| Sha256::digest(&bytes).as_slice() == digest)
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the soak.
pub fn soak(opts: &SoakOptions) -> Result<SoakReport> {
    if !(opts.minutes > 0.0 && opts.minutes <= 24.0 * 60.0) {
        bail!(
            "--minutes must be above 0 and at most 1440, not {}",
            opts.minutes
        );
    }
    if !(2..=16).contains(&opts.nodes) {
        bail!("--nodes must be between 2 and 16, not {}", opts.nodes);
    }
    if !(1..=64).contains(&opts.streams) {
        bail!("--streams must be between 1 and 64, not {}", opts.streams);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hog_threads = opts.hog_threads.unwrap_or(cpus);
    if hog_threads > 256 {
        bail!("--hog-threads must be at most 256, not {hog_threads}");
    }
    catch_interrupts();
    let TitleCluster {
        scratch,
        digest,
        cluster,
        sup,
        bases,
        plays,
    } = TitleCluster::start(
        "soak",
        opts.dir.as_deref(),
        opts.nodes,
        (TITLE, TITLE_BYTES),
        Duration::from_secs(30),
    )?;
    let interval_ms = ringcast_proto::Timing::lan().status_interval.as_millis() as u64;
    let agent = http::agent();
    let (declarations_before, epoch_before) = counters(&agent, &bases)?;
    eprintln!(
        "soak: formed under n{sup}; {hog_threads} busy thread(s) on {cpus} CPU(s), {} stream(s), {} minute(s)",
        opts.streams, opts.minutes
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Load {
        hogs: hog(hog_threads, &stop),
        stop,
        streams: (0..opts.streams).map(|_| None).collect(),
    };
    let started = Instant::now();
    let length = Duration::from_secs_f64(opts.minutes * 60.0);
    let (mut completed, mut lost, mut next) = (0u64, 0u64, 0usize);
    let mut last_report = Instant::now();
    let result = loop {
        if let Err(e) = check_interrupted() {
            break Err(e);
        }
        let running = started.elapsed() < length;
        for (i, slot) in load.streams.iter_mut().enumerate() {
            if let Some(s) = slot {
                match s.child.try_wait() {
                    Ok(Some(status)) => {
                        if stream_ok(status, &s.out, &digest) {
                            completed += 1;
                        } else {
                            lost += 1;
                            eprintln!(
                                "soak: stream {} ended wrong ({status}):\n  {}",
                                s.out.display(),
                                s.why()
                            );
                        }
                        s.remove();
                        *slot = None;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        lost += 1;
                        eprintln!("soak: cannot wait for a stream: {e}");
                        let _ = s.child.kill();
                        let _ = s.child.wait();
                        *slot = None;
                    }
                }
            }
            if slot.is_none() && running {
                let out = scratch.path.join(format!("stream-{i}.mp4"));
                let url = &plays[next % plays.len()];
                next += 1;
                *slot = Some(start_stream(url, &out)?);
            }
        }
        if !running && load.streams.iter().all(Option::is_none) {
            break Ok(());
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let (d, e) = counters(&agent, &bases).unwrap_or((declarations_before, epoch_before));
            eprintln!(
                "soak: {:>5.1} min: {} declaration(s), {} takeover(s), {completed} stream(s) done, {lost} lost, load {:.1}",
                started.elapsed().as_secs_f64() / 60.0,
                d.saturating_sub(declarations_before),
                e.saturating_sub(epoch_before),
                load_average().unwrap_or(0.0)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let load_avg = load_average();
    drop(load);
    result?;
    let (declarations_after, epoch_after) = counters(&agent, &bases)?;
    drop(cluster);
    Ok(SoakReport {
        minutes: opts.minutes,
        nodes: opts.nodes,
        interval_ms,
        hog_threads,
        cpus,
        false_declarations: declarations_after.saturating_sub(declarations_before),
        false_takeovers: epoch_after.saturating_sub(epoch_before),
        streams_completed: completed,
        streams_lost: lost,
        load_average: load_avg,
        setup: format!(
            "{} node processes on loopback at {interval_ms} ms intervals, {} ringcast play processes at {} KiB/s each reading an {} MiB title (checked byte for byte), {hog_threads} busy thread(s) at normal priority on {cpus} CPU(s); nothing killed, so every declaration and takeover is false",
            opts.nodes,
            opts.streams,
            STREAM_RATE >> 10,
            TITLE_BYTES >> 20
        ),
    })
}
