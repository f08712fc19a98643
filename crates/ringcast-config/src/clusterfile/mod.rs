//! The cluster file (claims 1-3): one TOML file describes a cluster, and the
//! configuration service derives each node's [`NodeSettings`] from it.
//!
//! Only the daemon parses TOML; the protocol core receives typed values.
//! `/docs/cluster-file.md` in the repository has an annotated example.
//!
//! # Schema
//!
//! Every table refuses keys it does not know.
//!
//! ```toml
//! [cluster]
//! id = 1                      # cluster id (u32), carried in every frame
//! name = "local"              # human-readable name, not empty
//! config_version = 1          # bump it on every change: running nodes refetch
//! transport = "multicast"     # optional, "multicast" (default) or "unicast"
//! bus = "239.255.42.1:7400"   # required with multicast: IPv4 multicast group:port
//! interface = "127.0.0.1"     # required with multicast: IP_MULTICAST_IF address
//! ttl = 1                     # optional (default 1, at most 255; 0 = this host)
//! loopback = true             # optional (default true): IP_MULTICAST_LOOP
//! key_file = "cluster.key"    # required, relative to this file's directory
//! admin_token_file = "admin.token"  # optional, relative to this file's directory
//! priority = [1, 2, 3]        # every node exactly once, highest priority first
//! mtu = 1400                  # optional (default 1400), 256..=65000
//! servers = ["127.0.0.1:7400"]  # optional: servers listed in the cluster map
//!
//! [timing]                    # optional table, every key optional;
//! status_interval_ms = 20     # defaults are ringcast_proto::Timing::lan()
//! notify_interval_ms = 20
//! notification_time_ms = 60   # at least twice notify_interval_ms
//! miss_limit = 3              # at least 1
//! takeover_step_ms = 10
//! preempt = true
//! preempt_delay_ms = 0
//! join_retry_ms = 20
//! leave_retry_ms = 20
//!
//! [limits]                    # optional table, every key optional;
//! http_max_head_bytes = 16384 # defaults are settings::Limits::default(); the
//! bus_refused_per_s = 50      # full list is settings::Limits::FIELDS
//!
//! [[node]]                    # one table per node
//! id = 1                      # node id (u32), unique
//! ring = "127.0.0.1:7501"     # unicast UDP address: the ring, and the bus in unicast mode
//! http = "127.0.0.1:8501"     # HTTP address (API and streams)
//! max_streams = 100           # streaming capacity: concurrent streams
//! max_bytes_per_s = 1250000000  # streaming capacity: bytes per second
//!
//! [[node.disk]]               # optional, one table per disk this node reaches
//! id = 1                      # disk id: the same disk has the same id on every node
//! mount = "/srv/d1"           # absolute mount point on this node
//! probe = "/srv/d1/.ringcast-probe"  # absolute failure detection location
//! ```
//!
//! With `transport = "unicast"` bus messages go to every other node's `ring`
//! address; `bus`, `interface`, `ttl` and `loopback` may stay in the file but
//! are neither used nor checked (beyond their types), so switching transports
//! is a one-line change. The node's protocol configuration then names its own
//! ring address as its bus.
//!
//! The key file holds one or two lines (blank lines and lines starting with
//! `#` are ignored). Each is 64 hexadecimal characters (a 32-byte key),
//! optionally preceded by a key id and a colon (`2:ab12...`). Without an id the
//! first key is id 1 and the second id 2. The first key seals frames; the
//! second is also accepted, for a rotation. Give explicit ids when rotating so
//! that a key keeps its id when it moves from the second line to the first.
//!
//! # Errors
//!
//! [`load`] reports every problem it finds (a TOML syntax or type error stops
//! the parse, so it is reported alone), each as `file:line: field: what is
//! wrong`, where `field` is the dotted path such as `cluster.priority` or
//! `node.disk.id`.
//!
//! # Where things are
//!
//! `schema` holds the tables as TOML gives them (with their spans), `check`
//! turns them into a [`ClusterFile`] or a list of [`Problem`]s (`check_tree`
//! for a tree of clusters), `spans` turns byte offsets and TOML errors into
//! lines and field paths, `model` holds the validated file and derives each
//! node's settings, `secrets` reads the key file and writes private files,
//! and `local` and `local_tree` lay out the local clusters `ringcast up`
//! runs, which `local_file` writes by serializing their tables.

mod check;
mod check_tree;
mod error;
mod local;
mod local_file;
mod local_tree;
mod model;
mod schema;
mod secrets;
mod spans;

pub use check::load;
pub use error::{ConfigFileError, Problem, ShapeError};
pub use local::{local_cluster, local_cluster_with_disks};
pub use local_tree::{
    local_hierarchy, parse_shape, LOCAL_PARENT_MISS_LIMIT, LOCAL_SLOWDOWN, MAX_LOCAL_MACHINES,
};
pub use model::{ClusterFile, ClusterInfo};
pub use schema::{DEFAULT_MTU, DEFAULT_TTL, MAX_LEVELS};
pub(crate) use secrets::write_private_bytes;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tree_tests;
