//! Claim 13 on the wire: service addresses, the addresses players talk to,
//! which outlive the processes behind them.
//!
//! Every node has a service address; the cluster has one more, its entry
//! point. Who holds each follows from the cluster map the supervisor
//! announces and the priority list every node is configured with, by one
//! rule, so every node that follows the same map agrees without another
//! message:
//!
//! - a node on the ring holds its own service address;
//! - the address of a node that is not on the ring (failed, left, not yet
//!   joined) is held by the first node on the ring after it in the priority
//!   list, wrapping around: its priority successor, which a deployment gives
//!   replicas of the node's disks (`docs/streaming.md`);
//! - the cluster address is held by the supervisor.
//!
//! A node that follows no map holds nothing: a node that cannot reach its
//! supervisor's cluster releases what it holds.

use std::collections::BTreeMap;

use crate::ids::NodeId;
use crate::map::ClusterMap;

/// Who holds which address: a node's own, or the cluster's entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    /// The service address of this node.
    Node(NodeId),
    /// The cluster address, held by the supervisor.
    Cluster,
}

/// The holder of `owner`'s service address under `map`, given the priority
/// list: `owner` itself while it is on the ring, else its first successor
/// on the ring in priority order. `None` when the ring is empty or `owner`
/// is not in the priority list.
pub fn holder_of(map: &ClusterMap, priority: &[NodeId], owner: NodeId) -> Option<NodeId> {
    let start = priority.iter().position(|n| *n == owner)?;
    let n = priority.len();
    (0..n)
        .map(|i| priority[(start + i) % n])
        .find(|node| map.ring.contains(node))
}

/// The holder of `address` under `map` (see [`holder_of`]).
pub fn holder(map: &ClusterMap, priority: &[NodeId], address: Address) -> Option<NodeId> {
    match address {
        Address::Node(owner) => holder_of(map, priority, owner),
        Address::Cluster => map.ring.contains(&map.supervisor).then_some(map.supervisor),
    }
}

/// Who would hold `address` if `gone` left the ring of `map`: where the
/// connections `gone` serves on it go when it dies.
pub fn successor(
    map: &ClusterMap,
    priority: &[NodeId],
    address: Address,
    gone: NodeId,
) -> Option<NodeId> {
    let owner = match address {
        Address::Node(owner) => owner,
        // The next supervisor is the election's to say.
        Address::Cluster => return None,
    };
    let start = priority.iter().position(|n| *n == owner)?;
    let n = priority.len();
    (0..n)
        .map(|i| priority[(start + i) % n])
        .find(|node| *node != gone && map.ring.contains(node))
}

/// Every address of `addresses` that `me` holds under `map`.
pub fn held_by(
    map: &ClusterMap,
    priority: &[NodeId],
    addresses: impl IntoIterator<Item = Address>,
    me: NodeId,
) -> Vec<Address> {
    addresses
        .into_iter()
        .filter(|a| holder(map, priority, *a) == Some(me))
        .collect()
}

/// Every node's address and the cluster's, each with its holder under `map`
/// (addresses no live node can hold are left out).
pub fn holders(map: &ClusterMap, priority: &[NodeId]) -> BTreeMap<Address, NodeId> {
    priority
        .iter()
        .map(|n| Address::Node(*n))
        .chain([Address::Cluster])
        .filter_map(|a| Some((a, holder(map, priority, a)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, Rank};

    fn map(ring: &[u32], supervisor: u32) -> ClusterMap {
        ClusterMap {
            supervisor: NodeId(supervisor),
            epoch: Epoch(1),
            supervisor_rank: Rank(0),
            version: 1,
            servers: Vec::new(),
            members: Vec::new(),
            ring: ring.iter().map(|n| NodeId(*n)).collect(),
        }
    }

    fn ids(v: &[u32]) -> Vec<NodeId> {
        v.iter().map(|n| NodeId(*n)).collect()
    }

    #[test]
    fn a_live_node_holds_its_own_address_and_a_dead_ones_goes_to_its_successor() {
        let priority = ids(&[3, 1, 2, 4]);
        let m = map(&[3, 2, 4], 3);
        assert_eq!(holder_of(&m, &priority, NodeId(2)), Some(NodeId(2)));
        // 1 is down: 2 follows it in priority order.
        assert_eq!(holder_of(&m, &priority, NodeId(1)), Some(NodeId(2)));
        // The successor of the last wraps around to the first.
        let m = map(&[3, 1, 2], 3);
        assert_eq!(holder_of(&m, &priority, NodeId(4)), Some(NodeId(3)));
        assert_eq!(holder_of(&m, &priority, NodeId(9)), None);
        assert_eq!(holder_of(&map(&[], 3), &priority, NodeId(3)), None);
    }

    #[test]
    fn the_cluster_address_follows_the_supervisor() {
        let priority = ids(&[1, 2, 3]);
        let all = holders(&map(&[2, 3], 2), &priority);
        assert_eq!(all[&Address::Cluster], NodeId(2));
        assert_eq!(all[&Address::Node(NodeId(1))], NodeId(2));
        assert_eq!(all[&Address::Node(NodeId(3))], NodeId(3));
        let held = held_by(&map(&[2, 3], 2), &priority, all.keys().copied(), NodeId(2));
        assert_eq!(
            held,
            vec![
                Address::Node(NodeId(1)),
                Address::Node(NodeId(2)),
                Address::Cluster
            ]
        );
    }

    proptest::proptest! {
        /// The successor of an address is exactly who holds it once its
        /// holder has left the ring: where its connections are taken over.
        #[test]
        fn the_successor_is_the_holder_once_the_holder_is_gone(
            up in proptest::collection::btree_set(1u32..8, 2..7),
            owner in 1u32..8,
        ) {
            let priority = ids(&[1, 2, 3, 4, 5, 6, 7]);
            let ring: Vec<u32> = priority.iter().map(|n| n.0).filter(|n| up.contains(n)).collect();
            let m = map(&ring, ring[0]);
            let address = Address::Node(NodeId(owner));
            let holder = holder(&m, &priority, address).unwrap();
            let after: Vec<u32> = ring.iter().copied().filter(|n| *n != holder.0).collect();
            let later = holder_of(&map(&after, after[0]), &priority, NodeId(owner));
            proptest::prop_assert_eq!(successor(&m, &priority, address, holder), later);
            proptest::prop_assert_eq!(successor(&m, &priority, Address::Cluster, holder), None);
        }

        /// Every address has exactly one holder while any node is up, and
        /// that holder is on the ring.
        #[test]
        fn every_address_has_one_live_holder(up in proptest::collection::btree_set(1u32..8, 1..7)) {
            let priority = ids(&[1, 2, 3, 4, 5, 6, 7]);
            let ring: Vec<u32> = priority.iter().map(|n| n.0).filter(|n| up.contains(n)).collect();
            let m = map(&ring, ring[0]);
            let all = holders(&m, &priority);
            proptest::prop_assert_eq!(all.len(), priority.len() + 1);
            for holder in all.values() {
                proptest::prop_assert!(m.ring.contains(holder));
            }
        }
    }
}
