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
//! - a node whose capacity the supervisor's tables show as zero streams (a
//!   draining node, or one that serves nothing) holds no node's address,
//!   its own included: it goes to the next node that serves, as if the node
//!   were gone, while the node itself still finishes what it is sending.
//!   Only when no node on the ring serves are the capacities ignored;
//! - the cluster address is held by the supervisor.
//!
//! A node that follows no map holds nothing: a node that cannot reach its
//! supervisor's cluster releases what it holds.

use std::collections::BTreeMap;

use crate::ids::NodeId;
use crate::map::ClusterMap;
use crate::tables::Tables;

/// Who holds which address: a node's own, or the cluster's entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    /// The service address of this node.
    Node(NodeId),
    /// The cluster address, held by the supervisor.
    Cluster,
}

/// Whether `node` may hold node addresses under `tables`: a capacity of
/// at least one stream, or no row (the tables do not know it yet).
fn serves(tables: Option<&Tables>, node: NodeId) -> bool {
    tables
        .and_then(|t| t.usage(node))
        .is_none_or(|u| u.capacity.max_streams > 0)
}

/// The first node of `priority` from `owner` on, wrapping around, that is
/// on `map`'s ring, is not `gone`, and serves; any on the ring, if none serves.
fn first_from(
    map: &ClusterMap,
    tables: Option<&Tables>,
    priority: &[NodeId],
    owner: NodeId,
    gone: Option<NodeId>,
) -> Option<NodeId> {
    let start = priority.iter().position(|n| *n == owner)?;
    let n = priority.len();
    let candidates = || {
        (0..n)
            .map(move |i| priority[(start + i) % n])
            .filter(move |node| Some(*node) != gone && map.ring.contains(node))
    };
    candidates()
        .find(|node| serves(tables, *node))
        .or_else(|| candidates().next())
}

/// The holder of `owner`'s service address under `map` and `tables`, given
/// the priority list: `owner` itself while it is on the ring and serves,
/// else its first successor on the ring in priority order that serves.
/// `None` when the ring is empty or `owner` is not in the priority list.
pub fn holder_of(
    map: &ClusterMap,
    tables: Option<&Tables>,
    priority: &[NodeId],
    owner: NodeId,
) -> Option<NodeId> {
    first_from(map, tables, priority, owner, None)
}

/// The holder of `address` under `map` (see [`holder_of`]).
pub fn holder(
    map: &ClusterMap,
    tables: Option<&Tables>,
    priority: &[NodeId],
    address: Address,
) -> Option<NodeId> {
    match address {
        Address::Node(owner) => holder_of(map, tables, priority, owner),
        Address::Cluster => map.ring.contains(&map.supervisor).then_some(map.supervisor),
    }
}

/// Who would hold `address` if `gone` left the ring of `map`: where the
/// connections `gone` serves on it go when it dies.
pub fn successor(
    map: &ClusterMap,
    tables: Option<&Tables>,
    priority: &[NodeId],
    address: Address,
    gone: NodeId,
) -> Option<NodeId> {
    match address {
        Address::Node(owner) => first_from(map, tables, priority, owner, Some(gone)),
        // The next supervisor is the election's to say.
        Address::Cluster => None,
    }
}

/// Every address of `addresses` that `me` holds under `map`.
pub fn held_by(
    map: &ClusterMap,
    tables: Option<&Tables>,
    priority: &[NodeId],
    addresses: impl IntoIterator<Item = Address>,
    me: NodeId,
) -> Vec<Address> {
    addresses
        .into_iter()
        .filter(|a| holder(map, tables, priority, *a) == Some(me))
        .collect()
}

/// Every node's address and the cluster's, each with its holder under `map`
/// (addresses no live node can hold are left out).
pub fn holders(
    map: &ClusterMap,
    tables: Option<&Tables>,
    priority: &[NodeId],
) -> BTreeMap<Address, NodeId> {
    priority
        .iter()
        .map(|n| Address::Node(*n))
        .chain([Address::Cluster])
        .filter_map(|a| Some((a, holder(map, tables, priority, a)?)))
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
        assert_eq!(holder_of(&m, None, &priority, NodeId(2)), Some(NodeId(2)));
        // 1 is down: 2 follows it in priority order.
        assert_eq!(holder_of(&m, None, &priority, NodeId(1)), Some(NodeId(2)));
        // The successor of the last wraps around to the first.
        let m = map(&[3, 1, 2], 3);
        assert_eq!(holder_of(&m, None, &priority, NodeId(4)), Some(NodeId(3)));
        assert_eq!(holder_of(&m, None, &priority, NodeId(9)), None);
        assert_eq!(holder_of(&map(&[], 3), None, &priority, NodeId(3)), None);
    }

    #[test]
    fn the_cluster_address_follows_the_supervisor() {
        let priority = ids(&[1, 2, 3]);
        let all = holders(&map(&[2, 3], 2), None, &priority);
        assert_eq!(all[&Address::Cluster], NodeId(2));
        assert_eq!(all[&Address::Node(NodeId(1))], NodeId(2));
        assert_eq!(all[&Address::Node(NodeId(3))], NodeId(3));
        let held = held_by(
            &map(&[2, 3], 2),
            None,
            &priority,
            all.keys().copied(),
            NodeId(2),
        );
        assert_eq!(
            held,
            vec![
                Address::Node(NodeId(1)),
                Address::Node(NodeId(2)),
                Address::Cluster
            ]
        );
    }

    #[test]
    fn a_node_with_no_capacity_hands_its_address_to_the_next_that_serves() {
        use crate::config::Capacity;
        let priority = ids(&[1, 2, 3, 4]);
        let m = map(&[1, 2, 3, 4], 1);
        let mut tables = Tables::default();
        for (node, streams) in [(1, 10), (2, 0), (3, 0), (4, 10)] {
            let capacity = Capacity {
                max_streams: streams,
                max_bytes_per_s: 0,
            };
            tables.record_join(NodeId(node), capacity, &[]);
        }
        let t = Some(&tables);
        // 2 and 3 drain: 2's address skips 3 to 4; 1 and 4 keep theirs.
        assert_eq!(holder_of(&m, t, &priority, NodeId(2)), Some(NodeId(4)));
        assert_eq!(holder_of(&m, t, &priority, NodeId(3)), Some(NodeId(4)));
        assert_eq!(holder_of(&m, t, &priority, NodeId(1)), Some(NodeId(1)));
        // Were 4 to die, 2's address would go on to 1.
        let address = Address::Node(NodeId(2));
        assert_eq!(
            successor(&m, t, &priority, address, NodeId(4)),
            Some(NodeId(1))
        );
        // With no node serving, the ring rule alone holds.
        let m = map(&[2, 3], 2);
        assert_eq!(holder_of(&m, t, &priority, NodeId(2)), Some(NodeId(2)));
        assert_eq!(holder_of(&m, t, &priority, NodeId(1)), Some(NodeId(2)));
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
            let holder = holder(&m, None, &priority, address).unwrap();
            let after: Vec<u32> = ring.iter().copied().filter(|n| *n != holder.0).collect();
            let later = holder_of(&map(&after, after[0]), None, &priority, NodeId(owner));
            proptest::prop_assert_eq!(successor(&m, None, &priority, address, holder), later);
            proptest::prop_assert_eq!(successor(&m, None, &priority, Address::Cluster, holder), None);
        }

        /// Every address has exactly one holder while any node is up, and
        /// that holder is on the ring.
        #[test]
        fn every_address_has_one_live_holder(up in proptest::collection::btree_set(1u32..8, 1..7)) {
            let priority = ids(&[1, 2, 3, 4, 5, 6, 7]);
            let ring: Vec<u32> = priority.iter().map(|n| n.0).filter(|n| up.contains(n)).collect();
            let m = map(&ring, ring[0]);
            let all = holders(&m, None, &priority);
            proptest::prop_assert_eq!(all.len(), priority.len() + 1);
            for holder in all.values() {
                proptest::prop_assert!(m.ring.contains(holder));
            }
        }
    }
}
