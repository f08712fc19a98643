//! Service addresses on a real LAN: a device that lives exactly as long as
//! this process carries the addresses it holds, and gratuitous ARP tells the
//! LAN where they are now, as keepalived does with a virtual IP.
//!
//! # How an address moves
//!
//! - On the first [`acquire`](AddressPlane::acquire) the process creates a
//!   *non-persistent* TUN device (`/dev/net/tun`, `TUNSETIFF` with
//!   `IFF_TUN | IFF_NO_PI`, named `rcsvc%d`, which the kernel numbers),
//!   keeps its file descriptor for its whole life and brings the device up.
//!   Nothing ever reads the device: no route points at it; it only carries
//!   addresses.
//! - Each held address is added to that device as a /32 (netlink
//!   `RTM_NEWADDR`), which makes it local to the host, so a listener can bind
//!   it and the host answers ARP for it on the LAN interface (Linux answers
//!   ARP for any local address on any interface, `arp_ignore=0`, the
//!   default). Then the LAN interface sends gratuitous ARP for it: an ARP
//!   request and an ARP reply, both broadcast, sender = target = the address,
//!   from the LAN interface's MAC; the first pair before `acquire` returns,
//!   two more about 100 ms apart on a background thread, so `acquire` does
//!   not wait for them.
//!   Adding an address already held is no error, and is announced again.
//! - [`release`](AddressPlane::release) deletes the address from the device
//!   (`RTM_DELADDR`); one that is not there is no error. Nothing is sent: the
//!   next holder's announcement moves the address.
//! - When the process dies, even by SIGKILL, the kernel closes its file
//!   descriptors; closing the last one of a non-persistent TUN device deletes
//!   the device and every address on it. The dead holder's host then no
//!   longer has the address: it answers no ARP for it, and packets a player
//!   still sends to its MAC are dropped (a host that does not forward drops
//!   packets for an address it does not have) rather than answered with a
//!   RST, so the player's TCP retransmits its SYN, and the retransmission
//!   goes to the new holder once that one has announced itself.
//!
//! # What the LAN must do for it
//!
//! - Linux neighbours update an entry they already have on a gratuitous ARP
//!   at once, even within the entry's `locktime` (the kernel exempts
//!   gratuitous ARP from it); with the default `arp_accept=0` they create no
//!   entry from it, which is fine: a player with no entry asks, and the new
//!   holder answers. Switches learn the new port from the frames' source
//!   MAC. A neighbour that ignores gratuitous ARP keeps sending to the dead
//!   holder until its entry goes stale (Linux: `base_reachable_time`, 30 s
//!   by default, then a unicast probe that the dead holder no longer
//!   answers).
//! - The holders' hosts must answer ARP for an address on another device:
//!   `arp_ignore` 0 on the LAN interface (the default). With 1 or more they
//!   would not.
//!
//! # How it is built
//!
//! - The TUN device comes from the `tun` crate, since this crate forbids
//!   `unsafe` and `TUNSETIFF` is an ioctl. Its file descriptor is marked
//!   close-on-exec right after it is made, so a child process cannot keep
//!   the device (and its addresses) alive after this one dies; a child
//!   forked by another thread in between would still inherit it.
//! - Addresses are added and deleted with one hand-written netlink request
//!   each over a `NETLINK_ROUTE` socket (nix sockets, no `unsafe`): the
//!   message is 40 bytes of a stable kernel ABI and its answer one error
//!   code, so a netlink crate (whose async-first APIs change between
//!   releases) would weigh more than it gives, and `ip addr add` would need
//!   iproute2 on every host and a process per change.
//! - Gratuitous ARP goes out through an `AF_PACKET` raw socket with protocol
//!   0, which receives nothing; its frames are addressed with the LAN
//!   interface's own link-layer address as `getifaddrs` reports it.
//! - Privileges: the device and its addresses need `CAP_NET_ADMIN`, the raw
//!   socket `CAP_NET_RAW`; without them `acquire` says so. [`Lan::new`]
//!   needs none: it only finds the LAN interface.
//! - Linux only, IPv4 only: an IPv6 service address would need unsolicited
//!   neighbour advertisements instead of ARP, and is refused as
//!   [`io::ErrorKind::Unsupported`].

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::libc;
use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, LinkAddr, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike};
use tun::AbstractDevice;

use super::AddressPlane;

/// The name the kernel numbers for the device (`rcsvc0`, `rcsvc1`, ...).
const DEVICE_NAME: &str = "rcsvc%d";
/// How many times each acquired address is announced.
const ANNOUNCEMENTS: u32 = 3;
/// The time between two announcements of an address.
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);
/// How long a netlink request may wait for the kernel's answer.
const NETLINK_TIMEOUT_S: i64 = 2;

/// The LAN address plane: held addresses on a device of this process's own,
/// announced by gratuitous ARP on the interface carrying the node's LAN
/// address (see the module documentation). Dropping it deletes the device
/// and with it every address it holds.
pub struct Lan {
    /// The node's own address on the LAN, which names the interface.
    lan_ip: Ipv4Addr,
    /// The interface carrying `lan_ip`.
    nic: Arc<Nic>,
    /// The device and the sockets, made on the first acquire.
    plane: Mutex<Option<Arc<Plane>>>,
}

/// The LAN interface announcements go out of.
struct Nic {
    /// Its name.
    name: String,
    /// Its link-layer address (index and MAC), which addresses the frames
    /// of the raw socket.
    link: LinkAddr,
    /// Its MAC.
    mac: [u8; 6],
}

/// What holding needs, made once: the device and the ARP socket.
struct Plane {
    /// Keeps the device: closing it, or the process dying, deletes the
    /// device and every address on it.
    _device: DeviceFd,
    /// The device's name as the kernel numbered it.
    name: String,
    /// The device's interface index, which netlink requests name.
    index: u32,
    /// The raw socket gratuitous ARP goes out through.
    arp: OwnedFd,
    /// The addresses acquired and not released since, so a background
    /// announcement stops once its address was released.
    held: Mutex<BTreeSet<Ipv4Addr>>,
}

impl Lan {
    /// The plane for a node whose own LAN address is `lan_ip`: finds the
    /// Ethernet interface carrying it (with `getifaddrs`) and its MAC. Makes
    /// no device yet and needs no privilege.
    pub fn new(lan_ip: Ipv4Addr) -> io::Result<Lan> {
        let addresses: Vec<_> = nix::ifaddrs::getifaddrs()
            .map_err(|e| errno_error(e, "listing the network interfaces"))?
            .collect();
        let interface = addresses
            .iter()
            .find(|a| {
                a.address
                    .as_ref()
                    .and_then(|s| s.as_sockaddr_in())
                    .is_some_and(|s| s.ip() == lan_ip)
            })
            .map(|a| a.interface_name.clone())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no network interface carries the node's LAN address {lan_ip}"),
                )
            })?;
        let link = addresses
            .iter()
            .filter(|a| a.interface_name == interface)
            .find_map(|a| a.address.as_ref()?.as_link_addr().copied())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interface {interface} (carrying {lan_ip}) has no link-layer address"),
                )
            })?;
        let mac = link
            .addr()
            .filter(|mac| link.hatype() == libc::ARPHRD_ETHER && *mac != [0; 6])
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "interface {interface} (carrying {lan_ip}) is not Ethernet: \
                         service addresses are announced with ARP"
                    ),
                )
            })?;
        Ok(Lan {
            lan_ip,
            nic: Arc::new(Nic {
                name: interface,
                link,
                mac,
            }),
            plane: Mutex::new(None),
        })
    }

    /// The interface carrying the node's LAN address.
    pub fn interface(&self) -> &str {
        &self.nic.name
    }

    /// The name of the device carrying the held addresses, once there is one.
    pub fn device(&self) -> Option<String> {
        lock(&self.plane).as_ref().map(|p| p.name.clone())
    }

    /// The device and the sockets, made now if this is the first acquire.
    fn plane(&self, ip: Ipv4Addr) -> io::Result<Arc<Plane>> {
        let mut plane = lock(&self.plane);
        if let Some(p) = plane.as_ref() {
            return Ok(p.clone());
        }
        let p = Arc::new(Plane::new(ip)?);
        tracing::info!(
            device = %p.name,
            interface = %self.nic.name,
            "made the device that carries this node's service addresses"
        );
        *plane = Some(p.clone());
        Ok(p)
    }
}

impl Nic {
    /// Sends one gratuitous ARP request and one reply for `ip` through
    /// `arp`.
    fn announce(&self, arp: &OwnedFd, ip: Ipv4Addr) -> io::Result<()> {
        for op in [ARP_REQUEST, ARP_REPLY] {
            let frame = gratuitous_arp(op, self.mac, ip);
            sendto(arp.as_raw_fd(), &frame, &self.link, MsgFlags::empty()).map_err(|e| {
                errno_error(
                    e,
                    &format!("announcing service address {ip} on {}", self.name),
                )
            })?;
        }
        Ok(())
    }
}

impl Plane {
    /// Makes the device, up, and the ARP socket; `ip` is the address that
    /// needs them, for the errors.
    fn new(ip: Ipv4Addr) -> io::Result<Plane> {
        let mut config = tun::Configuration::default();
        // A layer 3 device (IFF_TUN) without packet information headers
        // (IFF_NO_PI, the crate's default), never made persistent.
        config.tun_name(DEVICE_NAME).layer(tun::Layer::L3).up();
        let device = tun::create(&config).map_err(|e| {
            let e = match e {
                tun::Error::Io(e) => e,
                other => io::Error::other(other),
            };
            if e.kind() == io::ErrorKind::PermissionDenied {
                needs_net_admin(ip)
            } else {
                io::Error::new(
                    e.kind(),
                    format!("making a TUN device for service address {ip}: {e}"),
                )
            }
        })?;
        // A child process that inherited the descriptor would keep the
        // device, and the addresses, after this process died.
        fcntl(device.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| errno_error(e, "marking the TUN device close-on-exec"))?;
        let name = device
            .tun_name()
            .map_err(|e| io::Error::other(format!("naming the TUN device: {e}")))?;
        let index = nix::net::if_::if_nametoindex(name.as_str())
            .map_err(|e| errno_error(e, &format!("finding the index of device {name}")))?;
        // Protocol 0: this socket only sends, it receives no frame.
        let arp = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| match e {
            Errno::EPERM | Errno::EACCES => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("announcing service address {ip} needs CAP_NET_RAW"),
            ),
            e => errno_error(e, "opening a packet socket for gratuitous ARP"),
        })?;
        let device = DeviceFd::lowest(device)?;
        Ok(Plane {
            _device: device,
            name,
            index,
            arp,
            held: Mutex::new(BTreeSet::new()),
        })
    }
}

/// Whether descriptor 0 carries a device of this process already.
static DESCRIPTOR_ZERO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The descriptor of the device, the lowest of the process when it can
/// be (descriptor 0, in place of standard input, which a node never
/// reads). A dying process's descriptors close in ascending order, so the
/// device, and the addresses on it, leave this host before any connection
/// accepted on them closes: no FIN or reset of a dead holder reaches a
/// player whose connection the address's new holder continues
/// (`takeover.rs`).
#[derive(Debug)]
struct DeviceFd(i32);

impl DeviceFd {
    fn lowest(device: tun::Device) -> io::Result<DeviceFd> {
        use std::os::fd::IntoRawFd;
        use std::sync::atomic::Ordering;
        let fd = device.into_raw_fd();
        // Only a standard input of the usual kinds (a terminal, /dev/null,
        // a pipe) is replaced: a socket or a file there may be in use.
        let stdin_like = nix::sys::stat::fstat(0).is_ok_and(|st| {
            let kind = st.st_mode & libc::S_IFMT;
            kind == libc::S_IFCHR || kind == libc::S_IFIFO
        });
        if !stdin_like || DESCRIPTOR_ZERO.swap(true, Ordering::SeqCst) {
            return Ok(DeviceFd(fd));
        }
        let moved = nix::unistd::dup2(fd, 0)
            .and_then(|zero| fcntl(zero, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(|_| zero));
        match moved {
            Ok(zero) => {
                let _ = nix::unistd::close(fd);
                Ok(DeviceFd(zero))
            }
            Err(e) => {
                DESCRIPTOR_ZERO.store(false, Ordering::SeqCst);
                tracing::debug!("the TUN device stays on descriptor {fd}: {e}");
                Ok(DeviceFd(fd))
            }
        }
    }
}

impl Drop for DeviceFd {
    fn drop(&mut self) {
        if self.0 != 0 {
            let _ = nix::unistd::close(self.0);
            return;
        }
        // Descriptor 0 becomes /dev/null rather than free: a free 0 would
        // go to the next file opened, which a later device would replace.
        let null = std::fs::File::open("/dev/null");
        match null {
            Ok(null) => {
                let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
            }
            Err(_) => {
                let _ = nix::unistd::close(0);
            }
        }
        DESCRIPTOR_ZERO.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl AddressPlane for Lan {
    fn acquire(&self, ip: IpAddr) -> io::Result<()> {
        let ip = ipv4(ip)?;
        let plane = self.plane(ip)?;
        match address_request(libc::RTM_NEWADDR, CREATE, plane.index, ip) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(Errno::EPERM | Errno::EACCES) => return Err(needs_net_admin(ip)),
            Err(e) => {
                return Err(errno_error(
                    e,
                    &format!("adding service address {ip} to {}", plane.name),
                ))
            }
        }
        lock(&plane.held).insert(ip);
        self.nic.announce(&plane.arp, ip)?;
        // The rest of the announcements, in case the first is lost; each
        // only while the address is still held. The thread does not keep
        // the device: dropping the plane deletes it at once.
        let nic = self.nic.clone();
        let plane = Arc::downgrade(&plane);
        let spawned = std::thread::Builder::new()
            .name("rc-garp".into())
            .spawn(move || {
                for _ in 1..ANNOUNCEMENTS {
                    std::thread::sleep(ANNOUNCE_INTERVAL);
                    let Some(plane) = plane.upgrade() else {
                        return;
                    };
                    if !lock(&plane.held).contains(&ip) {
                        return;
                    }
                    if let Err(e) = nic.announce(&plane.arp, ip) {
                        tracing::warn!(%ip, "{e}");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(%ip, "announced service address once only: {e}");
        }
        Ok(())
    }

    fn release(&self, ip: IpAddr) -> io::Result<()> {
        let IpAddr::V4(ip) = ip else {
            // Never acquired: acquire refuses IPv6.
            return Ok(());
        };
        let Some(plane) = lock(&self.plane).clone() else {
            // No device yet: nothing was ever held.
            return Ok(());
        };
        lock(&plane.held).remove(&ip);
        match address_request(libc::RTM_DELADDR, 0, plane.index, ip) {
            Ok(()) | Err(Errno::EADDRNOTAVAIL | Errno::ENOENT | Errno::ENODEV) => Ok(()),
            Err(Errno::EPERM | Errno::EACCES) => Err(needs_net_admin(ip)),
            Err(e) => Err(errno_error(
                e,
                &format!("removing service address {ip} from {}", plane.name),
            )),
        }
    }
}

impl fmt::Debug for Lan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plane = lock(&self.plane);
        f.debug_struct("Lan")
            .field("lan_ip", &self.lan_ip)
            .field("interface", &self.nic.name)
            .field("mac", &Mac(self.nic.mac))
            .field("device", &plane.as_ref().map(|p| &p.name))
            .field("held", &plane.as_ref().map(|p| lock(&p.held).clone()))
            .finish()
    }
}

/// A MAC written the usual way.
struct Mac([u8; 6]);

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// `ip` as IPv4, or why not.
fn ipv4(ip: IpAddr) -> io::Result<Ipv4Addr> {
    match ip {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(ip) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot hold service address {ip}: IPv6 service addresses are not supported on a LAN"),
        )),
    }
}

fn needs_net_admin(ip: Ipv4Addr) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("holding service address {ip} needs CAP_NET_ADMIN"),
    )
}

/// `e` as an `io::Error` of its kind, saying what failed.
fn errno_error(e: Errno, what: &str) -> io::Error {
    io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// Netlink (`<linux/netlink.h>`, `<linux/rtnetlink.h>`, `<linux/if_addr.h>`).

/// Flags of a request that creates an address.
const CREATE: u16 = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HEADER: usize = 16;

/// One `RTM_NEWADDR` or `RTM_DELADDR` request: `ip`/32 on the device of
/// `index`; the kernel's answer, as an errno.
fn address_request(kind: u16, flags: u16, index: u32, ip: Ipv4Addr) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    setsockopt(
        &fd.as_fd(),
        sockopt::ReceiveTimeout,
        &TimeVal::seconds(NETLINK_TIMEOUT_S),
    )?;
    const SEQ: u32 = 1;
    let request = address_message(kind, flags, SEQ, index, ip);
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = [0u8; 4096];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if let Some(answer) = ack(&buf[..n], SEQ) {
            return answer;
        }
    }
}

/// The bytes of an address request: `nlmsghdr`, `ifaddrmsg`, then the
/// attributes `IFA_LOCAL` and `IFA_ADDRESS`, both `ip` (each 4-byte
/// aligned already), in the host's byte order but for the addresses.
fn address_message(kind: u16, flags: u16, seq: u32, index: u32, ip: Ipv4Addr) -> Vec<u8> {
    let request = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    let mut m = Vec::with_capacity(40);
    // struct nlmsghdr; the length is filled in last, the port id by the
    // kernel.
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(request | flags).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifaddrmsg: family, prefix length, flags, scope, index.
    m.extend_from_slice(&[libc::AF_INET as u8, 32, 0, libc::RT_SCOPE_UNIVERSE]);
    m.extend_from_slice(&index.to_ne_bytes());
    // struct rtattr and its value, twice.
    for attribute in [libc::IFA_LOCAL, libc::IFA_ADDRESS] {
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&attribute.to_ne_bytes());
        m.extend_from_slice(&ip.octets());
    }
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// The kernel's answer to request `seq` among the messages of `buf`, if
/// there: an `NLMSG_ERROR` whose code is 0 for success or a negative errno.
fn ack(mut buf: &[u8], seq: u32) -> Option<Result<(), Errno>> {
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    while buf.len() >= NLMSG_HEADER {
        let len = u32_at(buf, 0) as usize;
        if len < NLMSG_HEADER || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if i32::from(kind) == libc::NLMSG_ERROR && u32_at(buf, 8) == seq && len >= NLMSG_HEADER + 4
        {
            let code = u32_at(buf, NLMSG_HEADER) as i32;
            return Some(match code {
                0 => Ok(()),
                code => Err(Errno::from_raw(-code)),
            });
        }
        // Messages are 4-byte aligned.
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    None
}

// ARP (RFC 826) over Ethernet.

const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// The shortest Ethernet frame, less its checksum; shorter ones are padded.
const MIN_FRAME: usize = 60;

/// A broadcast gratuitous ARP frame for `ip` from `mac`: sender = target =
/// `ip`. A reply names `mac` as the target hardware address too, which Linux
/// requires of a gratuitous reply; a request leaves it zero.
fn gratuitous_arp(op: u16, mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_FRAME);
    // Ethernet: destination, source, EtherType.
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&(libc::ETH_P_ARP as u16).to_be_bytes());
    // ARP: hardware type Ethernet, protocol IPv4, their lengths, operation.
    f.extend_from_slice(&libc::ARPHRD_ETHER.to_be_bytes());
    f.extend_from_slice(&(libc::ETH_P_IP as u16).to_be_bytes());
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&if op == ARP_REPLY { mac } else { [0; 6] });
    f.extend_from_slice(&ip.octets());
    f.resize(MIN_FRAME, 0);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_arp_names_the_address_as_sender_and_target() {
        let mac = [2, 0, 0, 0, 0, 7];
        let ip = Ipv4Addr::new(10, 77, 0, 100);
        let request = gratuitous_arp(ARP_REQUEST, mac, ip);
        assert_eq!(request.len(), MIN_FRAME);
        assert_eq!(&request[..6], &[0xff; 6]);
        assert_eq!(&request[6..12], &mac);
        assert_eq!(&request[12..14], &[0x08, 0x06]);
        assert_eq!(&request[14..22], &[0, 1, 0x08, 0, 6, 4, 0, 1]);
        assert_eq!(&request[22..28], &mac);
        assert_eq!(&request[28..32], &ip.octets());
        assert_eq!(&request[32..38], &[0; 6]);
        assert_eq!(&request[38..42], &ip.octets());
        assert!(request[42..].iter().all(|b| *b == 0));
        let reply = gratuitous_arp(ARP_REPLY, mac, ip);
        assert_eq!(&reply[20..22], &[0, 2]);
        assert_eq!(&reply[32..38], &mac);
    }

    #[test]
    fn an_address_request_is_a_header_an_ifaddrmsg_and_two_attributes() {
        let m = address_message(libc::RTM_NEWADDR, CREATE, 9, 42, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), libc::RTM_NEWADDR);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x605);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 9);
        assert_eq!(&m[16..20], &[2, 32, 0, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 42);
        assert_eq!(&m[28..32], &[10, 0, 0, 5]);
        assert_eq!(&m[36..40], &[10, 0, 0, 5]);
    }

    #[test]
    fn an_ack_is_found_by_its_sequence_number() {
        let error = |seq: u32, code: i32| {
            let mut m = Vec::new();
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&code.to_ne_bytes());
            m.resize(36, 0);
            m
        };
        assert_eq!(ack(&error(1, 0), 1), Some(Ok(())));
        assert_eq!(ack(&error(1, -17), 1), Some(Err(Errno::EEXIST)));
        let both = [error(7, 0), error(1, -1)].concat();
        assert_eq!(ack(&both, 1), Some(Err(Errno::EPERM)));
        assert_eq!(ack(&error(7, 0), 1), None);
        assert_eq!(ack(&[1, 2, 3], 1), None);
    }

    #[test]
    fn the_lan_interface_must_carry_the_address_and_be_ethernet() {
        let e = Lan::new(Ipv4Addr::new(192, 0, 2, 213)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        // Loopback has a link-layer address, but no MAC to announce with.
        let e = Lan::new(Ipv4Addr::LOCALHOST).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    }

    #[test]
    fn ipv6_is_refused_and_releasing_what_was_never_held_is_no_error() {
        let lan = Lan {
            lan_ip: Ipv4Addr::new(192, 0, 2, 1),
            nic: Arc::new(Nic {
                name: "eth-test".into(),
                link: loopback_link(),
                mac: [2, 0, 0, 0, 0, 1],
            }),
            plane: Mutex::new(None),
        };
        let e = lan.acquire("fd00::1".parse().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        lan.release("10.0.0.1".parse().unwrap()).unwrap();
        lan.release("fd00::1".parse().unwrap()).unwrap();
        assert!(format!("{lan:?}").contains("02:00:00:00:00:01"));
    }

    /// Loopback's link-layer address, which every host has.
    fn loopback_link() -> LinkAddr {
        nix::ifaddrs::getifaddrs()
            .unwrap()
            .find_map(|a| {
                (a.interface_name == "lo")
                    .then(|| a.address?.as_link_addr().copied())
                    .flatten()
            })
            .expect("lo has a link-layer address")
    }
}
