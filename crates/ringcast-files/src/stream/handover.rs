//! Claim 13 on the wire, for the response in flight when its process dies:
//! what another host needs to continue the very connection
//! (`ringcast_tcp`), and the hook through which the server tells it.
//!
//! Before each response on a covered connection the server hands the
//! [`Handover`] an [`InFlight`]: where the connection stood at the
//! response's first byte, the response head exactly as written, and the file
//! range that follows it. The node sends it to the host that would hold
//! the address if this one died; that host rebuilds the connection at the
//! byte the player expects next and writes the rest ([`Resume`]).

use std::net::SocketAddrV4;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use ringcast_tcp::Coordinates;
use serde::{Deserialize, Serialize};

/// A response as it starts on a connection, for the host that may have to
/// finish it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The player's end of the connection.
    pub client: SocketAddrV4,
    /// This end: the service address the player connected to.
    pub local: SocketAddrV4,
    /// Where the connection stood at the response's first byte.
    pub at: Coordinates,
    /// The response head, exactly as written (status line to blank line).
    pub head: String,
    /// The disk the body is read from.
    pub disk: u32,
    /// The file, as the writing host names it (the node makes it relative
    /// to the disk before sending it anywhere).
    pub path: PathBuf,
    /// The byte range of the file that the body is.
    pub body: Range<u64>,
    /// Whether the connection stays open for further requests after it.
    pub keep_alive: bool,
}

impl InFlight {
    /// The response's length on the wire: head and body.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + (self.body.end - self.body.start)
    }

    /// Whether the response has no bytes at all (never, with a head).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who is told of every response before it is written on a covered
/// connection.
pub trait Handover: Send + Sync + 'static {
    /// Whether connections accepted at `local` are followed (called once
    /// per connection, so cheap).
    fn covers(&self, local: std::net::SocketAddr) -> bool;
    /// A response of a file is about to be written.
    fn started(&self, response: InFlight);
    /// The connection's coordinates cannot be read (no `CAP_NET_ADMIN`,
    /// an old kernel): its responses go untold.
    fn unavailable(&self, error: &std::io::Error);
}

/// The hook in the server's configuration.
#[derive(Clone)]
pub struct HandoverHook(pub Arc<dyn Handover>);

impl std::fmt::Debug for HandoverHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandoverHook")
    }
}

/// A connection rebuilt on this host, to be continued where its player
/// stands.
#[derive(Debug)]
pub struct Resume {
    /// The connection, live (out of repair mode).
    pub stream: std::net::TcpStream,
    /// The response it was in, with `path` naming the file on this host.
    pub response: InFlight,
    /// How many bytes of the response the player already has.
    pub offset: u64,
    /// Where the connection stands now: the next byte written is the
    /// response's byte `offset`.
    pub at: Coordinates,
}
