//! Response planning, shared by the zero-copy path and the copying path:
//! resolves a request, opens its file, evaluates the conditional headers
//! (RFC 9110 section 13) and the range, and says what to send.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::timeout;

use super::config::StreamContext;
use super::counters::DiskCounter;
use super::head::RequestHead;
use super::resolve::{Refusal, Resolved};
use crate::range::{parse_range, RangeError};

/// Where the data segments of a body come from.
#[derive(Clone)]
pub(super) enum Source {
    /// Nothing: the body is made of literal segments only.
    Literal,
    /// Generated content.
    Memory(Arc<Vec<u8>>),
    /// A file open for this request.
    File {
        file: Arc<File>,
        disk: Arc<DiskCounter>,
        /// Which disk, and where on it (for a takeover's record).
        disk_id: u32,
        path: Arc<PathBuf>,
    },
}

/// A piece of a response body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// Bytes written as they are (messages, multipart part heads).
    Lit(String),
    /// A byte range of the source.
    Data(Range<u64>),
}

/// A response, before it is written by either path.
pub(super) struct Plan {
    pub(super) status: u16,
    pub(super) headers: Vec<(Cow<'static, str>, String)>,
    /// The `Content-Length` field, if one is sent.
    pub(super) length: Option<u64>,
    /// The body (`None` for `HEAD`, `304`).
    pub(super) source: Source,
    pub(super) segments: Vec<Segment>,
    /// The connection must be closed after this response.
    pub(super) close: bool,
}

impl Plan {
    pub(super) fn text(status: u16, message: &str, close: bool) -> Plan {
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

pub(super) fn reason(status: u16) -> &'static str {
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
pub(super) async fn plan(head: &RequestHead, ctx: &StreamContext) -> Plan {
    ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
    let is_head = head.method == "HEAD";
    if head.method != "GET" && !is_head {
        return method_not_allowed();
    }
    let plan = match resolve_and_open(head, ctx).await {
        Err(refusal) => refused(refusal),
        Ok(Opened::Bytes {
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
        Ok(Opened::File {
            file,
            meta,
            content_type,
            disk,
            path,
        }) => {
            let now = SystemTime::now();
            let modified = meta.modified().ok().map(|m| m.min(now));
            let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
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
                        disk_id: disk,
                        path: Arc::new(path),
                    },
                },
            )
        }
    };
    if is_head {
        plan.without_body()
    } else {
        plan
    }
}

pub(super) fn method_not_allowed() -> Plan {
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
    // A redirect sends the player elsewhere (back to placement, claim 13):
    // its next request belongs on a fresh connection, which reaches the
    // address's holder now rather than this one.
    let close = status == 400 || (300..400).contains(&status);
    let mut p = Plan::text(status, &message, close);
    for (name, value) in r.extra_headers {
        if valid_field_name(&name) && valid_field_value(&value) {
            p.headers.push((name.into(), value));
        } else {
            tracing::debug!("dropping an invalid header field of a refusal: {name:?}");
        }
    }
    p
}

/// What a resolved request serves, its file open.
enum Opened {
    Bytes {
        body: Vec<u8>,
        content_type: Cow<'static, str>,
        etag: String,
    },
    File {
        file: File,
        meta: std::fs::Metadata,
        content_type: Cow<'static, str>,
        disk: u32,
        path: PathBuf,
    },
}

/// Resolves the request and opens its file on one of tokio's blocking
/// threads, never on the connection's task: resolution may read the disk
/// (a playlist, a title's metadata) and a disk may hang. Past the disk
/// timeout the request gets `503` with `Retry-After`, and the thread is left
/// to the disk (the resolver bounds how many wait on one disk).
async fn resolve_and_open(head: &RequestHead, ctx: &StreamContext) -> Result<Opened, Refusal> {
    let resolver = ctx.resolver.clone();
    let head = head.clone();
    let work = tokio::task::spawn_blocking(move || match resolver.resolve(&head)? {
        Resolved::Bytes {
            body,
            content_type,
            etag,
        } => Ok(Opened::Bytes {
            body,
            content_type,
            etag,
        }),
        Resolved::File {
            path,
            content_type,
            disk,
        } => match open(&path) {
            Ok((file, meta)) if meta.is_file() => Ok(Opened::File {
                file,
                meta,
                content_type,
                disk,
                path,
            }),
            Ok(_) => Err(Refusal::new(404, "not found")),
            Err(e) => Err(open_refusal(&e)),
        },
    });
    let unavailable = |m: &str| Refusal::new(503, m).with_header("Retry-After", "1");
    match timeout(ctx.config.disk_timeout, work).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::warn!("resolving a stream request failed: {e}");
            Err(unavailable("the request could not be resolved"))
        }
        Err(_) => Err(unavailable("the disk did not answer in time")),
    }
}

fn open_refusal(e: &io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::NotFound => Refusal::new(404, "not found"),
        io::ErrorKind::PermissionDenied => Refusal::new(403, "forbidden"),
        _ => {
            tracing::warn!("cannot open a stream file: {e}");
            Refusal::new(503, "the file cannot be read now").with_header("Retry-After", "1")
        }
    }
}

/// Opens a file (on a blocking thread) and takes its metadata from the open
/// descriptor. `O_NONBLOCK` keeps a FIFO from blocking the open.
fn open(path: &std::path::Path) -> io::Result<(File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

pub(super) fn quote_etag(tag: &str) -> String {
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
pub(super) fn etags_match(list: &str, etag: &str, strong: bool) -> bool {
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
