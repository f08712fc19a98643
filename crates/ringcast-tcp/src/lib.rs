//! Claim 13 on the wire, for the one connection a player has open when the
//! process serving it dies: another host takes the connection over.
//!
//! A TCP connection is state in the kernel of the host whose process owns
//! it: sequence numbers, timestamps, negotiated options. When the process
//! dies its host stops speaking for the connection (the service address
//! left with the process, see `ringcast-node`'s address planes), and the
//! player's kernel still holds its half. If another host knows where the
//! connection stood, it can build a socket at the same coordinates (Linux
//! `TCP_REPAIR`, the mechanism CRIU uses to move live connections) and go on
//! sending where the player's kernel expects the next byte. The player sees
//! a pause, never an error: no reconnect, no lost tail of a segment.
//!
//! This crate holds only the socket work, Linux only:
//! - [`Coordinates`]: where a connection stands, read from a live socket
//!   ([`coordinates`]) and carried to the host that may take it over;
//! - [`rebuild`]: a socket in repair mode at given coordinates, and
//!   [`Rebuilt`]'s ways out of repair mode;
//! - [`AckWatch`]: the player's acknowledgements as they arrive, which say
//!   exactly which byte it expects next.
//!
//! Everything here needs `CAP_NET_ADMIN` (repair mode) or `CAP_NET_RAW`
//! (the watch), and IPv4.

mod sockopt;
mod watch;

pub use watch::{AckWatch, Segment};

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use sockopt::{get_i32, get_tcp_info, set_bytes, set_i32};

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const REPAIR_ON: i32 = 1;
const REPAIR_OFF: i32 = 0;
const NO_QUEUE: i32 = 0;
const RECV_QUEUE: i32 = 1;
const SEND_QUEUE: i32 = 2;
const TCPOPT_MSS: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;

/// What the two ends of a connection agreed on at its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// The largest segment this end sends.
    pub mss: u32,
    /// Window scaling, if negotiated: the peer's shift, then this end's.
    pub wscale: Option<(u8, u8)>,
    /// Selective acknowledgements.
    pub sack: bool,
    /// Timestamps (RFC 7323).
    pub timestamps: bool,
}

/// Where a connection stands at one moment, from this end: all a host
/// needs to build a socket that continues it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coordinates {
    /// The sequence number of the next byte this end writes.
    pub send_seq: u32,
    /// The sequence number of the next byte this end expects from the peer.
    pub recv_seq: u32,
    /// This end's timestamp clock (the TSval it sends now), if timestamps
    /// are on; a continuing socket must never send an older one (PAWS).
    pub tsval: u32,
    /// The handshake's options.
    pub options: Options,
}

impl Coordinates {
    /// The same connection `sent` bytes later and `received` bytes later.
    pub fn advanced(self, sent: u64, received: u64) -> Coordinates {
        Coordinates {
            send_seq: self.send_seq.wrapping_add(sent as u32),
            recv_seq: self.recv_seq.wrapping_add(received as u32),
            ..self
        }
    }
}

/// What `TCP_INFO` says of a live connection that a takeover needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// The handshake's options.
    pub options: Options,
    /// Every byte received from the peer so far.
    pub bytes_received: u64,
}

/// Reads `TCP_INFO` of a connected socket.
pub fn info(sock: &impl AsFd) -> io::Result<Info> {
    let i = get_tcp_info(sock)?;
    Ok(Info {
        options: Options {
            mss: i.snd_mss,
            wscale: (i.options & TCPI_OPT_WSCALE != 0).then_some((i.snd_wscale, i.rcv_wscale)),
            sack: i.options & TCPI_OPT_SACK != 0,
            timestamps: i.options & TCPI_OPT_TIMESTAMPS != 0,
        },
        bytes_received: i.bytes_received,
    })
}

/// This end's timestamp clock now (`TCP_TIMESTAMP`).
pub fn tsval(sock: &impl AsFd) -> io::Result<u32> {
    Ok(get_i32(sock, libc::IPPROTO_TCP, TCP_TIMESTAMP)? as u32)
}

/// Where a live connection stands. It puts the socket in repair mode for
/// the two reads of its sequence numbers and takes it out again (which
/// sends the peer one window probe), so call it when nothing waits in the
/// send queue: before the first response on a connection. Needs
/// `CAP_NET_ADMIN`; without it the error is `PermissionDenied`.
pub fn coordinates(sock: &impl AsFd) -> io::Result<Coordinates> {
    let options = info(sock)?.options;
    let tsval = tsval(sock)?;
    set_i32(sock, libc::IPPROTO_TCP, TCP_REPAIR, REPAIR_ON)?;
    let seqs = (|| {
        set_i32(sock, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, SEND_QUEUE)?;
        let send_seq = get_i32(sock, libc::IPPROTO_TCP, TCP_QUEUE_SEQ)? as u32;
        set_i32(sock, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, RECV_QUEUE)?;
        let recv_seq = get_i32(sock, libc::IPPROTO_TCP, TCP_QUEUE_SEQ)? as u32;
        set_i32(sock, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, NO_QUEUE)?;
        Ok::<_, io::Error>((send_seq, recv_seq))
    })();
    let off = set_i32(sock, libc::IPPROTO_TCP, TCP_REPAIR, REPAIR_OFF);
    let (send_seq, recv_seq) = seqs?;
    off?;
    Ok(Coordinates {
        send_seq,
        recv_seq,
        tsval,
        options,
    })
}

/// Puts a live socket in repair mode for good, so that closing it sends
/// the peer nothing (neither FIN nor reset): the connection is left to the
/// host that takes it over.
pub fn silence(sock: &impl AsFd) -> io::Result<()> {
    set_i32(sock, libc::IPPROTO_TCP, TCP_REPAIR, REPAIR_ON)
}

/// The window a rebuilt socket starts with, before the peer says its own.
pub struct Window {
    /// The peer's receive window in bytes (already scaled).
    pub send: u32,
}

/// A socket rebuilt in repair mode: connected, sending nothing yet.
#[derive(Debug)]
pub struct Rebuilt {
    socket: Socket,
}

/// Builds a socket for the connection `local` ↔ `peer` at `at`, in repair
/// mode: no handshake is sent, and the socket is established as soon as it
/// is built. `tsval` is the timestamp it sends (never older than the one
/// the dead end sent last); `window` the peer's window to start with.
///
/// `local` need not be an address of this host yet (`IP_TRANSPARENT`), so
/// the socket can exist before the address arrives and the peer's next
/// segment finds it instead of a reset.
pub fn rebuild(
    local: SocketAddrV4,
    peer: SocketAddrV4,
    at: &Coordinates,
    tsval: u32,
    window: &Window,
) -> io::Result<Rebuilt> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_ip_transparent(true)?;
    // Repair mode lets the socket share its address with the listener
    // there (no SO_REUSEADDR after it: that would take the right back).
    set_i32(&socket, libc::IPPROTO_TCP, TCP_REPAIR, REPAIR_ON)?;
    socket.bind(&SockAddr::from(local))?;
    set_i32(&socket, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, SEND_QUEUE)?;
    set_i32(
        &socket,
        libc::IPPROTO_TCP,
        TCP_QUEUE_SEQ,
        at.send_seq as i32,
    )?;
    set_i32(&socket, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, RECV_QUEUE)?;
    set_i32(
        &socket,
        libc::IPPROTO_TCP,
        TCP_QUEUE_SEQ,
        at.recv_seq as i32,
    )?;
    set_i32(&socket, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, NO_QUEUE)?;
    socket.connect(&SockAddr::from(peer))?;
    let o = &at.options;
    let mut opts: Vec<(u32, u32)> = vec![(TCPOPT_MSS, o.mss)];
    if let Some((snd, rcv)) = o.wscale {
        opts.push((TCPOPT_WINDOW, u32::from(snd) | (u32::from(rcv) << 16)));
    }
    if o.sack {
        opts.push((TCPOPT_SACK_PERM, 0));
    }
    if o.timestamps {
        opts.push((TCPOPT_TIMESTAMP, 0));
    }
    let bytes: Vec<u8> = opts
        .iter()
        .flat_map(|(code, val)| code.to_ne_bytes().into_iter().chain(val.to_ne_bytes()))
        .collect();
    set_bytes(&socket, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &bytes)?;
    if o.timestamps {
        set_i32(&socket, libc::IPPROTO_TCP, TCP_TIMESTAMP, tsval as i32)?;
    }
    // struct tcp_repair_window: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup.
    let rcv_wnd: u32 = 65_535;
    let window = [at.recv_seq, window.send, window.send, rcv_wnd, at.recv_seq];
    let bytes: Vec<u8> = window.iter().flat_map(|v| v.to_ne_bytes()).collect();
    set_bytes(&socket, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &bytes)?;
    Ok(Rebuilt { socket })
}

impl Rebuilt {
    /// Leaves repair mode: the socket speaks for the connection from now
    /// on (its first word is a window probe), as a connected, non-blocking
    /// TCP socket.
    pub fn live(self) -> io::Result<std::net::TcpStream> {
        set_i32(&self.socket, libc::IPPROTO_TCP, TCP_REPAIR, REPAIR_OFF)?;
        self.socket.set_nonblocking(true)?;
        Ok(self.socket.into())
    }

    /// Asks the peer where it stands: leaves repair mode, sends `byte` (the
    /// true byte at this socket's send sequence number) and goes back into
    /// repair mode. A byte the peer already has is a duplicate, which TCP
    /// answers at once with an acknowledgement naming the next byte it
    /// expects (a duplicate pure ACK would be rate-limited); a byte it
    /// lacks is simply the next byte. [`AckWatch`] sees the answer.
    pub fn probe(&self, byte: u8) -> io::Result<()> {
        set_i32(&self.socket, libc::IPPROTO_TCP, TCP_REPAIR, REPAIR_OFF)?;
        self.socket.set_nonblocking(true)?;
        let sent = self.socket.send(&[byte]);
        set_i32(&self.socket, libc::IPPROTO_TCP, TCP_REPAIR, REPAIR_ON)?;
        match sent? {
            1 => Ok(()),
            _ => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    /// Drops the socket without a word to the peer (closed in repair mode,
    /// it sends neither FIN nor reset).
    pub fn forget(self) {
        drop(self.socket);
    }

    /// Ends the connection for the peer at once: a reset at the right
    /// sequence number, which the peer accepts, so a player that cannot be
    /// continued retries now instead of waiting on a silent connection.
    pub fn reset(self) -> io::Result<()> {
        set_i32(&self.socket, libc::IPPROTO_TCP, TCP_REPAIR, REPAIR_OFF)?;
        self.socket.set_linger(Some(std::time::Duration::ZERO))?;
        drop(self.socket);
        Ok(())
    }
}

/// The IPv4 form of a socket address, which is all a takeover handles.
pub fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}
