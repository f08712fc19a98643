//! How stream connections are served (timeouts, the stream prefix, the
//! head limit) and what a connection needs to be served.

use std::sync::Arc;
use std::time::Duration;

use super::counters::StreamCounters;
use super::handover::HandoverHook;
use super::resolve::Resolve;
use crate::guard::Guard;
use crate::limits::MAX_HEAD;

/// How stream connections are served.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// With `Some(prefix)`, [`serve_connection`] serves only requests whose
    /// path starts with `prefix` and hands the connection back
    /// ([`Outcome::Handoff`]) at the first request that does not; with
    /// `None` it serves every request.
    pub prefix: Option<String>,
    /// The largest request head accepted; a longer one gets `431`.
    pub max_head: usize,
    /// Time allowed to receive a complete request head once the connection
    /// is open or the head's first byte has arrived; then the connection
    /// is closed. The deadline is fixed when the head starts: bytes that
    /// trickle in do not extend it (slowloris).
    pub head_timeout: Duration,
    /// Time a persistent connection may wait for the next request.
    pub idle_timeout: Duration,
    /// Time the socket may stay unwritable (a client that stopped reading)
    /// before the connection is closed.
    pub send_timeout: Duration,
    /// Time the disk may take to open a file or to hand over the data of
    /// one offloaded batch of `sendfile(2)` calls; past it, a request gets
    /// `503` (open) or its connection is shut down (data), so that a player
    /// resumes elsewhere instead of waiting on a hung disk.
    pub disk_timeout: Duration,
    /// Run `sendfile(2)` on tokio's blocking threads rather than on the
    /// connection's task. It costs a thread hop per socket buffer's worth of
    /// data; in exchange a hung disk blocks only the streams reading it, not
    /// one of the runtime's worker threads.
    pub offload_sendfile: bool,
    /// Claim 13: told of every file response on the connections it covers,
    /// so another host can continue them if this process dies.
    pub handover: Option<HandoverHook>,
    /// Set while the node drains: every response then closes its
    /// connection, so the player's next request reconnects to wherever its
    /// address is held now.
    pub closing: Arc<Closing>,
}

/// Whether responses close their connections: a draining node, or a
/// listener on an address this node has handed on (claim 13), whose
/// players must reconnect to reach the address's new holder.
#[derive(Debug, Default)]
pub struct Closing {
    flag: std::sync::atomic::AtomicBool,
    /// Set for a wider scope (the whole node) that this one is part of.
    within: Option<Arc<Closing>>,
}

impl Closing {
    /// A flag of its own that is also set whenever `within` is.
    pub fn within(within: Arc<Closing>) -> Closing {
        Closing {
            flag: Default::default(),
            within: Some(within),
        }
    }

    /// From now on responses close their connections, or no longer do.
    pub fn set(&self, closing: bool) {
        self.flag
            .store(closing, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether responses close their connections.
    pub fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Relaxed)
            || self.within.as_ref().is_some_and(|w| w.is_set())
    }
}

impl Default for StreamConfig {
    fn default() -> StreamConfig {
        StreamConfig {
            prefix: None,
            max_head: MAX_HEAD,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            disk_timeout: Duration::from_secs(10),
            offload_sendfile: true,
            handover: None,
            closing: Arc::default(),
        }
    }
}

/// What a stream connection needs: the resolver, the counters, the
/// configuration and the listener's guard.
pub struct StreamContext {
    /// Maps requests to files.
    pub resolver: Arc<dyn Resolve>,
    /// The load counters this server adds to.
    pub counters: Arc<StreamCounters>,
    /// Timeouts and options.
    pub config: StreamConfig,
    /// Per-client request rates and the refusal counters, shared
    /// with the API server.
    pub guard: Arc<Guard>,
}

impl std::fmt::Debug for StreamContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamContext")
            .field("counters", &self.counters)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
