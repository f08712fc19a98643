//! The load generator of `ringcast bench segments`: what an HLS player's
//! HTTP stack does, on tokio, with a small HTTP/1.1 parser of its own.
//!
//! A [`Player`] keeps one persistent connection per host (`Host` address)
//! and reconnects when the server closes it (a reused connection that
//! closes before answering is retried once on a new one, as browsers do).
//! [`Player::get`] follows redirects (relative `Location`s resolved
//! against the URL asked), reads `Content-Length` and chunked bodies, and
//! checks that a body has the length its head announced. Bodies that are
//! not kept (segments) are discarded by the kernel with `recv(MSG_TRUNC)`,
//! so the generator copies no segment bytes and stays cheap next to the
//! servers it measures. [`parse_playlist`] reads a media playlist (or the
//! first variant of a master playlist); [`Url::join`] resolves its URIs.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// A server silent for this long has failed the request.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed per request.
pub(crate) const MAX_REDIRECTS: u32 = 5;
/// Requests on a cluster's data path start with this; any other request
/// moves a node's connection to its API server (see `ringcast-files`).
pub(crate) const STREAM_PREFIX: &str = "/v1/streams/";
/// The largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// A head is read this many bytes at a time, so that little of a body is
/// copied along with it.
const HEAD_READ: usize = 4096;
/// The largest body kept (a playlist).
const MAX_KEPT: u64 = 1 << 20;
/// Bytes discarded (or read, without `MSG_TRUNC`) per system call.
const SCRATCH: usize = 256 * 1024;

/// Cleared when the kernel refuses `MSG_TRUNC` on TCP: bodies are then read.
static TRUNC_WORKS: AtomicBool = AtomicBool::new(true);

/// An `http://` URL on this machine (127.0.0.0/8 or `localhost`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    /// `host[:port]` as written: the `Host` header.
    pub(crate) authority: String,
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// Path and query, starting with `/`.
    pub(crate) target: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.target)
    }
}

impl Url {
    /// Parses an absolute `http://` URL; any host but this machine is refused.
    pub(crate) fn parse(s: &str) -> Result<Url, Fail> {
        let bad = |why: &str| Fail::Protocol(format!("{s}: {why}"));
        let rest = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("http://"))
            .map(|_| &s[7..])
            .ok_or_else(|| bad("not a plain http:// URL"))?;
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("a bad port"))?),
            None => (authority, 80),
        };
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<IpAddr>()
                .map_err(|_| bad("not an IP address"))?
        };
        if !ip.is_loopback() || !ip.is_ipv4() {
            return Err(bad(
                "not on 127.0.0.0/8; the bench talks to this machine only",
            ));
        }
        let target = match target.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{target}"),
            Some(_) => normalize(target),
        };
        Ok(Url {
            authority: authority.to_string(),
            addr: SocketAddr::new(ip, port),
            target,
        })
    }

    /// Resolves a reference (a playlist's URI, a `Location`) against this URL
    /// (RFC 3986 section 5.2, for the forms players meet).
    pub(crate) fn join(&self, reference: &str) -> Result<Url, Fail> {
        let r = reference.trim();
        let r = r.split('#').next().unwrap_or_default();
        if let Some(i) = r.find("://") {
            if !r[..i].contains(['/', '?']) {
                return Url::parse(r);
            }
        }
        let target = if let Some(rest) = r.strip_prefix("//") {
            return Url::parse(&format!("http://{rest}"));
        } else if r.starts_with('/') {
            normalize(r)
        } else if r.is_empty() {
            self.target.clone()
        } else if r.starts_with('?') {
            let path = self.target.split('?').next().unwrap_or("/");
            format!("{path}{r}")
        } else {
            let path = self.target.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            normalize(&format!("{dir}{r}"))
        };
        Ok(Url {
            authority: self.authority.clone(),
            addr: self.addr,
            target,
        })
    }
}

/// Removes `.` and `..` segments from the path of a `/`-rooted target.
fn normalize(target: &str) -> String {
    let (path, query) = match target.find('?') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match *s {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        if last && (*s == "." || *s == "..") {
            out.push("");
        }
    }
    format!("/{}{query}", out.join("/"))
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A final answer other than 200: its status, `Retry-After` (seconds)
    /// and the start of its body.
    Status(u16, Option<u64>, String),
    /// A body of another length than expected or announced.
    Length { got: u64, want: u64 },
    /// The server was silent for [`IO_TIMEOUT`].
    Timeout,
    /// Connecting, sending or receiving failed.
    Io(String),
    /// The connection closed before any byte of the answer (stale keep-alive).
    Closed,
    /// More than [`MAX_REDIRECTS`] redirects.
    Redirects,
    /// A malformed answer or URL.
    Protocol(String),
}

impl Fail {
    /// A short name for counting failures by kind.
    pub(crate) fn kind(&self) -> String {
        match self {
            Fail::Status(code, ..) => format!("status_{code}"),
            Fail::Length { .. } => "length".into(),
            Fail::Timeout => "timeout".into(),
            Fail::Io(_) | Fail::Closed => "io".into(),
            Fail::Redirects => "redirects".into(),
            Fail::Protocol(_) => "protocol".into(),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Status(code, _, body) if body.is_empty() => write!(f, "answered {code}"),
            Fail::Status(code, _, body) => write!(f, "answered {code}: {body}"),
            Fail::Length { got, want } => write!(f, "a body of {got} bytes instead of {want}"),
            Fail::Timeout => write!(f, "no answer within {} s", IO_TIMEOUT.as_secs()),
            Fail::Io(e) => write!(f, "{e}"),
            Fail::Closed => write!(f, "the connection closed before the answer"),
            Fail::Redirects => write!(f, "more than {MAX_REDIRECTS} redirects"),
            Fail::Protocol(e) => write!(f, "{e}"),
        }
    }
}

fn io_fail(what: &str, e: io::Error) -> Fail {
    Fail::Io(format!("{what}: {e}"))
}

async fn timed<T>(
    f: impl std::future::Future<Output = io::Result<T>>,
    what: &str,
) -> Result<T, Fail> {
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io_fail(what, e)),
        Err(_) => Err(Fail::Timeout),
    }
}

/// A final (non-redirect) answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Where it came from, after redirects.
    pub(crate) url: Url,
    /// Its body when asked to keep it, else empty.
    pub(crate) body: Vec<u8>,
    /// Body bytes received.
    pub(crate) len: u64,
    /// When its first body byte arrived.
    pub(crate) first_byte: Option<Instant>,
    /// Redirects followed to get it.
    pub(crate) redirects: u32,
    /// Whether it came over a node's connection that had carried a request
    /// outside the data path before (which that node serves through its API
    /// server, without `sendfile(2)`).
    pub(crate) via_api_connection: bool,
}

/// One response head, parsed.
struct Head {
    status: u16,
    length: Option<u64>,
    chunked: bool,
    close: bool,
    location: Option<String>,
    retry_after: Option<u64>,
}

/// One persistent connection and the bytes read ahead of what was parsed.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    /// Whether a request outside [`STREAM_PREFIX`] went over it.
    api: bool,
}

/// One player's HTTP client: a persistent connection per host.
pub(crate) struct Player {
    conns: HashMap<SocketAddr, Conn>,
    scratch: Box<[u8]>,
    /// TCP connections opened.
    pub(crate) connects: u64,
}

impl Player {
    pub(crate) fn new() -> Player {
        Player {
            conns: HashMap::new(),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            connects: 0,
        }
    }

    /// `GET url`, following redirects. A final answer other than 200 is a
    /// [`Fail::Status`]; its body must have `expect` bytes when given.
    pub(crate) async fn get(
        &mut self,
        url: &Url,
        keep: bool,
        expect: Option<u64>,
    ) -> Result<Answer, Fail> {
        let mut url = url.clone();
        for redirects in 0..=MAX_REDIRECTS {
            let (head, body, len, first_byte, via_api) = self.exchange(&url, keep).await?;
            match head.status {
                301 | 302 | 303 | 307 | 308 => {
                    let loc = head.location.ok_or_else(|| {
                        Fail::Protocol(format!("{url}: a redirect without Location"))
                    })?;
                    url = url.join(&loc)?;
                }
                200 => {
                    if let Some(want) = expect.filter(|w| *w != len) {
                        return Err(Fail::Length { got: len, want });
                    }
                    return Ok(Answer {
                        url,
                        body,
                        len,
                        first_byte,
                        redirects,
                        via_api_connection: via_api,
                    });
                }
                code => {
                    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    return Err(Fail::Status(code, head.retry_after, text));
                }
            }
        }
        Err(Fail::Redirects)
    }

    /// One request and its answer on the host's connection, opened or
    /// reopened as needed. Returns the head, the body (when kept, or an error's),
    /// its length, when its first byte came, and whether the connection had
    /// carried a request outside the data path before.
    async fn exchange(
        &mut self,
        url: &Url,
        keep: bool,
    ) -> Result<(Head, Vec<u8>, u64, Option<Instant>, bool), Fail> {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast-bench\r\nAccept: */*\r\n\r\n",
            url.target, url.authority
        );
        for attempt in 0..2 {
            let reused = self.conns.contains_key(&url.addr);
            if !reused {
                let sock = timed(TcpStream::connect(url.addr), "cannot connect").await?;
                sock.set_nodelay(true)
                    .map_err(|e| io_fail("cannot set TCP_NODELAY", e))?;
                self.connects += 1;
                let conn = Conn {
                    sock,
                    buf: Vec::with_capacity(MAX_HEAD),
                    api: false,
                };
                self.conns.insert(url.addr, conn);
            }
            let Player { conns, scratch, .. } = self;
            let conn = conns.get_mut(&url.addr).expect("inserted above");
            let via_api = conn.api;
            if !url.target.starts_with(STREAM_PREFIX) {
                conn.api = true;
            }
            let sent = timed(conn.sock.write_all(request.as_bytes()), "cannot send").await;
            let result = match sent {
                Ok(()) => conn.answer(keep, scratch).await,
                Err(e) => Err(e),
            };
            match result {
                Ok((head, body, len, first)) => {
                    if head.close {
                        conns.remove(&url.addr);
                    }
                    return Ok((head, body, len, first, via_api));
                }
                Err(e) => {
                    conns.remove(&url.addr);
                    let stale = match &e {
                        Fail::Closed => true,
                        Fail::Io(m) => m.starts_with("cannot send"),
                        _ => false,
                    };
                    if !(reused && attempt == 0 && stale) {
                        return Err(if matches!(e, Fail::Closed) {
                            Fail::Io(format!("{url}: {e}"))
                        } else {
                            e
                        });
                    }
                }
            }
        }
        Err(Fail::Io(format!("{url}: the connection closed twice")))
    }
}

impl Conn {
    /// Reads one response: its head, then its body (kept in a `Vec` when
    /// `keep` or an error's, else discarded).
    async fn answer(
        &mut self,
        keep: bool,
        scratch: &mut [u8],
    ) -> Result<(Head, Vec<u8>, u64, Option<Instant>), Fail> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(Fail::Protocol("a response head over 16 KiB".into()));
            }
            let had = self.buf.len();
            self.buf.resize(had + HEAD_READ, 0);
            let n = timed(self.sock.read(&mut self.buf[had..]), "head").await;
            let n = match n {
                Ok(n) => n,
                // Nothing of the answer yet: maybe a stale keep-alive connection.
                Err(Fail::Io(_)) if had == 0 => return Err(Fail::Closed),
                Err(e) => return Err(e),
            };
            self.buf.truncate(had + n);
            if n == 0 {
                return Err(if had == 0 {
                    Fail::Closed
                } else {
                    Fail::Io("body: the connection closed inside a response head".into())
                });
            }
        };
        let head = parse_head(&self.buf[..end])?;
        self.buf.drain(..end);
        // Bodies of errors are kept too (they say why).
        let keep = keep || head.status >= 400;
        let mut body = Vec::new();
        let mut first = (!self.buf.is_empty()).then(Instant::now);
        let mut got = 0;
        if head.status == 204 || head.status == 304 || (100..200).contains(&head.status) {
            return Ok((head, body, 0, None));
        }
        if head.chunked {
            loop {
                let line = self.line().await?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| Fail::Protocol(format!("a bad chunk size {size:?}")))?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.body(size, keep, &mut body, &mut first, scratch)
                    .await?;
                got += size;
                if !self.line().await?.is_empty() {
                    return Err(Fail::Protocol("a chunk without its CRLF".into()));
                }
            }
        } else if let Some(len) = head.length {
            got = self.body(len, keep, &mut body, &mut first, scratch).await?;
        } else {
            // No length: the body runs to the end of the connection.
            got = self
                .body(u64::MAX, keep, &mut body, &mut first, scratch)
                .await?;
            let mut head = head;
            head.close = true;
            return Ok((head, body, got, first));
        }
        Ok((head, body, got, first))
    }

    /// One CRLF-terminated line (of chunked framing), without its CRLF.
    async fn line(&mut self) -> Result<String, Fail> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err(Fail::Protocol("a chunk line over 4 KiB".into()));
            }
            let had = self.buf.len();
            self.buf.resize(had + 512, 0);
            let n = timed(self.sock.read(&mut self.buf[had..]), "body").await?;
            self.buf.truncate(had + n);
            if n == 0 {
                return Err(Fail::Io(
                    "body: the connection closed inside a chunk".into(),
                ));
            }
        }
    }

    /// Consumes `len` body bytes (to the end of the connection with
    /// `u64::MAX`): first those read ahead, then from the socket. Returns
    /// the bytes consumed; fewer than `len` (but not `u64::MAX`) is a
    /// [`Fail::Length`].
    async fn body(
        &mut self,
        len: u64,
        keep: bool,
        out: &mut Vec<u8>,
        first: &mut Option<Instant>,
        scratch: &mut [u8],
    ) -> Result<u64, Fail> {
        let to_eof = len == u64::MAX;
        let ahead = (self.buf.len() as u64).min(len) as usize;
        let mut got = ahead as u64;
        if keep {
            out.extend_from_slice(&self.buf[..ahead]);
        }
        self.buf.drain(..ahead);
        while got < len {
            if keep && got > MAX_KEPT {
                return Err(Fail::Protocol("a playlist over 1 MiB".into()));
            }
            let want = (len - got).min(scratch.len() as u64) as usize;
            let n = if keep || !TRUNC_WORKS.load(Ordering::Relaxed) {
                let n = timed(self.sock.read(&mut scratch[..want]), "body").await?;
                if keep {
                    out.extend_from_slice(&scratch[..n]);
                }
                n
            } else {
                timed(discard(&mut self.sock, &mut scratch[..want]), "body").await?
            };
            if n == 0 {
                if to_eof {
                    break;
                }
                return Err(Fail::Length { got, want: len });
            }
            if first.is_none() {
                *first = Some(Instant::now());
            }
            got += n as u64;
        }
        Ok(got)
    }
}

/// Drops up to `buf.len()` received bytes in the kernel (`recv` with
/// `MSG_TRUNC`: TCP discards them instead of copying; `buf` only bounds the
/// count). Falls back to reading into `buf` where the kernel refuses it.
async fn discard(sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let fd = sock.as_raw_fd();
    loop {
        sock.readable().await?;
        let r = sock.try_io(Interest::READABLE, || {
            // SAFETY: `buf` is valid for `buf.len()` bytes for the call; with
            // MSG_TRUNC the kernel writes none of them on TCP, and at most
            // that many otherwise.
            let n = unsafe {
                nix::libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), nix::libc::MSG_TRUNC)
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match r {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                TRUNC_WORKS.store(false, Ordering::Relaxed);
                return sock.read(buf).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn parse_head(raw: &[u8]) -> Result<Head, Fail> {
    let text =
        std::str::from_utf8(raw).map_err(|_| Fail::Protocol("a head not in UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| Fail::Protocol(format!("a bad status line {status_line:?}")))?;
    let mut head = Head {
        status,
        length: None,
        chunked: false,
        close: version == "HTTP/1.0",
        location: None,
        retry_after: None,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Fail::Protocol(format!("a bad header line {line:?}")));
        };
        let value = value.trim();
        let has = |word: &str| {
            value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case(word))
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| Fail::Protocol(format!("a bad Content-Length {value:?}")))?;
                if head.length.is_some_and(|l| l != n) {
                    return Err(Fail::Protocol("two different Content-Lengths".into()));
                }
                head.length = Some(n);
            }
            "transfer-encoding" => head.chunked = has("chunked"),
            "connection" if has("close") => head.close = true,
            "connection" if has("keep-alive") => head.close = false,
            "location" => head.location = Some(value.to_string()),
            "retry-after" => head.retry_after = value.parse().ok(),
            _ => {}
        }
    }
    Ok(head)
}

/// A segment of a media playlist.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Resolved against the playlist's URL.
    pub(crate) url: Url,
    /// An `EXT-X-MAP` initialization section rather than a media segment.
    pub(crate) init: bool,
}

/// What a playlist names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Playlist {
    /// A media playlist: its segments in order (an `EXT-X-MAP` initialization
    /// section before those it applies to).
    Media(Vec<Segment>),
    /// A master playlist: its first variant, to be fetched next.
    Master(Url),
}

/// Parses a playlist fetched from `base`.
pub(crate) fn parse_playlist(text: &str, base: &Url) -> Result<Playlist, Fail> {
    let mut lines = text
        .trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err(Fail::Protocol(format!("{base}: not an M3U8 playlist")));
    }
    let mut segments: Vec<Segment> = Vec::new();
    let mut init: Option<Url> = None;
    let mut variant = false;
    for line in lines {
        if let Some(attrs) = line.strip_prefix("#EXT-X-MAP:") {
            if let Some(uri) = attrs
                .split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                let url = base.join(uri)?;
                if init.as_ref() != Some(&url) {
                    init = Some(url.clone());
                    segments.push(Segment { url, init: true });
                }
            }
        } else if line.starts_with("#EXT-X-BYTERANGE") {
            return Err(Fail::Protocol(format!(
                "{base}: byte-range segments are not supported"
            )));
        } else if line.starts_with("#EXT-X-STREAM-INF") {
            variant = true;
        } else if !line.starts_with('#') {
            let url = base.join(line)?;
            if variant {
                return Ok(Playlist::Master(url));
            }
            segments.push(Segment { url, init: false });
        }
    }
    if segments.is_empty() {
        return Err(Fail::Protocol(format!(
            "{base}: a playlist without segments"
        )));
    }
    Ok(Playlist::Media(segments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn urls_resolve_as_players_resolve_them() {
        let base = url("http://127.0.0.1:8501/v1/streams/tok/show/index.m3u8?x=1");
        let j = |r: &str| base.join(r).unwrap().to_string();
        assert_eq!(
            j("seg_001.ts"),
            "http://127.0.0.1:8501/v1/streams/tok/show/seg_001.ts"
        );
        assert_eq!(
            j("../a/b.ts?s=2"),
            "http://127.0.0.1:8501/v1/streams/tok/a/b.ts?s=2"
        );
        assert_eq!(
            j("/v1/play/show/s.ts?stream=9"),
            "http://127.0.0.1:8501/v1/play/show/s.ts?stream=9"
        );
        assert_eq!(
            j("http://127.0.0.1:8502/v1/play/a.ts"),
            "http://127.0.0.1:8502/v1/play/a.ts"
        );
        assert_eq!(j("//127.0.0.2:80/x/./y.ts#f"), "http://127.0.0.2:80/x/y.ts");
        assert_eq!(
            j("?y=2"),
            "http://127.0.0.1:8501/v1/streams/tok/show/index.m3u8?y=2"
        );
        assert_eq!(url("http://localhost:9").addr.port(), 9);
        assert_eq!(url("http://127.0.0.1").target, "/");
        for bad in [
            "http://10.0.0.1/x",
            "http://example.com/",
            "https://127.0.0.1/",
            "ftp://x",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        assert!(base.join("https://127.0.0.1/x").is_err());
    }

    #[test]
    fn playlists_name_their_segments_in_order() {
        let base = url("http://127.0.0.1:1/v1/play/show/index.m3u8");
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n\
                    #EXTINF:2.0,\nseg_0.ts\n\n#EXTINF:2.0,\nhttp://127.0.0.1:2/v1/streams/t/seg_1.ts\n\
                    #EXT-X-ENDLIST\n";
        let Playlist::Media(segs) = parse_playlist(text, &base).unwrap() else {
            panic!("a media playlist");
        };
        let names: Vec<String> = segs.iter().map(|s| s.url.to_string()).collect();
        let inits: Vec<bool> = segs.iter().map(|s| s.init).collect();
        assert_eq!(inits, [true, false, false]);
        assert_eq!(
            names,
            [
                "http://127.0.0.1:1/v1/play/show/init.mp4",
                "http://127.0.0.1:1/v1/play/show/seg_0.ts",
                "http://127.0.0.1:2/v1/streams/t/seg_1.ts"
            ]
        );
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow/index.m3u8\n";
        assert_eq!(
            parse_playlist(master, &base).unwrap(),
            Playlist::Master(url("http://127.0.0.1:1/v1/play/show/low/index.m3u8"))
        );
        assert!(parse_playlist("<html>", &base).is_err());
        assert!(parse_playlist("#EXTM3U\n#EXT-X-ENDLIST\n", &base).is_err());
    }

    /// A server answering each connection's requests from a script: a
    /// redirect, a chunked body, a body of the wrong length.
    async fn serve(listener: TcpListener, answers: Vec<&'static str>) {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        for answer in answers {
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            sock.write_all(answer.as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn redirects_chunks_and_lengths_are_checked() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(
            listener,
            vec![
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: /b\r\nContent-Length: 3\r\n\r\nabc",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwxyz",
                "HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ],
        ));
        let mut p = Player::new();
        let a = p
            .get(&url(&format!("http://127.0.0.1:{port}/a")), true, None)
            .await
            .unwrap();
        assert_eq!((a.redirects, a.body.as_slice()), (1, &b"abcde"[..]));
        assert_eq!(a.url.target, "/b");
        let short = p
            .get(&url(&format!("http://127.0.0.1:{port}/c")), false, Some(5))
            .await;
        assert!(
            matches!(short, Err(Fail::Length { got: 4, want: 5 })),
            "{short:?}"
        );
        let busy = p
            .get(&url(&format!("http://127.0.0.1:{port}/d")), false, None)
            .await;
        assert!(
            matches!(busy, Err(Fail::Status(503, Some(2), _))),
            "{busy:?}"
        );
        assert_eq!(p.connects, 1, "one keep-alive connection for all four");
        assert!(p.conns.is_empty(), "closed after Connection: close");
        server.await.unwrap();
    }
}
