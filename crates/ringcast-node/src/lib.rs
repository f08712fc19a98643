//! The real ringcast node: the host around the protocol core. It owns
//! sockets, timers, disks and HTTP, and holds no protocol logic.
//!
//! Its parts, each a folder with one job, the arrows between them one way
//! (`scripts/check-imports` checks it):
//!
//! - [`host`]: the protocol loop on tokio (bus and ring sockets, timers,
//!   the per-sender limits, the node's life across restarts, test faults),
//!   the seats a machine holds in its ancestor clusters, and the state it
//!   shares with the rest of the node.
//! - [`library`]: what the disks hold and whether they work: each disk's
//!   catalog of titles, and the disk prober.
//! - [`placement`]: where streams are served: play and place requests, the
//!   signed stream tokens, placement down a tree of clusters, reassignment.
//! - [`operator`]: what people and tools see: the HTTP API, Prometheus
//!   metrics, the dashboard and its overview of the tree.
//! - [`daemon`]: one node as a process, wiring all of the above to the file
//!   server of `ringcast-files` and the settings of `ringcast-config`.
//!
//! `operator` and `placement` use `host` (and `placement` uses `library`);
//! `host` and `library` use only `ringcast-config`, `ringcast-files` and the
//! protocol core; only `daemon` uses everything.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod daemon;
pub mod host;
pub mod library;
pub mod operator;
pub mod placement;

pub use ringcast_proto as proto;
