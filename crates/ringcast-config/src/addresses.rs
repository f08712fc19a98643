//! Claim 13: the service addresses of a node's cluster, as its settings
//! carry them: every node's, and the cluster address players are given.
//! Who holds which at a given moment follows from the cluster map
//! (`ringcast_proto::service`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ringcast_proto::service::Address;
use ringcast_proto::NodeId;
use serde::{Deserialize, Serialize};

/// The service addresses of one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAddresses {
    /// Each node's service address, by node id (nodes without one are absent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<NodeId, SocketAddr>,
    /// The cluster address, held by the supervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<SocketAddr>,
}

impl ServiceAddresses {
    /// Whether the cluster has no service address at all.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.cluster.is_none()
    }

    /// The socket address of `address`, if the cluster has one.
    pub fn get(&self, address: Address) -> Option<SocketAddr> {
        match address {
            Address::Node(n) => self.nodes.get(&n).copied(),
            Address::Cluster => self.cluster,
        }
    }

    /// Every address the cluster has.
    pub fn all(&self) -> impl Iterator<Item = (Address, SocketAddr)> + '_ {
        self.nodes
            .iter()
            .map(|(n, a)| (Address::Node(*n), *a))
            .chain(self.cluster.map(|a| (Address::Cluster, a)))
    }

    /// Where players reach `node`'s streams: its service address, or, in a
    /// cluster without service addresses, `fallback` (its own listener).
    pub fn of_node(&self, node: NodeId, fallback: SocketAddr) -> SocketAddr {
        self.nodes.get(&node).copied().unwrap_or(fallback)
    }
}
