//! What one node runs with (claims 1-3): the protocol configuration the
//! configuration service hands it, how its bus is carried, the cluster keys
//! and the admin token's digest.
//!
//! [`NodeSettings`] is built from the cluster file (`clusterfile`) or
//! fetched from the configuration service (`service`), which sends it as
//! JSON. The JSON form spells out every field, gives durations in whole
//! milliseconds and keys as hexadecimal. It is derived from the types that
//! hold the values (`NodeSettings`, `BusMode`, `Limits` here, and
//! `NodeConfig`, `Timing`, `Capacity`, `DiskAccess` in `ringcast_proto`):
//!
//! ```json
//! {
//!   "cluster": 1, "cluster_name": "local", "node": 2, "config_version": 1,
//!   "bus": { "transport": "multicast", "group": "239.255.42.1:7400",
//!            "interface": "127.0.0.1", "ttl": 0, "loopback": true },
//!   "priority": [1, 2, 3],
//!   "ring": "127.0.0.1:7502", "http": "127.0.0.1:8502",
//!   "capacity": { "max_streams": 100, "max_bytes_per_s": 1250000000 },
//!   "disks": [ { "id": 1, "mount": "/srv/d1", "probe": "/srv/d1/.ringcast-probe" } ],
//!   "servers": [], "mtu": 1400,
//!   "timing": { "status_interval_ms": 20, "notify_interval_ms": 20,
//!               "notification_time_ms": 60, "miss_limit": 3, "takeover_step_ms": 10,
//!               "preempt": true, "preempt_delay_ms": 0,
//!               "join_retry_ms": 20, "leave_retry_ms": 20,
//!               "disk_check_interval_ms": 1000, "disk_quorum": 2 },
//!   "keys": [ { "id": 1, "key": "<64 hex characters>" } ],
//!   "admin_token_sha256": "<64 hex characters, absent without an admin token>",
//!   "limits": { "http_client_requests_per_s": 20 }
//! }
//! ```
//!
//! With `"transport": "unicast"` the bus object holds
//! `"peers": [{ "node": 1, "ring": "127.0.0.1:7501" }, ...]` instead of the
//! multicast fields. `limits` names only the limits of [`Limits::FIELDS`]
//! that differ from their defaults, and is left out when none do, so that a
//! node older than the limits (it refuses unknown fields) still reads a
//! newer service's answer; any limit left out takes its default. Decoding
//! checks everything [`NodeSettings::validate`] checks.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use ringcast_proto::{ConfigError, KeyId, Keyring, NodeConfig, NodeId};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use ringcast_files::buckets::Rate;

use crate::addresses::ServiceAddresses;
use crate::admin::AdminDigest;
pub use ringcast_files::limits::HttpLimits;

/// Length of a cluster key in bytes.
pub const KEY_LEN: usize = 32;

/// Name of a disk's library folder under its mount point (claim 3's disk
/// access list names the mount): titles live in `<mount>/library`.
pub const LIBRARY_DIR: &str = "library";

/// Claim 1: how a node's bus messages travel.
///
/// In the settings JSON, an object tagged by `transport` (`"multicast"` or
/// `"unicast"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase", deny_unknown_fields)]
pub enum BusMode {
    /// One UDP multicast group per cluster (DESIGN section 3).
    Multicast {
        /// The cluster's multicast group and port: the bus address of claim 1.
        group: SocketAddrV4,
        /// The local interface address multicast leaves from (`IP_MULTICAST_IF`).
        interface: Ipv4Addr,
        /// Multicast TTL; 0 keeps the traffic on this host.
        ttl: u32,
        /// Whether this host's own sockets receive what it sends (`IP_MULTICAST_LOOP`).
        loopback: bool,
    },
    /// For networks without multicast: every bus message goes by unicast to each
    /// peer's ring address, as keepalived's `unicast_peer` does.
    Unicast {
        /// Every other node of the cluster with its ring address; never the node itself.
        #[serde(with = "peers_json")]
        peers: Vec<(NodeId, SocketAddr)>,
    },
}

/// Claims 1-3: everything one node runs with.
///
/// Invariants, checked by [`NodeSettings::validate`] and by decoding: the
/// protocol configuration is valid, there are one or two keys with distinct
/// ids, and `proto.bus` is the multicast group (multicast) or the node's own
/// ring address (unicast, where no bus address exists).
///
/// `Debug` prints key ids but never key bytes nor the admin token.
///
/// The JSON form (the module's documentation shows it) is derived: the
/// fields of `proto` sit beside the others, `proto.bus` is not carried but
/// follows from `bus` when the JSON is read, and reading checks everything
/// [`NodeSettings::validate`] checks (the `Deserialize` impl below).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct NodeSettings {
    /// Claims 1-3: node id, bus address, priority list, disk access list, timing.
    /// Its `NodeConfig` refuses fields neither it nor these settings know.
    #[serde(flatten)]
    pub proto: NodeConfig,
    /// How the bus is carried.
    pub bus: BusMode,
    /// The cluster keys, one or two (during a rotation); the first seals frames.
    #[serde(with = "keys_json")]
    pub keys: Vec<(KeyId, [u8; KEY_LEN])>,
    /// The digest of the token that guards the node's admin endpoints
    /// (such as `POST /v1/leave`): a node never holds the token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_sha256: Option<AdminDigest>,
    /// Human-readable name of the cluster, for logs and status output.
    pub cluster_name: String,
    /// Limits against hostile HTTP clients and bus senders. Only those that
    /// differ from their defaults are written, and none at all when none
    /// do; older services send none: every limit then takes its default.
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
    /// Claim 5: what this machine runs with in each ancestor cluster while it
    /// holds its cluster's seat there, nearest parent first (empty outside a
    /// hierarchy). Each is a node of that cluster under the child cluster's
    /// id; its own `seats` is empty. Absent from the JSON outside a hierarchy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seats: Vec<NodeSettings>,
    /// Claim 13: the service addresses of the node's cluster; absent when
    /// the cluster has none (players then use the nodes' own listeners).
    #[serde(default, skip_serializing_if = "ServiceAddresses::is_empty")]
    pub service: ServiceAddresses,
    /// HTTPS on the node's port (`SECURITY.md`): the files the node reads
    /// on its host. Absent without TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<HttpTls>,
}

impl Serialize for NodeSettings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The derived form (`remote = "Self"` makes it an inherent function).
        NodeSettings::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for NodeSettings {
    /// The derived form, then what it leaves to check: the bus address
    /// follows from the transport, and the settings must be valid.
    ///
    /// An earlier service sent the admin token itself (`admin_token`): it
    /// is read as its digest, so nodes can be upgraded before the service.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = serde_json::Value::deserialize(deserializer)?;
        if let Some(fields) = value.as_object_mut() {
            if let Some(token) = fields.remove("admin_token") {
                match token {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(t) if !fields.contains_key("admin_token_sha256") => {
                        let digest =
                            serde_json::to_value(AdminDigest::of(&t)).map_err(D::Error::custom)?;
                        fields.insert("admin_token_sha256".into(), digest);
                    }
                    _ => return Err(D::Error::custom("admin_token is not a string")),
                }
            }
        }
        let mut settings = NodeSettings::deserialize(value).map_err(D::Error::custom)?;
        settings.proto.bus = match &settings.bus {
            BusMode::Multicast { group, .. } => SocketAddr::V4(*group),
            BusMode::Unicast { .. } => settings.proto.addrs.ring,
        };
        settings.validate().map_err(D::Error::custom)?;
        Ok(settings)
    }
}

/// Where a node finds its HTTPS credentials: the cluster's CA (which the
/// other nodes' certificates are checked against), its certificate chain
/// and its key, all PEM files on the node's host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTls {
    /// The CA certificate.
    pub ca: std::path::PathBuf,
    /// The node's certificate chain.
    pub cert: std::path::PathBuf,
    /// The node's key.
    pub key: std::path::PathBuf,
}

/// Limits on the datagrams the bus and ring sockets take from one
/// sender (a known member's ring address, or any other source by its IP
/// address), checked before a datagram is parsed or authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusLimits {
    /// Datagrams of any kind per sender. The default is well above what the
    /// protocol sends (a 64-part notification every 20 ms is 3200 a second).
    pub datagrams: Rate,
    /// Datagrams refused (garbage, forgeries, replays, ...) per sender. Once
    /// a sender's budget is spent, every datagram from it is dropped unread
    /// until the budget refills.
    pub refused: Rate,
    /// Senders tracked at once; beyond, idle ones are forgotten and new
    /// ones share one budget.
    pub max_senders: usize,
}

impl Default for BusLimits {
    fn default() -> BusLimits {
        BusLimits {
            datagrams: Rate {
                per_second: 5000,
                burst: 10_000,
            },
            refused: Rate {
                per_second: 50,
                burst: 100,
            },
            max_senders: 1024,
        }
    }
}

/// Every limit of a node, as the cluster file's `[limits]` table
/// and the settings' `limits` object name them ([`Limits::FIELDS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// The HTTP listener's.
    pub http: HttpLimits,
    /// The bus and ring sockets'.
    pub bus: BusLimits,
}

/// A field of [`Limits`] with its allowed range.
struct LimitField {
    name: &'static str,
    min: u64,
    max: u64,
}

const fn field(name: &'static str, min: u64, max: u64) -> LimitField {
    LimitField { name, min, max }
}

const HOUR_MS: u64 = 3_600_000;

const LIMIT_FIELDS: [LimitField; 16] = [
    field("http_max_head_bytes", 1024, 65_536),
    field("http_head_timeout_ms", 1, HOUR_MS),
    field("http_idle_timeout_ms", 1, HOUR_MS),
    field("http_send_timeout_ms", 1, HOUR_MS),
    field("http_max_connections", 1, 1_000_000),
    field("http_max_client_connections", 1, 1_000_000),
    field("http_client_requests_per_s", 0, 1_000_000),
    field("http_client_request_burst", 1, 1_000_000),
    field("http_max_clients", 1, 1_000_000),
    field("http_client_placements_per_s", 0, 1_000_000),
    field("http_client_placement_burst", 1, 1_000_000),
    field("bus_datagrams_per_s", 0, 10_000_000),
    field("bus_datagram_burst", 1, 10_000_000),
    field("bus_refused_per_s", 0, 10_000_000),
    field("bus_refused_burst", 1, 10_000_000),
    field("bus_max_senders", 1, 1_000_000),
];

/// Why a limit cannot be set.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LimitError {
    /// No limit has this name.
    #[error("unknown limit `{0}`")]
    Unknown(String),
    /// The value is outside the limit's range.
    #[error("{field} must be from {min} to {max}, not {value}")]
    OutOfRange {
        /// The limit.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn as_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn as_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Limits {
    /// The name of every limit, in the order the docs list them. A rate of
    /// 0 (`*_per_s`) means no limit.
    pub const FIELDS: [&'static str; 16] = {
        let mut names = [""; 16];
        let mut i = 0;
        while i < 16 {
            names[i] = LIMIT_FIELDS[i].name;
            i += 1;
        }
        names
    };

    /// The value of limit `name` (milliseconds for durations), if it exists.
    pub fn get(&self, name: &str) -> Option<u64> {
        let (h, b) = (&self.http, &self.bus);
        Some(match name {
            "http_max_head_bytes" => h.max_head as u64,
            "http_head_timeout_ms" => ms(h.head_timeout),
            "http_idle_timeout_ms" => ms(h.idle_timeout),
            "http_send_timeout_ms" => ms(h.send_timeout),
            "http_max_connections" => h.max_connections as u64,
            "http_max_client_connections" => h.max_client_connections as u64,
            "http_client_requests_per_s" => u64::from(h.client_requests.per_second),
            "http_client_request_burst" => u64::from(h.client_requests.burst),
            "http_max_clients" => h.max_clients as u64,
            "http_client_placements_per_s" => u64::from(h.client_placements.per_second),
            "http_client_placement_burst" => u64::from(h.client_placements.burst),
            "bus_datagrams_per_s" => u64::from(b.datagrams.per_second),
            "bus_datagram_burst" => u64::from(b.datagrams.burst),
            "bus_refused_per_s" => u64::from(b.refused.per_second),
            "bus_refused_burst" => u64::from(b.refused.burst),
            "bus_max_senders" => b.max_senders as u64,
            _ => return None,
        })
    }

    /// Sets limit `name` to `value` (milliseconds for durations), checking
    /// its range.
    pub fn set(&mut self, name: &str, value: u64) -> Result<(), LimitError> {
        let spec = LIMIT_FIELDS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| LimitError::Unknown(name.to_string()))?;
        if !(spec.min..=spec.max).contains(&value) {
            return Err(LimitError::OutOfRange {
                field: spec.name,
                value,
                min: spec.min,
                max: spec.max,
            });
        }
        let (h, b) = (&mut self.http, &mut self.bus);
        match spec.name {
            "http_max_head_bytes" => h.max_head = as_usize(value),
            "http_head_timeout_ms" => h.head_timeout = Duration::from_millis(value),
            "http_idle_timeout_ms" => h.idle_timeout = Duration::from_millis(value),
            "http_send_timeout_ms" => h.send_timeout = Duration::from_millis(value),
            "http_max_connections" => h.max_connections = as_usize(value),
            "http_max_client_connections" => h.max_client_connections = as_usize(value),
            "http_client_requests_per_s" => h.client_requests.per_second = as_u32(value),
            "http_client_request_burst" => h.client_requests.burst = as_u32(value),
            "http_max_clients" => h.max_clients = as_usize(value),
            "http_client_placements_per_s" => h.client_placements.per_second = as_u32(value),
            "http_client_placement_burst" => h.client_placements.burst = as_u32(value),
            "bus_datagrams_per_s" => b.datagrams.per_second = as_u32(value),
            "bus_datagram_burst" => b.datagrams.burst = as_u32(value),
            "bus_refused_per_s" => b.refused.per_second = as_u32(value),
            "bus_refused_burst" => b.refused.burst = as_u32(value),
            _ => b.max_senders = as_usize(value),
        }
        Ok(())
    }

    /// Checks every limit's range.
    pub fn validate(&self) -> Result<(), LimitError> {
        let mut copy = Limits::default();
        for name in Limits::FIELDS {
            copy.set(name, self.get(name).unwrap_or_default())?;
        }
        Ok(())
    }
}

/// In the settings JSON, an object of every limit by name
/// ([`Limits::FIELDS`], milliseconds for durations).
/// The limits that differ from their defaults.
impl Serialize for Limits {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let defaults = Limits::default();
        serializer.collect_map(Limits::FIELDS.iter().filter_map(|name| {
            let value = self.get(name)?;
            (defaults.get(name) != Some(value)).then_some((*name, value))
        }))
    }
}

impl Limits {
    /// Whether every limit has its default.
    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }
}

/// The defaults with the limits the object names set; an unknown limit or
/// one out of its range is refused.
impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut limits = Limits::default();
        for (name, value) in BTreeMap::<String, u64>::deserialize(deserializer)? {
            limits.set(&name, value).map_err(D::Error::custom)?;
        }
        Ok(limits)
    }
}

impl fmt::Debug for NodeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key_ids: Vec<KeyId> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("NodeSettings")
            .field("proto", &self.proto)
            .field("bus", &self.bus)
            .field("keys", &key_ids)
            .field("admin_token_sha256", &self.admin_token_sha256)
            .field("cluster_name", &self.cluster_name)
            .field("limits", &self.limits)
            .field("seats", &self.seats)
            .finish()
    }
}

impl NodeSettings {
    /// The keyring the node seals and opens frames with: the first key seals,
    /// the second (if any) is accepted too.
    ///
    /// # Panics
    ///
    /// If `keys` is empty, which [`NodeSettings::validate`] and decoding reject.
    pub fn keyring(&self) -> Keyring {
        let (first, rest) = self
            .keys
            .split_first()
            .expect("validated settings hold at least one key");
        let mut keyring = Keyring::new(first.0, first.1);
        for (id, key) in rest {
            keyring.accept(*id, *key);
        }
        keyring
    }

    /// Checks the invariants listed on [`NodeSettings`].
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.proto.validate()?;
        self.validate_keys()?;
        self.limits.validate()?;
        self.validate_bus()?;
        for seat in &self.seats {
            if !seat.seats.is_empty() {
                return Err(SettingsError::NestedSeats(seat.proto.node));
            }
            seat.validate()?;
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), SettingsError> {
        if !(1..=2).contains(&self.keys.len()) {
            return Err(SettingsError::KeyCount(self.keys.len()));
        }
        if let [(a, _), (b, _)] = self.keys.as_slice() {
            if a == b {
                return Err(SettingsError::DuplicateKeyId(*a));
            }
        }
        Ok(())
    }

    fn validate_bus(&self) -> Result<(), SettingsError> {
        let expected = match &self.bus {
            BusMode::Multicast { group, .. } => {
                if !group.ip().is_multicast() {
                    return Err(SettingsError::NotMulticast(*group));
                }
                SocketAddr::V4(*group)
            }
            BusMode::Unicast { peers } => {
                if peers.iter().any(|(id, _)| *id == self.proto.node) {
                    return Err(SettingsError::SelfPeer(self.proto.node));
                }
                self.proto.addrs.ring
            }
        };
        if self.proto.bus != expected {
            return Err(SettingsError::BusMismatch {
                bus: self.proto.bus,
                expected,
            });
        }
        Ok(())
    }
}

/// Why a [`NodeSettings`] (or its JSON form) cannot run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingsError {
    /// The protocol configuration is invalid.
    #[error(transparent)]
    Proto(#[from] ConfigError),
    /// Not one or two keys.
    #[error("the settings hold {0} cluster keys; one or two are allowed")]
    KeyCount(usize),
    /// Both keys have the same id.
    #[error("both cluster keys have id {0}")]
    DuplicateKeyId(KeyId),
    /// A key is not 64 hexadecimal characters.
    #[error("cluster key {0} is not 64 hexadecimal characters")]
    KeyHex(KeyId),
    /// A limit is unknown or out of its range.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The multicast group is not a multicast address.
    #[error("bus group {0} is not an IPv4 multicast address")]
    NotMulticast(SocketAddrV4),
    /// The unicast peer list names the node itself.
    #[error("the unicast peer list names node {0} itself")]
    SelfPeer(NodeId),
    /// A seat's settings hold seats of their own.
    #[error(
        "the seat {0} lists seats of its own; a machine's seats are all listed at its top level"
    )]
    NestedSeats(NodeId),
    /// `proto.bus` disagrees with the bus transport.
    #[error("bus address {bus} should be {expected} for this transport")]
    BusMismatch {
        /// What `proto.bus` holds.
        bus: SocketAddr,
        /// What the transport implies.
        expected: SocketAddr,
    },
}

/// Lowercase hexadecimal of a key.
pub(crate) fn key_to_hex(key: &[u8; KEY_LEN]) -> String {
    hex::encode(key)
}

/// A key from exactly 64 hexadecimal characters (either case), or `None`.
pub(crate) fn key_from_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

/// Claim 1's cluster keys in the settings JSON: `[{"id": 1, "key": "<64
/// hex characters>"}, ...]`, the key in lowercase hexadecimal (either case
/// is read).
mod keys_json {
    use ringcast_proto::KeyId;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{key_from_hex, key_to_hex, SettingsError, KEY_LEN};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        id: KeyId,
        key: String,
    }

    pub(super) fn serialize<S: Serializer>(
        keys: &[(KeyId, [u8; KEY_LEN])],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(keys.iter().map(|(id, key)| Entry {
            id: *id,
            key: key_to_hex(key),
        }))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(KeyId, [u8; KEY_LEN])>, D::Error> {
        Vec::<Entry>::deserialize(deserializer)?
            .into_iter()
            .map(|e| {
                key_from_hex(&e.key)
                    .map(|key| (e.id, key))
                    .ok_or_else(|| D::Error::custom(SettingsError::KeyHex(e.id)))
            })
            .collect()
    }
}

/// The unicast bus's peers in the settings JSON: `[{"node": 1, "ring":
/// "127.0.0.1:7501"}, ...]`.
mod peers_json {
    use std::net::SocketAddr;

    use ringcast_proto::NodeId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Peer {
        node: NodeId,
        ring: SocketAddr,
    }

    pub(super) fn serialize<S: Serializer>(
        peers: &[(NodeId, SocketAddr)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(peers.iter().map(|&(node, ring)| Peer { node, ring }))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(NodeId, SocketAddr)>, D::Error> {
        let peers = Vec::<Peer>::deserialize(deserializer)?;
        Ok(peers.into_iter().map(|p| (p.node, p.ring)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcast_proto::{Capacity, ClusterId, DiskAccess, DiskId, NodeAddrs, Timing};

    const SECRET_TOKEN: &str = "s3cret-admin-token";

    fn settings() -> NodeSettings {
        let ring: SocketAddr = "127.0.0.1:7502".parse().unwrap();
        let group: SocketAddrV4 = "239.255.42.1:7400".parse().unwrap();
        NodeSettings {
            proto: NodeConfig {
                cluster: ClusterId(1),
                node: NodeId(2),
                config_version: 3,
                bus: SocketAddr::V4(group),
                priority: vec![NodeId(1), NodeId(2)],
                addrs: NodeAddrs {
                    ring,
                    http: "127.0.0.1:8502".parse().unwrap(),
                },
                disks: vec![DiskAccess {
                    id: DiskId(4),
                    mount: "/srv/d4".into(),
                    probe_path: "/srv/d4/.ringcast-probe".into(),
                }],
                capacity: Capacity {
                    max_streams: 10,
                    max_bytes_per_s: 1000,
                },
                servers: vec!["127.0.0.1:9000".parse().unwrap()],
                timing: Timing::lan(),
                mtu: 1400,
            },
            bus: BusMode::Multicast {
                group,
                interface: Ipv4Addr::LOCALHOST,
                ttl: 0,
                loopback: true,
            },
            keys: vec![(KeyId(1), [0xAB; 32]), (KeyId(2), [0x01; 32])],
            admin_token_sha256: Some(AdminDigest::of(SECRET_TOKEN)),
            cluster_name: "test".into(),
            limits: Limits::default(),
            seats: Vec::new(),
            service: Default::default(),
            tls: None,
        }
    }

    #[test]
    fn settings_survive_a_round_trip_through_json() {
        let s = settings();
        let json = serde_json::to_string(&s).unwrap();
        let back: NodeSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn unicast_settings_survive_a_round_trip_through_json() {
        let mut s = settings();
        s.bus = BusMode::Unicast {
            peers: vec![(NodeId(1), "127.0.0.1:7501".parse().unwrap())],
        };
        s.proto.bus = s.proto.addrs.ring;
        let json = serde_json::to_string(&s).unwrap();
        let back: NodeSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn the_json_form_gives_durations_in_milliseconds_and_keys_in_hex() {
        let value = serde_json::to_value(settings()).unwrap();
        assert_eq!(value["timing"]["notification_time_ms"], 60);
        assert_eq!(value["keys"][0]["key"], "ab".repeat(32));
        assert_eq!(value["bus"]["transport"], "multicast");
        assert!(!value.to_string().contains(SECRET_TOKEN));
        assert!(value["admin_token_sha256"]
            .as_str()
            .is_some_and(|d| d.len() == 64));
    }

    #[test]
    fn debug_never_prints_key_bytes_or_the_admin_token() {
        let text = format!("{:?}", settings());
        assert!(!text.contains(SECRET_TOKEN), "{text}");
        assert!(!text.contains("171"), "key byte 0xAB printed: {text}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(text.contains("AdminDigest(..)"), "{text}");
    }

    #[test]
    fn the_keyring_seals_with_the_first_key() {
        let ring = settings().keyring();
        let text = format!("{ring:?}");
        assert!(text.contains("sending: KeyId(1)"), "{text}");
        assert!(text.contains("KeyId(2)"), "{text}");
    }

    #[test]
    fn json_with_an_unknown_field_is_refused() {
        let mut value = serde_json::to_value(settings()).unwrap();
        value["surprise"] = serde_json::json!(1);
        let err = serde_json::from_value::<NodeSettings>(value).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }

    #[test]
    fn json_with_a_bad_key_is_refused() {
        let mut value = serde_json::to_value(settings()).unwrap();
        value["keys"][0]["key"] = serde_json::json!("zz".repeat(32));
        let err = serde_json::from_value::<NodeSettings>(value).unwrap_err();
        assert!(err.to_string().contains("not 64 hexadecimal"), "{err}");
    }

    #[test]
    fn json_that_fails_protocol_validation_is_refused() {
        let mut value = serde_json::to_value(settings()).unwrap();
        value["priority"] = serde_json::json!([1]);
        let err = serde_json::from_value::<NodeSettings>(value).unwrap_err();
        assert!(
            err.to_string().contains("not in the priority list"),
            "{err}"
        );
    }

    #[test]
    fn validation_rejects_inconsistent_settings() {
        let mut s = settings();
        s.keys.clear();
        assert_eq!(s.validate(), Err(SettingsError::KeyCount(0)));
        let mut s = settings();
        s.keys[1].0 = KeyId(1);
        assert_eq!(s.validate(), Err(SettingsError::DuplicateKeyId(KeyId(1))));
        let mut s = settings();
        s.proto.bus = "239.255.42.1:7401".parse().unwrap();
        assert!(matches!(
            s.validate(),
            Err(SettingsError::BusMismatch { .. })
        ));
        let mut s = settings();
        let group: SocketAddrV4 = "10.0.0.1:7400".parse().unwrap();
        s.bus = BusMode::Multicast {
            group,
            interface: Ipv4Addr::LOCALHOST,
            ttl: 0,
            loopback: true,
        };
        s.proto.bus = SocketAddr::V4(group);
        assert_eq!(s.validate(), Err(SettingsError::NotMulticast(group)));
    }

    #[test]
    fn limits_travel_in_the_json_and_default_when_absent() {
        let mut s = settings();
        s.limits.set("http_client_requests_per_s", 7).unwrap();
        s.limits.set("bus_refused_burst", 3).unwrap();
        let value = serde_json::to_value(&s).unwrap();
        assert_eq!(value["limits"]["http_client_requests_per_s"], 7);
        assert_eq!(value["limits"]["bus_refused_burst"], 3);
        // Only what differs from the defaults, so older nodes read it.
        assert_eq!(value["limits"].as_object().unwrap().len(), 2);
        let plain = serde_json::to_value(settings()).unwrap();
        assert!(plain.get("limits").is_none(), "{plain:#}");
        let back: NodeSettings = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(back, s);
        // An older service sends no limits at all.
        let mut old = value.clone();
        old.as_object_mut().unwrap().remove("limits");
        let back: NodeSettings = serde_json::from_value(old).unwrap();
        assert_eq!(back.limits, Limits::default());
        // An unknown or out-of-range limit is refused.
        let mut bad = value.clone();
        bad["limits"]["http_max_head_bytes"] = serde_json::json!(10);
        let err = serde_json::from_value::<NodeSettings>(bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("http_max_head_bytes must be from 1024"),
            "{err}"
        );
        let mut bad = value;
        bad["limits"]["surprise"] = serde_json::json!(1);
        let err = serde_json::from_value::<NodeSettings>(bad).unwrap_err();
        assert!(
            err.to_string().contains("unknown limit `surprise`"),
            "{err}"
        );
    }

    #[test]
    fn every_limit_can_be_read_and_set_by_name() {
        let defaults = Limits::default();
        for name in Limits::FIELDS {
            let mut l = Limits::default();
            let v = defaults.get(name).unwrap();
            l.set(name, v + 1).unwrap();
            assert_eq!(l.get(name), Some(v + 1), "{name}");
            assert_ne!(l, defaults, "{name} changes something");
        }
        assert_eq!(defaults.validate(), Ok(()));
        assert_eq!(defaults.get("nope"), None);
    }

    /// The JSON form every earlier version has sent and read, written by
    /// hand: a service of another version and this node read each other.
    const EARLIER_FORM: &str = r#"{
        "cluster": 1, "cluster_name": "test", "node": 2, "config_version": 3,
        "bus": { "transport": "unicast", "peers": [{ "node": 1, "ring": "127.0.0.1:7501" }] },
        "priority": [1, 2],
        "ring": "127.0.0.1:7502", "http": "127.0.0.1:8502",
        "capacity": { "max_streams": 10, "max_bytes_per_s": 1000 },
        "disks": [{ "id": 4, "mount": "/srv/d4", "probe": "/srv/d4/.ringcast-probe" }],
        "servers": ["127.0.0.1:9000"], "mtu": 1400,
        "timing": { "status_interval_ms": 20, "notify_interval_ms": 20,
                    "notification_time_ms": 60, "miss_limit": 3, "takeover_step_ms": 10,
                    "preempt": true, "preempt_delay_ms": 0,
                    "join_retry_ms": 20, "leave_retry_ms": 20,
                    "disk_check_interval_ms": 1000, "disk_quorum": 2 },
        "keys": [{ "id": 1, "key": "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB" },
                 { "id": 2, "key": "0101010101010101010101010101010101010101010101010101010101010101" }],
        "admin_token": "s3cret-admin-token",
        "limits": { "http_client_requests_per_s": 7 }
    }"#;

    #[test]
    fn the_earlier_json_form_is_read_and_written_back_the_same() {
        let mut expected = settings();
        expected.bus = BusMode::Unicast {
            peers: vec![(NodeId(1), "127.0.0.1:7501".parse().unwrap())],
        };
        expected.proto.bus = expected.proto.addrs.ring;
        expected
            .limits
            .set("http_client_requests_per_s", 7)
            .unwrap();
        let read: NodeSettings = serde_json::from_str(EARLIER_FORM).unwrap();
        assert_eq!(read, expected);
        let mut earlier: serde_json::Value = serde_json::from_str(EARLIER_FORM).unwrap();
        earlier["keys"][0]["key"] = serde_json::json!("ab".repeat(32));
        let written = serde_json::to_value(&read).unwrap();
        // Every limit is written; the others match field for field.
        assert_eq!(written["limits"]["http_client_requests_per_s"], 7);
        // The admin token is written as its digest (an earlier node refuses
        // it: the service is upgraded after the nodes, docs/deploy.md).
        assert!(written.get("admin_token").is_none());
        assert_eq!(
            read.admin_token_sha256,
            Some(AdminDigest::of("s3cret-admin-token"))
        );
        for (name, value) in earlier.as_object().unwrap() {
            if name != "limits" && name != "admin_token" {
                assert_eq!(&written[name], value, "{name}");
            }
        }
        let extra: Vec<&String> = written
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !earlier.as_object().unwrap().contains_key(*k))
            .filter(|k| *k != "admin_token_sha256")
            .collect();
        assert!(
            extra.is_empty(),
            "fields an earlier node refuses: {extra:?}"
        );
    }

    #[test]
    fn an_unknown_field_in_a_nested_object_is_refused() {
        let earlier: serde_json::Value = serde_json::from_str(EARLIER_FORM).unwrap();
        for pointer in [
            "/timing",
            "/capacity",
            "/disks/0",
            "/keys/0",
            "/bus",
            "/bus/peers/0",
        ] {
            let mut value = earlier.clone();
            value.pointer_mut(pointer).unwrap()["surprise"] = serde_json::json!(1);
            let err = serde_json::from_value::<NodeSettings>(value).unwrap_err();
            assert!(err.to_string().contains("surprise"), "{pointer}: {err}");
        }
    }

    #[test]
    fn a_zero_miss_limit_is_refused() {
        let mut value: serde_json::Value = serde_json::from_str(EARLIER_FORM).unwrap();
        value["timing"]["miss_limit"] = serde_json::json!(0);
        let err = serde_json::from_value::<NodeSettings>(value).unwrap_err();
        assert!(err.to_string().contains("nonzero"), "{err}");
    }

    #[test]
    fn hex_keys_decode_in_either_case_and_reject_anything_else() {
        let key = [0x5A; 32];
        assert_eq!(key_from_hex(&key_to_hex(&key)), Some(key));
        assert_eq!(key_from_hex(&"5A".repeat(32)), Some(key));
        assert_eq!(key_from_hex(&"5a".repeat(31)), None);
        assert_eq!(key_from_hex(&"5g".repeat(32)), None);
        assert_eq!(key_from_hex(&"é".repeat(32)), None);
    }
}
