//! Records of responses in flight, through a real socket: each file
//! response is told before it is written, with the head the player gets,
//! its file range and where the connection stands; the coordinates of
//! the next response follow from exactly the bytes sent and received.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::tests::TestServer;
use super::*;

#[derive(Default)]
struct Recorder {
    told: Mutex<Vec<InFlight>>,
    unavailable: AtomicUsize,
}

impl Handover for Recorder {
    fn covers(&self, _local: std::net::SocketAddr) -> bool {
        true
    }
    fn started(&self, response: InFlight) {
        self.told.lock().unwrap().push(response);
    }
    fn unavailable(&self, _error: &std::io::Error) {
        self.unavailable.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn each_file_response_is_told_with_its_head_range_and_where_the_connection_stands() {
    let recorder = Arc::new(Recorder::default());
    let server = TestServer::start(StreamConfig {
        handover: Some(HandoverHook(recorder.clone())),
        ..StreamConfig::default()
    });
    let data = server.file("seg.ts", 100_000, 5);
    let mut client = server.client();
    let requests = [
        "GET /v1/streams/seg.ts HTTP/1.1\r\nHost: t\r\nRange: bytes=10-99\r\n\r\n".to_string(),
        "GET /v1/streams/seg.ts HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "GET /v1/streams/playlist.m3u8 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "GET /v1/streams/seg.ts HTTP/1.1\r\nHost: t\r\nRange: bytes=-7\r\n\r\n".to_string(),
    ];
    let mut bodies = Vec::new();
    for r in &requests {
        client.send(r.as_bytes());
        bodies.push(client.read_response(false));
    }
    assert_eq!(bodies[0].body, data[10..100]);
    assert_eq!(bodies[1].body, data);
    let told = recorder.told.lock().unwrap().clone();
    if !nix::unistd::geteuid().is_root() {
        // Without CAP_NET_ADMIN the coordinates cannot be read: said once,
        // and the responses go untold.
        assert!(told.is_empty());
        assert_eq!(recorder.unavailable.load(Ordering::SeqCst), 1);
        return;
    }
    assert_eq!(recorder.unavailable.load(Ordering::SeqCst), 0);
    // Three file responses; the generated playlist is not recorded.
    assert_eq!(told.len(), 3, "{told:?}");
    let (first, second, last) = (&told[0], &told[1], &told[2]);
    assert_eq!(first.body, 10..100);
    assert_eq!(second.body, 0..100_000);
    assert_eq!(last.body, 99_993..100_000);
    assert!(first.head.starts_with("HTTP/1.1 206 "), "{}", first.head);
    assert!(first.head.contains("Content-Range: bytes 10-99/100000\r\n"));
    assert!(first.head.ends_with("\r\n\r\n"));
    assert!(told.iter().all(|t| t.keep_alive && t.disk == 7));
    assert!(told.iter().all(|t| t.path.ends_with("seg.ts")));
    // The next response starts exactly where the last one's bytes end, and
    // the player's side advances by exactly its requests.
    let sent = |t: &InFlight| t.at.send_seq;
    assert_eq!(sent(second).wrapping_sub(sent(first)) as u64, first.len());
    let playlist_len = {
        let p = &bodies[2];
        let head: usize = p
            .headers
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum::<usize>()
            + "HTTP/1.1 200 OK\r\n".len()
            + 2;
        (head + p.body.len()) as u64
    };
    assert_eq!(
        sent(last).wrapping_sub(sent(second)) as u64,
        second.len() + playlist_len
    );
    let received = |t: &InFlight| t.at.recv_seq;
    assert_eq!(
        received(second).wrapping_sub(received(first)) as usize,
        requests[1].len()
    );
    assert_eq!(
        received(last).wrapping_sub(received(second)) as usize,
        requests[2].len() + requests[3].len()
    );
    let local = server.addr;
    assert!(told
        .iter()
        .all(|t| std::net::SocketAddr::V4(t.local) == local));
}
