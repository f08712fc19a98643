//! The HTTP listener's limits against slow, abusive and malformed clients:
//! what a node's settings give the file server (the cluster file's
//! `[limits]` table names each `http_*` field).

use std::time::Duration;

use crate::buckets::Rate;

/// The largest request head accepted by default (request line and
/// headers); a longer one is answered `431 Request Header Fields Too Large`.
/// [`HttpLimits::max_head`] sets the limit a server uses.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most connections served at once by default; a connection accepted
/// over the limit is closed at once.
pub const MAX_CONNECTIONS: usize = 4096;

/// The HTTP listener's limits against slow, abusive and malformed
/// clients. The defaults suit a node serving video to players on the
/// internet; addresses marked exempt (a node marks its cluster's members)
/// skip the per-client limits (the listener's `Guard` enforces them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request head (request line and header fields) accepted; a
    /// longer one gets `431`.
    pub max_head: usize,
    /// Time allowed to receive a whole request head once its first byte (or
    /// the connection) arrived, however slowly it trickles in (slowloris);
    /// then the connection is closed.
    pub head_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time the socket may stay unwritable (a client that stopped reading).
    pub send_timeout: Duration,
    /// Connections served at once, all clients together.
    pub max_connections: usize,
    /// Connections served at once from one client address.
    pub max_client_connections: usize,
    /// Requests per client address: a token bucket; beyond it `429` with
    /// `Retry-After`.
    pub client_requests: Rate,
    /// Client addresses whose request rate is tracked at once; beyond, idle
    /// ones are forgotten and new ones share one bucket.
    pub max_clients: usize,
    /// Placements (`/v1/play`, `/v1/place`) per client address: each
    /// reserves a stream's capacity for a few seconds, so this bounds the
    /// capacity one address can hold without streaming (`SECURITY.md`);
    /// beyond it `429` with `Retry-After`. Cluster members are exempt.
    pub client_placements: Rate,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_head: MAX_HEAD,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            max_connections: MAX_CONNECTIONS,
            max_client_connections: 256,
            client_requests: Rate {
                per_second: 100,
                burst: 200,
            },
            max_clients: 4096,
            client_placements: Rate {
                per_second: 4,
                burst: 32,
            },
        }
    }
}
