//! The peer's acknowledgements, seen on a raw socket: a copy of every TCP
//! segment this host receives, of which a takeover keeps those of the
//! connections it rebuilds.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

const ACK: u8 = 0x10;
const RST: u8 = 0x04;

/// One TCP segment as the watch saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Who sent it.
    pub from: SocketAddrV4,
    /// Whom it is for.
    pub to: SocketAddrV4,
    /// Its sequence number: the next byte its sender writes.
    pub seq: u32,
    /// Its acknowledgement number, if it carries one: the next byte its
    /// sender expects.
    pub ack: Option<u32>,
    /// The window it advertises, unscaled.
    pub window: u16,
    /// Whether it resets the connection.
    pub reset: bool,
}

impl Segment {
    /// Parses an IPv4 datagram carrying TCP; `None` for anything else or
    /// anything cut short.
    pub fn parse(packet: &[u8]) -> Option<Segment> {
        let first = *packet.first()?;
        if first >> 4 != 4 || packet.get(9) != Some(&6) {
            return None;
        }
        let ihl = usize::from(first & 0x0f) * 4;
        if ihl < 20 {
            return None;
        }
        let tcp = packet.get(ihl..ihl + 20)?;
        let ip =
            |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
        let u16_at = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
        let u32_at =
            |at: usize| u32::from_be_bytes([tcp[at], tcp[at + 1], tcp[at + 2], tcp[at + 3]]);
        let flags = tcp[13];
        Some(Segment {
            from: SocketAddrV4::new(ip(12), u16_at(0)),
            to: SocketAddrV4::new(ip(16), u16_at(2)),
            seq: u32_at(4),
            ack: (flags & ACK != 0).then(|| u32_at(8)),
            window: u16_at(14),
            reset: flags & RST != 0,
        })
    }
}

/// A raw socket that sees every TCP segment this host receives. Open it
/// for the moment of a takeover only: it copies all of the host's TCP.
#[derive(Debug)]
pub struct AckWatch {
    socket: Socket,
}

impl AckWatch {
    /// Opens the watch (needs `CAP_NET_RAW`).
    pub fn open() -> io::Result<AckWatch> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))?;
        Ok(AckWatch { socket })
    }

    /// The next segment for which `keep` holds, waiting until `deadline`.
    pub fn next(
        &mut self,
        deadline: Instant,
        mut keep: impl FnMut(&Segment) -> bool,
    ) -> io::Result<Option<Segment>> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.socket.read(&mut buf) {
                Ok(n) => {
                    if let Some(s) = Segment::parse(&buf[..n]) {
                        if keep(&s) {
                            return Ok(Some(s));
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&5000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..28].copy_from_slice(&7u32.to_be_bytes());
        p[28..32].copy_from_slice(&9u32.to_be_bytes());
        p[33] = flags;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p
    }

    #[test]
    fn a_segment_is_read_from_its_ipv4_and_tcp_headers() {
        let s = Segment::parse(&packet(ACK)).unwrap();
        assert_eq!(s.from, "10.0.0.1:5000".parse().unwrap());
        assert_eq!(s.to, "10.0.0.2:80".parse().unwrap());
        assert_eq!((s.seq, s.ack, s.window, s.reset), (7, Some(9), 512, false));
        let r = Segment::parse(&packet(RST)).unwrap();
        assert_eq!((r.ack, r.reset), (None, true));
    }

    #[test]
    fn anything_but_a_whole_ipv4_tcp_segment_is_nothing() {
        assert_eq!(Segment::parse(&[]), None);
        assert_eq!(Segment::parse(&packet(ACK)[..30]), None);
        let mut udp = packet(ACK);
        udp[9] = 17;
        assert_eq!(Segment::parse(&udp), None);
        let mut v6 = packet(ACK);
        v6[0] = 0x60;
        assert_eq!(Segment::parse(&v6), None);
    }
}
