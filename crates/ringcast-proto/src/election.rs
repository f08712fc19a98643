//! Claims 1, 12, 16-18, 21-22: who supervises. The highest-priority live node
//! ends as the only supervisor; silence is acted on by the highest-priority
//! survivor first; competing notifications are ordered by epoch, then rank.

use core::time::Duration;

use crate::config::Timing;
use crate::ids::{NodeId, Rank};
use crate::map::ClusterMap;

/// Why a node became supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Claim 22: it heard no supervisor while listening at start.
    Formation,
    /// Claim 12: its supervisor fell silent.
    Takeover,
    /// Claim 18: it had been preempted and the preemptor fell silent.
    Resume,
    /// Claim 16: it outranks the supervisor it found while joining.
    Preemption,
    /// Claim 21: its supervisor left and it is next in the priority list.
    Handover,
    /// Claim 1: a new priority list gave the supervisor another rank; it
    /// announces the rank under a new epoch.
    Reconfigured,
}

/// Claim 22: a supervisor that hears a notification from a supervisor that
/// outranks it stops notifying and joins.
pub fn yields_to(me: Rank, other: Rank) -> bool {
    other.outranks(me)
}

/// Whether a member adopts `incoming` over the map it holds: a higher epoch,
/// then a higher-priority supervisor, then a newer version (claim 12: a
/// notification with a lower epoch than one already seen is stale).
pub fn supersedes(incoming: &ClusterMap, held: &ClusterMap) -> bool {
    incoming.precedence() >= held.precedence()
}

/// Claim 16: whether a node of rank `me` that found `map`'s supervisor preempts it.
pub fn preempts(timing: &Timing, me: Rank, map: &ClusterMap) -> bool {
    timing.preempt && me.outranks(map.supervisor_rank)
}

/// Claim 16: how long a node of rank `me` waits before it preempts: the
/// configured delay plus a quarter takeover step per rank above it, so that
/// when many nodes learn of a low-priority supervisor at once (a cold start,
/// a pulled state heard by all) the highest of them preempts first and the
/// others hear it before their own wait ends, instead of all of them
/// starting rival reigns together.
pub fn preempt_wait(timing: &Timing, me: Rank) -> Duration {
    timing.preempt_delay + timing.takeover_step / 4 * u32::from(me.0)
}

/// Claim 12: the position of `me` among the candidates to succeed `map`'s
/// supervisor: every up member but the supervisor, plus `me`, in priority order.
pub fn successor_position(map: &ClusterMap, priority: &[NodeId], me: NodeId) -> usize {
    priority
        .iter()
        .filter(|n| **n != map.supervisor && (**n == me || map.is_up(**n)))
        .position(|n| *n == me)
        .unwrap_or(priority.len())
}

/// Claim 12: how long a member waits after the last notification before it
/// takes over: the notification time plus a delay growing with its position
/// among the candidates, so the highest-priority survivor acts first.
pub fn takeover_wait(timing: &Timing, position: usize) -> Duration {
    let position = u32::try_from(position).unwrap_or(u32::MAX).min(1024);
    timing.notification_time + timing.takeover_step * position
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, Incarnation};
    use crate::map::{Member, MemberStatus};
    use std::net::SocketAddr;

    fn map(supervisor: u32, rank: u16, epoch: u64, version: u64, up: &[u32]) -> ClusterMap {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        ClusterMap {
            supervisor: NodeId(supervisor),
            epoch: Epoch(epoch),
            supervisor_rank: Rank(rank),
            version,
            servers: vec![],
            members: up
                .iter()
                .map(|n| Member {
                    id: NodeId(*n),
                    incarnation: Incarnation(1),
                    addrs: crate::config::NodeAddrs {
                        ring: addr,
                        http: addr,
                    },
                    status: MemberStatus::Up,
                })
                .collect(),
            ring: vec![],
        }
    }

    #[test]
    fn notifications_are_ordered_by_epoch_then_rank_then_version() {
        // (incoming, held, adopted?)
        let cases = [
            (map(2, 1, 5, 0, &[]), map(1, 0, 4, 9, &[]), true),
            (map(2, 1, 4, 0, &[]), map(1, 0, 4, 0, &[]), false),
            (map(1, 0, 4, 0, &[]), map(2, 1, 4, 7, &[]), true),
            (map(1, 0, 4, 3, &[]), map(1, 0, 4, 4, &[]), false),
            (map(1, 0, 4, 4, &[]), map(1, 0, 4, 4, &[]), true),
            (map(1, 0, 3, 99, &[]), map(3, 2, 4, 0, &[]), false),
        ];
        for (i, (incoming, held, adopted)) in cases.iter().enumerate() {
            assert_eq!(supersedes(incoming, held), *adopted, "case {i}");
        }
    }

    #[test]
    fn the_highest_priority_survivor_waits_least() {
        let priority: Vec<NodeId> = (1..=5).map(NodeId).collect();
        let m = map(1, 0, 1, 0, &[1, 2, 3, 4, 5]);
        let t = Timing::lan();
        let waits: Vec<_> = (2..=5)
            .map(|n| takeover_wait(&t, successor_position(&m, &priority, NodeId(n))))
            .collect();
        assert!(waits.windows(2).all(|w| w[0] < w[1]), "{waits:?}");
        assert_eq!(waits[0], t.notification_time);
    }

    #[test]
    fn a_failed_node_does_not_count_ahead_of_a_survivor() {
        let priority: Vec<NodeId> = (1..=4).map(NodeId).collect();
        let mut m = map(1, 0, 1, 0, &[1, 2, 3, 4]);
        m.member_mut(NodeId(2)).unwrap().status = MemberStatus::Failed;
        assert_eq!(successor_position(&m, &priority, NodeId(3)), 0);
        assert_eq!(successor_position(&m, &priority, NodeId(4)), 1);
    }

    #[test]
    fn preemption_needs_the_setting_and_a_higher_priority() {
        let mut t = Timing::lan();
        let m = map(2, 1, 1, 0, &[]);
        assert!(preempts(&t, Rank(0), &m));
        assert!(!preempts(&t, Rank(2), &m));
        t.preempt = false;
        assert!(!preempts(&t, Rank(0), &m));
        assert!(yields_to(Rank(3), Rank(1)));
        assert!(!yields_to(Rank(1), Rank(3)));
    }
}
