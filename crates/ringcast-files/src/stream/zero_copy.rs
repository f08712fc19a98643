//! The zero-copy path: one connection on a raw socket, request heads read
//! with tokio's readiness API, file bytes sent with `sendfile(2)`.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use ringcast_tcp::Coordinates;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::config::{StreamConfig, StreamContext};
use super::counters::{ActiveStream, DiskCounter};
use super::handover::{InFlight, Resume};
use super::head::{HeadError, RequestHead};
use super::plan::{method_not_allowed, plan, reason, Plan, Segment, Source};
use crate::buckets::retry_after_secs;
use crate::guard::Refused;

/// The most bytes one `sendfile(2)` call is asked to move.
pub const SENDFILE_CHUNK: usize = 1 << 20;

/// How much the request head buffer grows by per read.
const READ_STEP: usize = 4096;

/// The most bytes of literal data (response heads, multipart part heads,
/// generated content) gathered before they are written to the socket.
const WRITE_BUFFER: usize = 16 * 1024;

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
    let tracking = Tracking::new(&stream, ctx);
    serve(Arc::new(stream), buffered, ctx, tracking).await
}

/// Claim 13: continues a connection rebuilt on this host after its
/// process died (see [`Resume`]): the rest of its response from the byte
/// the player expects next, then its further requests as any
/// connection's. A file that cannot be opened here resets the connection,
/// so the player asks again at once.
pub async fn resume_connection(resume: Resume, ctx: &StreamContext) -> Outcome {
    let Resume {
        stream,
        response,
        offset,
        at,
    } = resume;
    let Ok(stream) = TcpStream::from_std(stream) else {
        return Outcome::Closed;
    };
    let sock = Arc::new(stream);
    let path = response.path.clone();
    let opened = timeout(
        ctx.config.disk_timeout,
        tokio::task::spawn_blocking(move || File::open(path)),
    )
    .await;
    let file = match opened {
        Ok(Ok(Ok(file))) => Arc::new(file),
        _ => {
            let _ = socket2::SockRef::from(&*sock).set_linger(Some(Duration::ZERO));
            return Outcome::Closed;
        }
    };
    let disk = ctx.counters.disk(response.disk);
    let _active = ActiveStream::new(&ctx.counters, &disk);
    let head = response.head.as_bytes();
    let mut written = 0u64;
    if let Some(rest) = head.get(offset as usize..) {
        if write_all(&sock, rest, ctx).await.is_err() {
            return Outcome::Closed;
        }
        written += rest.len() as u64;
    }
    let from = response.body.start + offset.saturating_sub(head.len() as u64);
    if from < response.body.end {
        if send_file(&sock, &file, from..response.body.end, &disk, ctx)
            .await
            .is_err()
        {
            return Outcome::Closed;
        }
        written += response.body.end - from;
    }
    if !response.keep_alive {
        linger(&sock).await;
        return Outcome::Closed;
    }
    let tracking = Tracking {
        ends: Ends::of(&sock),
        base: Some(Base {
            at,
            written,
            received: 0,
        }),
    };
    serve(sock, Vec::new(), ctx, tracking).await
}

/// Claim 13: where a followed connection stands, so that each response's
/// record says it exactly. Its coordinates are read once, before its first
/// response (nothing waits in the send queue then); later ones follow from
/// the bytes written since and the bytes the kernel has received.
struct Tracking {
    /// The connection's two ends, while it is followed.
    ends: Option<Ends>,
    base: Option<Base>,
}

/// The player's end and this one, as a record names them.
#[derive(Clone, Copy)]
struct Ends {
    client: SocketAddrV4,
    local: SocketAddrV4,
}

impl Ends {
    fn of(sock: &TcpStream) -> Option<Ends> {
        Some(Ends {
            client: ringcast_tcp::v4(sock.peer_addr().ok()?)?,
            local: ringcast_tcp::v4(sock.local_addr().ok()?)?,
        })
    }
}

struct Base {
    at: Coordinates,
    written: u64,
    received: u64,
}

impl Tracking {
    fn new(sock: &TcpStream, ctx: &StreamContext) -> Tracking {
        let covered = ctx
            .config
            .handover
            .as_ref()
            .is_some_and(|h| sock.local_addr().is_ok_and(|a| h.0.covers(a)));
        Tracking {
            ends: if covered { Ends::of(sock) } else { None },
            base: None,
        }
    }

    /// Where the connection stands before the next response.
    fn before(&mut self, sock: &TcpStream, ctx: &StreamContext) -> Option<Coordinates> {
        self.ends?;
        let hook = ctx.config.handover.as_ref()?;
        let now = match &self.base {
            None => (|| {
                let received = ringcast_tcp::info(sock)?.bytes_received;
                let at = ringcast_tcp::coordinates(sock)?;
                self.base = Some(Base {
                    at,
                    written: 0,
                    received,
                });
                Ok::<_, io::Error>(at)
            })(),
            Some(b) => (|| {
                let received = ringcast_tcp::info(sock)?.bytes_received;
                let tsval = ringcast_tcp::tsval(sock)?;
                Ok(Coordinates {
                    tsval,
                    ..b.at
                        .advanced(b.written, received.saturating_sub(b.received))
                })
            })(),
        };
        match now {
            Ok(at) => Some(at),
            Err(e) => {
                hook.0.unavailable(&e);
                self.ends = None;
                None
            }
        }
    }

    fn wrote(&mut self, bytes: u64) {
        if let Some(b) = &mut self.base {
            b.written += bytes;
        }
    }
}

/// The record of a response of one file range, for the host that may
/// continue it; other responses (generated, multipart) go unrecorded.
fn in_flight(
    ends: Ends,
    plan: &Plan,
    head: &str,
    at: Coordinates,
    keep_alive: bool,
) -> Option<InFlight> {
    let Source::File { disk_id, path, .. } = &plan.source else {
        return None;
    };
    let [Segment::Data(body)] = plan.segments.as_slice() else {
        return None;
    };
    Some(InFlight {
        client: ends.client,
        local: ends.local,
        at,
        head: head.to_string(),
        disk: *disk_id,
        path: path.to_path_buf(),
        body: body.clone(),
        keep_alive,
    })
}

async fn serve(
    sock: Arc<TcpStream>,
    buffered: Vec<u8>,
    ctx: &StreamContext,
    mut tracking: Tracking,
) -> Outcome {
    let peer = sock
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let mut buf = buffered;
    let mut first = tracking.base.is_none();
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
                let head = response_head(&plan, 1, false);
                let _ = write_plan(&sock, plan, head, ctx).await;
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
        let keep_alive = head.wants_keep_alive() && !plan.close && !ctx.config.closing.is_set();
        let response = response_head(&plan, head.minor_version, keep_alive);
        if let Some(at) = tracking.before(&sock, ctx) {
            let record = tracking
                .ends
                .and_then(|ends| in_flight(ends, &plan, &response, at, keep_alive));
            if let (Some(record), Some(hook)) = (record, &ctx.config.handover) {
                hook.0.started(record);
            }
        }
        match write_plan(&sock, plan, response, ctx).await {
            Ok(written) => tracking.wrote(written),
            Err(_) => return Outcome::Closed,
        }
        if !keep_alive {
            linger(&sock).await;
            return Outcome::Closed;
        }
    }
}

/// The answer to a request over its client's rate. The connection
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

/// Writes a response (its `head` made by [`response_head`]) on the raw
/// socket: literal bytes through a small buffer, file ranges with
/// `sendfile(2)`. Returns how many bytes it wrote.
async fn write_plan(
    sock: &Arc<TcpStream>,
    plan: Plan,
    head: String,
    ctx: &StreamContext,
) -> io::Result<u64> {
    let mut written = 0u64;
    let mut out = head.into_bytes();
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
                    written += out.len() as u64;
                    out.clear();
                }
                out.extend_from_slice(s.as_bytes());
            }
            (Segment::Data(r), Source::Memory(data)) => {
                let bytes = &data[r.start as usize..r.end as usize];
                if out.len() + bytes.len() > WRITE_BUFFER {
                    write_all(sock, &out, ctx).await?;
                    written += out.len() as u64;
                    out.clear();
                    write_all(sock, bytes, ctx).await?;
                    written += bytes.len() as u64;
                } else {
                    out.extend_from_slice(bytes);
                }
                ctx.counters.sent(None, bytes.len() as u64, false);
            }
            (Segment::Data(r), Source::File { file, disk, .. }) => {
                if !out.is_empty() {
                    write_all(sock, &out, ctx).await?;
                    written += out.len() as u64;
                    out.clear();
                }
                send_file(sock, file, r.clone(), disk, ctx).await?;
                written += r.end - r.start;
            }
            (Segment::Data(_), Source::Literal) => {}
        }
    }
    if !out.is_empty() {
        write_all(sock, &out, ctx).await?;
        written += out.len() as u64;
    }
    Ok(written)
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
