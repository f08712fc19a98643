//! What the configuration service hands each node (claims 1-3), and the
//! protocol's timing parameters, as typed values checked by `validate()`.
//!
//! These types are also the one serialized form of what they hold: the
//! cluster file's tables and the configuration service's JSON use their
//! field names, with durations in whole milliseconds ([`millis`]).

use core::num::NonZeroU32;
use core::time::Duration;
use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{ClusterId, DiskId, NodeId, Rank};

/// Where a node can be reached: its ring (unicast UDP) and HTTP addresses.
/// Claim 10 and 14: notifications and join requests carry a node's network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddrs {
    /// Unicast UDP address that receives ring status messages.
    pub ring: SocketAddr,
    /// HTTP address of the node's API and streams.
    pub http: SocketAddr,
}

/// Claim 4: a node's streaming capacity, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Maximum concurrent streams.
    pub max_streams: u32,
    /// Maximum bytes per second the node may send.
    pub max_bytes_per_s: u64,
}

/// Claim 3: one entry of a node's disk access list (a `[[node.disk]]`
/// table of the cluster file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskAccess {
    /// The disk's identification (the same on every node that reaches it).
    pub id: DiskId,
    /// Where the disk is mounted on this node.
    pub mount: String,
    /// The failure detection location the disk probe writes and reads back.
    #[serde(rename = "probe")]
    pub probe_path: String,
}

/// A duration as a whole number of milliseconds, the unit of every duration
/// the cluster file and the configuration service's JSON give (fields named
/// `..._ms`): `#[serde(with = "millis")]`. Less than a millisecond is
/// dropped; more than `u64::MAX` milliseconds is written as `u64::MAX`.
pub mod millis {
    use core::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `duration` as whole milliseconds.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads whole milliseconds as a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// Claim 5: how many times slower each level of a tree runs than the level
/// below it, unless told otherwise (docs/hierarchy.md, "Timing between levels").
pub const LEVEL_SLOWDOWN: u32 = 5;

/// Claim 5: missed status periods before a parent cluster declares a seat
/// failed. A seat moves within a sub-cluster's failover plus one
/// notification of its parent; a loaded machine should not turn that into a
/// failure.
pub const PARENT_MISS_LIMIT: u32 = 5;

/// Timing of the protocol. Every timer of the node state machine derives from these.
///
/// Serialized as the cluster file's `[timing]` table and the settings
/// JSON's `timing` object name it: each duration as `<field>_ms` in whole
/// milliseconds (`status_interval_ms = 20`), `miss_limit` as a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Claim 6: how often a node sends its accumulated status downstream.
    #[serde(rename = "status_interval_ms", with = "millis")]
    pub status_interval: Duration,
    /// Claim 10: how often the supervisor posts its notification.
    #[serde(rename = "notify_interval_ms", with = "millis")]
    pub notify_interval: Duration,
    /// Claims 12, 18, 22: silence after which a node acts on a missing notification.
    #[serde(rename = "notification_time_ms", with = "millis")]
    pub notification_time: Duration,
    /// Claim 8: silent status periods from upstream before it is declared failed.
    pub miss_limit: NonZeroU32,
    /// Claim 12: extra takeover delay per rank, so the highest-priority survivor acts first.
    #[serde(rename = "takeover_step_ms", with = "millis")]
    pub takeover_step: Duration,
    /// Claim 16: whether a joining node that outranks the supervisor takes over.
    pub preempt: bool,
    /// Claim 16: how long a joining node that outranks the supervisor waits before it does.
    #[serde(rename = "preempt_delay_ms", with = "millis")]
    pub preempt_delay: Duration,
    /// Claims 14-15: interval between repeated join requests.
    #[serde(rename = "join_retry_ms", with = "millis")]
    pub join_retry: Duration,
    /// Claims 19-20: interval between repeated leave messages.
    #[serde(rename = "leave_retry_ms", with = "millis")]
    pub leave_retry: Duration,
    /// Claim 13: how often a node probes each disk it reaches.
    #[serde(rename = "disk_check_interval_ms", with = "millis")]
    pub disk_check_interval: Duration,
    /// Claim 13: distinct nodes whose reports declare a disk failed (capped
    /// by how many nodes reach the disk).
    pub disk_quorum: u32,
}

impl Timing {
    /// A local network: 20 ms intervals, three missed periods, 60 ms notification time.
    pub fn lan() -> Self {
        let tick = Duration::from_millis(20);
        Timing {
            status_interval: tick,
            notify_interval: tick,
            notification_time: tick * 3,
            miss_limit: NonZeroU32::new(3).expect("3 is not zero"),
            takeover_step: tick / 2,
            preempt: true,
            preempt_delay: Duration::ZERO,
            join_retry: tick,
            leave_retry: tick,
            disk_check_interval: Duration::from_secs(1),
            disk_quorum: 2,
        }
    }

    /// A wide-area or busy network: 200 ms intervals, five missed periods.
    pub fn wan() -> Self {
        let tick = Duration::from_millis(200);
        Timing {
            status_interval: tick,
            notify_interval: tick,
            notification_time: tick * 5,
            miss_limit: NonZeroU32::new(5).expect("5 is not zero"),
            takeover_step: tick / 2,
            preempt: true,
            preempt_delay: Duration::from_secs(2),
            join_retry: tick,
            leave_retry: tick,
            disk_check_interval: Duration::from_secs(5),
            disk_quorum: 2,
        }
    }

    /// Every interval scaled to `status_interval`, as the `lan()` preset relates them.
    pub fn with_interval(interval: Duration, miss_limit: u32) -> Self {
        let mut t = Timing::lan();
        t.status_interval = interval;
        t.notify_interval = interval;
        t.notification_time = interval * miss_limit.max(2);
        t.miss_limit = NonZeroU32::new(miss_limit.max(1)).expect("max(1) is not zero");
        t.takeover_step = interval / 2;
        t.join_retry = interval;
        t.leave_retry = interval;
        t
    }

    /// Claim 5: the timing of a cluster `levels_above` levels above the
    /// leaves of a tree whose leaves run `self`: every interval `slowdown`
    /// times longer per level, so a sub-cluster fails over and its seat
    /// moves well inside its parent's failure detection, and
    /// [`PARENT_MISS_LIMIT`] missed periods before a seat is declared
    /// failed. The one rule of the simulator and of generated cluster files.
    pub fn for_level(&self, levels_above: u32, slowdown: u32) -> Timing {
        if levels_above == 0 {
            return self.clone();
        }
        let factor = slowdown.max(1).saturating_pow(levels_above);
        let mut t = Timing::with_interval(self.status_interval * factor, PARENT_MISS_LIMIT);
        t.preempt = self.preempt;
        t.disk_check_interval = self.disk_check_interval;
        t.disk_quorum = self.disk_quorum;
        t
    }

    /// How long a node waits for its upstream neighbour before declaring it failed (claim 8).
    pub fn upstream_timeout(&self) -> Duration {
        self.status_interval * self.miss_limit.get()
    }

    /// Checks that the timers make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("status_interval", self.status_interval),
            ("notify_interval", self.notify_interval),
            ("notification_time", self.notification_time),
            ("join_retry", self.join_retry),
            ("leave_retry", self.leave_retry),
            ("disk_check_interval", self.disk_check_interval),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
            if value > Duration::from_secs(3600) {
                return Err(ConfigError::DurationTooLong { field });
            }
        }
        if self.disk_quorum == 0 {
            return Err(ConfigError::ZeroDiskQuorum);
        }
        if self.notification_time < self.notify_interval * 2 {
            return Err(ConfigError::NotificationTimeTooShort {
                notification_time: self.notification_time,
                notify_interval: self.notify_interval,
            });
        }
        Ok(())
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing::lan()
    }
}

/// Claims 1-3: everything the configuration service hands one node.
///
/// Serialized with its addresses as `ring` and `http` beside the other
/// fields, and without `bus`: how the bus is carried (and so its address)
/// is the transport's to say, and whoever reads a `NodeConfig` sets `bus`
/// from it (the settings JSON of the configuration service does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The cluster this node is a member of.
    pub cluster: ClusterId,
    /// This node's identification (claim 1).
    pub node: NodeId,
    /// Version of the cluster configuration; a node seeing a newer one refetches.
    pub config_version: u32,
    /// Claim 1: the multicast bus address of the cluster (in unicast mode
    /// the node's own ring address). Not serialized; read as `0.0.0.0:0`.
    #[serde(skip, default = "unset_bus")]
    pub bus: SocketAddr,
    /// Claim 1: the priority list, highest priority first.
    pub priority: Vec<NodeId>,
    /// This node's own addresses.
    #[serde(flatten)]
    pub addrs: NodeAddrs,
    /// Claims 2-3: the disks this node reaches.
    pub disks: Vec<DiskAccess>,
    /// Claim 4: this node's streaming capacity.
    pub capacity: Capacity,
    /// Claim 4: addresses of servers the cluster talks to (configuration service,
    /// parent bus), carried in the cluster map.
    pub servers: Vec<SocketAddr>,
    /// Protocol timing.
    pub timing: Timing,
    /// Largest datagram the node sends; longer messages are split into parts.
    pub mtu: usize,
}

/// The bus address of a [`NodeConfig`] just read, before its reader sets it.
fn unset_bus() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// Smallest MTU a configuration may set: room for a frame header and some body.
pub const MIN_MTU: usize = 256;
/// Largest MTU: one UDP datagram.
pub const MAX_MTU: usize = 65_000;
/// Longest priority list (and so largest cluster) a configuration may name.
pub const MAX_NODES: usize = 4096;
/// Most disks one node may reach.
pub const MAX_DISKS_PER_NODE: usize = 256;

impl NodeConfig {
    /// Claim 1: this node's rank in the priority list.
    pub fn rank(&self) -> Rank {
        self.rank_of(self.node).unwrap_or(Rank(u16::MAX))
    }

    /// The rank of any node, or `None` if it is not in the priority list.
    pub fn rank_of(&self, node: NodeId) -> Option<Rank> {
        self.priority
            .iter()
            .position(|n| *n == node)
            .map(|p| Rank(p as u16))
    }

    /// Checks the configuration a node is about to run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.timing.validate()?;
        if self.priority.is_empty() {
            return Err(ConfigError::EmptyPriority);
        }
        if self.priority.len() > MAX_NODES {
            return Err(ConfigError::TooManyNodes {
                count: self.priority.len(),
            });
        }
        let mut seen = BTreeSet::new();
        for n in &self.priority {
            if !seen.insert(*n) {
                return Err(ConfigError::DuplicatePriority { node: *n });
            }
        }
        if !seen.contains(&self.node) {
            return Err(ConfigError::NotInPriority { node: self.node });
        }
        if self.disks.len() > MAX_DISKS_PER_NODE {
            return Err(ConfigError::TooManyDisks {
                count: self.disks.len(),
            });
        }
        let mut disks = BTreeSet::new();
        for d in &self.disks {
            if !disks.insert(d.id) {
                return Err(ConfigError::DuplicateDisk { disk: d.id });
            }
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::Mtu { mtu: self.mtu });
        }
        Ok(())
    }
}

/// A configuration that cannot run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The offending field.
        field: &'static str,
    },
    /// A duration longer than an hour: almost certainly a unit mistake.
    #[error("{field} is longer than one hour")]
    DurationTooLong {
        /// The offending field.
        field: &'static str,
    },
    /// The notification time would expire between two notifications.
    #[error("notification_time ({notification_time:?}) must be at least twice notify_interval ({notify_interval:?})")]
    NotificationTimeTooShort {
        /// Configured notification time.
        notification_time: core::time::Duration,
        /// Configured notify interval.
        notify_interval: core::time::Duration,
    },
    /// A disk could never be declared failed.
    #[error("disk_quorum must be at least 1")]
    ZeroDiskQuorum,
    /// The priority list is empty.
    #[error("the priority list is empty")]
    EmptyPriority,
    /// More nodes than one cluster may hold.
    #[error("the priority list names {count} nodes; at most {MAX_NODES} are allowed")]
    TooManyNodes {
        /// How many were named.
        count: usize,
    },
    /// A node appears twice in the priority list.
    #[error("node {node} appears twice in the priority list")]
    DuplicatePriority {
        /// The repeated node.
        node: NodeId,
    },
    /// The node itself is missing from the priority list.
    #[error("node {node} is not in the priority list")]
    NotInPriority {
        /// The missing node.
        node: NodeId,
    },
    /// Too many disks in one node's access list.
    #[error("the disk access list names {count} disks; at most {MAX_DISKS_PER_NODE} are allowed")]
    TooManyDisks {
        /// How many were named.
        count: usize,
    },
    /// A disk appears twice in one node's access list.
    #[error("disk {disk} appears twice in the disk access list")]
    DuplicateDisk {
        /// The repeated disk.
        disk: DiskId,
    },
    /// The MTU is outside what a frame can use.
    #[error("mtu {mtu} is outside {MIN_MTU}..={MAX_MTU}")]
    Mtu {
        /// The configured MTU.
        mtu: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        NodeConfig {
            cluster: ClusterId(1),
            node: NodeId(2),
            config_version: 1,
            bus: "239.1.1.1:7000".parse().unwrap(),
            priority: vec![NodeId(1), NodeId(2), NodeId(3)],
            addrs: NodeAddrs {
                ring: addr,
                http: addr,
            },
            disks: vec![DiskAccess {
                id: DiskId(1),
                mount: "/srv/d1".into(),
                probe_path: "/srv/d1/.probe".into(),
            }],
            capacity: Capacity::default(),
            servers: vec![],
            timing: Timing::lan(),
            mtu: 1400,
        }
    }

    #[test]
    fn the_presets_are_valid() {
        Timing::lan().validate().unwrap();
        Timing::wan().validate().unwrap();
        Timing::with_interval(Duration::from_millis(5), 2)
            .validate()
            .unwrap();
        config().validate().unwrap();
    }

    #[test]
    fn rank_is_the_position_in_the_priority_list() {
        let c = config();
        assert_eq!(c.rank(), Rank(1));
        assert_eq!(c.rank_of(NodeId(1)), Some(Rank(0)));
        assert_eq!(c.rank_of(NodeId(9)), None);
    }

    #[test]
    fn each_broken_configuration_gets_its_own_error() {
        let mut cases: Vec<(NodeConfig, ConfigError)> = Vec::new();
        let mut c = config();
        c.timing.status_interval = Duration::ZERO;
        cases.push((
            c,
            ConfigError::ZeroDuration {
                field: "status_interval",
            },
        ));
        let mut c = config();
        c.timing.notification_time = c.timing.notify_interval;
        cases.push((
            c.clone(),
            ConfigError::NotificationTimeTooShort {
                notification_time: c.timing.notification_time,
                notify_interval: c.timing.notify_interval,
            },
        ));
        let mut c = config();
        c.priority.push(NodeId(1));
        cases.push((c, ConfigError::DuplicatePriority { node: NodeId(1) }));
        let mut c = config();
        c.priority.retain(|n| *n != NodeId(2));
        cases.push((c, ConfigError::NotInPriority { node: NodeId(2) }));
        let mut c = config();
        c.priority.clear();
        cases.push((c, ConfigError::EmptyPriority));
        let mut c = config();
        c.disks.push(c.disks[0].clone());
        cases.push((c, ConfigError::DuplicateDisk { disk: DiskId(1) }));
        let mut c = config();
        c.mtu = 100;
        cases.push((c, ConfigError::Mtu { mtu: 100 }));
        let mut c = config();
        c.timing.leave_retry = Duration::from_secs(7200);
        cases.push((
            c,
            ConfigError::DurationTooLong {
                field: "leave_retry",
            },
        ));
        for (c, expected) in cases {
            assert_eq!(c.validate(), Err(expected));
        }
    }
}
