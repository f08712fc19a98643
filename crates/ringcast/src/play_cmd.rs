//! `ringcast play URL`: a resuming client. It asks the play URL, follows the
//! one redirect to the serving node, downloads, and when the connection
//! breaks or the node dies it asks the play URL again (same stream id) and
//! resumes with a range guarded by `If-Range`, so the bytes it keeps are
//! always the same file's. At the end it checks the length and the ETag and
//! prints where each part came from.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// How many times a broken download is resumed before giving up.
const MAX_RESUMES: u32 = 50;

/// Options of a download.
pub struct PlayOptions {
    /// The play URL: `http://NODE/v1/play/TITLE`.
    pub url: String,
    /// Where to write; the title's file name in the current directory by default.
    pub out: Option<PathBuf>,
    /// Bytes per second at most (0: no limit).
    pub max_rate: u64,
    /// Print progress lines instead of a bar (for logs and tests).
    pub plain: bool,
}

/// One part of the download, served by one node.
#[derive(Debug)]
pub struct Part {
    /// First byte.
    pub start: u64,
    /// Bytes received.
    pub len: u64,
    /// The node's address.
    pub from: String,
}

fn agent() -> ureq::Agent {
    crate::http::builder()
        .redirects(0)
        .timeout_connect(Duration::from_secs(2))
        .timeout_read(Duration::from_secs(3))
        .build()
}

fn stream_url(play: &str, stream: u64) -> String {
    let sep = if play.contains('?') { '&' } else { '?' };
    format!("{play}{sep}stream={stream}")
}

/// Asks the play URL where to read; returns the serving node's URL.
fn place(agent: &ureq::Agent, play: &str) -> Result<String> {
    match agent.get(play).call() {
        Ok(r) if (300..400).contains(&r.status()) => r
            .header("location")
            .map(String::from)
            .context("the redirect has no Location"),
        Ok(r) => bail!("{play} answered {} without a redirect", r.status()),
        Err(ureq::Error::Status(503, r)) => {
            let wait = r
                .header("retry-after")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            bail!("no capacity right now (503, retry after {wait} s)")
        }
        Err(ureq::Error::Status(code, r)) => {
            let body = r.into_string().unwrap_or_default();
            bail!("{play} answered {code}: {}", body.trim())
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("cannot reach {play}"))),
    }
}

fn absolute(play: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let host_end = play
        .find("://")
        .and_then(|i| play[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(play.len());
    format!("{}{location}", &play[..host_end])
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_string()
}

/// Downloads the title behind `opts.url`, resuming across failures.
pub fn run(opts: &PlayOptions) -> Result<(PathBuf, Vec<Part>)> {
    let title = opts
        .url
        .split("/v1/play/")
        .nth(1)
        .map(|t| t.split('?').next().unwrap_or(t))
        .filter(|t| !t.is_empty())
        .with_context(|| format!("{} is not a play URL (http://NODE/v1/play/TITLE)", opts.url))?;
    let out = opts.out.clone().unwrap_or_else(|| {
        PathBuf::from(
            Path::new(title)
                .file_name()
                .map_or("download".into(), |n| n.to_os_string()),
        )
    });
    let mut stream_id = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut stream_id))
        .context("cannot read /dev/urandom for a stream id")?;
    let play = stream_url(&opts.url, u64::from_le_bytes(stream_id) >> 1);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .read(true)
        .open(&out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let agent = agent();
    let bar = progress_bar(opts.plain);
    let mut parts: Vec<Part> = Vec::new();
    let mut have = 0u64;
    let mut total: Option<u64> = None;
    let mut etag: Option<String> = None;
    let mut failures = 0;
    loop {
        if total.is_some_and(|t| have >= t) {
            break;
        }
        let attempt = place(&agent, &play).and_then(|loc| {
            let url = absolute(&opts.url, &loc);
            fetch_part(
                &agent, &url, &mut file, have, &mut total, &mut etag, opts, &bar, &mut parts,
            )
        });
        match attempt {
            Ok(n) => {
                have += n;
                if total.is_none() {
                    total = Some(have);
                }
            }
            Err(e) => {
                have = file
                    .stream_position()
                    .context("cannot tell the output's length")?;
                failures += 1;
                let message = format!("interrupted at byte {have}: {e:#}; resuming");
                if opts.plain {
                    // A hidden bar prints nothing: plain output still says
                    // why the download resumed.
                    eprintln!("{message}");
                } else {
                    bar.println(message);
                }
                if failures > MAX_RESUMES {
                    bail!("gave up after {MAX_RESUMES} resumes: {e:#}");
                }
                std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(10))));
            }
        }
    }
    bar.finish_and_clear();
    let len = file
        .metadata()
        .context("cannot read the output's length")?
        .len();
    if Some(len) != total {
        bail!("received {len} bytes but the title has {total:?}");
    }
    Ok((out, parts))
}

fn progress_bar(plain: bool) -> ProgressBar {
    if plain {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bytes}/{total_bytes} {bar:40} {bytes_per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Reads one part from `url` starting at `have`; returns bytes received.
#[allow(clippy::too_many_arguments)]
fn fetch_part(
    agent: &ureq::Agent,
    url: &str,
    file: &mut File,
    have: u64,
    total: &mut Option<u64>,
    etag: &mut Option<String>,
    opts: &PlayOptions,
    bar: &ProgressBar,
    parts: &mut Vec<Part>,
) -> Result<u64> {
    let mut req = agent.get(url);
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
        if let Some(tag) = etag.as_deref() {
            req = req.set("If-Range", tag);
        }
    }
    let resp = match req.call() {
        Ok(resp) => resp,
        Err(ureq::Error::Status(code, r)) => {
            let body = r.into_string().unwrap_or_default();
            bail!("{url} answered {code}: {}", body.trim())
        }
        Err(e) => return Err(anyhow::Error::from(e).context(format!("cannot read {url}"))),
    };
    let status = resp.status();
    let this_etag = resp.header("etag").map(String::from);
    if have > 0 && status != 206 {
        // The file changed under us (If-Range failed): start over.
        if etag.is_some() && this_etag != *etag {
            bail!("the title changed while it was being read; refusing to mix two versions");
        }
        bail!("expected 206 Partial Content for a resume, got {status}");
    }
    let len_total = match status {
        200 => resp
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok()),
        206 => resp
            .header("content-range")
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.parse::<u64>().ok()),
        s => bail!("{url} answered {s}"),
    };
    if let (Some(old), Some(new)) = (etag.as_deref(), this_etag.as_deref()) {
        if old != new {
            bail!("the ETag changed from {old} to {new}: a different file; refusing to mix them");
        }
    }
    *etag = etag.take().or(this_etag);
    if let Some(t) = len_total {
        *total = Some(t);
        bar.set_length(t);
    }
    let from = host_of(url);
    bar.set_message(format!("from {from}"));
    if opts.plain {
        println!("reading from {from} at byte {have}");
    }
    file.seek(SeekFrom::Start(have))
        .context("cannot seek the output")?;
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut got = 0u64;
    let result = loop {
        let chunk = if opts.max_rate > 0 {
            buf.len().min((opts.max_rate / 20).max(1) as usize)
        } else {
            buf.len()
        };
        match reader.read(&mut buf[..chunk]) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                file.write_all(&buf[..n])
                    .context("cannot write the output")?;
                got += n as u64;
                bar.set_position(have + got);
                if opts.max_rate > 0 {
                    let due = Duration::from_secs_f64(got as f64 / opts.max_rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            Err(e) => break Err(e),
        }
    };
    file.flush().context("cannot write the output")?;
    parts.push(Part {
        start: have,
        len: got,
        from,
    });
    result.with_context(|| format!("the connection to {url} broke"))?;
    if let Some(t) = *total {
        if have + got < t {
            bail!(
                "the node closed the connection at byte {} of {t}",
                have + got
            );
        }
    }
    Ok(got)
}
