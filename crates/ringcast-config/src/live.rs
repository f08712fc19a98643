//! What a running node may change without a restart, and how a reloaded
//! configuration compares with the one it runs: the node's reload applies
//! the keys, the configuration version, the priority list (claim 1) and its
//! capacity (claim 4) at once; everything else needs a restart. The node
//! shows what it runs, without its secrets, as [`RunningConfig`]
//! (`GET /v1/config`), and `ringcast config check --against-running` refuses
//! a file that changes what cannot change live.

use ringcast_proto::NodeConfig;
use serde::{Deserialize, Serialize};

use crate::addresses::ServiceAddresses;
use crate::settings::{BusMode, Limits, NodeSettings};

/// What a node runs with, without its keys and admin token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningConfig {
    /// Node id, bus, priority list, disks, capacity, timing, MTU.
    #[serde(flatten)]
    pub proto: NodeConfig,
    /// How the bus is carried.
    pub bus: BusMode,
    /// The cluster's name.
    pub cluster_name: String,
    /// Limits against hostile clients and senders.
    #[serde(default)]
    pub limits: Limits,
    /// The cluster's service addresses.
    #[serde(default)]
    pub service: ServiceAddresses,
    /// Whether the node checks an admin token (its value is not shown).
    pub admin_token: bool,
    /// Claim 5: how many ancestor clusters the machine holds seats in.
    pub seats: usize,
    /// The node's HTTPS files, when it serves HTTPS (paths, not contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::settings::HttpTls>,
}

impl RunningConfig {
    /// The shown part of `settings`.
    pub fn of(settings: &NodeSettings) -> RunningConfig {
        RunningConfig {
            proto: settings.proto.clone(),
            bus: settings.bus.clone(),
            cluster_name: settings.cluster_name.clone(),
            limits: settings.limits.clone(),
            service: settings.service.clone(),
            admin_token: settings.admin_token_sha256.is_some(),
            seats: settings.seats.len(),
            tls: settings.tls.clone(),
        }
    }

    /// The settings that differ in `new` and take effect only when the node
    /// restarts, by their names in the cluster file.
    pub fn needs_restart(&self, new: &RunningConfig) -> Vec<&'static str> {
        let (was, now) = (&self.proto, &new.proto);
        [
            ("addresses", now.addrs != was.addrs),
            ("disks", now.disks != was.disks),
            ("servers", now.servers != was.servers),
            ("timing", now.timing != was.timing),
            ("mtu", now.mtu != was.mtu),
            ("bus", new.bus != self.bus),
            ("limits", new.limits != self.limits),
            ("service addresses", new.service != self.service),
            ("seats", new.seats != self.seats),
            ("tls", new.tls != self.tls),
        ]
        .into_iter()
        .filter_map(|(what, changed)| changed.then_some(what))
        .collect()
    }

    /// Whether `new` differs in anything a running node applies at once.
    pub fn differs_live(&self, new: &RunningConfig) -> bool {
        new.proto.priority != self.proto.priority || new.proto.capacity != self.proto.capacity
    }
}
