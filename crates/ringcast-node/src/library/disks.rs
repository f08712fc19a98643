//! Claim 13: the disk prober. Each node periodically determines whether each
//! disk it has access to is functioning: every `disk_check_interval` it writes a
//! small file with fresh content at the disk's failure detection location
//! ([`DiskAccess::probe_path`]), syncs it, reads it back and compares, all on a
//! blocking thread and under a timeout, because a hung disk is a failed disk.
//! It also reads the disk's capacity and space used (statvfs) for the disk
//! usage table (claim 4).
//!
//! This module only produces facts: one [`ProbeOutcome`] per disk per period.
//! Turning them into disk failure reports, quorums and reassignments is the
//! runtime's and the protocol's business.
//!
//! Several nodes may reach the same disk (shared storage); each node should be
//! configured with its own failure detection location on it. Should two nodes
//! share one location anyway, a read-back that shows another prober's record
//! is retried a few times before it counts as a failure.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringcast_proto::config::{DiskAccess, Timing};
use ringcast_proto::ids::DiskId;
use ringcast_proto::message::DiskReport;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

/// Claim 13: how often the prober checks each disk and how long one check may
/// take before the disk counts as failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between two probes of the same disk (`disk_check_interval`).
    pub interval: Duration,
    /// How long one probe may take; a probe still running after it is a
    /// failure (a hung disk is a failed disk).
    pub timeout: Duration,
}

impl Default for ProbeConfig {
    /// One probe per second, two seconds to finish it.
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Claim 13: the shortest time a probe may take before its disk is called
/// hung. A healthy disk under another process's writes can take hundreds of
/// milliseconds to fsync; only a probe slower than this fails for being slow.
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl ProbeConfig {
    /// The probe period of the protocol timing (`disk_check_interval`, claim
    /// 13), with a timeout of twice that period, and never less than
    /// [`MIN_PROBE_TIMEOUT`].
    pub fn from_timing(timing: &Timing) -> Self {
        ProbeConfig {
            interval: timing.disk_check_interval,
            timeout: timing
                .disk_check_interval
                .saturating_mul(2)
                .max(MIN_PROBE_TIMEOUT),
        }
    }
}

/// Claim 13: the result of one probe of one disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Whether the disk works: the probe file was written, synced and read
    /// back unchanged within the timeout.
    pub ok: bool,
    /// Why the probe failed, as one sentence naming the path; `None` when `ok`.
    pub error: Option<String>,
    /// How long the probe took (the timeout when it did not finish).
    pub latency: Duration,
    /// Claim 4: total bytes of the file system at the mount point (statvfs);
    /// 0 when unknown.
    pub capacity_bytes: u64,
    /// Claim 4: bytes in use on that file system; 0 when unknown.
    pub used_bytes: u64,
}

impl ProbeOutcome {
    /// The disk report this outcome becomes on the ring (claim 13) for
    /// `disk`, carrying `catalog`, the digest of the disk's library
    /// ([`super::catalog::Catalog::digest`]).
    pub fn to_report(&self, disk: DiskId, catalog: u64) -> DiskReport {
        DiskReport {
            disk,
            ok: self.ok,
            capacity_bytes: self.capacity_bytes,
            used_bytes: self.used_bytes,
            catalog,
            streams: 0,
            bytes_per_s: 0,
        }
    }

    fn failed(error: String, latency: Duration) -> Self {
        ProbeOutcome {
            ok: false,
            error: Some(error),
            latency,
            capacity_bytes: 0,
            used_bytes: 0,
        }
    }
}

/// What the blocking thread found, before the latency is known.
struct Checked {
    error: Option<String>,
    capacity_bytes: u64,
    used_bytes: u64,
}

impl Checked {
    fn into_outcome(self, latency: Duration) -> ProbeOutcome {
        ProbeOutcome {
            ok: self.error.is_none(),
            error: self.error,
            latency,
            capacity_bytes: self.capacity_bytes,
            used_bytes: self.used_bytes,
        }
    }
}

/// Claim 13: probes one disk once: writes a small file of fresh content at its
/// failure detection location, syncs it, reads it back and compares, then reads
/// capacity and space used at its mount point. Everything runs on a blocking
/// thread; a probe that has not finished after `timeout` is reported failed
/// (its thread is left to finish on its own). A missing parent directory of the
/// location is a failure (the disk is not mounted), never created.
pub async fn probe(disk: &DiskAccess, timeout: Duration) -> ProbeOutcome {
    let started = Instant::now();
    let mut handle = start(disk);
    wait(disk, &mut handle, started, timeout).await
}

/// Starts the blocking part of a probe on tokio's blocking pool.
fn start(disk: &DiskAccess) -> JoinHandle<Checked> {
    let disk = disk.clone();
    tokio::task::spawn_blocking(move || check(&disk))
}

/// Waits for a started probe for at most `timeout`. On timeout the handle
/// stays with the caller: [`probe`] drops it (the thread is detached), the
/// [`Prober`] keeps it to know when the stuck thread returns.
async fn wait(
    disk: &DiskAccess,
    handle: &mut JoinHandle<Checked>,
    started: Instant,
    timeout: Duration,
) -> ProbeOutcome {
    match tokio::time::timeout(timeout, handle).await {
        Ok(Ok(checked)) => checked.into_outcome(started.elapsed()),
        Ok(Err(join)) => ProbeOutcome::failed(
            format!(
                "the probe of {} stopped before finishing: {join}.",
                disk.probe_path
            ),
            started.elapsed(),
        ),
        Err(_) => ProbeOutcome::failed(
            format!(
                "the probe of {} did not finish within {:?}, so the disk is hung.",
                disk.probe_path, timeout
            ),
            started.elapsed(),
        ),
    }
}

/// Tries a few times when the read-back shows another prober's record.
const ATTEMPTS: u32 = 3;
/// First line of every probe record.
const MAGIC: &[u8] = b"ringcast disk probe v1\n";
/// Counter making each record of this process unique.
static PROBES: AtomicU64 = AtomicU64::new(0);

/// The blocking part of a probe.
fn check(disk: &DiskAccess) -> Checked {
    let path = Path::new(&disk.probe_path);
    let mut error = None;
    for attempt in 1..=ATTEMPTS {
        match write_and_read_back(path) {
            Ok(()) => {
                error = None;
                break;
            }
            Err(ProbeError::Io(msg)) => {
                error = Some(msg);
                break;
            }
            Err(ProbeError::Foreign(msg)) => {
                error = Some(msg);
                if attempt < ATTEMPTS {
                    // Let the other writer finish before trying again.
                    std::thread::sleep(Duration::from_millis(u64::from(random_u8() % 20) + 1));
                }
            }
        }
    }
    let (capacity_bytes, used_bytes) = space(Path::new(&disk.mount));
    Checked {
        error,
        capacity_bytes,
        used_bytes,
    }
}

enum ProbeError {
    /// The disk failed an operation, or gave back bytes nobody wrote.
    Io(String),
    /// The read-back was another prober's well-formed record: probably a
    /// second node sharing the location; worth another try.
    Foreign(String),
}

fn write_and_read_back(path: &Path) -> Result<(), ProbeError> {
    let shown = path.display();
    let record = record();
    let io = |what: &str, e: std::io::Error| {
        ProbeError::Io(format!("cannot {what} the probe file {shown}: {e}."))
    };
    // No `create_dir_all`: a missing parent means the disk is not mounted.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io("create", e))?;
    file.write_all(&record).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    // Best effort: drop the cached pages so the read-back reaches the disk.
    let _ = nix::fcntl::posix_fadvise(
        file.as_raw_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    drop(file);

    let mut back = Vec::with_capacity(record.len());
    File::open(path)
        .map_err(|e| io("reopen", e))?
        .take(record.len() as u64 + 64)
        .read_to_end(&mut back)
        .map_err(|e| io("read back", e))?;
    compare(&shown.to_string(), &back, &record)
}

/// Whether the bytes read back are the record written, another prober's
/// record (worth another try), or something else (a failure).
fn compare(shown: &str, back: &[u8], record: &[u8]) -> Result<(), ProbeError> {
    if back == record {
        Ok(())
    } else if back.starts_with(MAGIC) && back.ends_with(b"\n") && back.len() <= record.len() + 8 {
        Err(ProbeError::Foreign(format!(
            "the probe file {shown} held another prober's record when read back (is the location shared with another node?)."
        )))
    } else {
        Err(ProbeError::Io(format!(
            "the probe file {shown} read back {} bytes that differ from the {} written.",
            back.len(),
            record.len()
        )))
    }
}

/// Fresh content for one probe: magic, process id, counter and random bytes.
fn record() -> Vec<u8> {
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let mut random = [0u8; 16];
    if getrandom::getrandom(&mut random).is_err() {
        // The counter and the time still make the record unique.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        random = t.to_le_bytes();
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(format!("{} {} ", std::process::id(), n).as_bytes());
    for b in random {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out.push(b'\n');
    out
}

fn random_u8() -> u8 {
    let mut b = [0u8; 1];
    let _ = getrandom::getrandom(&mut b);
    b[0]
}

/// Capacity and bytes used of the file system at `mount` (0, 0 when unknown).
// The statvfs fields are narrower than u64 on 32-bit targets.
#[allow(clippy::useless_conversion)]
fn space(mount: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(mount) {
        Ok(s) => {
            let unit = u64::from(s.fragment_size());
            let blocks = u64::from(s.blocks());
            let free = u64::from(s.blocks_free());
            (
                blocks.saturating_mul(unit),
                blocks.saturating_sub(free).saturating_mul(unit),
            )
        }
        Err(_) => (0, 0),
    }
}

/// Claim 13: probes every disk of a node's disk access list forever, each every
/// `interval`, and sends every outcome to the runtime (which decides what is
/// news). At most one probe per disk is in flight: when the previous probe of a
/// disk is still stuck on its blocking thread, the disk is reported failed again
/// without starting another thread, so a hung mount cannot exhaust threads.
#[derive(Debug)]
pub struct Prober {
    _private: (),
}

impl Prober {
    /// Starts probing `disks`. The task ends when `report`'s receiver is
    /// dropped; aborting it stops every disk's loop (a probe stuck in the
    /// kernel still finishes on its own thread).
    pub fn spawn(
        disks: Vec<DiskAccess>,
        cfg: ProbeConfig,
        report: mpsc::Sender<(DiskId, ProbeOutcome)>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut loops = JoinSet::new();
            for disk in disks {
                loops.spawn(probe_forever(disk, cfg, report.clone()));
            }
            drop(report);
            while loops.join_next().await.is_some() {}
        })
    }
}

/// One disk's loop: probe, report, wait for the next period.
async fn probe_forever(
    disk: DiskAccess,
    cfg: ProbeConfig,
    report: mpsc::Sender<(DiskId, ProbeOutcome)>,
) {
    let mut ticks = tokio::time::interval(cfg.interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The probe whose thread has not returned yet, and when it started.
    let mut stuck: Option<(JoinHandle<Checked>, Instant)> = None;
    loop {
        ticks.tick().await;
        let outcome = match stuck.take() {
            Some((handle, since)) if !handle.is_finished() => {
                let outcome = ProbeOutcome::failed(
                    format!(
                        "the previous probe of {} has not returned after {:?}, so the disk is hung.",
                        disk.probe_path,
                        since.elapsed()
                    ),
                    since.elapsed(),
                );
                stuck = Some((handle, since));
                outcome
            }
            // A stuck probe that has finished since is stale: start afresh.
            _ => {
                let started = Instant::now();
                let mut handle = start(&disk);
                let outcome = wait(&disk, &mut handle, started, cfg.timeout).await;
                if !handle.is_finished() {
                    stuck = Some((handle, started));
                }
                outcome
            }
        };
        if !outcome.ok {
            tracing::debug!(disk = %disk.id, error = ?outcome.error, "disk probe failed");
        }
        if report.send((disk.id, outcome)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;

    fn disk(id: u32, mount: &Path, probe: &Path) -> DiskAccess {
        DiskAccess {
            id: DiskId(id),
            mount: mount.display().to_string(),
            probe_path: probe.display().to_string(),
        }
    }

    /// Makes a FIFO at `path`: opening it for writing blocks until a reader
    /// comes, like a hung disk.
    fn fifo(path: &Path) {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }

    /// Releases every probe blocked on the FIFO when dropped (even when a test
    /// fails), so the runtime can shut down: a read-write open never blocks on
    /// Linux and lets blocked writers through.
    struct Unblock(PathBuf);
    impl Drop for Unblock {
        fn drop(&mut self) {
            let _ = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(&self.0);
        }
    }

    #[tokio::test]
    async fn a_healthy_directory_probes_ok_with_its_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let d = disk(1, dir.path(), &dir.path().join(".probe"));
        let out = probe(&d, Duration::from_secs(5)).await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.error, None);
        assert!(out.capacity_bytes > 0);
        assert!(out.used_bytes <= out.capacity_bytes);
        // Each probe writes fresh content.
        let first = std::fs::read(dir.path().join(".probe")).unwrap();
        assert!(probe(&d, Duration::from_secs(5)).await.ok);
        let second = std::fs::read(dir.path().join(".probe")).unwrap();
        assert_ne!(first, second);
        let report = out.to_report(DiskId(1), 42);
        assert!(report.ok);
        assert_eq!(report.catalog, 42);
        assert_eq!(report.capacity_bytes, out.capacity_bytes);
    }

    #[tokio::test]
    async fn a_missing_parent_fails_naming_the_path_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-mounted").join(".probe");
        let out = probe(&disk(1, dir.path(), &path), Duration::from_secs(5)).await;
        assert!(!out.ok);
        let error = out.error.unwrap();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(!dir.path().join("not-mounted").exists());
    }

    #[tokio::test]
    async fn an_unwritable_location_fails() {
        let dir = tempfile::tempdir().unwrap();
        // The probe path is a directory.
        let as_dir = dir.path().join("probe-dir");
        std::fs::create_dir(&as_dir).unwrap();
        let out = probe(&disk(1, dir.path(), &as_dir), Duration::from_secs(5)).await;
        assert!(!out.ok);
        assert!(out.error.unwrap().contains(&as_dir.display().to_string()));
        // The parent of the probe path is a regular file.
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let under = file.join(".probe");
        let out = probe(&disk(1, dir.path(), &under), Duration::from_secs(5)).await;
        assert!(!out.ok);
        assert!(out.error.unwrap().contains(&under.display().to_string()));
    }

    #[tokio::test]
    async fn an_unknown_mount_gives_zero_capacity_but_the_probe_decides() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = disk(1, dir.path(), &dir.path().join(".probe"));
        d.mount = dir.path().join("nowhere").display().to_string();
        let out = probe(&d, Duration::from_secs(5)).await;
        assert!(out.ok);
        assert_eq!((out.capacity_bytes, out.used_bytes), (0, 0));
    }

    #[tokio::test]
    async fn a_hung_disk_fails_within_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hung");
        fifo(&path);
        let _unblock = Unblock(path.clone());
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let out = probe(&disk(1, dir.path(), &path), timeout).await;
        let took = started.elapsed();
        assert!(!out.ok);
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(1),
            "{took:?}"
        );
        let error = out.error.unwrap();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("did not finish"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_prober_keeps_one_thread_on_a_hung_disk_and_reports_it_each_period() {
        let dir = tempfile::tempdir().unwrap();
        let hung = dir.path().join("hung");
        fifo(&hung);
        let unblock = Unblock(hung.clone());
        let healthy = tempfile::tempdir().unwrap();
        let disks = vec![
            disk(1, dir.path(), &hung),
            disk(2, healthy.path(), &healthy.path().join(".probe")),
        ];
        let cfg = ProbeConfig {
            interval: Duration::from_millis(30),
            timeout: Duration::from_millis(500),
        };
        let (tx, mut rx) = mpsc::channel(64);
        let prober = Prober::spawn(disks, cfg, tx);
        let (mut hung_reports, mut healthy_reports) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while hung_reports < 8 || healthy_reports < 3 {
            assert!(Instant::now() < deadline, "too few reports");
            let (id, out) = rx.recv().await.unwrap();
            if id == DiskId(1) {
                assert!(!out.ok);
                assert!(out.error.unwrap().contains(&hung.display().to_string()));
                hung_reports += 1;
            } else {
                assert!(out.ok, "{out:?}");
                healthy_reports += 1;
            }
        }
        prober.abort();
        let _ = prober.await;

        // Count the probe threads that reached the FIFO: each one blocked in
        // its open and writes its record once a reader comes.
        let reader = std::thread::spawn({
            let hung = hung.clone();
            move || {
                let mut all = Vec::new();
                File::open(&hung).unwrap().read_to_end(&mut all).unwrap();
                all
            }
        });
        let all = reader.join().unwrap();
        let records = all.windows(MAGIC.len()).filter(|w| *w == MAGIC).count();
        assert_eq!(records, 1, "{}", String::from_utf8_lossy(&all));
        drop(unblock);
    }

    #[tokio::test]
    async fn a_fixed_location_probes_ok_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".probe");
        std::fs::create_dir(&path).unwrap();
        let cfg = ProbeConfig {
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
        };
        let (tx, mut rx) = mpsc::channel(8);
        let prober = Prober::spawn(vec![disk(7, dir.path(), &path)], cfg, tx);
        let (id, out) = rx.recv().await.unwrap();
        assert_eq!(id, DiskId(7));
        assert!(!out.ok);
        std::fs::remove_dir(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "never recovered");
            let (_, out) = rx.recv().await.unwrap();
            if out.ok {
                break;
            }
        }
        prober.abort();
    }

    #[tokio::test]
    async fn the_prober_stops_when_nobody_listens() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(1);
        let cfg = ProbeConfig {
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        };
        let prober = Prober::spawn(vec![disk(1, dir.path(), &dir.path().join("p"))], cfg, tx);
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), prober)
            .await
            .expect("the prober ended")
            .unwrap();
    }

    #[test]
    fn a_foreign_record_is_told_apart_from_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_and_read_back(&dir.path().join(".probe")).is_ok());
        let (ours, theirs) = (record(), record());
        assert_ne!(ours, theirs);
        assert!(compare("p", &ours, &ours).is_ok());
        assert!(matches!(
            compare("p", &theirs, &ours),
            Err(ProbeError::Foreign(_))
        ));
        for garbage in [&b""[..], b"\0\0\0\0", &ours[..ours.len() - 1]] {
            match compare("/d/p", garbage, &ours) {
                Err(ProbeError::Io(msg)) => assert!(msg.contains("/d/p"), "{msg}"),
                _ => panic!("garbage accepted or retried"),
            }
        }
    }

    #[test]
    fn from_timing_uses_the_disk_check_interval() {
        let t = Timing::wan();
        let cfg = ProbeConfig::from_timing(&t);
        assert_eq!(cfg.interval, t.disk_check_interval);
        assert_eq!(cfg.timeout, t.disk_check_interval * 2);
        // A short period still gives a busy but healthy disk a second.
        let mut fast = Timing::lan();
        fast.disk_check_interval = Duration::from_millis(100);
        assert_eq!(ProbeConfig::from_timing(&fast).timeout, MIN_PROBE_TIMEOUT);
    }
}
