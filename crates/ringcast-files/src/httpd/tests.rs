//! The shared listener through real sockets on 127.0.0.1: API routes, the
//! event stream and stream paths on one port, and connections that change
//! from one to the other.

use std::convert::Infallible;
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};

use super::*;
use crate::stream::tests::{
    eventually, parse_multipart, pseudo_random, runtime, sendfile_bytes_reach, Client, TestResolver,
};
use crate::stream::StreamCounters;

fn test_api() -> Router {
    Router::new()
        .route(
            "/v1/cluster",
            get(|| async { Json(serde_json::json!({"cluster": "test", "nodes": 3})) }),
        )
        .route(
            "/v1/events",
            get(|| async {
                let events = stream::iter(0..3)
                    .map(|i| {
                        Ok::<_, Infallible>(Event::default().event("tick").data(format!("e{i}")))
                    })
                    .chain(stream::pending());
                Sse::new(events).keep_alive(KeepAlive::default())
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/v1/play/{name}",
            get(|Path(name): Path<String>| async move {
                Redirect::temporary(&format!("/v1/streams/{name}"))
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such route\n").into_response() })
}

struct Node {
    addr: SocketAddr,
    counters: Arc<StreamCounters>,
    dir: tempfile::TempDir,
}

impl Node {
    fn start(max_connections: usize) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(StreamCounters::new());
        let resolver = Arc::new(TestResolver {
            root: dir.path().to_path_buf(),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let mut config = HttpdConfig::new("/v1/streams/");
        config.limits.max_connections = max_connections;
        let guard = Arc::new(Guard::new(&config.limits));
        let c = counters.clone();
        runtime().spawn(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            serve_with(listener, test_api(), resolver, c, config, guard).await
        });
        Node {
            addr,
            counters,
            dir,
        }
    }

    fn file(&self, name: &str, len: usize, seed: u64) -> Vec<u8> {
        let data = pseudo_random(len, seed);
        std::fs::write(self.dir.path().join(name), &data).unwrap();
        data
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn ureq_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

fn read_all(resp: ureq::Response) -> Vec<u8> {
    let mut v = Vec::new();
    resp.into_reader().read_to_end(&mut v).unwrap();
    v
}

#[test]
fn api_event_stream_and_streams_share_one_listener() {
    let node = Node::start(MAX_CONNECTIONS);
    let data = node.file("a.mp4", 500_000, 11);
    let agent = ureq_agent();

    let cluster: serde_json::Value = agent
        .get(&node.url("/v1/cluster"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(cluster["cluster"], "test");

    // The event stream stays open while streams are served beside it.
    let mut events = Client::connect(node.addr);
    events.send(b"GET /v1/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
    let (status, headers) = events.read_head();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type")
                && v.starts_with("text/event-stream"))
    );
    let mut seen = String::new();
    while !seen.contains("data: e2") {
        let mut line = String::new();
        assert!(
            events.r.read_line(&mut line).unwrap() > 0,
            "the event stream ended"
        );
        seen.push_str(&line);
    }
    assert!(seen.contains("event: tick") && seen.contains("data: e0"));

    // A new connection whose first request is a stream request: zero-copy.
    // (The agent's pooled connection went to the API server.)
    let player = ureq_agent();
    let resp = player.get(&node.url("/v1/streams/a.mp4")).call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("content-type"), Some("video/mp4"));
    assert!(read_all(resp) == data);
    sendfile_bytes_reach(&node.counters, data.len() as u64);

    let resp = player
        .get(&node.url("/v1/streams/a.mp4"))
        .set("Range", "bytes=100-199")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(read_all(resp), &data[100..200]);
    sendfile_bytes_reach(&node.counters, data.len() as u64 + 100);

    let missing = agent.get(&node.url("/nowhere")).call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));

    // The event stream is still alive: hyper sends keep-alive comments.
    drop(events);
}

#[test]
fn one_connection_moves_from_streams_to_the_api_and_back() {
    let node = Node::start(MAX_CONNECTIONS);
    let data = node.file("a.mp4", 300_000, 12);
    let mut c = Client::connect(node.addr);

    let r = c.get("/v1/streams/a.mp4", &[]);
    assert_eq!(r.body, data);
    let etag = r.header("etag").unwrap().to_string();
    sendfile_bytes_reach(&node.counters, data.len() as u64);

    // Handed over to the API server, with the head replayed.
    let r = c.get("/v1/cluster", &[]);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("\"nodes\":3"));

    // A stream request on the API connection is still served, by copying.
    let r = c.get("/v1/streams/a.mp4", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.body == data);
    let snap = node.counters.snapshot();
    assert_eq!(snap.copied_bytes, data.len() as u64);
    assert_eq!(snap.sendfile_bytes, data.len() as u64);

    let r = c.request("HEAD", "/v1/streams/a.mp4", &[]);
    assert_eq!((r.status, r.content_length()), (200, Some(300_000)));
    let r = c.get("/v1/streams/a.mp4", &[("Range", "bytes=0-9,-10")]);
    assert_eq!(r.status, 206);
    let boundary = r
        .header("content-type")
        .unwrap()
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap()
        .to_string();
    let parts = parse_multipart(&r.body, &boundary);
    assert_eq!(parts[0].3, &data[..10]);
    assert_eq!(parts[1].3, &data[data.len() - 10..]);
    let r = c.get("/v1/streams/a.mp4", &[("Range", "bytes=999999-")]);
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */300000"))
    );
    let r = c.get("/v1/streams/a.mp4", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    let r = c.get("/v1/streams/busy", &[]);
    assert_eq!((r.status, r.header("retry-after")), (503, Some("2")));
    let r = c.get("/v1/streams/playlist.m3u8", &[]);
    assert_eq!(r.body, crate::stream::tests::PLAYLIST);
    eventually(Duration::from_secs(10), "no active stream", || {
        node.counters.snapshot().active_streams == 0
    });
}

#[test]
fn a_redirect_to_the_same_node_on_a_reused_connection_is_served() {
    let node = Node::start(MAX_CONNECTIONS);
    let data = node.file("title.mp4", 200_000, 13);
    let agent = ureq_agent();
    let resp = agent.get(&node.url("/v1/play/title.mp4")).call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.get_url(), node.url("/v1/streams/title.mp4"));
    assert!(read_all(resp) == data);
}

#[test]
fn request_bodies_reach_the_api_after_the_handover() {
    let node = Node::start(MAX_CONNECTIONS);
    let mut c = Client::connect(node.addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    let r = c.read_response(false);
    assert_eq!((r.status, &r.body[..]), (200, &b"hello world"[..]));
    let r = c.get("/v1/cluster", &[]);
    assert_eq!(r.status, 200);
    let agent = ureq_agent();
    let echoed = agent
        .post(&node.url("/echo"))
        .send_string(&"x".repeat(100_000))
        .unwrap();
    assert_eq!(echoed.into_string().unwrap().len(), 100_000);
}

#[test]
fn connections_over_the_limit_are_closed_at_once() {
    let node = Node::start(2);
    let data = node.file("a.mp4", 1000, 14);
    let mut first = Client::connect(node.addr);
    let mut second = Client::connect(node.addr);
    first.send(b"GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\n");
    second.send(b"GET /v1/cluster HTTP/1.1\r\nHost: t\r\n");
    let mut third = Client::connect(node.addr);
    assert!(third.closed(), "a third connection is refused");
    first.send(b"Connection: close\r\n\r\n");
    second.send(b"Connection: close\r\n\r\n");
    assert_eq!(first.read_response(false).body, data);
    assert_eq!(second.read_response(false).status, 200);
    assert!(first.closed() && second.closed());
    // Once they are gone, new connections are served again.
    eventually(Duration::from_secs(10), "a served connection", || {
        let mut c = Client::connect(node.addr);
        c.send(b"GET /v1/streams/a.mp4 HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut line = String::new();
        matches!(c.r.read_line(&mut line), Ok(n) if n > 0)
    });
}

#[test]
fn garbage_on_the_shared_listener_gets_400() {
    let node = Node::start(MAX_CONNECTIONS);
    let mut c = Client::connect(node.addr);
    c.send(b"\x00\x01\x02\x03\r\n\r\n");
    assert_eq!(c.read_response(false).status, 400);
    assert!(c.closed());
}

#[test]
fn rewind_replays_its_prefix_first() {
    runtime().block_on(async {
        use tokio::io::AsyncReadExt;
        let inner: &[u8] = b" world";
        let mut r = Rewind::new(b"hello".to_vec(), inner);
        let mut small = [0u8; 3];
        r.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hel");
        let mut rest = String::new();
        r.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
        let (inner, left) = Rewind::new(b"abc".to_vec(), inner).into_inner();
        assert_eq!((inner, &left[..]), (&b" world"[..], &b"abc"[..]));
    });
}

/// A TLS server's settings for a fresh self-signed certificate of
/// 127.0.0.1, and a client that trusts it alone.
fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

#[test]
fn over_tls_the_api_and_whole_and_partial_files_are_served_byte_exact() {
    let (server_tls, client_tls) = tls_pair();
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(3 << 20, 11);
    std::fs::write(dir.path().join("a.mp4"), &data).unwrap();
    let resolver = Arc::new(TestResolver {
        root: dir.path().to_path_buf(),
    });
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let mut config = HttpdConfig::new("/v1/streams/");
    config.tls = Some(server_tls);
    let guard = Arc::new(Guard::new(&config.limits));
    let counters = Arc::new(StreamCounters::new());
    runtime().spawn(async move {
        let listener = TcpListener::from_std(std_listener).unwrap();
        serve_with(listener, test_api(), resolver, counters, config, guard).await
    });
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .tls_config(client_tls)
        .build();
    let base = format!("https://{addr}");
    let cluster: serde_json::Value = agent
        .get(&format!("{base}/v1/cluster"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(cluster["nodes"], 3);
    // The same connection (kept alive) serves the file, then a range of it.
    let whole = read_all(
        agent
            .get(&format!("{base}/v1/streams/a.mp4"))
            .call()
            .unwrap(),
    );
    assert_eq!(whole, data, "the whole file over TLS");
    let part = agent
        .get(&format!("{base}/v1/streams/a.mp4"))
        .set("Range", "bytes=1000000-1000999")
        .call()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(read_all(part), &data[1_000_000..1_001_000]);
    // Plain HTTP on the TLS port gets no answer.
    assert!(ureq_agent()
        .get(&format!("http://{addr}/v1/cluster"))
        .call()
        .is_err());
}
