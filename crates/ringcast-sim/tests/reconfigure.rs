//! A priority list changed in a running cluster (a live reload), played on
//! the simulator: each node gets the new list in turn, as a rolling reload
//! does, with the cluster running in between. The new top node becomes
//! supervisor by preemption (claim 16), no node is declared failed, and a
//! node the list no longer names leaves (claim 19).

use std::time::Duration;

use ringcast_proto::election::Reason;
use ringcast_proto::frame::Keyring;
use ringcast_proto::machine::Reload;
use ringcast_proto::{Event, KeyId, MemberStatus, NodeId};
use ringcast_sim::check;
use ringcast_sim::world::{Sim, SimConfig, SIM_KEY};

const LIMIT: Duration = Duration::from_secs(5);

fn formed(nodes: u32, seed: u64) -> Sim {
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.strict_failures = true;
    let mut s = Sim::new(cfg);
    s.start_all();
    converge(&mut s);
    s
}

fn converge(s: &mut Sim) {
    if s.run_until(LIMIT, check::converged).is_err() {
        panic!(
            "no convergence: {}\n{}",
            check::not_converged(s).unwrap_or_default(),
            s.trace()
        );
    }
}

fn events(s: &Sim, id: u32) -> Vec<Event> {
    s.machine(id)
        .events
        .iter()
        .map(|(_, e)| e.clone())
        .collect()
}

fn became_supervisor(s: &Sim, id: u32) -> Vec<Reason> {
    events(s, id)
        .into_iter()
        .filter_map(|e| match e {
            Event::BecameSupervisor { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// Hands every node in `order` the list `priority` at configuration
/// `version`, one every `gap`.
fn rolling_reload(s: &mut Sim, order: &[u32], priority: &[u32], version: u32, gap: Duration) {
    for id in order {
        s.reload_with(
            *id,
            Reload {
                keyring: Keyring::new(KeyId(1), SIM_KEY),
                config_version: version,
                priority: Some(priority.iter().copied().map(NodeId).collect()),
                capacity: None,
            },
        );
        s.run_for(gap);
    }
}

fn assert_no_failure(s: &Sim, ids: &[u32]) {
    for id in ids {
        let e = events(s, *id);
        assert!(
            !e.iter()
                .any(|e| matches!(e, Event::NodeFailed { .. } | Event::UpstreamDeclared { .. })),
            "n{id} saw a failure during the reload: {e:?}"
        );
    }
}

#[test]
fn a_new_top_of_the_priority_list_preempts_without_a_failure() {
    for (seed, gap_ms) in (41..=140).map(|s| (s, [200, 5, 0, 37, 61, 90][s as usize % 6])) {
        let mut s = formed(5, seed);
        let before = became_supervisor(&s, 4).len();
        rolling_reload(
            &mut s,
            &[2, 5, 1, 3, 4],
            &[4, 1, 2, 3, 5],
            2,
            Duration::from_millis(gap_ms),
        );
        converge(&mut s);
        assert_eq!(
            s.node(2).supervisor(),
            Some(NodeId(4)),
            "seed {seed}: the new top node supervises"
        );
        let ring: Vec<u32> = s.node(3).map().unwrap().ring.iter().map(|n| n.0).collect();
        assert_eq!(
            ring,
            vec![4, 1, 2, 3, 5],
            "seed {seed}: the ring follows the new list"
        );
        assert_eq!(
            became_supervisor(&s, 4)[before..],
            [Reason::Preemption],
            "seed {seed}: n4 took over by preemption"
        );
        assert_no_failure(&s, &[1, 2, 3, 4, 5]);
    }
}

#[test]
fn a_node_the_new_list_leaves_out_leaves_the_cluster() {
    for (seed, gap_ms) in (51..=150).map(|s| (s, [200, 5, 0, 37, 61, 90][s as usize % 6])) {
        let mut s = formed(4, seed);
        // Node 3 hears last that it is out; the others mark it left at once.
        rolling_reload(
            &mut s,
            &[1, 2, 4, 3],
            &[1, 2, 4],
            2,
            Duration::from_millis(gap_ms),
        );
        let deadline = LIMIT;
        s.run_until(deadline, |s| {
            s.node(1)
                .map()
                .and_then(|m| m.member(NodeId(3)))
                .is_some_and(|m| m.status == MemberStatus::Left)
        })
        .unwrap_or_else(|_| panic!("seed {seed}: n3 is not marked left\n{}", s.trace()));
        let ring: Vec<u32> = s.node(1).map().unwrap().ring.iter().map(|n| n.0).collect();
        assert_eq!(ring, vec![1, 2, 4], "seed {seed}");
        assert_no_failure(&s, &[1, 2, 4]);
    }
}
