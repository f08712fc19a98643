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
//! - [`admin`]: the admin token's digest, which is all a node holds of it.
//! - [`tls`]: the configuration service's TLS listener, which tells the
//!   handlers which node's certificate each request came with.
//! - [`credentials`]: the cluster's CA, the service's certificate and
//!   signing key, and each node's client certificate.
//!
//! Only this crate parses TOML; the protocol core receives typed values.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod addresses;
pub mod admin;
pub mod clusterfile;
pub mod credentials;
pub mod live;
pub mod service;
pub mod settings;
pub mod tls;
