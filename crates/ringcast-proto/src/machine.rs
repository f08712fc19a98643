//! Claim 5 and DESIGN sections 1 and 7: one host of the tree of clusters.
//!
//! A [`Machine`] owns the protocol [`Node`] of its leaf cluster and, while it
//! supervises below them, one seat [`Node`] per ancestor cluster: the seat is
//! its sub-cluster's node in the parent cluster, under the sub-cluster's id,
//! on the parent's bus and ring. The machine takes a seat when the node one
//! level below becomes its cluster's supervisor and releases it, without a
//! word, when that node stops supervising: the parent then sees the seat's
//! next holder rejoin with a newer life rather than a failure. A seat that
//! supervises its own cluster holds the next seat up in turn, so the root
//! supervisor's machine holds a seat at every level.
//!
//! While it holds a seat the machine reports, through it, the capacity and
//! load of the cluster below summed by [`aggregate`] whenever they change; the
//! seat node itself re-announces a capacity its supervisor's tables do not
//! show yet (a lost announcement).
//!
//! Like [`Node`], the machine is sans-IO: the host passes datagrams tagged
//! with the level whose socket received them, timeouts, local reports, key
//! rotations and seat sockets it could not open, through the one pump;
//! the machine answers with datagrams tagged with the level whose socket must
//! send them, and typed [`MachineEvent`]s. The simulator's tree and the real
//! daemon run this same code.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Capacity, ConfigError, NodeConfig};
use crate::event::{Event, LocalEvent, Transmit};
use crate::frame::Keyring;
use crate::ids::{DiskId, Incarnation, NodeId};
use crate::map::{changes, ClusterMap, MapChange};
use crate::node::{Node, Role};
use crate::tables::{aggregate, DiskChange, Load};

/// A level of the tree as one machine sees it: 0 is its leaf cluster, 1 the
/// parent cluster where it may hold its sub-cluster's seat, and so on up.
pub type Level = usize;

/// How long a machine waits before taking a seat again after its host could
/// not open the seat's sockets.
pub const SEAT_RETRY: Duration = Duration::from_millis(500);

/// What one machine runs with: its leaf node's configuration and, nearest
/// parent first, the configuration of its seat in each ancestor cluster
/// (the sub-cluster's id, the parent's bus, priority list and timing, and
/// this machine's own ring address in that cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// The leaf cluster's node.
    pub leaf: NodeConfig,
    /// One seat per ancestor cluster, nearest parent first.
    pub seats: Vec<NodeConfig>,
}

/// A datagram for the host to send from the socket of `level`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelTransmit {
    /// The level whose bus or ring socket sends it.
    pub level: Level,
    /// The datagram.
    pub transmit: Transmit,
}

/// Claim 13: why the streams of a node or disk must move to nodes that still work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reassign {
    /// A node (or a sub-cluster's seat) was marked failed.
    NodeFailed(NodeId),
    /// A node left its cluster.
    NodeLeft(NodeId),
    /// A disk was declared failed by a quorum of reports.
    DiskFailed(DiskId),
    /// One node's path to a disk broke (one report alone).
    PathBroken {
        /// The node.
        node: NodeId,
        /// The disk it can no longer read.
        disk: DiskId,
    },
}

/// Something that happened on a machine, typed, for the host to act on and report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineEvent {
    /// An event of the node at `level` (became supervisor, declared its
    /// upstream, a disk changed, ...).
    Node {
        /// The node's level.
        level: Level,
        /// What happened.
        event: Event,
    },
    /// The cluster map the node at `level` holds changed: a new supervisor,
    /// a member up, failed or gone.
    Map {
        /// The node's level.
        level: Level,
        /// One change.
        change: MapChange,
    },
    /// Claim 13: the streams of a failed node or disk of the cluster at
    /// `level` must move.
    Reassign {
        /// The cluster's level.
        level: Level,
        /// What failed.
        what: Reassign,
    },
    /// Claim 5: the machine took its sub-cluster's seat at `level`: the host
    /// opens that level's sockets.
    SeatTaken {
        /// The seat's level (1 or more).
        level: Level,
        /// The seat's id in the parent cluster: the sub-cluster's id.
        seat: NodeId,
        /// The seat's new life.
        incarnation: Incarnation,
    },
    /// Claim 5: the machine released its seat at `level` (it no longer
    /// supervises below it): the host closes that level's sockets.
    SeatReleased {
        /// The seat's level.
        level: Level,
        /// The seat's id.
        seat: NodeId,
    },
    /// A frame carried a newer configuration version than the machine's:
    /// the host refetches its configuration.
    ConfigOutdated {
        /// The version seen.
        version: u32,
    },
    /// A datagram received at `level` was refused (bad tag, replayed,
    /// unknown sender, ...): the host charges its sender.
    Rejected {
        /// The level whose socket received it.
        level: Level,
        /// Why, as counted in the node's statistics.
        reason: &'static str,
    },
}

/// What the host may change in a running machine: the keys it seals with
/// and accepts (a rotation stage), and the configuration version its frames
/// carry (a reload).
#[derive(Clone, Debug)]
pub struct Reload {
    /// The new keys.
    pub keyring: Keyring,
    /// The configuration version they came with.
    pub config_version: u32,
    /// Claim 1: the leaf cluster's priority list, when it changed (a seat
    /// keeps its parent's list until the machine restarts).
    pub priority: Option<Vec<NodeId>>,
    /// Claim 4: the leaf node's streaming capacity, when it changed.
    pub capacity: Option<Capacity>,
}

struct Seat {
    node: Node,
    /// The capacity and load last handed to the seat.
    reported: Option<(Capacity, Load)>,
}

/// One host's protocol state: its leaf node and the seats it holds.
pub struct Machine {
    leaf: Node,
    seat_configs: Vec<NodeConfig>,
    /// Held seats, nearest parent first: `seats[k]` is level `k + 1`.
    seats: Vec<Seat>,
    keyring: Keyring,
    config_version: u32,
    rng: ChaCha8Rng,
    /// The host's wall clock at `started`, for the lives of seats.
    wall_at_start: Duration,
    started: Instant,
    /// The life of the seat last taken at each seat level.
    last_seat_life: Vec<Incarnation>,
    /// No seat is taken at that seat level before this instant.
    retry_at: Vec<Option<Instant>>,
    /// The map last seen at each level, for [`MachineEvent::Map`].
    maps: Vec<Option<ClusterMap>>,
    /// Each seen map's supervisor and precedence, kept apart so that telling
    /// an unchanged map costs one look into the node's map, not two.
    map_keys: Vec<Option<(NodeId, crate::map::Precedence)>>,
    /// The rival supervisor (and its epoch) each level's node last heard.
    rivals: Vec<Option<(NodeId, crate::ids::Epoch)>>,
    /// Per seat level: another machine holds the seat with a newer life,
    /// so the seat must be taken again, newer still.
    stale: Vec<bool>,
    /// Per seat level: no seat is taken again for being stale before this.
    retake_at: Vec<Option<Instant>>,
    transmits: VecDeque<LevelTransmit>,
    events: VecDeque<MachineEvent>,
}

impl Machine {
    /// A machine whose leaf node starts listening at `now` with life
    /// `incarnation`. `wall` is the host's wall clock at `now` (time since
    /// the Unix epoch): a seat's life is its wall time in microseconds, so
    /// the seat's next holder, on another machine, starts a newer life.
    pub fn new(
        cfg: MachineConfig,
        keyring: Keyring,
        incarnation: Incarnation,
        seed: u64,
        now: Instant,
        wall: Duration,
    ) -> Result<Machine, ConfigError> {
        for seat in &cfg.seats {
            seat.validate()?;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let config_version = cfg.leaf.config_version;
        let leaf = Node::new(cfg.leaf, keyring.clone(), incarnation, rng.next_u64(), now)?;
        let levels = cfg.seats.len();
        let mut machine = Machine {
            leaf,
            seat_configs: cfg.seats,
            seats: Vec::new(),
            keyring,
            config_version,
            rng,
            wall_at_start: wall,
            started: now,
            last_seat_life: vec![Incarnation(0); levels],
            retry_at: vec![None; levels],
            maps: vec![None; levels + 1],
            map_keys: vec![None; levels + 1],
            rivals: vec![None; levels + 1],
            stale: vec![false; levels],
            retake_at: vec![None; levels],
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        machine.settle(now);
        Ok(machine)
    }

    // ----- inputs -----

    /// A datagram arrived on the socket of `level`. One for a seat the
    /// machine no longer holds is dropped (its socket is closing).
    pub fn handle_datagram(&mut self, now: Instant, level: Level, datagram: &[u8]) {
        if let Some(node) = self.node_mut(level) {
            node.handle_datagram(now, datagram);
        }
        self.settle(now);
    }

    /// Time passed: fires every due timer of every node.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.leaf.handle_timeout(now);
        for seat in &mut self.seats {
            seat.node.handle_timeout(now);
        }
        self.settle(now);
    }

    /// Something the host reports about the leaf node: its load, a disk
    /// probe, a leave request.
    pub fn handle_local(&mut self, now: Instant, event: LocalEvent) {
        self.leaf.handle_local(now, event);
        self.settle(now);
    }

    /// New keys and configuration version, for every node the machine runs
    /// now and every seat it takes later.
    pub fn handle_reload(&mut self, now: Instant, reload: Reload) {
        self.config_version = reload.config_version.max(self.config_version);
        self.keyring = reload.keyring;
        let (keyring, version) = (self.keyring.clone(), self.config_version);
        for node in
            std::iter::once(&mut self.leaf).chain(self.seats.iter_mut().map(|s| &mut s.node))
        {
            *node.keyring_mut() = keyring.clone();
            node.set_config_version(version.max(node.config().config_version));
        }
        if let Some(capacity) = reload.capacity {
            self.leaf.handle_local(now, LocalEvent::Capacity(capacity));
        }
        if let Some(priority) = reload.priority {
            self.leaf.handle_local(now, LocalEvent::Priority(priority));
        }
        self.settle(now);
    }

    /// The host could not open the sockets of the seat at `level`: the seat
    /// and every seat above it are released, and taken again after
    /// [`SEAT_RETRY`].
    pub fn handle_seat_unavailable(&mut self, now: Instant, level: Level) {
        if level >= 1 && level <= self.seats.len() {
            self.release_from(level);
            self.retry_at[level - 1] = Some(now + SEAT_RETRY);
        }
        self.settle(now);
    }

    // ----- outputs -----

    /// The next datagram to send, with the level whose socket sends it.
    pub fn poll_transmit(&mut self) -> Option<LevelTransmit> {
        self.transmits.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<MachineEvent> {
        self.events.pop_front()
    }

    /// When [`Machine::handle_timeout`] must next be called; `None` once the
    /// leaf node has left.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.leaf.role() == Role::Left {
            return None;
        }
        let nodes = self.seats.iter().filter_map(|s| s.node.poll_timeout());
        let retries = self.retry_at.iter().flatten().copied();
        let retakes = self
            .retake_at
            .iter()
            .zip(&self.stale)
            .filter(|(_, stale)| **stale)
            .filter_map(|(at, _)| *at);
        self.leaf
            .poll_timeout()
            .into_iter()
            .chain(nodes)
            .chain(retries)
            .chain(retakes)
            .min()
    }

    // ----- what the machine knows -----

    /// The leaf cluster's node.
    pub fn leaf(&self) -> &Node {
        &self.leaf
    }

    /// The node at `level`: the leaf's at 0, a held seat above.
    pub fn node(&self, level: Level) -> Option<&Node> {
        match level {
            0 => Some(&self.leaf),
            l => self.seats.get(l - 1).map(|s| &s.node),
        }
    }

    /// Levels of the tree this machine may sit in: its leaf and every ancestor.
    pub fn levels(&self) -> usize {
        self.seat_configs.len() + 1
    }

    /// Seats held now; they are levels `1..=seats_held()`.
    pub fn seats_held(&self) -> usize {
        self.seats.len()
    }

    /// The configuration of the seat at `level` (1 or more).
    pub fn seat_config(&self, level: Level) -> Option<&NodeConfig> {
        level.checked_sub(1).and_then(|i| self.seat_configs.get(i))
    }

    /// The keys the machine seals with and accepts.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Claim 5: the capacity and load of the cluster the node at `level`
    /// supervises, as it reports them through the seat above; `None` when
    /// it does not supervise.
    pub fn aggregate(&self, level: Level) -> Option<(Capacity, Load)> {
        let node = self.node(level)?;
        if node.role() != Role::Supervisor {
            return None;
        }
        Some(aggregate(node.map()?, node.tables()?))
    }

    fn node_mut(&mut self, level: Level) -> Option<&mut Node> {
        match level {
            0 => Some(&mut self.leaf),
            l => self.seats.get_mut(l - 1).map(|s| &mut s.node),
        }
    }

    // ----- the seat policy -----

    /// After every input: collect the nodes' outputs, make the seats follow
    /// the roles below them, and report changed aggregates up; repeated
    /// while a step changes something for the next.
    fn settle(&mut self, now: Instant) {
        loop {
            self.collect();
            let changed = self.follow_roles(now) | self.report_aggregates(now);
            if !changed {
                self.collect();
                return;
            }
        }
    }

    /// Takes a seat whose level below supervises and releases one whose
    /// level below does not (or that left its cluster). Returns whether a
    /// seat was taken or released.
    fn follow_roles(&mut self, now: Instant) -> bool {
        let mut changed = false;
        // A seat another machine holds with a newer life is taken again,
        // newer still; at most once per [`SEAT_RETRY`], so two machines that
        // both supervise a split sub-cluster do not outbid each other at the
        // rate of their frames (the one that stays after the heal wins).
        if let Some(level) = (1..=self.seats.len())
            .find(|l| self.stale[l - 1] && self.retake_at[l - 1].is_none_or(|at| now >= at))
        {
            self.stale[level - 1] = false;
            self.retake_at[level - 1] = Some(now + SEAT_RETRY);
            self.release_from(level);
            changed = true;
        }
        // A held seat stays only while the node below it supervises and it
        // has not left; the first that fails releases every seat above it.
        let keep = (1..=self.seats.len())
            .take_while(|&level| {
                let below = self.node(level - 1).map(Node::role);
                let own = self.node(level).map(Node::role);
                below == Some(Role::Supervisor) && own != Some(Role::Left)
            })
            .count();
        if keep < self.seats.len() {
            self.release_from(keep + 1);
            changed = true;
        }
        let level = self.seats.len() + 1;
        if level > self.seat_configs.len() {
            return changed;
        }
        if self.node(level - 1).map(Node::role) != Some(Role::Supervisor) {
            return changed;
        }
        if self.retry_at[level - 1].is_some_and(|at| now < at) {
            return changed;
        }
        self.retry_at[level - 1] = None;
        self.take(now, level);
        true
    }

    fn take(&mut self, now: Instant, level: Level) {
        let mut cfg = self.seat_configs[level - 1].clone();
        let summed = self.aggregate(level - 1);
        if let Some((capacity, _)) = summed.filter(|(c, _)| c.max_streams > 0) {
            cfg.capacity = capacity;
        }
        cfg.config_version = cfg.config_version.max(self.config_version);
        let wall = self.wall_at_start + now.saturating_duration_since(self.started);
        let micros = u64::try_from(wall.as_micros()).unwrap_or(u64::MAX);
        let life = Incarnation(micros.max(self.last_seat_life[level - 1].0.saturating_add(1)));
        self.last_seat_life[level - 1] = life;
        let seed = self.rng.next_u64();
        let seat = cfg.node;
        match Node::new(cfg, self.keyring.clone(), life, seed, now) {
            Ok(node) => {
                self.seats.push(Seat {
                    node,
                    reported: None,
                });
                self.events.push_back(MachineEvent::SeatTaken {
                    level,
                    seat,
                    incarnation: life,
                });
            }
            // Seat configurations were validated in `new`; a summed
            // capacity cannot make one invalid. Should it ever, the seat is
            // tried again later rather than taken broken.
            Err(_) => self.retry_at[level - 1] = Some(now + SEAT_RETRY),
        }
    }

    /// Releases the seat at `level` and every seat above it, nearest the
    /// root first. No leave is sent: the parent keeps the sub-cluster while
    /// the next holder takes the seat.
    fn release_from(&mut self, level: Level) {
        while self.seats.len() >= level {
            let top = self.seats.len();
            if let Some(seat) = self.seats.pop() {
                self.maps[top] = None;
                self.map_keys[top] = None;
                // Taken again above the newest life heard anyway.
                self.stale[top - 1] = false;
                self.events.push_back(MachineEvent::SeatReleased {
                    level: top,
                    seat: seat.node.id(),
                });
            }
        }
    }

    /// Hands each held seat the capacity and load of the cluster below it
    /// when they changed. Returns whether any seat was told something.
    fn report_aggregates(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for level in 1..=self.seats.len() {
            let Some(summed) = self.aggregate(level - 1) else {
                continue;
            };
            let seat = &mut self.seats[level - 1];
            if seat.reported == Some(summed) {
                continue;
            }
            seat.reported = Some(summed);
            let (capacity, load) = summed;
            if capacity.max_streams > 0 {
                seat.node.handle_local(now, LocalEvent::Capacity(capacity));
            }
            seat.node.handle_local(now, LocalEvent::Load(load));
            changed = true;
        }
        changed
    }

    /// Moves every node's datagrams and events to the machine's queues,
    /// with the map changes each node's map shows.
    fn collect(&mut self) {
        // An event may release seats, so the bound is read at every level.
        let mut level = 0;
        while level <= self.seats.len() {
            let node = match level {
                0 => &mut self.leaf,
                l => &mut self.seats[l - 1].node,
            };
            let mut events = Vec::new();
            while let Some(transmit) = node.poll_transmit() {
                self.transmits.push_back(LevelTransmit { level, transmit });
            }
            while let Some(e) = node.poll_event() {
                events.push(e);
            }
            // A supervisor bumps its map's version with every change, so a
            // map of the same supervisor and precedence is the same map.
            let fresh = match node.map() {
                None => None,
                Some(new) => {
                    let key = (new.supervisor, new.precedence());
                    (self.map_keys[level] != Some(key)).then(|| (key, new.clone()))
                }
            };
            for event in events {
                self.event(level, event);
            }
            if let Some((key, map)) = fresh {
                for change in changes(self.maps[level].as_ref(), &map) {
                    self.map_change(level, change);
                }
                self.maps[level] = Some(map);
                self.map_keys[level] = Some(key);
            }
            level += 1;
        }
    }

    fn event(&mut self, level: Level, event: Event) {
        if let Event::RivalSupervisor { rival, epoch } = event {
            // While the rival supervised, its machine may have taken the
            // seat above with a newer life than this machine's seat, and the
            // parent now refuses this one's frames as stale: take the seat
            // again, newer than any the rival took. Once per rival epoch.
            if self.rivals[level] != Some((rival, epoch)) {
                self.rivals[level] = Some((rival, epoch));
                if self.seats.len() > level {
                    self.release_from(level + 1);
                }
            }
        }
        if let (Event::OwnIdHeard { incarnation }, Some(k)) = (&event, level.checked_sub(1)) {
            if k < self.seats.len() {
                let last = &mut self.last_seat_life[k];
                *last = (*last).max(*incarnation);
                self.stale[k] = true;
            }
        }
        let out = match event {
            Event::ConfigOutdated { version } => MachineEvent::ConfigOutdated { version },
            Event::Rejected { reason } => MachineEvent::Rejected { level, reason },
            Event::Disk(change) => {
                let what = match change {
                    DiskChange::Failed(disk) => Some(Reassign::DiskFailed(disk)),
                    DiskChange::PathBroken { node, disk } => {
                        Some(Reassign::PathBroken { node, disk })
                    }
                    DiskChange::Recovered(_) | DiskChange::PathRestored { .. } => None,
                };
                self.events.push_back(MachineEvent::Node { level, event });
                match what {
                    Some(what) => MachineEvent::Reassign { level, what },
                    None => return,
                }
            }
            event => MachineEvent::Node { level, event },
        };
        self.events.push_back(out);
    }

    fn map_change(&mut self, level: Level, change: MapChange) {
        let what = match change {
            MapChange::Failed { node } => Some(Reassign::NodeFailed(node)),
            MapChange::Left { node } => Some(Reassign::NodeLeft(node)),
            MapChange::Supervisor { .. } | MapChange::Joined { .. } => None,
        };
        self.events.push_back(MachineEvent::Map { level, change });
        if let Some(what) = what {
            self.events
                .push_back(MachineEvent::Reassign { level, what });
        }
    }
}

impl core::fmt::Debug for Machine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Machine")
            .field("leaf", &self.leaf)
            .field("seats", &self.seats.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::{NodeAddrs, Timing};
    use crate::ids::{ClusterId, KeyId};

    /// A node alone in its cluster `cluster`, member `id`, on `port`.
    fn alone(cluster: u32, id: u32, port: u16, timing: Timing) -> NodeConfig {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        NodeConfig {
            cluster: ClusterId(cluster),
            node: NodeId(id),
            config_version: 1,
            bus: "239.1.1.1:7000".parse().unwrap(),
            priority: vec![NodeId(id)],
            addrs: NodeAddrs {
                ring: addr,
                http: addr,
            },
            disks: vec![],
            capacity: Capacity {
                max_streams: 100,
                max_bytes_per_s: 1_000_000,
            },
            servers: vec![],
            timing,
            mtu: 1400,
        }
    }

    fn machine(now: Instant) -> Machine {
        let leaf = Timing::lan();
        let cfg = MachineConfig {
            leaf: alone(10, 1, 7001, leaf.clone()),
            seats: vec![alone(1, 10, 7002, leaf.for_level(1, 3))],
        };
        let keys = Keyring::new(KeyId(1), [9; 32]);
        let wall = Duration::from_secs(1_800_000_000);
        Machine::new(cfg, keys, Incarnation(1), 7, now, wall).unwrap()
    }

    /// Runs the machine's timers until `until`, collecting its events.
    fn run(m: &mut Machine, mut now: Instant, until: Instant) -> Vec<MachineEvent> {
        let mut events = Vec::new();
        while let Some(at) = m.poll_timeout().filter(|at| *at <= until) {
            now = now.max(at);
            m.handle_timeout(now);
            while m.poll_transmit().is_some() {}
            events.extend(std::iter::from_fn(|| m.poll_event()));
        }
        events
    }

    fn taken(events: &[MachineEvent]) -> Vec<Incarnation> {
        events
            .iter()
            .filter_map(|e| match e {
                MachineEvent::SeatTaken { incarnation, .. } => Some(*incarnation),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_seat_is_taken_once_the_leaf_supervises_with_its_clusters_capacity() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        assert_eq!(m.seats_held(), 0, "a listening leaf holds no seat");
        let events = run(&mut m, t0, t0 + Duration::from_secs(1));
        assert_eq!(m.leaf().role(), Role::Supervisor);
        assert_eq!(taken(&events).len(), 1, "{events:?}");
        assert_eq!(m.seats_held(), 1);
        let seat = m.node(1).unwrap();
        assert_eq!(seat.id(), NodeId(10));
        assert_eq!(seat.config().capacity.max_streams, 100);
        // A seat's life is the machine's wall time in microseconds.
        assert!(seat.incarnation().0 >= 1_800_000_000 * 1_000_000);
    }

    #[test]
    fn a_seat_whose_sockets_cannot_open_is_taken_again_after_the_retry_with_a_newer_life() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        let first = taken(&run(&mut m, t0, t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        m.handle_seat_unavailable(t1, 1);
        let released: Vec<MachineEvent> = std::iter::from_fn(|| m.poll_event()).collect();
        assert!(
            released
                .iter()
                .any(|e| matches!(e, MachineEvent::SeatReleased { level: 1, .. })),
            "{released:?}"
        );
        assert_eq!(m.seats_held(), 0);
        let before_retry = run(&mut m, t1, t1 + SEAT_RETRY - Duration::from_millis(1));
        assert!(taken(&before_retry).is_empty(), "{before_retry:?}");
        let again = taken(&run(
            &mut m,
            t1,
            t1 + SEAT_RETRY + Duration::from_millis(50),
        ));
        assert_eq!(again.len(), 1);
        assert!(again[0] > first[0], "{again:?} after {first:?}");
    }

    #[test]
    fn a_frame_of_the_seats_own_id_with_a_newer_life_makes_the_machine_outbid_it() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        run(&mut m, t0, t0 + Duration::from_secs(1));
        let mine = m.node(1).unwrap().incarnation();
        // Another machine holds seat 10 with a newer life and says so on
        // the parent's bus.
        let t1 = t0 + Duration::from_secs(1);
        let other = Incarnation(mine.0 + 5_000_000);
        let mut sealer = crate::frame::Sealer::new(ClusterId(1), 1, NodeId(10), other, 1400);
        let keys = Keyring::new(KeyId(1), [9; 32]);
        let frame = sealer.seal(&keys, b"anything").unwrap().remove(0);
        m.handle_datagram(t1, 1, &frame);
        let events: Vec<MachineEvent> = std::iter::from_fn(|| m.poll_event()).collect();
        let retaken = taken(&events);
        assert_eq!(retaken.len(), 1, "{events:?}");
        assert!(retaken[0] > other, "{} outbids {other}", retaken[0]);
        assert_eq!(m.node(1).unwrap().incarnation(), retaken[0]);
    }
}
