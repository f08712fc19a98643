//! Claim 13 on the simulator: disk failure reports ride the ring and the
//! supervisor declares a disk failed only on reports from enough distinct nodes.

use std::time::Duration;

use ringcast_proto::message::DiskReport;
use ringcast_proto::tables::{DiskAccessStatus, DiskChange, DiskStatus};
use ringcast_proto::{DiskAccess, DiskId, Event, LocalEvent, NodeId};
use ringcast_sim::check;
use ringcast_sim::world::{Sim, SimConfig};

const SHARED: DiskId = DiskId(100);

/// Five nodes; disk 100 is reached by n2 and n3 (shared storage).
fn cluster(seed: u64) -> Sim {
    let mut sim = Sim::new(SimConfig::new(seed, 5));
    for id in [2, 3] {
        sim.machines[id - 1].cfg.disks.push(DiskAccess {
            id: SHARED,
            mount: "/srv/shared".into(),
            probe_path: "/srv/shared/.probe".into(),
        });
    }
    sim.start_all();
    sim.run_until(Duration::from_secs(5), check::converged)
        .expect("formation");
    sim
}

fn report(disk: DiskId, ok: bool) -> LocalEvent {
    LocalEvent::DiskProbe(DiskReport {
        disk,
        ok,
        capacity_bytes: 1000,
        used_bytes: 10,
        catalog: 7,
        streams: 0,
        bytes_per_s: 0,
    })
}

fn disk_status(sim: &Sim, id: u32, disk: DiskId) -> Option<DiskStatus> {
    sim.node(id).tables()?.disk(disk).map(|d| d.status)
}

fn supervisor_saw(sim: &Sim, change: DiskChange) -> bool {
    sim.machine(1)
        .events
        .iter()
        .any(|(_, e)| *e == Event::Disk(change))
}

fn everyone_sees(sim: &mut Sim, disk: DiskId, status: DiskStatus) {
    sim.run_until(Duration::from_secs(2), |s| {
        s.live()
            .iter()
            .all(|id| disk_status(s, *id, disk) == Some(status))
    })
    .unwrap_or_else(|_| panic!("not every node sees {disk} {status:?}\n{}", sim.trace()));
}

#[test]
fn a_shared_disk_reported_by_every_node_that_reaches_it_is_declared_failed() {
    let mut sim = cluster(1);
    sim.local(2, report(SHARED, false));
    sim.local(3, report(SHARED, false));
    everyone_sees(&mut sim, SHARED, DiskStatus::Failed);
    assert!(supervisor_saw(&sim, DiskChange::Failed(SHARED)));
}

#[test]
fn one_report_of_two_marks_only_that_nodes_path_broken() {
    let mut sim = cluster(2);
    sim.local(2, report(SHARED, false));
    sim.run_until(Duration::from_secs(2), |s| {
        supervisor_saw(
            s,
            DiskChange::PathBroken {
                node: NodeId(2),
                disk: SHARED,
            },
        )
    })
    .expect("the supervisor hears n2's report");
    sim.run_for(Duration::from_millis(200));
    assert_eq!(disk_status(&sim, 4, SHARED), Some(DiskStatus::Ok));
    let tables = sim.node(4).tables().unwrap();
    let link = |n: u32| {
        tables
            .topology_of(NodeId(n))
            .and_then(|t| t.disks.iter().find(|l| l.disk == SHARED))
            .map(|l| l.status)
    };
    assert_eq!(link(2), Some(DiskAccessStatus::Broken));
    assert_eq!(link(3), Some(DiskAccessStatus::Ok));
    assert!(!tables.serves_from(NodeId(2), SHARED));
    assert!(tables.serves_from(NodeId(3), SHARED));
}

#[test]
fn a_disk_only_one_node_reaches_fails_on_that_nodes_report() {
    let mut sim = cluster(3);
    sim.local(4, report(DiskId(4), false));
    everyone_sees(&mut sim, DiskId(4), DiskStatus::Failed);
}

#[test]
fn a_failed_disk_recovers_when_its_probes_succeed_again() {
    let mut sim = cluster(4);
    sim.local(2, report(SHARED, false));
    sim.local(3, report(SHARED, false));
    everyone_sees(&mut sim, SHARED, DiskStatus::Failed);
    sim.local(2, report(SHARED, true));
    everyone_sees(&mut sim, SHARED, DiskStatus::Ok);
    assert!(supervisor_saw(&sim, DiskChange::Recovered(SHARED)));
}

#[test]
fn a_new_supervisor_rebuilds_the_disk_table_from_the_ring() {
    // DESIGN 5: nothing lives only in the old supervisor's memory.
    let mut sim = cluster(5);
    sim.local(2, report(SHARED, false));
    sim.local(3, report(SHARED, false));
    everyone_sees(&mut sim, SHARED, DiskStatus::Failed);
    sim.crash(1);
    sim.run_until(Duration::from_secs(2), check::converged)
        .expect("takeover");
    everyone_sees(&mut sim, SHARED, DiskStatus::Failed);
}

#[test]
fn a_shared_disks_load_is_the_sum_of_what_its_readers_report() {
    // Claim 4: the disk usage table shows each disk's current loading.
    let mut sim = cluster(6);
    for (node, streams) in [(2, 3), (3, 4)] {
        sim.local(
            node,
            LocalEvent::DiskProbe(DiskReport {
                disk: SHARED,
                ok: true,
                capacity_bytes: 1000,
                used_bytes: 10,
                catalog: 7,
                streams,
                bytes_per_s: u64::from(streams) * 1000,
            }),
        );
    }
    sim.run_until(Duration::from_secs(2), |s| {
        s.live().iter().all(|id| {
            s.node(*id)
                .tables()
                .and_then(|t| t.disk(SHARED))
                .is_some_and(|d| {
                    d.streams == 7 && d.bytes_per_s == 7000 && d.capacity_bytes == 1000
                })
        })
    })
    .expect("every node sees disk 100 read by 7 streams at 7000 B/s");
}
