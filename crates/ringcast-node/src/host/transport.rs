//! The bus and the ring on real sockets (DESIGN section 3).
//!
//! Claim 1's virtual multicast bus is either a UDP multicast group (outgoing
//! interface, TTL and loopback named explicitly, never left to defaults) or,
//! where a network has no multicast, unicast fan-out to every configured peer.
//! The ring is unicast UDP to the downstream neighbour. One socket, bound to
//! the node's ring address, sends everything and receives the ring (and, in
//! unicast mode, the bus); a second socket receives the multicast group.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use ringcast_proto::event::{Destination, Transmit};
use ringcast_proto::NodeId;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use ringcast_config::settings::BusMode;

/// Largest datagram the node receives.
pub const MAX_DATAGRAM: usize = 65_536;

/// The node's sockets.
#[derive(Debug)]
pub struct Transport {
    unicast: UdpSocket,
    group: Option<(UdpSocket, SocketAddrV4)>,
    peers: Vec<SocketAddr>,
}

/// Where a received datagram came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// The multicast group.
    Bus,
    /// The node's unicast socket (ring, or bus in unicast mode).
    Unicast,
}

fn udp_socket(domain: Domain) -> io::Result<Socket> {
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn into_tokio(socket: Socket) -> io::Result<UdpSocket> {
    UdpSocket::from_std(socket.into())
}

impl Transport {
    /// Binds the node's sockets: the unicast socket on `ring`, and for a
    /// multicast bus the group socket joined on the named interface.
    /// `me` is left out of the unicast fan-out.
    pub fn bind(ring: SocketAddr, bus: &BusMode, me: NodeId) -> io::Result<Transport> {
        let unicast = udp_socket(Domain::for_address(ring))?;
        unicast.bind(&ring.into())?;
        let mut transport = Transport {
            unicast: into_tokio(unicast)?,
            group: None,
            peers: Vec::new(),
        };
        match bus {
            BusMode::Multicast {
                group,
                interface,
                ttl,
                loopback,
            } => {
                let sender = socket2::SockRef::from(&transport.unicast);
                sender.set_multicast_if_v4(interface)?;
                sender.set_multicast_ttl_v4(*ttl)?;
                sender.set_multicast_loop_v4(*loopback)?;
                transport.group = Some((join_group(*group, *interface)?, *group));
            }
            BusMode::Unicast { peers } => {
                transport.peers = peers
                    .iter()
                    .filter(|(id, _)| *id != me)
                    .map(|(_, addr)| *addr)
                    .collect();
            }
        }
        Ok(transport)
    }

    /// The address the unicast socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.unicast.local_addr()
    }

    /// Sends one datagram of the protocol. Errors are per datagram: the
    /// caller counts them; the protocol copes with loss.
    pub async fn send(&self, t: &Transmit) -> io::Result<()> {
        match t.destination {
            Destination::Node { addr, .. } => {
                self.unicast.send_to(&t.payload, addr).await?;
            }
            Destination::Bus => match &self.group {
                Some((_, group)) => {
                    self.unicast
                        .send_to(&t.payload, SocketAddr::V4(*group))
                        .await?;
                }
                None => {
                    let mut last = Ok(());
                    for peer in &self.peers {
                        if let Err(e) = self.unicast.send_to(&t.payload, *peer).await {
                            last = Err(e);
                        }
                    }
                    last?;
                }
            },
        }
        Ok(())
    }

    /// Receives the next datagram from either socket.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Inbound)> {
        let Some((group, _)) = &self.group else {
            let (n, from) = self.unicast.recv_from(buf).await?;
            return Ok((n, from, Inbound::Unicast));
        };
        loop {
            let (socket, inbound) = tokio::select! {
                r = self.unicast.readable() => { r?; (&self.unicast, Inbound::Unicast) }
                r = group.readable() => { r?; (group, Inbound::Bus) }
            };
            match socket.try_recv_from(buf) {
                Ok((n, from)) => return Ok((n, from, inbound)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Transport {
    /// A datagram already waiting on either socket, without
    /// waiting (`Ok(None)` when there is none), so that a flood can be
    /// drained and dropped without a trip through the event loop for each
    /// datagram. `bus_first` says which socket is tried first, so that
    /// neither starves the other.
    pub fn try_recv(
        &self,
        buf: &mut [u8],
        bus_first: bool,
    ) -> io::Result<Option<(usize, SocketAddr, Inbound)>> {
        let unicast = (&self.unicast, Inbound::Unicast);
        let sockets = match &self.group {
            Some((group, _)) if bus_first => [Some((group, Inbound::Bus)), Some(unicast)],
            Some((group, _)) => [Some(unicast), Some((group, Inbound::Bus))],
            None => [Some(unicast), None],
        };
        for (socket, inbound) in sockets.into_iter().flatten() {
            match socket.try_recv_from(buf) {
                Ok((n, from)) => return Ok(Some((n, from, inbound))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// A socket receiving `group`, joined on `interface`, shared with other
/// nodes on the same host (SO_REUSEADDR and SO_REUSEPORT).
fn join_group(group: SocketAddrV4, interface: Ipv4Addr) -> io::Result<UdpSocket> {
    if !group.ip().is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bus address {group} is not a multicast address"),
        ));
    }
    let socket = udp_socket(Domain::IPV4)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Bound to the group itself, so only this group's datagrams arrive.
    socket.bind(&SocketAddr::V4(group).into())?;
    socket.join_multicast_v4(group.ip(), &interface)?;
    socket.set_multicast_if_v4(&interface)?;
    into_tokio(socket)
}
