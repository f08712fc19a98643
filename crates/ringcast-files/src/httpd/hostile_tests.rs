//! The shared listener against hostile clients, over real sockets
//! on loopback. Distinct client addresses are loopback addresses the client
//! socket binds to (127.0.0.2, 127.0.0.3, ...). Each limit is tested on
//! both servers behind the listener: the zero-copy stream server (a
//! connection's first request, and stream requests) and hyper (requests on a
//! connection that was handed to the API).

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use super::*;
use crate::guard::Guard;
use crate::limits::HttpLimits;
use crate::stream::tests::{eventually, pseudo_random, runtime, Client, Resp, TestResolver};
use crate::stream::StreamCounters;

/// A listener with `limits`, serving files from a temporary folder under
/// `/v1/streams/` and a tiny API.
struct Server {
    addr: SocketAddr,
    guard: Arc<Guard>,
    counters: Arc<StreamCounters>,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(limits: HttpLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(StreamCounters::new());
        let resolver = Arc::new(TestResolver {
            root: dir.path().to_path_buf(),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let config = HttpdConfig::with_limits("/v1/streams/", &limits);
        let guard = Arc::new(Guard::new(&limits));
        let (c, g) = (counters.clone(), guard.clone());
        let api = Router::new().route("/v1/cluster", get(|| async { "{\"nodes\":3}" }));
        runtime().spawn(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            serve_with(listener, api, resolver, c, config, g).await
        });
        Server {
            addr,
            guard,
            counters,
            dir,
        }
    }

    fn file(&self, name: &str, len: usize, seed: u64) -> Vec<u8> {
        let data = pseudo_random(len, seed);
        std::fs::write(self.dir.path().join(name), &data).unwrap();
        data
    }

    /// A raw connection from loopback address `from`.
    fn connect_from(&self, from: &str) -> StdTcpStream {
        connect_from(from, self.addr).expect("connect")
    }

    /// A client connection from loopback address `from`.
    fn client_from(&self, from: &str) -> Client {
        let s = self.connect_from(from);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s),
        }
    }

    fn refused(&self, reason: &str) -> u64 {
        self.guard.refusals()[reason]
    }
}

fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<StdTcpStream> {
    let ip: IpAddr = from.parse().expect("a loopback address");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(ip, 0).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(sock.into())
}

/// Reads until the server closes the connection or `limit` passes; returns
/// what was read, and whether it closed.
fn read_until_closed(s: &mut StdTcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// The beginning of a request head that never ends.
const ENDLESS_HEAD: &[u8] = b"GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\nX-Slow: ";

/// A slowloris client: sends `ENDLESS_HEAD` one byte every `interval`
/// (then `x` forever) until the server closes the connection; returns how
/// long after its first byte that happened and how many bytes it sent.
/// `None` if the server had not closed it after `give_up`.
fn trickle(
    mut s: StdTcpStream,
    interval: Duration,
    give_up: Duration,
) -> Option<(Duration, usize)> {
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < give_up {
        let byte = ENDLESS_HEAD.get(sent).copied().unwrap_or(b'x');
        if s.write_all(&[byte]).is_err() {
            return Some((start.elapsed(), sent));
        }
        sent += 1;
        s.set_read_timeout(Some(interval)).unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            // Closed, possibly after a 408 from hyper.
            Ok(0) => return Some((start.elapsed(), sent)),
            Ok(_) => {
                let (_, closed) = read_until_closed(&mut s, give_up);
                return closed.then(|| (start.elapsed(), sent));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some((start.elapsed(), sent)),
        }
    }
    None
}

/// A connection already handed to the API server (hyper): one API request
/// answered on it.
fn api_connection(server: &Server, from: &str) -> Client {
    let mut c = server.client_from(from);
    let r = c.get("/v1/cluster", &[]);
    assert_eq!(r.status, 200);
    c
}

#[test]
fn slow_heads_are_closed_at_the_head_deadline_however_they_trickle() {
    let head_timeout = Duration::from_millis(800);
    let server = Server::start(HttpLimits {
        head_timeout,
        ..HttpLimits::default()
    });
    let interval = Duration::from_millis(50);
    let give_up = head_timeout + Duration::from_secs(5);
    let mut tricklers = Vec::new();
    for i in 0..16 {
        let from = format!("127.0.0.{}", 2 + i % 4);
        // Half trickle a connection's first head (the stream server), half
        // the second head of a connection hyper serves.
        let sock = if i % 2 == 0 {
            server.connect_from(&from)
        } else {
            api_connection(&server, &from).r.into_inner()
        };
        tricklers.push(std::thread::spawn(move || {
            (i % 2, trickle(sock, interval, give_up))
        }));
    }
    for t in tricklers {
        let (kind, result) = t.join().unwrap();
        let (took, sent) = result.unwrap_or_else(|| {
            panic!("a slow head (server {kind}) was still open after {give_up:?}")
        });
        assert!(
            took >= head_timeout - Duration::from_millis(200),
            "closed too early: {took:?} (server {kind})"
        );
        assert!(
            took <= head_timeout + Duration::from_millis(1500),
            "closed {took:?} after the head started, deadline {head_timeout:?} (server {kind})"
        );
        assert!(sent >= 8, "it kept trickling: {sent} bytes (server {kind})");
    }
    // The stream server counts the slow heads it closed (hyper's too, when
    // bytes had arrived).
    eventually(Duration::from_secs(5), "16 head timeouts counted", || {
        server.refused("head_timeout") >= 16
    });
    // And the listener still serves.
    let data = server.file("a.mp4", 1000, 1);
    assert_eq!(
        server
            .client_from("127.0.0.2")
            .get("/v1/streams/a.mp4", &[])
            .body,
        data
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_after_their_timeout_on_both_servers() {
    let (head_timeout, idle_timeout) = (Duration::from_millis(400), Duration::from_millis(900));
    let server = Server::start(HttpLimits {
        head_timeout,
        idle_timeout,
        ..HttpLimits::default()
    });
    let data = server.file("a.mp4", 100, 7);
    let idle_after = |c: &mut Client| {
        let start = Instant::now();
        let (got, closed) = read_until_closed(c.r.get_mut(), Duration::from_secs(5));
        assert!(
            closed && got.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        start.elapsed()
    };
    // The stream server waits `idle_timeout` for the next request.
    let mut c = server.client_from("127.0.0.2");
    assert_eq!(c.get("/v1/streams/a.mp4", &[]).body, data);
    let took = idle_after(&mut c);
    assert!(
        took >= idle_timeout - Duration::from_millis(100)
            && took <= idle_timeout + Duration::from_millis(1500),
        "stream server: closed after {took:?}"
    );
    // hyper's head timeout starts when it waits for a request.
    let mut c = api_connection(&server, "127.0.0.2");
    let took = idle_after(&mut c);
    assert!(
        took >= head_timeout - Duration::from_millis(100)
            && took <= head_timeout + Duration::from_millis(1500),
        "API server: closed after {took:?}"
    );
    // An idle connection is not a slow head.
    assert_eq!(server.refused("head_timeout"), 0);
}

#[test]
fn an_oversized_head_gets_431_from_both_servers() {
    let server = Server::start(HttpLimits {
        max_head: 2048,
        ..HttpLimits::default()
    });
    let data = server.file("a.mp4", 1000, 2);
    let big = "x".repeat(3000);
    let fits = "x".repeat(1500);
    // The stream server: a connection's first head.
    let mut c = server.client_from("127.0.0.2");
    assert_eq!(c.get("/v1/streams/a.mp4", &[("X-Fits", &fits)]).body, data);
    let r = c.get("/v1/streams/a.mp4", &[("X-Big", &big)]);
    assert_eq!(r.status, 431);
    assert!(c.closed());
    // hyper: the second head of an API connection.
    let mut c = api_connection(&server, "127.0.0.2");
    assert_eq!(c.get("/v1/cluster", &[("X-Fits", &fits)]).status, 200);
    let r = c.get("/v1/cluster", &[("X-Big", &big)]);
    assert_eq!(r.status, 431);
    assert!(c.closed());
    // Too many header fields are too large too.
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("X-F{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut c = server.client_from("127.0.0.3");
    assert_eq!(c.get("/v1/streams/a.mp4", &many).status, 431);
    let mut c = api_connection(&server, "127.0.0.3");
    assert_eq!(c.get("/v1/cluster", &many).status, 431);
    eventually(Duration::from_secs(5), "431s counted", || {
        server.refused("head_too_large") == 4
    });
}

/// Sends `n` pipelined GETs of `path` and reads the `n` answers.
fn flood(c: &mut Client, path: &str, n: usize) -> Vec<Resp> {
    let one = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(one.repeat(n).as_bytes());
    (0..n).map(|_| c.read_response(false)).collect()
}

fn count(resps: &[Resp], status: u16) -> usize {
    resps.iter().filter(|r| r.status == status).count()
}

#[test]
fn a_flood_from_one_address_gets_429_with_retry_after_while_others_are_served() {
    let mut limits = HttpLimits::default();
    limits.client_requests.per_second = 10;
    limits.client_requests.burst = 20;
    let server = Server::start(limits);
    let data = server.file("a.mp4", 500, 3);
    // Stream requests, pipelined on one connection.
    let mut flooder = server.client_from("127.0.0.2");
    let answers = flood(&mut flooder, "/v1/streams/a.mp4", 100);
    let (ok, limited) = (count(&answers, 200), count(&answers, 429));
    assert_eq!(ok + limited, 100);
    assert!((20..40).contains(&ok), "{ok} served");
    for r in answers.iter().filter(|r| r.status == 429) {
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
    }
    assert!(answers
        .iter()
        .filter(|r| r.status == 200)
        .all(|r| r.body == data));
    // Another address is served at once, on both servers.
    let mut other = server.client_from("127.0.0.3");
    assert_eq!(other.get("/v1/streams/a.mp4", &[]).body, data);
    assert_eq!(other.get("/v1/cluster", &[]).status, 200);
    // The flooder's API requests (through hyper) share its budget.
    let mut api = server.client_from("127.0.0.2");
    let answers = flood(&mut api, "/v1/cluster", 50);
    assert!(
        count(&answers, 429) >= 40,
        "{} limited",
        count(&answers, 429)
    );
    let r = answers.iter().find(|r| r.status == 429).unwrap();
    assert!(r.header("retry-after").is_some());
    // Once its bucket refills, the flooder is served again on the same
    // connection: a 429 does not close it.
    eventually(Duration::from_secs(5), "the flooder served again", || {
        flooder.get("/v1/streams/a.mp4", &[]).status == 200
    });
    assert!(server.refused("rate_limited") >= limited as u64 + 40);
}

#[test]
fn too_many_connections_from_one_address_are_closed_while_others_connect() {
    let server = Server::start(HttpLimits {
        max_client_connections: 4,
        ..HttpLimits::default()
    });
    let data = server.file("a.mp4", 700, 4);
    // Four connections held open from one address, each mid-head.
    let mut held: Vec<StdTcpStream> = (0..4)
        .map(|_| {
            let mut s = server.connect_from("127.0.0.2");
            s.write_all(b"GET /v1/streams/a.mp4 HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    eventually(Duration::from_secs(5), "four open connections", || {
        server.guard.open_connections() == 4
    });
    // A fifth from the same address is closed at once, unanswered.
    let mut fifth = server.connect_from("127.0.0.2");
    let _ = fifth.write_all(b"GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\n\r\n");
    let (got, closed) = read_until_closed(&mut fifth, Duration::from_secs(5));
    assert!(
        closed && got.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(server.refused("client_connections"), 1);
    // Another address is served meanwhile.
    assert_eq!(
        server
            .client_from("127.0.0.3")
            .get("/v1/streams/a.mp4", &[])
            .body,
        data
    );
    // The held connections still complete their requests.
    for s in &mut held {
        s.write_all(b"Host: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (got, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(closed && got.starts_with(b"HTTP/1.1 200"), "{}", got.len());
    }
    // Once they are gone, the address may connect again.
    eventually(Duration::from_secs(5), "the address served again", || {
        server.guard.open_connections() == 0
    });
    assert_eq!(
        server
            .client_from("127.0.0.2")
            .get("/v1/streams/a.mp4", &[])
            .body,
        data
    );
}

#[test]
fn garbage_gets_400_from_both_servers_and_the_connection_closes() {
    let server = Server::start(HttpLimits::default());
    let garbage: [&[u8]; 3] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /v1/cluster HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
    ];
    for raw in garbage {
        let mut c = server.client_from("127.0.0.2");
        c.send(raw);
        assert_eq!(c.read_response(false).status, 400, "{raw:?}");
        assert!(c.closed());
        let mut c = api_connection(&server, "127.0.0.2");
        c.send(raw);
        assert_eq!(c.read_response(false).status, 400, "via hyper: {raw:?}");
        assert!(c.closed());
    }
    eventually(Duration::from_secs(5), "400s counted", || {
        server.refused("malformed") >= 6
    });
}

/// One hostile client's loop, until `stop`; `tally` counts its rounds.
fn hostile(
    stop: Arc<AtomicBool>,
    tally: Arc<AtomicU64>,
    round: impl Fn() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            round();
            tally.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[test]
fn a_download_in_progress_stays_byte_exact_while_hostile_clients_attack() {
    let mut limits = HttpLimits {
        head_timeout: Duration::from_millis(500),
        max_client_connections: 8,
        ..HttpLimits::default()
    };
    limits.client_requests.per_second = 20;
    limits.client_requests.burst = 20;
    let server = Arc::new(Server::start(limits));
    let movie = server.file("movie.mp4", 24 << 20, 5);
    server.file("small.mp4", 100, 6);
    let addr = server.addr;

    // The download starts, through the zero-copy stream server.
    let mut player = server.client_from("127.0.0.1");
    player.send(b"GET /v1/streams/movie.mp4 HTTP/1.1\r\nHost: t\r\n\r\n");
    let (status, _) = player.read_head();
    assert_eq!(status, 200);
    let mut hash = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    player.r.read_exact(&mut chunk).unwrap();
    hash.update(&chunk);
    let mut received = chunk.len();

    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<AtomicU64>> = (0..6).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut workers = Vec::new();
    // Slowloris from 127.0.0.2: connections trickling heads.
    for _ in 0..4 {
        workers.push(hostile(stop.clone(), tallies[0].clone(), move || {
            if let Ok(s) = connect_from("127.0.0.2", addr) {
                let _ = trickle(s, Duration::from_millis(50), Duration::from_secs(3));
            }
        }));
    }
    // Oversized heads from 127.0.0.3.
    workers.push(hostile(stop.clone(), tallies[1].clone(), move || {
        if let Ok(mut s) = connect_from("127.0.0.3", addr) {
            let head = format!(
                "GET /v1/streams/small.mp4 HTTP/1.1\r\nX: {}\r\n\r\n",
                "y".repeat(40_000)
            );
            let _ = s.write_all(head.as_bytes());
            let _ = read_until_closed(&mut s, Duration::from_secs(3));
        }
    }));
    // A request flood from 127.0.0.4, on both servers.
    workers.push(hostile(stop.clone(), tallies[2].clone(), move || {
        if let Ok(mut s) = connect_from("127.0.0.4", addr) {
            let one = "GET /v1/streams/small.mp4 HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/cluster HTTP/1.1\r\nHost: t\r\n\r\n";
            let _ = s.write_all(one.repeat(50).as_bytes());
            let _ = s.write_all(b"GET /v1/cluster HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let _ = read_until_closed(&mut s, Duration::from_secs(3));
        }
    }));
    // Connections hoarded from 127.0.0.5, beyond its limit.
    workers.push(hostile(stop.clone(), tallies[3].clone(), move || {
        let held: Vec<_> = (0..12)
            .filter_map(|_| connect_from("127.0.0.5", addr).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
    }));
    // Garbage from 127.0.0.6.
    workers.push(hostile(stop.clone(), tallies[4].clone(), move || {
        if let Ok(mut s) = connect_from("127.0.0.6", addr) {
            let _ = s.write_all(b"\x16\x03\x01\x00\xff garbage\r\n\r\n");
            let _ = read_until_closed(&mut s, Duration::from_secs(3));
        }
    }));
    // Clients that close mid-body, from 127.0.0.7.
    workers.push(hostile(stop.clone(), tallies[5].clone(), move || {
        if let Ok(mut s) = connect_from("127.0.0.7", addr) {
            let _ = s.write_all(b"GET /v1/streams/movie.mp4 HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut some = [0u8; 65536];
            let _ = s.read(&mut some);
        }
    }));

    // Every kind of attack has been refused at least once before the
    // download goes on.
    eventually(Duration::from_secs(20), "every attack refused", || {
        let r = server.guard.refusals();
        [
            "rate_limited",
            "client_connections",
            "head_too_large",
            "malformed",
            "head_timeout",
        ]
        .iter()
        .all(|k| r[k] > 0)
            && tallies.iter().all(|t| t.load(Ordering::Relaxed) > 0)
    });
    // The rest of the download, a chunk at a time, while the attacks go on.
    while received < movie.len() {
        let n = chunk.len().min(movie.len() - received);
        player.r.read_exact(&mut chunk[..n]).unwrap();
        hash.update(&chunk[..n]);
        received += n;
    }
    let refusals = server.guard.refusals();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        hash.finalize()[..],
        Sha256::digest(&movie)[..],
        "SHA-256 of the download"
    );
    // The player's connection is still good for another request.
    let r = player.get("/v1/streams/movie.mp4", &[("Range", "bytes=-5")]);
    assert_eq!(r.body, &movie[movie.len() - 5..]);
    eprintln!(
        "refused during the download: {refusals:?}; rounds per attack: {:?}",
        tallies
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    );
    let _ = &server.counters;
}
