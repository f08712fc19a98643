//! Claim 5 and DESIGN section 7: the seats a machine holds in its ancestor
//! clusters.
//!
//! A sub-cluster is one node of its parent cluster. Its seat there is a
//! protocol node of the parent cluster (the parent's bus, ring, priority list
//! and timing) under the sub-cluster's id, run by the machine that currently
//! supervises the sub-cluster. This module starts the seat when the machine
//! becomes the sub-cluster's supervisor and stops it, without a word, when it
//! stops supervising: the parent sees the seat's next holder rejoin with a
//! newer life instead of a failure. A seat that supervises its own cluster
//! holds the next seat up in turn, so the root supervisor's machine holds a
//! seat at every level. While it holds a seat the machine reports the
//! sub-cluster's summed capacity and load through it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcast_proto::tables::aggregate;
use ringcast_proto::{LocalEvent, Role};
use tokio::task::JoinHandle;

use super::runtime::{Runtime, Shared};
use ringcast_config::settings::NodeSettings;

/// How often the machine checks whether it still supervises below each seat.
pub const SEAT_POLL: Duration = Duration::from_millis(5);
/// How often a held seat reports its sub-cluster's capacity and load.
pub const SEAT_LOAD_INTERVAL: Duration = Duration::from_millis(250);
/// How long to wait before binding a seat again after it failed to bind.
const RETRY_BIND: Duration = Duration::from_millis(500);

struct Held {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Dropping the runtime closes its sockets; no leave is sent, so the
        // parent keeps the sub-cluster while the next holder takes the seat.
        self.task.abort();
    }
}

/// Claim 5: holds this machine's seats for as long as it supervises below
/// them. `seats` are the settings of each ancestor level, nearest parent
/// first; the held seats are published in `leaf.seats`. Runs until aborted.
pub async fn hold_seats(leaf: Arc<Shared>, seats: Vec<NodeSettings>) {
    if seats.is_empty() {
        return;
    }
    let mut held: Vec<Held> = Vec::new();
    let mut bind_failed: Option<(usize, Instant)> = None;
    let mut last_load = Instant::now();
    let mut rekeys = leaf.rekey.subscribe();
    let mut ticks = tokio::time::interval(SEAT_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut changed = false;
        // A seat whose runtime ended (it left its cluster) is no longer
        // held, nor is any seat above it: they are taken again below.
        if let Some(ended) = held.iter().position(|h| h.task.is_finished()) {
            held.truncate(ended);
            changed = true;
        }
        // A key rotation reaches every seat the machine holds.
        if rekeys.has_changed().unwrap_or(false) {
            let rekey = rekeys.borrow_and_update().clone();
            for h in &held {
                h.shared.rekey.send_replace(rekey.clone());
            }
        }
        let mut level = 0;
        while level < seats.len() {
            let below = if level == 0 {
                leaf.clone()
            } else {
                held[level - 1].shared.clone()
            };
            if below.role() != Role::Supervisor {
                if held.len() > level {
                    for h in held.drain(level..).rev() {
                        tracing::info!(
                            "released the seat of {} in cluster {}",
                            h.shared.node,
                            h.shared.cluster_name
                        );
                    }
                    changed = true;
                }
                break;
            }
            if held.len() == level {
                let retry_due =
                    bind_failed.is_none_or(|(l, at)| l != level || at.elapsed() >= RETRY_BIND);
                if !retry_due {
                    break;
                }
                match take_seat(&leaf, &below, &seats[level]) {
                    Ok(h) => {
                        tracing::info!(
                            "took the seat of {} in cluster {}",
                            h.shared.node,
                            h.shared.cluster_name
                        );
                        held.push(h);
                        bind_failed = None;
                        changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "cannot take the seat of {} in cluster {}: {e}",
                            seats[level].proto.node,
                            seats[level].cluster_name
                        );
                        bind_failed = Some((level, Instant::now()));
                        break;
                    }
                }
            }
            level += 1;
        }
        if changed {
            *leaf.seats.write().unwrap_or_else(|e| e.into_inner()) =
                held.iter().map(|h| h.shared.clone()).collect();
        }
        if last_load.elapsed() >= SEAT_LOAD_INTERVAL {
            last_load = Instant::now();
            for (level, h) in held.iter().enumerate() {
                let below = if level == 0 {
                    &leaf
                } else {
                    &held[level - 1].shared
                };
                if let Some((capacity, load)) = summed(below) {
                    if capacity.max_streams > 0 {
                        let _ = h.shared.control.try_send(LocalEvent::Capacity(capacity));
                    }
                    let _ = h.shared.control.try_send(LocalEvent::Load(load));
                }
            }
        }
    }
}

/// The capacity and load of the cluster `shared` supervises.
fn summed(shared: &Shared) -> Option<(ringcast_proto::Capacity, ringcast_proto::Load)> {
    let snap = shared.snapshot();
    Some(aggregate(snap.map.as_ref()?, snap.tables.as_ref()?))
}

/// Starts the seat described by `settings` for the cluster `below`
/// supervises; its events join the machine's own event stream (`leaf`).
fn take_seat(
    leaf: &Arc<Shared>,
    below: &Shared,
    settings: &NodeSettings,
) -> Result<Held, super::runtime::NodeError> {
    let mut settings = settings.clone();
    if let Some((capacity, _)) = summed(below).filter(|(c, _)| c.max_streams > 0) {
        settings.proto.capacity = capacity;
    }
    let runtime = Runtime::bind(settings, None)?;
    let shared = runtime.shared();
    // Keys rotated since the machine started apply to the seat from its
    // first frame on.
    let rekey = leaf.rekey.borrow().clone();
    if rekey.is_some() {
        shared.rekey.send_replace(rekey);
    }
    let mut events = shared.events.subscribe();
    let (leaf, seat_cluster) = (leaf.clone(), shared.cluster_id);
    let run = runtime.run();
    let task = tokio::spawn(async move {
        let forward = async {
            loop {
                match events.recv().await {
                    Ok(mut e) => {
                        e.cluster = seat_cluster;
                        leaf.publish(e);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        };
        tokio::select! {
            () = run => {}
            () = forward => {}
        }
    });
    Ok(Held { shared, task })
}
