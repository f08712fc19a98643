//! The cluster file as TOML gives it: every table and key with its span,
//! before any check; and the defaults and bounds of the format.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The MTU when the file sets none.
pub const DEFAULT_MTU: usize = 1400;
/// The multicast TTL when the file sets none.
pub const DEFAULT_TTL: u32 = 1;

/// The most levels a tree may have, the root's included: placement goes up
/// and down the tree one machine per level, and the dashboard walks it.
pub const MAX_LEVELS: usize = 6;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) cluster: Spanned<RawCluster>,
    pub(super) timing: Option<Spanned<RawTiming>>,
    pub(super) limits: Option<BTreeMap<String, Spanned<u64>>>,
    #[serde(default, rename = "node")]
    pub(super) nodes: Vec<RawNode>,
    #[serde(default, rename = "subcluster")]
    pub(super) subclusters: Vec<Spanned<RawSubcluster>>,
}

/// Claim 5: a `[[subcluster]]` table: a cluster that is one node of the
/// cluster whose priority list names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubcluster {
    pub(super) id: Spanned<u32>,
    pub(super) name: Spanned<String>,
    pub(super) bus: Option<Spanned<SocketAddr>>,
    pub(super) interface: Option<Spanned<Ipv4Addr>>,
    pub(super) ttl: Option<Spanned<u32>>,
    pub(super) loopback: Option<Spanned<bool>>,
    pub(super) priority: Spanned<Vec<Spanned<u32>>>,
    pub(super) mtu: Option<Spanned<usize>>,
    pub(super) timing: Option<Spanned<RawTiming>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) id: u32,
    pub(super) name: Spanned<String>,
    pub(super) config_version: u32,
    pub(super) transport: Option<TransportKind>,
    pub(super) bus: Option<Spanned<SocketAddr>>,
    pub(super) interface: Option<Spanned<Ipv4Addr>>,
    pub(super) ttl: Option<Spanned<u32>>,
    pub(super) loopback: Option<Spanned<bool>>,
    pub(super) key_file: Spanned<String>,
    pub(super) admin_token_file: Option<Spanned<String>>,
    pub(super) priority: Spanned<Vec<Spanned<u32>>>,
    pub(super) mtu: Option<Spanned<usize>>,
    #[serde(default)]
    pub(super) servers: Vec<SocketAddr>,
    /// Claim 13: the cluster address, the entry point players are given;
    /// held by the supervisor.
    pub(super) address: Option<Spanned<SocketAddr>>,
    /// With it, every node serves HTTPS and trusts this CA for the others.
    pub(super) tls_ca: Option<Spanned<String>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum TransportKind {
    Multicast,
    Unicast,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTiming {
    pub(super) status_interval_ms: Option<Spanned<u64>>,
    pub(super) notify_interval_ms: Option<Spanned<u64>>,
    pub(super) notification_time_ms: Option<Spanned<u64>>,
    pub(super) miss_limit: Option<Spanned<u32>>,
    pub(super) takeover_step_ms: Option<Spanned<u64>>,
    pub(super) preempt: Option<bool>,
    pub(super) preempt_delay_ms: Option<Spanned<u64>>,
    pub(super) join_retry_ms: Option<Spanned<u64>>,
    pub(super) leave_retry_ms: Option<Spanned<u64>>,
    pub(super) disk_check_interval_ms: Option<Spanned<u64>>,
    pub(super) disk_quorum: Option<Spanned<u32>>,
}

impl RawTiming {
    /// The span of a duration field, named as `Timing::validate` names it.
    pub(super) fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let value = match field {
            "status_interval" => &self.status_interval_ms,
            "notify_interval" => &self.notify_interval_ms,
            "notification_time" => &self.notification_time_ms,
            "takeover_step" => &self.takeover_step_ms,
            "preempt_delay" => &self.preempt_delay_ms,
            "join_retry" => &self.join_retry_ms,
            "leave_retry" => &self.leave_retry_ms,
            "disk_check_interval" => &self.disk_check_interval_ms,
            _ => &None,
        };
        value.as_ref().map(Spanned::span)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) id: Spanned<u32>,
    pub(super) ring: Spanned<SocketAddr>,
    pub(super) http: Spanned<SocketAddr>,
    /// Claim 13: the node's service address, held by a live node.
    pub(super) service: Option<Spanned<SocketAddr>>,
    pub(super) max_streams: u32,
    pub(super) max_bytes_per_s: u64,
    pub(super) interface: Option<Spanned<Ipv4Addr>>,
    #[serde(default)]
    pub(super) seats: Vec<Spanned<SocketAddr>>,
    #[serde(default)]
    pub(super) disk: Vec<RawDisk>,
    /// The node's HTTPS certificate chain and key (with `cluster.tls_ca`).
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisk {
    pub(super) id: Spanned<u32>,
    pub(super) mount: Spanned<String>,
    pub(super) probe: Spanned<String>,
}
