//! The real ringcast node: it owns sockets, timers and the HTTP server, and
//! drives [`ringcast_proto::Node`] through [`ringcast_proto::pump`]. It holds
//! no protocol logic.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod catalog;
pub mod daemon;
pub mod dashboard;
pub mod disks;
pub mod faults;
pub mod life;
pub mod limit;
pub mod metrics;
pub mod overview;
pub mod runtime;
pub mod seat;
pub mod streaming;
pub mod transport;

pub use ringcast_proto as proto;
