//! ringcast's configuration (claims 1-3): what the operator writes and what
//! each node runs with.
//!
//! - [`clusterfile`]: the cluster file (TOML), one file for a cluster or a
//!   tree of clusters, checked with every problem at its line and field; it
//!   derives each node's settings, and writes the local clusters that
//!   `ringcast up` and the tests run.
//! - [`settings`]: [`settings::NodeSettings`], everything one node runs
//!   with (node id, bus, priority list, disk access list, timing, keys,
//!   limits, seats), and its JSON form.
//! - [`live`]: what a running node may change without a restart, and
//!   what it shows of what it runs.
//! - [`service`]: the configuration service that hands each node its
//!   settings over HTTP, and the node's client, which keeps the last good
//!   answer on disk.
//!
//! Only this crate parses TOML; the protocol core receives typed values.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod addresses;
pub mod clusterfile;
pub mod live;
pub mod service;
pub mod settings;
