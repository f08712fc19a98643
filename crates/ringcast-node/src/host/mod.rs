//! The host around the protocol core: the tokio loop that feeds it sockets
//! and timers and publishes what it decides, and what that loop needs.
//!
//! - [`runtime`]: the loop, and [`runtime::Shared`], the state it shares
//!   with the API, placement and the daemon.
//! - [`transport`]: the bus (multicast, or unicast fan-out) and the ring on
//!   real sockets; [`limit`]: the per-sender limits checked before a
//!   datagram is read; [`faults`]: faults injected for tests.
//! - claim 5: the seats a machine holds in its ancestor clusters (held by
//!   the runtime) while it supervises below them.
//! - [`life`]: the node's life number across restarts.
//! - [`counters`]: the node's own counters outside the protocol core.

pub mod counters;
pub mod faults;
pub mod life;
pub mod limit;
pub mod runtime;
pub mod transport;
