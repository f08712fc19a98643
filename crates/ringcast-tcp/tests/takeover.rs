//! A connection continued by a socket rebuilt at its coordinates, byte
//! exact, after the socket that served it was dropped without a word: the
//! mechanism of a takeover, on one host's loopback (as root, in a fresh
//! network namespace).

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ringcast_tcp::{coordinates, rebuild, silence, AckWatch, Coordinates, Window};

fn isolated() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: repair mode needs root (CAP_NET_ADMIN)");
        return false;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("a network namespace");
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(up.success());
    true
}

/// Bytes that never repeat within a TCP window: a misplaced byte shows.
fn body(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[test]
fn a_rebuilt_socket_continues_a_response_where_the_players_kernel_expects_it() {
    if !isolated() {
        return;
    }
    let local: SocketAddrV4 = "127.0.0.2:8080".parse().unwrap();
    let listener = TcpListener::bind(local).unwrap();
    // Small buffers, as a player reading at its playback rate keeps them.
    let player = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    player.set_recv_buffer_size(128 << 10).unwrap();
    player
        .connect(&std::net::SocketAddr::V4(local).into())
        .unwrap();
    let mut player: TcpStream = player.into();
    let (server, peer) = listener.accept().unwrap();
    socket2::SockRef::from(&server)
        .set_send_buffer_size(128 << 10)
        .unwrap();
    let peer = match peer {
        std::net::SocketAddr::V4(p) => p,
        other => panic!("{other}"),
    };
    player
        .write_all(b"GET /seg.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut request = [0u8; 64];
    let n = (&server).read(&mut request).unwrap();
    assert!(n > 0);
    let body = body(4 << 20);
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(&body);

    // Where the connection stands at the response's first byte.
    let at = coordinates(&server).unwrap();
    let tsval = ringcast_tcp::tsval(&server).unwrap();
    server.set_nonblocking(true).unwrap();
    let mut written = 0;
    while written < response.len() {
        match (&server).write(&response[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        written < response.len(),
        "the player reads slowly: the response is in flight"
    );
    let mut got = vec![0u8; 100_000];
    player.read_exact(&mut got).unwrap();

    // The serving process dies: its socket goes without a word.
    silence(&server).unwrap();
    drop(server);
    drop(listener);

    // Another socket asks the player where it stands...
    let later = tsval.wrapping_add(1000);
    let placeholder = rebuild(local, peer, &at, later, &Window { send: 65_535 }).unwrap();
    let mut watch = AckWatch::open().unwrap();
    placeholder.probe(response[0]).unwrap();
    let answer = watch
        .next(Instant::now() + Duration::from_secs(2), |s| {
            s.from == peer && s.to == local && s.ack.is_some()
        })
        .unwrap()
        .expect("the player answers the probe");
    placeholder.forget();
    let next = answer.ack.unwrap();
    let offset = next.wrapping_sub(at.send_seq) as usize;
    assert!(
        offset >= got.len() && offset <= written,
        "{offset} of {written}"
    );
    assert_eq!(answer.seq, at.recv_seq, "the player sent nothing more");

    // ...and a socket at exactly that byte sends the rest.
    let shift = at.options.wscale.map_or(0, |(snd, _)| snd);
    let continued = Coordinates {
        send_seq: next,
        recv_seq: answer.seq,
        ..at
    };
    let window = Window {
        send: u32::from(answer.window) << shift,
    };
    let mut rest = rebuild(local, peer, &continued, later, &window)
        .unwrap()
        .live()
        .unwrap();
    rest.set_nonblocking(false).unwrap();
    let tail = response[offset..].to_vec();
    let writer = std::thread::spawn(move || {
        rest.write_all(&tail).unwrap();
    });
    player
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let resumed = Instant::now();
    player.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    eprintln!("the rest arrived in {:?}", resumed.elapsed());
    assert_eq!(got.len(), response.len());
    assert!(got == response, "byte-exact");
}
