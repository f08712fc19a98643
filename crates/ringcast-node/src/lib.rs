//! The real ringcast node: it owns sockets, timers, the disk prober and the
//! HTTP server, and drives [`ringcast_proto::Node`] through
//! [`ringcast_proto::pump`]. It holds no protocol logic.
//!
//! Not built yet: this crate is the subject of the issue "The real node". Until
//! then it only re-exports the protocol core so the workspace layout of
//! DESIGN section 1 is in place.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use ringcast_proto as proto;
