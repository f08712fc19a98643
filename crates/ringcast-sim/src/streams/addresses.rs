//! Claim 13's service addresses, as the simulator checks them: each live
//! node holds what [`ringcast_proto::service::held_by`] says under the map
//! it follows (nothing when it follows none), and within one connected
//! component of live nodes every address must have exactly one holder but
//! for at most a bound of time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringcast_proto::service::{self, Address};
use ringcast_proto::{ClusterMap, NodeId};

/// A rule for what a node holds under a map, so a test can inject a wrong one.
pub type HolderRule = fn(&ClusterMap, &[NodeId], &[Address], NodeId, &[Address]) -> Vec<Address>;

/// The protocol's rule: [`service::held_by`] (the last argument, what the
/// node held before, is not used).
pub fn protocol_rule(
    map: &ClusterMap,
    priority: &[NodeId],
    all: &[Address],
    me: NodeId,
    _before: &[Address],
) -> Vec<Address> {
    // Simulated nodes always have capacity: the tables' rule never applies.
    service::held_by(map, None, priority, all.iter().copied(), me)
}

/// One address that a component's live nodes do not hold exactly once.
#[derive(Clone, Debug)]
struct Gap {
    /// The component's live hosts when it began.
    members: Vec<usize>,
    /// Its holders then.
    holders: Vec<usize>,
    since: Instant,
    reported: bool,
}

/// What one host holds, and the supervisor and ring of the map it follows.
#[derive(Clone, Debug, Default)]
struct Holding {
    follows: Option<(NodeId, Vec<NodeId>)>,
    held: Vec<Address>,
}

/// One component's live hosts and the holders of each address among them.
type Component = (Vec<usize>, BTreeMap<Address, Vec<usize>>);

/// Who holds what, per host, and the addresses held twice or not at all.
#[derive(Clone, Debug)]
pub struct Addresses {
    all: Vec<Address>,
    rule: HolderRule,
    /// Per host.
    held: Vec<Holding>,
    gaps: BTreeMap<(Address, u32), Gap>,
    /// Addresses a node took over: another node's, or the cluster's.
    pub moved: u64,
    /// The longest an address went without exactly one holder in a
    /// component, as far as seen at the last recount.
    pub longest: Duration,
}

/// A violation found: what, and a description.
pub type Found = (&'static str, String);

impl Addresses {
    /// No host holds anything yet; `nodes` hosts, ids 1..=nodes.
    pub fn new(nodes: usize, rule: HolderRule) -> Addresses {
        let all = (1..=nodes as u32)
            .map(|n| Address::Node(NodeId(n)))
            .chain([Address::Cluster])
            .collect();
        Addresses {
            all,
            rule,
            held: vec![Holding::default(); nodes],
            gaps: BTreeMap::new(),
            moved: 0,
            longest: Duration::ZERO,
        }
    }

    /// Host `host` (node id `host + 1`) follows `map` now, or none (down,
    /// left, or not following a supervisor). Returns whether its holdings
    /// changed.
    pub fn follow(&mut self, host: usize, map: Option<&ClusterMap>, priority: &[NodeId]) -> bool {
        let me = NodeId(host as u32 + 1);
        let Holding { follows: key, held } = &mut self.held[host];
        let fresh = match (map, key.as_ref()) {
            (None, None) => return false,
            (Some(m), Some((sup, ring))) if m.supervisor == *sup && m.ring == *ring => {
                return false;
            }
            (None, Some(_)) => {
                *key = None;
                Vec::new()
            }
            (Some(m), _) => {
                *key = Some((m.supervisor, m.ring.clone()));
                (self.rule)(m, priority, &self.all, me, held)
            }
        };
        if fresh == *held {
            return false;
        }
        self.moved += fresh
            .iter()
            .filter(|a| **a != Address::Node(me) && !held.contains(a))
            .count() as u64;
        *held = fresh;
        true
    }

    /// Recounts the holders of every address in every component: `live[h]`
    /// and `component[h]` of each host.
    pub fn recount(&mut self, live: &[bool], component: &[u32], now: Instant) {
        let mut comps: BTreeMap<u32, Component> = BTreeMap::new();
        for h in (0..self.held.len()).filter(|h| live[*h]) {
            let (members, holders) = comps.entry(component[h]).or_default();
            members.push(h);
            for a in &self.held[h].held {
                holders.entry(*a).or_default().push(h);
            }
        }
        let mut open = BTreeMap::new();
        for (c, (members, holders)) in &comps {
            for a in &self.all {
                let who = holders.get(a).cloned().unwrap_or_default();
                if who.len() == 1 {
                    continue;
                }
                let key = (*a, *c);
                // A gap lasts while the component keeps its members; a
                // crash, a start or a new partition starts the clock again.
                let gap = match self.gaps.remove(&key) {
                    Some(g) if g.members == *members => Gap { holders: who, ..g },
                    _ => Gap {
                        members: members.clone(),
                        holders: who,
                        since: now,
                        reported: false,
                    },
                };
                open.insert(key, gap);
            }
        }
        for gap in self.gaps.values() {
            self.longest = self.longest.max(now - gap.since);
        }
        self.gaps = open;
    }

    /// The gaps open longer than their bound (`bound` of the number of
    /// live nodes in the component), each reported once.
    pub fn overdue(&mut self, now: Instant, bound: impl Fn(usize) -> Duration) -> Vec<Found> {
        let mut out = Vec::new();
        for ((a, _), gap) in self.gaps.iter_mut() {
            let bound = bound(gap.members.len());
            if gap.reported || now - gap.since <= bound {
                continue;
            }
            gap.reported = true;
            let ids = |v: &[usize]| v.iter().map(|h| h + 1).collect::<Vec<_>>();
            let how = if gap.holders.is_empty() {
                "by no live node".to_string()
            } else {
                format!("by nodes {:?}", ids(&gap.holders))
            };
            out.push((
                "address",
                format!(
                    "{a:?} held {how} of the component {:?} for over {bound:?} (since {:?} ago)",
                    ids(&gap.members),
                    now - gap.since
                ),
            ));
        }
        out
    }

    /// When the first gap not reported yet becomes overdue.
    pub fn next_due(&self, bound: impl Fn(usize) -> Duration) -> Option<Instant> {
        self.gaps
            .values()
            .filter(|g| !g.reported)
            .map(|g| g.since + bound(g.members.len()) + Duration::from_nanos(1))
            .min()
    }

    /// Every gap open now, described.
    pub fn open(&self) -> Vec<String> {
        let ids = |v: &[usize]| v.iter().map(|h| h + 1).collect::<Vec<_>>();
        self.gaps
            .iter()
            .map(|((a, _), g)| {
                format!(
                    "{a:?} held by {:?} in the component {:?}",
                    ids(&g.holders),
                    ids(&g.members)
                )
            })
            .collect()
    }

    /// The longest gap, open ones included.
    pub fn longest(&self, now: Instant) -> Duration {
        self.gaps
            .values()
            .map(|g| now - g.since)
            .fold(self.longest, Duration::max)
    }

    /// What host `host` holds now.
    pub fn held(&self, host: usize) -> &[Address] {
        &self.held[host].held
    }
}
