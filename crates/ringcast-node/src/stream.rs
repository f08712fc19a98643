//! The node's video file server (DESIGN section 6, issue 4 item 4): `GET`
//! and `HEAD` of the titles on this node's disks over HTTP/1.1, with byte
//! ranges (single and `multipart/byteranges`), `ETag`/`Last-Modified`,
//! `If-None-Match`, `If-Modified-Since`, `If-Match`, `If-Unmodified-Since`
//! and `If-Range`, and a zero-copy data path.
//!
//! A connection whose requests are stream requests is served here on the raw
//! socket ([`serve_connection`]): file bytes go from the file to the socket
//! with `sendfile(2)`, driven by tokio's readiness API, never through a user
//! buffer, so the memory of an active stream is its request head (at most
//! [`MAX_HEAD`] bytes) and a few small headers whatever the file's size.
//! Which file a request names, and whether it may be read at all (stream
//! tokens, traversal, admission), is the [`Resolve`] implementation's
//! business; this module only speaks HTTP and moves bytes.
//!
//! The file is opened once per request and its length and validators are
//! taken from the open descriptor (`fstat`), so the `ETag` and
//! `Content-Length` describe the bytes actually sent even when the file is
//! replaced meanwhile. A file that shrinks under a response ends the
//! connection (the client sees a short body, never wrong bytes).

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body as HttpBody, Bytes};
use axum::http::{self, HeaderName, HeaderValue};
use serde::Serialize;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use crate::guard::{Guard, Refused};
use crate::limit::retry_after_secs;
use crate::range::{parse_range, RangeError};

/// The largest request head accepted by default (request line and
/// headers); a longer one is answered `431 Request Header Fields Too Large`.
/// [`StreamConfig::max_head`] sets the limit a server uses.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most header fields a request may carry (more: `431`).
pub const MAX_HEADERS: usize = 64;

/// The most bytes one `sendfile(2)` call is asked to move.
pub const SENDFILE_CHUNK: usize = 1 << 20;

/// The size of the chunks the copying path (a stream request that arrives
/// on a connection already handed to the API server) reads a file in.
pub const COPY_CHUNK: usize = 64 * 1024;

/// How much the request head buffer grows by per read.
const READ_STEP: usize = 4096;

/// The most bytes of literal data (response heads, multipart part heads,
/// generated content) gathered before they are written to the socket.
const WRITE_BUFFER: usize = 16 * 1024;

// ---------------------------------------------------------------------------
// Requests

/// The head of an HTTP request, as the [`Resolve`] implementation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, as sent (methods are case-sensitive): `GET`, `HEAD`, ...
    pub method: String,
    /// The path of the request target, still percent-encoded, starting
    /// with `/` (an absolute-form target is reduced to its path), or `*`
    /// for `OPTIONS *`.
    pub path: String,
    /// The query of the request target, without the `?`, if there is one.
    pub query: Option<String>,
    /// The minor version of HTTP/1.x: 0 or 1.
    pub minor_version: u8,
    /// The header fields in the order received, names lowercased, values
    /// trimmed (bytes that are not UTF-8 are replaced); at most
    /// [`MAX_HEADERS`] of them.
    pub headers: Vec<(String, String)>,
}

/// Why a request head cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD`] or with more than [`MAX_HEADERS`] fields:
    /// `431`.
    #[error("request header fields too large")]
    TooLarge,
    /// Not an HTTP/1.x request head: `400`.
    #[error("malformed request head")]
    Malformed,
}

impl RequestHead {
    /// Parses a request head at the start of `buf`: `Ok(None)` while it is
    /// incomplete, or the head and the number of bytes it took. Heads longer
    /// than [`MAX_HEAD`] are refused.
    pub fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        RequestHead::parse_limited(buf, MAX_HEAD)
    }

    /// [`RequestHead::parse`] with heads longer than `max_head` bytes
    /// refused.
    pub fn parse_limited(
        buf: &[u8],
        max_head: usize,
    ) -> Result<Option<(RequestHead, usize)>, HeadError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        let used = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= max_head => n,
            Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) if buf.len() >= max_head => {
                return Err(HeadError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        };
        let method = req.method.ok_or(HeadError::Malformed)?;
        let target = req.path.ok_or(HeadError::Malformed)?;
        let minor_version = req.version.ok_or(HeadError::Malformed)?;
        let (path, query) = split_target(target).ok_or(HeadError::Malformed)?;
        let headers = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect();
        Ok(Some((
            RequestHead {
                method: method.to_string(),
                path,
                query,
                minor_version,
                headers,
            },
            used,
        )))
    }

    /// Builds the head of a request that hyper parsed (a stream request on a
    /// connection served by the API server).
    pub fn from_parts(parts: &http::request::Parts) -> RequestHead {
        RequestHead {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            minor_version: u8::from(parts.version != http::Version::HTTP_10),
            headers: parts
                .headers
                .iter()
                .take(MAX_HEADERS)
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).trim().to_string(),
                    )
                })
                .collect(),
        }
    }

    /// The value of the first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every header field named `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection may carry another request after this one:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub fn wants_keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers_named("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if has("close") {
            false
        } else {
            self.minor_version >= 1 || has("keep-alive")
        }
    }
}

/// Splits a request target into path and query; absolute-form targets
/// (`http://host/path`) are reduced to their path.
fn split_target(target: &str) -> Option<(String, Option<String>)> {
    let origin = if target.starts_with('/') {
        target
    } else if target == "*" {
        // `OPTIONS *`: not a stream request; left to whoever serves it.
        return Some(("*".to_string(), None));
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return None;
        };
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            Some(i) => return Some(("/".to_string(), Some(rest[i + 1..].to_string()))),
            None => "/",
        }
    };
    let origin = origin.split('#').next().unwrap_or(origin);
    Some(match origin.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (origin.to_string(), None),
    })
}

// ---------------------------------------------------------------------------
// Resolution

/// Maps a stream request to what it serves; implemented by the node (stream
/// tokens, the catalog, traversal checks, admission). Called once per
/// request, on the connection's task: it must not block for long.
pub trait Resolve: Send + Sync + 'static {
    /// What `req` names, or why it is refused.
    fn resolve(&self, req: &RequestHead) -> Result<Resolved, Refusal>;
}

/// What a stream request serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A file on one of the node's disks, sent with `sendfile(2)`.
    File {
        /// Where it is; it is opened once for this request.
        path: PathBuf,
        /// Its `Content-Type` (see [`content_type_for`]).
        content_type: Cow<'static, str>,
        /// The disk it is on, for the per-disk load counters.
        disk: u32,
    },
    /// Small generated content, such as a rewritten HLS playlist.
    Bytes {
        /// The content.
        body: Vec<u8>,
        /// Its `Content-Type`.
        content_type: Cow<'static, str>,
        /// Its entity tag, e.g. `"v3"` or `W/"v3"` (quotes are added when
        /// missing).
        etag: String,
    },
}

/// Why a stream request is not served: its status, a one-line message for
/// the body, and extra header fields (for example `Retry-After` with a 503).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status code, such as 400, 403, 404 or 503.
    pub status: u16,
    /// A short explanation, sent as the `text/plain` body.
    pub message: String,
    /// Header fields added to the answer; fields whose name or value is not
    /// valid HTTP are dropped.
    pub extra_headers: Vec<(String, String)>,
}

impl Refusal {
    /// A refusal with no extra header field.
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            extra_headers: Vec::new(),
        }
    }

    /// Adds a header field to the answer.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Refusal {
        self.extra_headers.push((name.into(), value.into()));
        self
    }
}

/// The `Content-Type` of a file, from the extension of its name: MP4 and
/// fragmented MP4 (`.mp4`, `.m4s`, `.m4v`, `.m4a`), MPEG-TS, HLS playlists,
/// DASH manifests, WebM, Matroska, MP3, AAC, WebVTT, JPEG and PNG;
/// `application/octet-stream` otherwise.
pub fn content_type_for(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) if !ext.contains('/') => ext.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match ext.as_str() {
        "mp4" | "m4s" | "m4v" => "video/mp4",
        "m4a" => "audio/mp4",
        "ts" => "video/mp2t",
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "aac" => "audio/aac",
        "vtt" => "text/vtt",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

// ---------------------------------------------------------------------------
// Counters

#[derive(Debug, Default)]
struct DiskCounter {
    active: AtomicU64,
    bytes: AtomicU64,
}

/// The streaming load of this node (claim 4's node and disk usage tables):
/// per disk, the streams whose body is being sent and the bytes sent, and
/// totals. The node turns byte counts into rates by sampling
/// [`StreamCounters::snapshot`].
#[derive(Debug, Default)]
pub struct StreamCounters {
    disks: RwLock<BTreeMap<u32, Arc<DiskCounter>>>,
    active: AtomicU64,
    bytes_sent: AtomicU64,
    sendfile_bytes: AtomicU64,
    copied_bytes: AtomicU64,
    requests: AtomicU64,
}

/// One disk's streaming load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskStreams {
    /// Responses from this disk whose body is being sent now.
    pub active_streams: u64,
    /// File bytes sent from this disk since the node started.
    pub bytes_sent: u64,
}

/// A copy of [`StreamCounters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamsSnapshot {
    /// Per disk id, every disk that has served at least one response.
    pub disks: BTreeMap<u32, DiskStreams>,
    /// File responses whose body is being sent now, all disks together.
    pub active_streams: u64,
    /// Body bytes of stream responses sent (files and generated content).
    pub bytes_sent: u64,
    /// File bytes the kernel sent with `sendfile(2)` (the zero-copy path).
    pub sendfile_bytes: u64,
    /// File bytes read and written by the copying path.
    pub copied_bytes: u64,
    /// Stream requests answered, whatever the status.
    pub requests: u64,
}

impl StreamCounters {
    /// New counters, all zero.
    pub fn new() -> StreamCounters {
        StreamCounters::default()
    }

    /// The counters now.
    pub fn snapshot(&self) -> StreamsSnapshot {
        let disks = self
            .disks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, d)| {
                (
                    *id,
                    DiskStreams {
                        active_streams: d.active.load(Ordering::Relaxed),
                        bytes_sent: d.bytes.load(Ordering::Relaxed),
                    },
                )
            })
            .collect();
        StreamsSnapshot {
            disks,
            active_streams: self.active.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            sendfile_bytes: self.sendfile_bytes.load(Ordering::Relaxed),
            copied_bytes: self.copied_bytes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    fn disk(&self, id: u32) -> Arc<DiskCounter> {
        if let Some(d) = self
            .disks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return d.clone();
        }
        self.disks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    fn sent(&self, disk: Option<&DiskCounter>, n: u64, zero_copy: bool) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
        if let Some(d) = disk {
            d.bytes.fetch_add(n, Ordering::Relaxed);
            if zero_copy {
                self.sendfile_bytes.fetch_add(n, Ordering::Relaxed);
            } else {
                self.copied_bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Counts a file response as active while it lives.
struct ActiveStream {
    counters: Arc<StreamCounters>,
    disk: Arc<DiskCounter>,
}

impl ActiveStream {
    fn new(counters: &Arc<StreamCounters>, disk: &Arc<DiskCounter>) -> ActiveStream {
        counters.active.fetch_add(1, Ordering::Relaxed);
        disk.active.fetch_add(1, Ordering::Relaxed);
        ActiveStream {
            counters: counters.clone(),
            disk: disk.clone(),
        }
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
        self.disk.active.fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// How stream connections are served.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// With `Some(prefix)`, [`serve_connection`] serves only requests whose
    /// path starts with `prefix` and hands the connection back
    /// ([`Outcome::Handoff`]) at the first request that does not; with
    /// `None` it serves every request.
    pub prefix: Option<String>,
    /// The largest request head accepted; a longer one gets `431`.
    pub max_head: usize,
    /// Time allowed to receive a complete request head once the connection
    /// is open or the head's first byte has arrived; then the connection
    /// is closed. The deadline is fixed when the head starts: bytes that
    /// trickle in do not extend it (slowloris).
    pub head_timeout: Duration,
    /// Time a persistent connection may wait for the next request.
    pub idle_timeout: Duration,
    /// Time the socket may stay unwritable (a client that stopped reading)
    /// before the connection is closed.
    pub send_timeout: Duration,
    /// Time the disk may take to open a file or to hand over the data of
    /// one offloaded batch of `sendfile(2)` calls; past it, a request gets
    /// `503` (open) or its connection is shut down (data), so that a player
    /// resumes elsewhere instead of waiting on a hung disk.
    pub disk_timeout: Duration,
    /// Run `sendfile(2)` on tokio's blocking threads rather than on the
    /// connection's task. It costs a thread hop per socket buffer's worth of
    /// data; in exchange a hung disk blocks only the streams reading it, not
    /// one of the runtime's worker threads.
    pub offload_sendfile: bool,
}

impl Default for StreamConfig {
    fn default() -> StreamConfig {
        StreamConfig {
            prefix: None,
            max_head: MAX_HEAD,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            disk_timeout: Duration::from_secs(10),
            offload_sendfile: true,
        }
    }
}

/// What a stream connection needs: the resolver, the counters, the
/// configuration and the listener's guard.
pub struct StreamContext {
    /// Maps requests to files.
    pub resolver: Arc<dyn Resolve>,
    /// The load counters this server adds to.
    pub counters: Arc<StreamCounters>,
    /// Timeouts and options.
    pub config: StreamConfig,
    /// Issue 7: per-client request rates and the refusal counters, shared
    /// with the API server.
    pub guard: Arc<Guard>,
}

impl std::fmt::Debug for StreamContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamContext")
            .field("counters", &self.counters)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Response planning (shared by the zero-copy path and the copying path)

/// Where the data segments of a body come from.
#[derive(Clone)]
enum Source {
    /// Nothing: the body is made of literal segments only.
    Literal,
    /// Generated content.
    Memory(Arc<Vec<u8>>),
    /// A file open for this request.
    File {
        file: Arc<File>,
        disk: Arc<DiskCounter>,
    },
}

/// A piece of a response body.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Bytes written as they are (messages, multipart part heads).
    Lit(String),
    /// A byte range of the source.
    Data(Range<u64>),
}

/// A response, before it is written by either path.
struct Plan {
    status: u16,
    headers: Vec<(Cow<'static, str>, String)>,
    /// The `Content-Length` field, if one is sent.
    length: Option<u64>,
    /// The body (`None` for `HEAD`, `304`).
    source: Source,
    segments: Vec<Segment>,
    /// The connection must be closed after this response.
    close: bool,
}

impl Plan {
    fn text(status: u16, message: &str, close: bool) -> Plan {
        let body = format!("{message}\n");
        Plan {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            length: Some(body.len() as u64),
            source: Source::Literal,
            segments: vec![Segment::Lit(body)],
            close,
        }
    }

    fn without_body(mut self) -> Plan {
        self.segments.clear();
        self.source = Source::Literal;
        self
    }
}

/// The validators and data of a resolved representation.
struct Entity {
    len: u64,
    etag: String,
    last_modified: Option<SystemTime>,
    content_type: String,
    source: Source,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_field_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Answers one stream request: resolves it, opens the file, evaluates the
/// conditional headers and the range.
async fn plan(head: &RequestHead, ctx: &StreamContext) -> Plan {
    ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
    let is_head = head.method == "HEAD";
    if head.method != "GET" && !is_head {
        return method_not_allowed();
    }
    let plan = match ctx.resolver.resolve(head) {
        Err(refusal) => refused(refusal),
        Ok(Resolved::Bytes {
            body,
            content_type,
            etag,
        }) => respond(
            head,
            Entity {
                len: body.len() as u64,
                etag: quote_etag(&etag),
                last_modified: None,
                content_type: content_type.into_owned(),
                source: Source::Memory(Arc::new(body)),
            },
        ),
        Ok(Resolved::File {
            path,
            content_type,
            disk,
        }) => match open(path, ctx.config.disk_timeout).await {
            Ok((file, meta)) if meta.is_file() => {
                let now = SystemTime::now();
                let modified = meta.modified().ok().map(|m| m.min(now));
                let mtime_ns =
                    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
                respond(
                    head,
                    Entity {
                        len: meta.len(),
                        // Size and modification time, not the inode: replicas of a
                        // title on other disks (copied with their times, as
                        // `rsync -t` or `cp -p` do) are the same version, so a
                        // player resumes from any of them with `If-Range`.
                        etag: format!("\"{:x}-{:x}\"", meta.len(), mtime_ns),
                        last_modified: modified,
                        content_type: content_type.into_owned(),
                        source: Source::File {
                            file: Arc::new(file),
                            disk: ctx.counters.disk(disk),
                        },
                    },
                )
            }
            Ok(_) => Plan::text(404, "not found", false),
            Err(e) => match e.kind() {
                io::ErrorKind::NotFound => Plan::text(404, "not found", false),
                io::ErrorKind::PermissionDenied => Plan::text(403, "forbidden", false),
                _ => {
                    tracing::warn!("cannot open a stream file: {e}");
                    let mut p = Plan::text(503, "the file cannot be read now", false);
                    p.headers.push(("Retry-After".into(), "1".into()));
                    p
                }
            },
        },
    };
    if is_head {
        plan.without_body()
    } else {
        plan
    }
}

fn method_not_allowed() -> Plan {
    let mut p = Plan::text(405, "only GET and HEAD are served here", true);
    p.headers.push(("Allow".into(), "GET, HEAD".into()));
    p
}

fn refused(r: Refusal) -> Plan {
    let status = if (300..=599).contains(&r.status) {
        r.status
    } else {
        500
    };
    let message: String = r
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut p = Plan::text(status, &message, status == 400);
    for (name, value) in r.extra_headers {
        if valid_field_name(&name) && valid_field_value(&value) {
            p.headers.push((name.into(), value));
        } else {
            tracing::debug!("dropping an invalid header field of a refusal: {name:?}");
        }
    }
    p
}

/// Opens a file without blocking the runtime, and takes its metadata from the
/// open descriptor. `O_NONBLOCK` keeps a FIFO from blocking the open.
async fn open(path: PathBuf, limit: Duration) -> io::Result<(File, std::fs::Metadata)> {
    let opening = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)?;
        let meta = file.metadata()?;
        Ok((file, meta))
    });
    match timeout(limit, opening).await {
        Ok(joined) => joined.map_err(io::Error::other)?,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the disk did not open the file in time",
        )),
    }
}

fn quote_etag(tag: &str) -> String {
    let t = tag.trim();
    let ok = |s: &str| {
        s.len() >= 2 && s.starts_with('"') && s.ends_with('"') && !s[1..s.len() - 1].contains('"')
    };
    if (ok(t) || t.strip_prefix("W/").is_some_and(ok)) && valid_field_value(t) {
        return t.to_string();
    }
    let inner: String = t
        .chars()
        .filter(|&c| c != '"' && (c == '\t' || !c.is_control()))
        .collect();
    format!("\"{inner}\"")
}

/// One entity tag of a list: (weak, opaque tag with its quotes).
fn parse_etags(list: &str) -> Option<Vec<(bool, &str)>> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(tags);
        }
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        if !rest.starts_with('"') {
            return None;
        }
        let end = rest[1..].find('"')? + 2;
        tags.push((weak, &rest[..end]));
        rest = &rest[end..];
        if tags.len() > 256 {
            return None;
        }
    }
}

fn split_etag(tag: &str) -> (bool, &str) {
    match tag.strip_prefix("W/") {
        Some(t) => (true, t),
        None => (false, tag),
    }
}

/// Whether an `If-Match`/`If-None-Match` list matches `etag`.
fn etags_match(list: &str, etag: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let (our_weak, ours) = split_etag(etag);
    parse_etags(list).is_some_and(|tags| {
        tags.iter()
            .any(|&(weak, t)| t == ours && (!strong || (!weak && !our_weak)))
    })
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn http_date(head: &RequestHead, name: &str) -> Option<u64> {
    let mut values = head.headers_named(name);
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(v).ok().map(unix_secs)
}

/// RFC 9110 section 13.2.2: the preconditions, then the range.
fn respond(head: &RequestHead, mut e: Entity) -> Plan {
    if e.content_type.is_empty() || !valid_field_value(&e.content_type) {
        e.content_type = "application/octet-stream".to_string();
    }
    let lm_secs = e.last_modified.map(unix_secs);
    let mut validators: Vec<(Cow<'static, str>, String)> = vec![("ETag".into(), e.etag.clone())];
    if let Some(lm) = e.last_modified {
        validators.push(("Last-Modified".into(), httpdate::fmt_http_date(lm)));
    }
    let precondition_failed = || {
        let mut p = Plan::text(412, "precondition failed", false);
        p.headers.extend(validators.iter().cloned());
        p
    };
    if let Some(list) = head.header("if-match") {
        if !etags_match(list, &e.etag, true) {
            return precondition_failed();
        }
    } else if let (Some(since), Some(lm)) = (http_date(head, "if-unmodified-since"), lm_secs) {
        if lm > since {
            return precondition_failed();
        }
    }
    let not_modified = if let Some(list) = head.header("if-none-match") {
        etags_match(list, &e.etag, false)
    } else if let (Some(since), Some(lm)) = (http_date(head, "if-modified-since"), lm_secs) {
        lm <= since
    } else {
        false
    };
    if not_modified {
        return Plan {
            status: 304,
            headers: validators,
            length: None,
            source: Source::Literal,
            segments: Vec::new(),
            close: false,
        };
    }
    let mut headers = validators.clone();
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    // Browser players (hls.js, a dashboard on another node) read streams cross-origin.
    headers.push(("Access-Control-Allow-Origin".into(), "*".into()));
    headers.push((
        "Access-Control-Expose-Headers".into(),
        "Content-Range, Content-Length, ETag, Accept-Ranges".into(),
    ));
    let ranges = if head.method == "GET" {
        let mut range_fields = head.headers_named("range");
        match (range_fields.next(), range_fields.next()) {
            (Some(value), None) if if_range_holds(head, &e.etag, lm_secs) => {
                Some(parse_range(value, e.len))
            }
            _ => None,
        }
    } else {
        None
    };
    match ranges {
        Some(Err(RangeError::Unsatisfiable)) => {
            let mut p = Plan::text(416, "range not satisfiable", false);
            p.headers.extend(headers);
            p.headers
                .push(("Content-Range".into(), format!("bytes */{}", e.len)));
            p
        }
        Some(Ok(ranges)) if ranges.len() == 1 => {
            let r = ranges[0].clone();
            headers.push(("Content-Type".into(), e.content_type));
            headers.push((
                "Content-Range".into(),
                format!("bytes {}-{}/{}", r.start, r.end - 1, e.len),
            ));
            Plan {
                status: 206,
                headers,
                length: Some(r.end - r.start),
                source: e.source,
                segments: vec![Segment::Data(r)],
                close: false,
            }
        }
        Some(Ok(ranges)) => {
            let boundary = boundary();
            let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
            let mut length = 0;
            for (i, r) in ranges.into_iter().enumerate() {
                let part = format!(
                    "{}--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
                    if i == 0 { "" } else { "\r\n" },
                    e.content_type,
                    r.start,
                    r.end - 1,
                    e.len
                );
                length += part.len() as u64 + (r.end - r.start);
                segments.push(Segment::Lit(part));
                segments.push(Segment::Data(r));
            }
            let end = format!("\r\n--{boundary}--\r\n");
            length += end.len() as u64;
            segments.push(Segment::Lit(end));
            headers.push((
                "Content-Type".into(),
                format!("multipart/byteranges; boundary={boundary}"),
            ));
            Plan {
                status: 206,
                headers,
                length: Some(length),
                source: e.source,
                segments,
                close: false,
            }
        }
        _ => {
            headers.push(("Content-Type".into(), e.content_type));
            Plan {
                status: 200,
                headers,
                length: Some(e.len),
                source: e.source,
                segments: vec![Segment::Data(0..e.len)],
                close: false,
            }
        }
    }
}

/// `If-Range`: an entity tag must match strongly, a date exactly.
fn if_range_holds(head: &RequestHead, etag: &str, lm_secs: Option<u64>) -> bool {
    let Some(v) = head.header("if-range") else {
        return true;
    };
    let v = v.trim();
    if v.starts_with('"') || v.starts_with("W/") {
        let (our_weak, ours) = split_etag(etag);
        matches!(parse_etags(v).as_deref(), Some([(false, t)]) if *t == ours && !our_weak)
    } else {
        match (httpdate::parse_http_date(v), lm_secs) {
            (Ok(d), Some(lm)) => unix_secs(d) == lm,
            _ => false,
        }
    }
}

fn boundary() -> String {
    let mut b = [0u8; 12];
    if getrandom::getrandom(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b.copy_from_slice(&t.to_le_bytes()[..12]);
    }
    let mut s = String::from("ringcast-");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

// ---------------------------------------------------------------------------
// The zero-copy path: one connection on a raw socket

/// How [`serve_connection`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The connection is closed (or about to be, when dropped).
    Closed,
    /// A request that is not a stream request arrived: the socket and every
    /// byte read from it but not consumed (that request's head first), for
    /// another server to take over.
    Handoff {
        /// The client's connection.
        stream: TcpStream,
        /// Bytes read and not consumed, to be replayed before the socket's.
        buffered: Vec<u8>,
    },
}

enum HeadRead {
    Head(RequestHead, usize),
    /// The client closed, or waited too long for its next request.
    Close,
    /// A head started but did not complete in time (a slow client).
    Expired,
    Refuse(HeadError),
}

async fn read_head(
    sock: &TcpStream,
    buf: &mut Vec<u8>,
    cfg: &StreamConfig,
    first: bool,
) -> HeadRead {
    let mut started = first || !buf.is_empty();
    let mut deadline = Instant::now()
        + if started {
            cfg.head_timeout
        } else {
            cfg.idle_timeout
        };
    loop {
        if !buf.is_empty() {
            match RequestHead::parse_limited(buf, cfg.max_head) {
                Ok(Some((head, used))) => return HeadRead::Head(head, used),
                Ok(None) => {}
                Err(e) => return HeadRead::Refuse(e),
            }
        }
        match timeout_at(deadline, sock.readable()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return HeadRead::Close,
            Err(_) if !buf.is_empty() => return HeadRead::Expired,
            Err(_) => return HeadRead::Close,
        }
        // Grow by small steps: most heads fit the first 4 KiB.
        let len = buf.len();
        buf.resize((len + READ_STEP).min(cfg.max_head).max(len + 1), 0);
        let read = sock.try_read(&mut buf[len..]);
        buf.truncate(len + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return HeadRead::Close,
            Ok(_) => {
                if !started {
                    started = true;
                    deadline = Instant::now() + cfg.head_timeout;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return HeadRead::Close,
        }
    }
}

/// Serves stream requests on `stream` until the connection ends or (with a
/// [`StreamConfig::prefix`]) a request for another path arrives. `buffered`
/// holds bytes already read from the connection, replayed first.
///
/// Requests are served one at a time in order (pipelined requests wait in
/// the head buffer). A malformed head gets `400`, an oversized one `431`,
/// a request with a body (`Content-Length` other than 0, or
/// `Transfer-Encoding`) or an HTTP/1.1 request without `Host` gets `400`,
/// another method than `GET`/`HEAD` gets `405`; each of these closes the
/// connection. A head not complete within [`StreamConfig::head_timeout`], or
/// no new request within [`StreamConfig::idle_timeout`], closes it silently.
/// A stream request over its client's rate ([`Guard::request`]) gets `429`
/// with `Retry-After`, and the connection stays usable.
pub async fn serve_connection(
    stream: TcpStream,
    buffered: Vec<u8>,
    ctx: &StreamContext,
) -> Outcome {
    let peer = stream
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let sock = Arc::new(stream);
    let mut buf = buffered;
    let mut first = true;
    loop {
        let (head, used) = match read_head(&sock, &mut buf, &ctx.config, first).await {
            HeadRead::Head(head, used) => (head, used),
            HeadRead::Close => return Outcome::Closed,
            HeadRead::Expired => {
                ctx.guard.refuse(Refused::HeadTimeout);
                return Outcome::Closed;
            }
            HeadRead::Refuse(e) => {
                let (status, message) = match e {
                    HeadError::TooLarge => {
                        ctx.guard.refuse(Refused::HeadTooLarge);
                        (431, "request header fields too large")
                    }
                    HeadError::Malformed => {
                        ctx.guard.refuse(Refused::Malformed);
                        (400, "malformed request")
                    }
                };
                let plan = Plan::text(status, message, true);
                let _ = write_plan(&sock, plan, 1, false, ctx).await;
                linger(&sock).await;
                return Outcome::Closed;
            }
        };
        first = false;
        if let Some(prefix) = &ctx.config.prefix {
            if !head.path.starts_with(prefix.as_str()) {
                return match Arc::try_unwrap(sock) {
                    Ok(stream) => Outcome::Handoff {
                        stream,
                        buffered: buf,
                    },
                    Err(_) => Outcome::Closed,
                };
            }
        }
        buf.drain(..used);
        let plan = if let Some(problem) = framing_problem(&head) {
            ctx.guard.refuse(Refused::Malformed);
            Plan::text(400, problem, true)
        } else if let Err(wait) = ctx.guard.request(peer) {
            too_many_requests(wait)
        } else if head.method != "GET" && head.method != "HEAD" {
            ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
            method_not_allowed()
        } else {
            plan(&head, ctx).await
        };
        let keep_alive = head.wants_keep_alive() && !plan.close;
        if write_plan(&sock, plan, head.minor_version, keep_alive, ctx)
            .await
            .is_err()
        {
            return Outcome::Closed;
        }
        if !keep_alive {
            linger(&sock).await;
            return Outcome::Closed;
        }
    }
}

/// Issue 7: the answer to a request over its client's rate. The connection
/// stays open: the client may retry on it after `Retry-After` seconds.
fn too_many_requests(wait: Duration) -> Plan {
    let mut p = Plan::text(429, "too many requests from this address", false);
    p.headers
        .push(("Retry-After".into(), retry_after_secs(wait).to_string()));
    p
}

/// Why a request's framing is refused on this server, which accepts no body.
fn framing_problem(head: &RequestHead) -> Option<&'static str> {
    if head.method != "GET" && head.method != "HEAD" {
        // Answered 405 and closed: its body, if any, is never read.
        return None;
    }
    if head.header("transfer-encoding").is_some() {
        return Some("request bodies are not accepted");
    }
    let mut lengths = head.headers_named("content-length");
    match (lengths.next(), lengths.next()) {
        (None, _) => {}
        (Some("0"), None) => {}
        _ => return Some("request bodies are not accepted"),
    }
    if head.minor_version >= 1 && head.header("host").is_none() {
        return Some("an HTTP/1.1 request needs a Host header field");
    }
    None
}

/// Closes the sending side and reads (and drops) what the client still
/// sends for a little while, so that unread request bytes do not turn the
/// close into a reset that destroys the response in flight.
async fn linger(sock: &TcpStream) {
    let _ = socket2::SockRef::from(sock).shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut scratch = [0u8; 4096];
    let mut total = 0usize;
    while total < 256 * 1024 {
        match timeout_at(deadline, sock.readable()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        match sock.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

fn response_head(plan: &Plan, minor_version: u8, keep_alive: bool) -> String {
    let mut h = String::with_capacity(512);
    let _ = write!(
        h,
        "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: ringcast\r\n",
        plan.status,
        reason(plan.status),
        httpdate::fmt_http_date(SystemTime::now())
    );
    for (name, value) in &plan.headers {
        let _ = write!(h, "{name}: {value}\r\n");
    }
    if let Some(len) = plan.length {
        let _ = write!(h, "Content-Length: {len}\r\n");
    }
    if !keep_alive {
        h.push_str("Connection: close\r\n");
    } else if minor_version == 0 {
        h.push_str("Connection: keep-alive\r\n");
    }
    h.push_str("\r\n");
    h
}

/// Writes a response on the raw socket: literal bytes through a small
/// buffer, file ranges with `sendfile(2)`.
async fn write_plan(
    sock: &Arc<TcpStream>,
    plan: Plan,
    minor_version: u8,
    keep_alive: bool,
    ctx: &StreamContext,
) -> io::Result<()> {
    let mut out = response_head(&plan, minor_version, keep_alive).into_bytes();
    let _active = match &plan.source {
        Source::File { disk, .. } if !plan.segments.is_empty() => {
            Some(ActiveStream::new(&ctx.counters, disk))
        }
        _ => None,
    };
    for segment in &plan.segments {
        match (segment, &plan.source) {
            (Segment::Lit(s), _) => {
                if out.len() + s.len() > WRITE_BUFFER {
                    write_all(sock, &out, ctx).await?;
                    out.clear();
                }
                out.extend_from_slice(s.as_bytes());
            }
            (Segment::Data(r), Source::Memory(data)) => {
                let bytes = &data[r.start as usize..r.end as usize];
                if out.len() + bytes.len() > WRITE_BUFFER {
                    write_all(sock, &out, ctx).await?;
                    out.clear();
                    write_all(sock, bytes, ctx).await?;
                } else {
                    out.extend_from_slice(bytes);
                }
                ctx.counters.sent(None, bytes.len() as u64, false);
            }
            (Segment::Data(r), Source::File { file, disk }) => {
                if !out.is_empty() {
                    write_all(sock, &out, ctx).await?;
                    out.clear();
                }
                send_file(sock, file, r.clone(), disk, ctx).await?;
            }
            (Segment::Data(_), Source::Literal) => {}
        }
    }
    if !out.is_empty() {
        write_all(sock, &out, ctx).await?;
    }
    Ok(())
}

async fn writable(sock: &TcpStream, ctx: &StreamContext) -> io::Result<()> {
    match timeout(ctx.config.send_timeout, sock.writable()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )),
    }
}

async fn write_all(sock: &TcpStream, mut bytes: &[u8], ctx: &StreamContext) -> io::Result<()> {
    while !bytes.is_empty() {
        writable(sock, ctx).await?;
        match sock.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One `sendfile(2)` call when the socket is ready: `Ok(0)` means the file
/// ended early.
fn sendfile_once(
    sock: &TcpStream,
    file: &File,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut off = nix::libc::off_t::try_from(*offset).map_err(io::Error::other)?;
    let n = sock.try_io(Interest::WRITABLE, || {
        nix::sys::sendfile::sendfile(sock, file, Some(&mut off), count).map_err(io::Error::from)
    })?;
    *offset += n as u64;
    Ok(n)
}

/// Sends `range` of `file` with `sendfile(2)`, in chunks of at most
/// [`SENDFILE_CHUNK`] bytes, each when the socket is writable.
async fn send_file(
    sock: &Arc<TcpStream>,
    file: &Arc<File>,
    range: Range<u64>,
    disk: &Arc<DiskCounter>,
    ctx: &StreamContext,
) -> io::Result<()> {
    let mut offset = range.start;
    while offset < range.end {
        writable(sock, ctx).await?;
        let (sent, result) = if ctx.config.offload_sendfile {
            let (s, f, end) = (sock.clone(), file.clone(), range.end);
            let mut at = offset;
            let batch = tokio::task::spawn_blocking(move || {
                // Keep sending while the socket takes data, up to a bound,
                // so that one thread hop moves a socket buffer's worth.
                let start = at;
                let mut result = Ok(());
                while at < end && at - start < 4 * SENDFILE_CHUNK as u64 {
                    let count = (end - at).min(SENDFILE_CHUNK as u64) as usize;
                    match sendfile_once(&s, &f, &mut at, count) {
                        Ok(0) => {
                            result = Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the file shrank while it was sent",
                            ));
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                (at - start, result)
            });
            match timeout(ctx.config.disk_timeout, batch).await {
                Ok(joined) => joined.map_err(io::Error::other)?,
                Err(_) => {
                    // The blocking thread still holds the socket: shut the
                    // connection down so the client sees it end now.
                    let _ = socket2::SockRef::from(&**sock).shutdown(std::net::Shutdown::Both);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the disk did not deliver the data in time",
                    ));
                }
            }
        } else {
            let count = (range.end - offset).min(SENDFILE_CHUNK as u64) as usize;
            let mut at = offset;
            match sendfile_once(sock, file, &mut at, count) {
                Ok(0) => (
                    0,
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was sent",
                    )),
                ),
                Ok(n) => (n as u64, Ok(())),
                Err(e) => (0, Err(e)),
            }
        };
        offset += sent;
        if sent > 0 {
            ctx.counters.sent(Some(disk), sent, true);
        }
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The copying path: a stream request on a connection served by hyper

/// Answers a stream request that arrived on a connection already served by
/// the API's HTTP server (hyper), where the socket cannot be reached: same
/// statuses and headers as the zero-copy path, file data read in chunks of
/// [`COPY_CHUNK`] bytes on the blocking threads (memory stays bounded; the
/// bytes are counted in [`StreamsSnapshot::copied_bytes`]). hyper adds the
/// `Date` and `Connection` fields.
pub async fn respond_via_hyper(
    head: &RequestHead,
    ctx: &Arc<StreamContext>,
) -> http::Response<HttpBody> {
    let plan = plan(head, ctx).await;
    let mut builder = http::Response::builder()
        .status(
            http::StatusCode::from_u16(plan.status)
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .header(http::header::SERVER, "ringcast");
    for (name, value) in &plan.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(n, v);
        }
    }
    if let Some(len) = plan.length {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
    }
    if plan.close {
        builder = builder.header(http::header::CONNECTION, "close");
    }
    let body = if plan.segments.is_empty() {
        HttpBody::empty()
    } else {
        let active = match &plan.source {
            Source::File { disk, .. } => Some(ActiveStream::new(&ctx.counters, disk)),
            _ => None,
        };
        let state = CopyState {
            source: plan.source,
            segments: plan.segments.into(),
            counters: ctx.counters.clone(),
            _active: active,
        };
        HttpBody::from_stream(futures_util::stream::unfold(state, CopyState::next))
    };
    builder.body(body).unwrap_or_else(|_| {
        let mut r = http::Response::new(HttpBody::empty());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

struct CopyState {
    source: Source,
    segments: VecDeque<Segment>,
    counters: Arc<StreamCounters>,
    _active: Option<ActiveStream>,
}

impl CopyState {
    async fn next(mut self) -> Option<(io::Result<Bytes>, CopyState)> {
        let segment = self.segments.pop_front()?;
        let chunk = match (segment, &self.source) {
            (Segment::Lit(s), _) => Ok(Bytes::from(s)),
            (Segment::Data(r), Source::Memory(data)) => {
                self.counters.sent(None, r.end - r.start, false);
                Ok(Bytes::copy_from_slice(
                    &data[r.start as usize..r.end as usize],
                ))
            }
            (Segment::Data(r), Source::File { file, disk }) => {
                let n = (r.end - r.start).min(COPY_CHUNK as u64);
                if r.start + n < r.end {
                    self.segments.push_front(Segment::Data(r.start + n..r.end));
                }
                let f = file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut v = vec![0u8; n as usize];
                    f.read_exact_at(&mut v, r.start).map(|()| Bytes::from(v))
                })
                .await
                .map_err(io::Error::other)
                .and_then(|r| r);
                if read.is_ok() {
                    self.counters.sent(Some(disk), n, false);
                } else {
                    self.segments.clear();
                }
                read
            }
            (Segment::Data(_), Source::Literal) => Ok(Bytes::new()),
        };
        Some((chunk, self))
    }
}

#[cfg(test)]
pub(crate) mod tests;
