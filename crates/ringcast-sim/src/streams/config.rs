//! How the stream layer runs and how long its checks wait: every bound
//! derives from the cluster's timing, as the campaign's own do.

use std::time::Duration;

use ringcast_proto::health::MAX_SCORE;
use ringcast_proto::placement::reservation;
use ringcast_proto::Timing;

use super::disks::probe_timeout;

/// How long a player waits before asking again after an answer that did
/// not get it served (`ringcast play` starts its back-off at 100 ms).
pub const PLAYER_RETRY: Duration = Duration::from_millis(200);

/// Bytes per second one stream reads and sends.
pub const STREAM_RATE: u64 = 500_000;

/// The failover time of a lone cluster of `nodes` of which `missing` are
/// down or on another side of the network: the last-ranked survivor takes
/// over after a missed notification, then the ring declares the missing
/// members one after another (a run of dead ring neighbours goes one
/// upstream timeout apart, stretched up to `1 + MAX_SCORE` times on a node
/// whose own timers ran late), each declaration riding at most a lap of the
/// ring to the supervisor and one notification back.
pub fn failover_bound(timing: &Timing, nodes: u32, missing: u32) -> Duration {
    let step = timing.upstream_timeout() * (1 + MAX_SCORE)
        + timing.status_interval * nodes
        + timing.notify_interval;
    timing.notification_time + timing.takeover_step * nodes + step * missing.max(1)
}

/// The longest a servable stream may go unserved on a side of the network
/// where `missing` of `nodes` are absent: a failed disk is known once the
/// probes of the nodes reaching it have failed (a period and a probe
/// timeout) and their reports have reached the supervisor (a failover),
/// the capacity reserved for the answers of the last [`reservation`] on
/// a ring of `nodes` counts until it expires, and the player asks again within
/// [`PLAYER_RETRY`].
pub fn stream_bound(timing: &Timing, nodes: u32, missing: u32) -> Duration {
    timing.disk_check_interval
        + probe_timeout(timing)
        + failover_bound(timing, nodes, missing)
        + reservation(timing, nodes as usize)
        + PLAYER_RETRY
}

/// A bug the layer can inject, to show that its checks catch one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The holder rule leaves a node's address with the node even when it is
    /// off the ring: a dead node's address is held by nobody.
    DeadNodesKeepTheirAddresses,
    /// Placement sees three times each node's capacity.
    IgnoreCapacity,
    /// Placement sees every disk and path working.
    IgnoreDiskFailures,
}

/// How the layer runs.
#[derive(Clone, Debug)]
pub struct StreamsConfig {
    /// Streams (players) in the cluster.
    pub streams: u32,
    /// Nodes in the cluster.
    pub nodes: u32,
    /// The cluster's timing (probe period, bounds).
    pub timing: Timing,
    /// A bug to inject, if any.
    pub bug: Option<Bug>,
    /// Seed of the players' own choices.
    pub seed: u64,
}

impl StreamsConfig {
    /// `streams` streams over `nodes` nodes running `timing`.
    pub fn new(streams: u32, nodes: u32, timing: &Timing, seed: u64) -> StreamsConfig {
        StreamsConfig {
            streams,
            nodes,
            timing: timing.clone(),
            bug: None,
            seed,
        }
    }

    /// Check 3's bound when `missing` nodes are absent from the component.
    pub fn address_bound(&self, missing: u32) -> Duration {
        failover_bound(&self.timing, self.nodes, missing)
    }

    /// Check 2's bound when `missing` nodes are absent from the player's side.
    pub fn stream_bound(&self, missing: u32) -> Duration {
        stream_bound(&self.timing, self.nodes, missing)
    }
}
