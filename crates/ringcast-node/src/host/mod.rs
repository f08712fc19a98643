//! The host around the protocol core: the tokio loop that feeds it sockets
//! and timers and publishes what it decides, and what that loop needs.
//!
//! - [`runtime`]: the loop around the protocol core's `Machine`: the leaf's
//!   sockets, and a seat's sockets while the machine holds it (claim 5).
//! - [`shared`]: what the loop shares with the API, placement and the
//!   daemon (snapshots, channels, typed signals); [`events`]: the event
//!   stream as people read it.
//! - [`transport`]: the bus (multicast, or unicast fan-out) and the ring on
//!   real sockets; [`limit`]: the per-sender limits checked before a
//!   datagram is read; [`faults`]: faults injected for tests.
//! - [`life`]: the node's life number across restarts.
//! - [`counters`]: the node's own counters outside the protocol core.
//! - [`systemd`]: readiness, reloads, stopping and the watchdog, told to
//!   the service manager.
//! - [`web`]: plain HTTP or HTTPS, for every URL of a node the node writes
//!   and every request it makes to another.

pub mod addresses;
pub mod counters;
pub mod events;
pub mod faults;
pub mod life;
pub mod limit;
pub mod runtime;
pub mod shared;
pub mod systemd;
pub mod transport;
pub mod web;
