//! Tests of the stream server through real sockets on 127.0.0.1, and the
//! helpers the listener's tests share: a test resolver, a server runner, and
//! a small raw HTTP/1.1 client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::plan::{etags_match, quote_etag};
use super::*;

// ---------------------------------------------------------------------------
// Helpers

/// The runtime every test server runs on (two workers, like the machine).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Serves `/v1/streams/NAME` from `root`: `playlist.m3u8` is generated
/// content, `busy` is refused with 503 and `Retry-After`, `secret` with 403,
/// anything else is the file `root/NAME` on disk 7.
pub(crate) struct TestResolver {
    pub(crate) root: PathBuf,
}

pub(crate) const PLAYLIST: &[u8] =
    b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:4.0,\nseg0.ts\n#EXT-X-ENDLIST\n";

impl Resolve for TestResolver {
    fn resolve(&self, req: &RequestHead) -> Result<Resolved, Refusal> {
        let name = req
            .path
            .strip_prefix("/v1/streams/")
            .ok_or_else(|| Refusal::new(404, "not a stream path"))?;
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(Refusal::new(400, "bad title"));
        }
        match name {
            "playlist.m3u8" => Ok(Resolved::Bytes {
                body: PLAYLIST.to_vec(),
                content_type: content_type_for(name).into(),
                etag: "pl-1".into(),
            }),
            "busy" => Err(Refusal::new(503, "no capacity").with_header("Retry-After", "2")),
            "secret" => Err(Refusal::new(403, "bad token")
                .with_header("X-Bad\r\nInjected", "x")
                .with_header("X-Reason", "token\r\nInjected: yes")),
            _ => Ok(Resolved::File {
                path: self.root.join(name),
                content_type: content_type_for(name).into(),
                disk: 7,
            }),
        }
    }
}

/// Deterministic pseudo-random bytes.
pub(crate) fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A test server: a library folder and a stream server on a free port.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) counters: Arc<StreamCounters>,
    pub(crate) dir: tempfile::TempDir,
}

impl TestServer {
    /// A raw stream server (every path is a stream path) with `config`.
    pub(crate) fn start(config: StreamConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let counters = Arc::new(StreamCounters::new());
        let ctx = Arc::new(StreamContext {
            resolver: Arc::new(TestResolver {
                root: dir.path().to_path_buf(),
            }),
            counters: counters.clone(),
            config,
            guard: Arc::new(crate::guard::Guard::new(
                &crate::limits::HttpLimits::default(),
            )),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("non-blocking");
        let addr = std_listener.local_addr().expect("address");
        runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(sock, Vec::new(), &ctx).await;
                });
            }
        });
        TestServer {
            addr,
            counters,
            dir,
        }
    }

    /// Writes a file of `len` pseudo-random bytes into the library.
    pub(crate) fn file(&self, name: &str, len: usize, seed: u64) -> Vec<u8> {
        let data = pseudo_random(len, seed);
        std::fs::write(self.dir.path().join(name), &data).expect("write a test file");
        data
    }

    pub(crate) fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

/// Polls `cond` until it holds or `limit` passes.
pub(crate) fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until exactly `n` bytes have been sent with sendfile.
pub(crate) fn sendfile_bytes_reach(counters: &StreamCounters, n: u64) {
    eventually(Duration::from_secs(10), "the sendfile byte count", || {
        counters.snapshot().sendfile_bytes == n
    });
    assert_eq!(counters.snapshot().sendfile_bytes, n);
}

/// A response as the test client read it.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .map(|v| v.parse().expect("a length"))
    }
}

/// A minimal HTTP/1.1 client over one raw TCP connection.
pub(crate) struct Client {
    pub(crate) r: BufReader<StdTcpStream>,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> Client {
        let s = StdTcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s),
        }
    }

    pub(crate) fn send(&mut self, raw: &[u8]) {
        self.r.get_mut().write_all(raw).expect("send a request");
    }

    /// Sends `METHOD path` with `Host` and `extra` fields.
    pub(crate) fn request(&mut self, method: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in extra {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes());
        self.read_response(method == "HEAD")
    }

    pub(crate) fn get(&mut self, path: &str, extra: &[(&str, &str)]) -> Resp {
        self.request("GET", path, extra)
    }

    pub(crate) fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("a status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).expect("a header line");
            let l = l.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("a header field");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        (status, headers)
    }

    pub(crate) fn read_response(&mut self, is_head: bool) -> Resp {
        let (status, headers) = self.read_head();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if is_head || status == 304 || status < 200 {
            return resp;
        }
        if let Some(len) = resp.content_length() {
            resp.body = vec![0; len as usize];
            self.r.read_exact(&mut resp.body).expect("the body");
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut l = String::new();
                self.r.read_line(&mut l).expect("a chunk size");
                let size = usize::from_str_radix(l.trim().split(';').next().unwrap(), 16)
                    .expect("a chunk size");
                let mut chunk = vec![0; size + 2];
                self.r.read_exact(&mut chunk).expect("a chunk");
                if size == 0 {
                    break;
                }
                resp.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.r.read_to_end(&mut resp.body).expect("the body");
        }
        resp
    }

    /// Whether the server closed the connection (EOF or reset on read).
    pub(crate) fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

/// Parses a `multipart/byteranges` body: (first, last, len, data) per part.
pub(crate) fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(u64, u64, u64, Vec<u8>)> {
    let mut parts = Vec::new();
    let mut rest = body;
    let delimiter = format!("--{boundary}");
    let mut first = true;
    loop {
        if !first {
            rest = rest.strip_prefix(b"\r\n").expect("CRLF before a delimiter");
        }
        first = false;
        rest = rest
            .strip_prefix(delimiter.as_bytes())
            .expect("a boundary delimiter");
        if let Some(end) = rest.strip_prefix(b"--") {
            assert_eq!(end, b"\r\n", "nothing after the close delimiter");
            return parts;
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .expect("CRLF after the delimiter");
        let head_end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part headers");
        let head = std::str::from_utf8(&rest[..head_end]).expect("ASCII part headers");
        rest = &rest[head_end + 4..];
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: bytes "))
            .expect("a Content-Range per part");
        let (span, len) = range.split_once('/').unwrap();
        let (a, b) = span.split_once('-').unwrap();
        let (a, b, len): (u64, u64, u64) =
            (a.parse().unwrap(), b.parse().unwrap(), len.parse().unwrap());
        let n = (b - a + 1) as usize;
        parts.push((a, b, len, rest[..n].to_vec()));
        rest = &rest[n..];
    }
}

fn boundary_of(resp: &Resp) -> String {
    resp.header("content-type")
        .and_then(|v| v.strip_prefix("multipart/byteranges; boundary="))
        .expect("a multipart content type")
        .to_string()
}

// ---------------------------------------------------------------------------
// Unit tests of the pure parts

#[test]
fn parses_request_heads() {
    let raw =
        b"GET /v1/streams/a.mp4?token=x&y=1 HTTP/1.1\r\nHost: h\r\nRange:  bytes=0-1 \r\n\r\nGET";
    let (head, used) = RequestHead::parse(raw).unwrap().unwrap();
    assert_eq!(used, raw.len() - 3);
    assert_eq!(head.method, "GET");
    assert_eq!(head.path, "/v1/streams/a.mp4");
    assert_eq!(head.query.as_deref(), Some("token=x&y=1"));
    assert_eq!(head.minor_version, 1);
    assert_eq!(head.header("RANGE"), Some("bytes=0-1"));
    assert_eq!(
        RequestHead::parse(b"GET / HTTP/1.1\r\nHost: h\r\n").unwrap(),
        None
    );
    assert_eq!(
        RequestHead::parse(b"\x01\x02 nonsense\r\n\r\n"),
        Err(HeadError::Malformed)
    );
    assert_eq!(
        RequestHead::parse(b"GET nopath HTTP/1.1\r\n\r\n"),
        Err(HeadError::Malformed)
    );
    let (abs, _) = RequestHead::parse(b"GET http://node:80/v1/streams/x?q HTTP/1.0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        (abs.path.as_str(), abs.query.as_deref()),
        ("/v1/streams/x", Some("q"))
    );
    assert!(!abs.wants_keep_alive());
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    assert_eq!(
        RequestHead::parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
        Err(HeadError::TooLarge)
    );
    assert_eq!(
        RequestHead::parse(&vec![b'a'; MAX_HEAD]),
        Err(HeadError::TooLarge)
    );
    let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(
        RequestHead::parse(long.as_bytes()),
        Err(HeadError::TooLarge)
    );
}

#[test]
fn content_types() {
    for (name, ct) in [
        ("a.mp4", "video/mp4"),
        ("a.M4S", "video/mp4"),
        ("a.m4v", "video/mp4"),
        ("a.m4a", "audio/mp4"),
        ("seg12.ts", "video/mp2t"),
        ("index.m3u8", "application/vnd.apple.mpegurl"),
        ("manifest.mpd", "application/dash+xml"),
        ("a.webm", "video/webm"),
        ("a.mkv", "video/x-matroska"),
        ("a.mp3", "audio/mpeg"),
        ("a.aac", "audio/aac"),
        ("subs.vtt", "text/vtt"),
        ("poster.jpg", "image/jpeg"),
        ("poster.png", "image/png"),
        ("README", "application/octet-stream"),
        ("dir.mp4/file", "application/octet-stream"),
    ] {
        assert_eq!(content_type_for(name), ct, "{name}");
    }
}

#[test]
fn entity_tags() {
    let ours = "\"abc\"";
    assert!(etags_match("*", ours, true));
    assert!(etags_match("\"x\", \"abc\"", ours, true));
    assert!(etags_match("W/\"abc\"", ours, false));
    assert!(!etags_match("W/\"abc\"", ours, true));
    assert!(!etags_match("\"abcd\"", ours, false));
    assert!(!etags_match("abc", ours, false));
    assert!(etags_match("\"abc\"", "W/\"abc\"", false));
    assert!(!etags_match("\"abc\"", "W/\"abc\"", true));
    assert_eq!(quote_etag("v1"), "\"v1\"");
    assert_eq!(quote_etag("W/\"v1\""), "W/\"v1\"");
    assert_eq!(quote_etag("\"a\"b\""), "\"ab\"");
}

// ---------------------------------------------------------------------------
// Ranges against the file's bytes

struct RangeFixture {
    server: TestServer,
    data: Vec<u8>,
    etag: String,
    last_modified: String,
}

fn range_fixture() -> &'static RangeFixture {
    static F: OnceLock<RangeFixture> = OnceLock::new();
    F.get_or_init(|| {
        let server = TestServer::start(StreamConfig::default());
        let data = server.file("movie.mp4", 300_017, 42);
        let head = server
            .client()
            .request("HEAD", "/v1/streams/movie.mp4", &[]);
        assert_eq!(head.status, 200);
        RangeFixture {
            etag: head.header("etag").unwrap().to_string(),
            last_modified: head.header("last-modified").unwrap().to_string(),
            server,
            data,
        }
    })
}

#[derive(Clone, Debug)]
enum Spec {
    FromTo(u64, u64),
    From(u64),
    Suffix(u64),
}

#[derive(Clone, Debug)]
enum IfRange {
    None,
    Etag,
    Date,
    OtherEtag,
    WeakEtag,
    OtherDate,
}

fn position(len: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0..len,
        2 => len - 5..len + 5,
        1 => len..u64::MAX / 2,
    ]
}

fn spec(len: u64) -> impl Strategy<Value = Spec> {
    prop_oneof![
        4 => (position(len), position(len)).prop_map(|(a, b)| Spec::FromTo(a.min(b), a.max(b))),
        1 => (position(len), position(len)).prop_map(|(a, b)| Spec::FromTo(a, b)),
        2 => position(len).prop_map(Spec::From),
        2 => prop_oneof![0..100u64, position(len)].prop_map(Spec::Suffix),
    ]
}

/// Short ranges that rarely overlap: multipart answers.
fn short_span(len: u64) -> impl Strategy<Value = Spec> {
    (0..len, 0..3000u64).prop_map(|(a, k)| Spec::FromTo(a, a + k))
}

/// Ranges that lie wholly past the end (or an empty suffix).
fn out_of_bounds(len: u64) -> impl Strategy<Value = Spec> {
    prop_oneof![
        (len..len + 10, 0..10u64).prop_map(|(a, k)| Spec::FromTo(a, a + k)),
        (len..u64::MAX / 2).prop_map(Spec::From),
        Just(Spec::Suffix(0)),
    ]
}

fn range_sets(len: u64) -> impl Strategy<Value = Vec<Spec>> {
    prop_oneof![
        4 => prop::collection::vec(spec(len), 1..=5),
        3 => prop::collection::vec(short_span(len), 2..=5),
        1 => prop::collection::vec(out_of_bounds(len), 1..=3),
    ]
}

fn union(mut v: Vec<Range<u64>>) -> Vec<Range<u64>> {
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn check_ranges(specs: &[Spec], if_range: &IfRange) -> Result<(), TestCaseError> {
    let f = range_fixture();
    let len = f.data.len() as u64;
    let header = format!(
        "bytes={}",
        specs
            .iter()
            .map(|s| match s {
                Spec::FromTo(a, b) => format!("{a}-{b}"),
                Spec::From(a) => format!("{a}-"),
                Spec::Suffix(n) => format!("-{n}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let other_date = httpdate::fmt_http_date(
        httpdate::parse_http_date(&f.last_modified).unwrap() - Duration::from_secs(1),
    );
    let weak = format!("W/{}", f.etag);
    let if_range_value = match if_range {
        IfRange::None => None,
        IfRange::Etag => Some(f.etag.as_str()),
        IfRange::Date => Some(f.last_modified.as_str()),
        IfRange::OtherEtag => Some("\"something-else\""),
        IfRange::WeakEtag => Some(weak.as_str()),
        IfRange::OtherDate => Some(other_date.as_str()),
    };
    let mut extra = vec![("Range", header.as_str()), ("Connection", "close")];
    if let Some(v) = if_range_value {
        extra.push(("If-Range", v));
    }
    let mut client = f.server.client();
    let mut req = "GET /v1/streams/movie.mp4 HTTP/1.1\r\nHost: t\r\n".to_string();
    for (n, v) in &extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    client.send(req.as_bytes());
    let (status, headers) = client.read_head();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    // Read to the end: the body must be exactly Content-Length bytes.
    client.r.read_to_end(&mut resp.body).unwrap();
    prop_assert_eq!(Some(resp.body.len() as u64), resp.content_length());
    prop_assert_eq!(resp.header("etag"), Some(f.etag.as_str()));

    let if_range_holds = matches!(if_range, IfRange::None | IfRange::Etag | IfRange::Date);
    let malformed = specs
        .iter()
        .any(|s| matches!(s, Spec::FromTo(a, b) if b < a));
    if !if_range_holds || malformed {
        prop_assert_eq!(resp.status, 200);
        prop_assert!(resp.body == f.data, "whole body differs");
        return Ok(());
    }
    let satisfiable: Vec<Range<u64>> = specs
        .iter()
        .filter_map(|s| match *s {
            Spec::FromTo(a, b) if a < len => Some(a..b.min(len - 1) + 1),
            Spec::From(a) if a < len => Some(a..len),
            Spec::Suffix(n) if n > 0 => Some(len - n.min(len)..len),
            _ => None,
        })
        .collect();
    if satisfiable.is_empty() {
        prop_assert_eq!(resp.status, 416);
        let expected = format!("bytes */{len}");
        prop_assert_eq!(resp.header("content-range"), Some(expected.as_str()));
        return Ok(());
    }
    prop_assert_eq!(resp.status, 206);
    let parts: Vec<(u64, u64, u64, Vec<u8>)> = if resp
        .header("content-type")
        .is_some_and(|v| v.starts_with("multipart/byteranges"))
    {
        parse_multipart(&resp.body, &boundary_of(&resp))
    } else {
        prop_assert_eq!(resp.header("content-type"), Some("video/mp4"));
        let cr = resp.header("content-range").expect("Content-Range");
        let (span, total) = cr.strip_prefix("bytes ").unwrap().split_once('/').unwrap();
        let (a, b) = span.split_once('-').unwrap();
        vec![(
            a.parse().unwrap(),
            b.parse().unwrap(),
            total.parse().unwrap(),
            resp.body.clone(),
        )]
    };
    prop_assert!(!parts.is_empty() && parts.len() <= satisfiable.len());
    let mut got = Vec::new();
    for (a, b, total, bytes) in &parts {
        prop_assert_eq!(*total, len);
        prop_assert!(a <= b && *b < len);
        prop_assert!(
            bytes[..] == f.data[*a as usize..=*b as usize],
            "part {}-{} differs",
            a,
            b
        );
        got.push(*a..*b + 1);
    }
    // Parts are disjoint and not adjacent (coalesced), and cover exactly
    // what was asked.
    let merged = union(got.clone());
    prop_assert_eq!(merged.len(), got.len());
    prop_assert_eq!(merged, union(satisfiable));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn served_ranges_equal_the_files_bytes(
        specs in range_sets(300_017),
        if_range in prop_oneof![
            4 => Just(IfRange::None),
            2 => Just(IfRange::Etag),
            1 => Just(IfRange::Date),
            1 => Just(IfRange::OtherEtag),
            1 => Just(IfRange::WeakEtag),
            1 => Just(IfRange::OtherDate),
        ],
    ) {
        check_ranges(&specs, &if_range)?;
    }
}

// ---------------------------------------------------------------------------
// Requests and responses

#[test]
fn head_has_the_headers_and_no_body() {
    let s = TestServer::start(StreamConfig::default());
    let data = s.file("a.mp4", 5000, 1);
    let mut c = s.client();
    let head = c.request("HEAD", "/v1/streams/a.mp4", &[("Range", "bytes=0-9")]);
    assert_eq!(head.status, 200, "Range is ignored on HEAD");
    assert_eq!(head.content_length(), Some(5000));
    assert_eq!(head.header("content-type"), Some("video/mp4"));
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    assert!(head.header("etag").unwrap().starts_with('"'));
    let lm = head.header("last-modified").unwrap();
    assert!(httpdate::parse_http_date(lm).is_ok(), "{lm}");
    assert!(lm.ends_with(" GMT"));
    assert!(head.header("date").is_some());
    // The next response on the connection starts right away: HEAD sent no body.
    let get = c.get("/v1/streams/a.mp4", &[]);
    assert_eq!(get.status, 200);
    assert_eq!(get.body, data);
    assert_eq!(get.header("etag"), head.header("etag"));
}

#[test]
fn conditional_requests() {
    let s = TestServer::start(StreamConfig::default());
    s.file("a.ts", 1000, 2);
    let mut c = s.client();
    let first = c.get("/v1/streams/a.ts", &[]);
    assert_eq!(first.header("content-type"), Some("video/mp2t"));
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    let weak = format!("W/{etag}");
    let list = format!("\"nope\", {etag}");
    for inm in [etag.as_str(), weak.as_str(), list.as_str(), "*"] {
        let r = c.get("/v1/streams/a.ts", &[("If-None-Match", inm)]);
        assert_eq!(r.status, 304, "{inm}");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert!(r.body.is_empty());
    }
    let r = c.request("HEAD", "/v1/streams/a.ts", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(
        c.get("/v1/streams/a.ts", &[("If-None-Match", "\"nope\"")])
            .status,
        200
    );
    assert_eq!(
        c.get("/v1/streams/a.ts", &[("If-Modified-Since", &lm)])
            .status,
        304
    );
    assert_eq!(
        c.get(
            "/v1/streams/a.ts",
            &[("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]
        )
        .status,
        200
    );
    // If-None-Match wins over If-Modified-Since.
    assert_eq!(
        c.get(
            "/v1/streams/a.ts",
            &[("If-None-Match", "\"nope\""), ("If-Modified-Since", &lm)]
        )
        .status,
        200
    );
    assert_eq!(
        c.get("/v1/streams/a.ts", &[("If-Match", "\"nope\"")])
            .status,
        412
    );
    assert_eq!(
        c.get("/v1/streams/a.ts", &[("If-Match", &etag)]).status,
        200
    );
    assert_eq!(
        c.get(
            "/v1/streams/a.ts",
            &[("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]
        )
        .status,
        412
    );
}

#[test]
fn unsatisfiable_range_is_416() {
    let s = TestServer::start(StreamConfig::default());
    s.file("a.mp4", 1000, 3);
    let mut c = s.client();
    let r = c.get("/v1/streams/a.mp4", &[("Range", "bytes=1000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
    // A malformed Range is ignored.
    let r = c.get("/v1/streams/a.mp4", &[("Range", "bytes=9-1")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1000);
    let r = c.get("/v1/streams/a.mp4", &[("Range", "lines=1-2")]);
    assert_eq!(r.status, 200);
}

#[test]
fn other_methods_get_405_and_the_connection_closes() {
    let s = TestServer::start(StreamConfig::default());
    s.file("a.mp4", 10, 3);
    let mut c = s.client();
    c.send(b"POST /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.read_response(false);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn a_huge_head_gets_431() {
    let s = TestServer::start(StreamConfig::default());
    let mut c = s.client();
    let big = format!(
        "GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "x".repeat(40_000)
    );
    c.send(big.as_bytes());
    let r = c.read_response(false);
    assert_eq!(r.status, 431);
    assert!(c.closed());
}

#[test]
fn garbage_gets_400_and_the_connection_closes() {
    let s = TestServer::start(StreamConfig::default());
    for raw in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n"[..],
        b"GET /v1/streams/a.mp4 HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /v1/streams/a.mp4 HTTP/1.1\r\n Folded: x\r\n\r\n",
        b"GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /v1/streams/a.mp4 HTTP/1.1\r\n\r\n",
    ] {
        let mut c = s.client();
        c.send(raw);
        let r = c.read_response(false);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(c.closed());
    }
}

#[test]
fn refusals_pass_status_message_and_valid_headers() {
    let s = TestServer::start(StreamConfig::default());
    let mut c = s.client();
    let r = c.get("/v1/streams/busy", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.body, b"no capacity\n");
    let r = c.get("/v1/streams/secret", &[]);
    assert_eq!(r.status, 403);
    assert!(r.header("x-reason").is_none() && r.header("injected").is_none());
    let r = c.get("/v1/streams/missing.mp4", &[]);
    assert_eq!(r.status, 404);
    // The connection is still usable after refusals.
    assert_eq!(c.get("/v1/streams/busy", &[]).status, 503);
}

#[test]
fn generated_content_has_ranges_and_its_etag() {
    let s = TestServer::start(StreamConfig::default());
    let mut c = s.client();
    let r = c.get("/v1/streams/playlist.m3u8", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, PLAYLIST);
    assert_eq!(r.header("etag"), Some("\"pl-1\""));
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert!(r.header("last-modified").is_none());
    let r = c.get(
        "/v1/streams/playlist.m3u8",
        &[("If-None-Match", "\"pl-1\"")],
    );
    assert_eq!(r.status, 304);
    let r = c.get("/v1/streams/playlist.m3u8", &[("Range", "bytes=0-6,-8")]);
    assert_eq!(r.status, 206);
    let parts = parse_multipart(&r.body, &boundary_of(&r));
    assert_eq!(parts[0].3, &PLAYLIST[..7]);
    assert_eq!(parts[1].3, &PLAYLIST[PLAYLIST.len() - 8..]);
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let s = TestServer::start(StreamConfig::default());
    let data = s.file("a.mp4", 70_000, 4);
    let mut c = s.client();
    let r1 = c.get("/v1/streams/a.mp4", &[("Range", "bytes=10-19")]);
    assert_eq!(r1.status, 206);
    assert_eq!(r1.header("content-range"), Some("bytes 10-19/70000"));
    assert_eq!(r1.body, &data[10..20]);
    assert!(r1.header("connection").is_none());
    let r2 = c.get("/v1/streams/a.mp4", &[("Connection", "close")]);
    assert_eq!(r2.body, data);
    assert_eq!(r2.header("connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn a_handed_on_address_closes_its_connections_after_the_response_in_hand() {
    // Claim 13: a keep-alive connection accepted on an address this node
    // has handed on must end, so the player reconnects to the new holder.
    let node = Arc::new(super::Closing::default());
    for set_node in [false, true] {
        let listener = Arc::new(super::Closing::within(node.clone()));
        let s = TestServer::start(StreamConfig {
            closing: listener.clone(),
            ..StreamConfig::default()
        });
        let data = s.file("a.mp4", 5000, 6);
        let mut c = s.client();
        let r1 = c.get("/v1/streams/a.mp4", &[]);
        assert_eq!(r1.body, data);
        assert!(r1.header("connection").is_none(), "kept alive at first");
        if set_node {
            node.set(true);
        } else {
            listener.set(true);
        }
        let r2 = c.get("/v1/streams/a.mp4", &[]);
        assert_eq!(r2.body, data, "the request in hand is answered whole");
        assert_eq!(r2.header("connection"), Some("close"));
        assert!(c.closed());
        node.set(false);
    }
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let s = TestServer::start(StreamConfig::default());
    let data = s.file("a.mp4", 3000, 5);
    let mut c = s.client();
    c.send(b"GET /v1/streams/a.mp4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(r.body, data);
    c.send(b"GET /v1/streams/a.mp4 HTTP/1.0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body, data);
    assert!(c.closed());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = TestServer::start(StreamConfig::default());
    let data = s.file("a.mp4", 200_000, 6);
    let mut c = s.client();
    c.send(
        b"GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\nRange: bytes=0-99\r\n\r\n\
          HEAD /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /v1/streams/playlist.m3u8 HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\nRange: bytes=5-9,100-104\r\n\r\n\
          GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let r = c.read_response(false);
    assert_eq!((r.status, &r.body[..]), (206, &data[..100]));
    let r = c.read_response(true);
    assert_eq!((r.status, r.content_length()), (200, Some(200_000)));
    let r = c.read_response(false);
    assert_eq!(r.body, PLAYLIST);
    let r = c.read_response(false);
    let parts = parse_multipart(&r.body, &boundary_of(&r));
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1].3, &data[100..105]);
    let r = c.read_response(false);
    assert_eq!(r.body, data);
    assert!(c.closed());
}

fn zero_copy(offload: bool) {
    let s = TestServer::start(StreamConfig {
        offload_sendfile: offload,
        ..StreamConfig::default()
    });
    let data = s.file("big.mp4", 3 << 20, 7);
    let mut c = s.client();
    let r = c.get("/v1/streams/big.mp4", &[]);
    assert_eq!(r.body, data);
    // The counter moves when sendfile returns, which may be just after the
    // client has the bytes.
    sendfile_bytes_reach(&s.counters, data.len() as u64);
    let snap = s.counters.snapshot();
    assert_eq!(snap.copied_bytes, 0);
    assert_eq!(snap.disks[&7].bytes_sent, data.len() as u64);
    let r = c.get(
        "/v1/streams/big.mp4",
        &[("Range", "bytes=0-9, 1000-1999, -5")],
    );
    assert_eq!(parse_multipart(&r.body, &boundary_of(&r)).len(), 3);
    sendfile_bytes_reach(&s.counters, data.len() as u64 + 10 + 1000 + 5);
    let snap = s.counters.snapshot();
    assert_eq!(snap.copied_bytes, 0);
    assert_eq!(snap.requests, 2);
}

#[test]
fn file_bytes_go_through_sendfile_offloaded() {
    zero_copy(true);
}

#[test]
fn file_bytes_go_through_sendfile_inline() {
    zero_copy(false);
}

#[test]
fn a_client_closing_mid_body_does_not_disturb_another_stream() {
    let s = TestServer::start(StreamConfig::default());
    let data = s.file("big.mp4", 8 << 20, 8);
    let mut steady = s.client();
    steady.send(b"GET /v1/streams/big.mp4 HTTP/1.1\r\nHost: t\r\n\r\n");
    let (status, headers) = steady.read_head();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(n, v)| n == "Content-Length" && v == "8388608"));
    let mut got = vec![0u8; 64 * 1024];
    steady.r.read_exact(&mut got).unwrap();
    {
        let mut quitter = s.client();
        quitter.send(b"GET /v1/streams/big.mp4 HTTP/1.1\r\nHost: t\r\n\r\n");
        quitter.read_head();
        let mut some = vec![0u8; 100_000];
        quitter.r.read_exact(&mut some).unwrap();
        assert_eq!(some, &data[..100_000]);
        eventually(Duration::from_secs(10), "two active streams", || {
            s.counters.snapshot().active_streams == 2
        });
    }
    let mut rest = vec![0u8; data.len() - got.len()];
    steady.r.read_exact(&mut rest).unwrap();
    got.extend_from_slice(&rest);
    assert!(got == data, "the steady stream's bytes differ");
    // The connection is still alive for another request.
    let r = steady.get("/v1/streams/big.mp4", &[("Range", "bytes=-3")]);
    assert_eq!(r.body, &data[data.len() - 3..]);
    eventually(Duration::from_secs(10), "no active stream", || {
        let snap = s.counters.snapshot();
        snap.active_streams == 0 && snap.disks[&7].active_streams == 0
    });
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let s = TestServer::start(StreamConfig {
        send_timeout: Duration::from_millis(300),
        ..StreamConfig::default()
    });
    s.file("big.mp4", 32 << 20, 9);
    let mut c = s.client();
    c.send(b"GET /v1/streams/big.mp4 HTTP/1.1\r\nHost: t\r\n\r\n");
    eventually(Duration::from_secs(10), "an active stream", || {
        s.counters
            .snapshot()
            .disks
            .get(&7)
            .is_some_and(|d| d.active_streams == 1)
    });
    eventually(
        Duration::from_secs(10),
        "the stalled stream to be dropped",
        || s.counters.snapshot().active_streams == 0,
    );
    let mut sink = Vec::new();
    let _ = c.r.read_to_end(&mut sink);
    assert!(sink.len() < 32 << 20, "the body was cut");
}

#[test]
fn idle_and_slow_heads_are_closed() {
    let s = TestServer::start(StreamConfig {
        head_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(300),
        ..StreamConfig::default()
    });
    s.file("a.mp4", 10, 10);
    let started = Instant::now();
    let mut silent = s.client();
    assert!(silent.closed());
    let mut slow = s.client();
    slow.send(b"GET /v1/streams/a.mp4 HTTP/1.1\r\n");
    assert!(slow.closed());
    let mut idle = s.client();
    assert_eq!(idle.get("/v1/streams/a.mp4", &[]).status, 200);
    assert!(idle.closed());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn directories_and_fifos_are_not_found() {
    let s = TestServer::start(StreamConfig::default());
    std::fs::create_dir(s.dir.path().join("folder.mp4")).unwrap();
    nix::unistd::mkfifo(
        &s.dir.path().join("pipe.mp4"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let mut c = s.client();
    assert_eq!(c.get("/v1/streams/folder.mp4", &[]).status, 404);
    // A FIFO with no writer would block an ordinary open forever.
    assert_eq!(c.get("/v1/streams/pipe.mp4", &[]).status, 404);
}
