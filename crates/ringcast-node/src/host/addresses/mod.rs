//! Claim 13 on the wire: making a service address this host's own, and
//! giving it up, so a listener can bind it (see `ringcast_proto::service`
//! for who holds which, and `docs/streaming.md`).
//!
//! - [`Loopback`]: addresses in 127.0.0.0/8 are already local; holding one
//!   is binding it (`ringcast up`, one machine).
//! - [`lan::Lan`]: any other address is added to a device this process owns
//!   and announced on the LAN with gratuitous ARP, as keepalived does with a
//!   virtual IP; the device, and with it every address it carries, goes away
//!   when the process dies, so a dead holder's host stops answering for the
//!   address and a player's next connection reaches the new holder.
//! - [`takeover`]: on a LAN, the connection a player has open when its
//!   holder dies is rebuilt on the new holder and continued where the
//!   player stands.

pub mod holder;
pub mod lan;
pub mod takeover;

use std::io;
use std::net::IpAddr;

/// How a host makes an address its own and gives it up.
pub trait AddressPlane: Send + Sync + std::fmt::Debug {
    /// Makes `ip` local to this host, so a listener can bind it, and tells
    /// the network who has it now. Idempotent.
    fn acquire(&self, ip: IpAddr) -> io::Result<()>;
    /// Gives `ip` up. Idempotent; releasing an address not held is no error.
    fn release(&self, ip: IpAddr) -> io::Result<()>;
    /// Whether two processes may hold an address at once, as on one host,
    /// where the next holder can listen beside the last (`SO_REUSEPORT`)
    /// before the last stops: an address handed on by a live node (a
    /// drain, an owner back on the ring) then refuses no connection. On a
    /// LAN an address is on one host at a time.
    fn overlaps(&self) -> bool {
        false
    }
}

/// Addresses that are local without anything to do (127.0.0.0/8, ::1).
#[derive(Debug, Default)]
pub struct Loopback;

impl AddressPlane for Loopback {
    fn acquire(&self, ip: IpAddr) -> io::Result<()> {
        if ip.is_loopback() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{ip} is not a loopback address"),
            ))
        }
    }

    fn overlaps(&self) -> bool {
        true
    }

    fn release(&self, _ip: IpAddr) -> io::Result<()> {
        Ok(())
    }
}
