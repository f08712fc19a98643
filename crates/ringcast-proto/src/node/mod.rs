//! The node state machine: one member computer of a cluster, as pure logic.
//!
//! Call order, as for quinn-proto: feed one input with `handle_datagram`,
//! `handle_timeout` or `handle_local` (each takes `now`), then drain
//! `poll_transmit` and `poll_event` until they return `None`, then wait until
//! `poll_timeout` (or the next datagram) and repeat. The host's `Machine`
//! does exactly this for each node it runs, for the simulator and the
//! daemon alike.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::NodeAddrs;
use crate::config::{Capacity, ConfigError, NodeConfig};
use crate::election::{self, Reason};
use crate::event::{Destination, Event, LocalEvent, Transmit};
use crate::frame::{self, FrameError, Keyring, Opener, Sealer};
use crate::health::LocalHealth;
use crate::ids::{DiskId, Epoch, Incarnation, NodeId, Rank};
use crate::map::{ClusterMap, Member, MemberStatus};
use crate::message::{JoinRequest, Leave, Message, Notify, Status, SupervisorUpdate};
use crate::ring::Ring;
use crate::stats::Stats;
use crate::supervisor::{JoinOutcome, View};
use crate::tables::Tables;
use crate::timer::{Timer, Timers};

mod membership;
mod notify;
mod outbound;
mod reconfigure;

/// What part a node plays right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Claim 22: listening for a supervisor notification after start.
    Listening,
    /// Following a supervisor (joined or still joining).
    Member,
    /// The cluster supervising processor.
    Supervisor,
    /// Left the cluster; the node sends nothing more.
    Left,
}

/// One node of a cluster. See the module documentation for the call order.
pub struct Node {
    cfg: NodeConfig,
    /// This node's place in the succession (claim 12) and the map and
    /// configuration it was computed for.
    succession: Option<((NodeId, Epoch, u64, u32), usize)>,
    ranks: BTreeMap<NodeId, Rank>,
    keyring: Keyring,
    sealer: Sealer,
    opener: Opener,
    rng: ChaCha8Rng,
    incarnation: Incarnation,
    role: Role,
    view: Option<View>,
    joined: bool,
    leaving: bool,
    preempted_by: Option<NodeId>,
    highest_epoch: Epoch,
    ring: Ring,
    /// When this node last heard its upstream (or started watching it), for
    /// the detection latency of its declarations.
    upstream_heard: Option<Instant>,
    timers: Timers,
    health: LocalHealth,
    /// Claims 4 and 7: its load and disk reports, as they are and as its
    /// ring entry publishes them.
    reports: crate::damping::Published,
    notify_now: bool,
    /// The pending notification is the periodic one: only those count as
    /// repeats of a change, so a burst of prompt ones does not use them up.
    notify_periodic: bool,
    /// Claim 11, as supervisor: the state announced and the changes repeated.
    announcer: Option<crate::announce::Announcer>,
    /// Claim 11, as member: which announced state the view is.
    held: crate::announce::Held,
    /// Claim 11: the parts of a pulled state gathered so far.
    assembly: Option<crate::announce::Assembly>,
    /// When this node last pulled the whole state, and from which reign.
    pull_asked: Option<(Instant, (NodeId, Epoch, Incarnation))>,
    /// As supervisor: when each asker's last pull was answered, and with
    /// which version.
    pulls_answered: BTreeMap<NodeId, (Instant, crate::announce::Precedence)>,
    /// As supervisor: the askers whose pulls the next answer serves.
    pulls_pending: BTreeMap<NodeId, NodeAddrs>,
    /// As supervisor: when it last notified at once to answer a rival.
    rival_answered: Option<Instant>,
    /// The map (epoch, version) at which the supervisor last re-decided
    /// every disk.
    disks_evaluated_at: Option<(Epoch, u64)>,
    /// When this node last sent a notification in its reign.
    notified_at: Option<Instant>,
    /// When this node last asked its upstream to tell everything again.
    resend_asked: Option<Instant>,
    newest_config_seen: u32,
    /// The newest life of another process with this node's id heard so far.
    newest_own_id_life: Incarnation,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    /// The kinds of message that could not be sealed last time (too large
    /// for the frames the protocol carries), said once until they fit.
    unsent: std::collections::BTreeSet<crate::message::MessageKind>,
}

impl Node {
    /// Claim 22: a node that starts by listening for a supervisor notification.
    ///
    /// `incarnation` must grow across restarts of the same node (the runtime
    /// uses the start time; the simulator counts restarts); `seed` seeds the
    /// node's only source of randomness.
    pub fn new(
        cfg: NodeConfig,
        keyring: Keyring,
        incarnation: Incarnation,
        seed: u64,
        now: Instant,
    ) -> Result<Node, ConfigError> {
        cfg.validate()?;
        let ranks = cfg
            .priority
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, Rank(i as u16)))
            .collect();
        let sealer = Sealer::new(
            cfg.cluster,
            cfg.config_version,
            cfg.node,
            incarnation,
            cfg.mtu,
        );
        let opener = Opener::new(cfg.cluster, cfg.node);
        let mut node = Node {
            newest_config_seen: cfg.config_version,
            newest_own_id_life: Incarnation(0),
            cfg,
            ranks,
            keyring,
            sealer,
            opener,
            rng: ChaCha8Rng::seed_from_u64(seed),
            incarnation,
            role: Role::Listening,
            view: None,
            joined: false,
            leaving: false,
            preempted_by: None,
            highest_epoch: Epoch(0),
            ring: Ring::default(),
            upstream_heard: None,
            timers: Timers::default(),
            health: LocalHealth::new(),
            reports: crate::damping::Published::default(),
            notify_now: false,
            notify_periodic: false,
            announcer: None,
            held: crate::announce::Held::default(),
            assembly: None,
            pull_asked: None,
            succession: None,
            pulls_answered: BTreeMap::new(),
            pulls_pending: BTreeMap::new(),
            rival_answered: None,
            disks_evaluated_at: None,
            notified_at: None,
            resend_asked: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            unsent: std::collections::BTreeSet::new(),
        };
        node.timers
            .set(Timer::Listen, now + node.cfg.timing.notification_time);
        Ok(node)
    }

    // ----- inputs -----

    /// A datagram arrived from the bus or the ring.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.observe_clock(now);
        if self.role == Role::Left {
            return;
        }
        let ranks = &self.ranks;
        let opened = match self
            .opener
            .open(&self.keyring, datagram, |n| ranks.contains_key(&n))
        {
            Ok(Some(opened)) => opened,
            Ok(None) => return,
            Err(FrameError::FromSelf) => {
                if let Some(life) = self.opener.own_id_life(&self.keyring, datagram) {
                    if life > self.incarnation && life > self.newest_own_id_life {
                        self.newest_own_id_life = life;
                        self.events
                            .push_back(Event::OwnIdHeard { incarnation: life });
                    }
                }
                return self.reject(FrameError::FromSelf.reason());
            }
            Err(e) => return self.reject(e.reason()),
        };
        let message = match Message::decode(&opened.body) {
            Ok(m) => m,
            Err(_) => return self.reject("malformed"),
        };
        let wire = opened.body.len() + usize::from(opened.header.parts) * frame::OVERHEAD;
        self.stats.count_received(message.kind(), wire);
        if opened.header.config_version > self.newest_config_seen {
            self.newest_config_seen = opened.header.config_version;
            self.events.push_back(Event::ConfigOutdated {
                version: opened.header.config_version,
            });
        }
        let from = opened.header.sender;
        let life = opened.header.incarnation;
        match message {
            Message::Notify(n) => self.on_notify(now, from, life, opened.header.config_version, n),
            Message::SupervisorUpdate(u) => self.on_supervisor_update(now, from, u),
            Message::Join(j) => self.on_join(from, j),
            Message::Leave(l) => self.on_leave(now, from, l),
            Message::Status(s) => self.on_status(now, from, s),
            Message::Resend(r) => self.on_resend(from, r),
            Message::Pull(p) => self.on_pull(now, from, p),
            Message::State(p) | Message::Repair(p) => {
                self.on_state(now, from, life, opened.header.config_version, p)
            }
        }
        self.flush(now);
    }

    /// Time passed: fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe_clock(now);
        for timer in Timer::ALL {
            if self.timers.take_expired(timer, now) {
                self.fire(now, timer);
            }
        }
        self.flush(now);
    }

    /// Something the node's host reports: load, a disk probe, a leave request.
    pub fn handle_local(&mut self, now: Instant, event: LocalEvent) {
        self.observe_clock(now);
        match event {
            LocalEvent::Load(load) => self.reports.set_load(load, self.cfg.capacity),
            LocalEvent::DiskProbe(report) => self.reports.set_disk(report),
            LocalEvent::Leave => self.start_leaving(now),
            LocalEvent::Capacity(capacity) => self.set_capacity(capacity),
            LocalEvent::Priority(priority) => self.set_priority(now, priority),
        }
        self.flush(now);
    }

    // ----- outputs -----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event that happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called; `None` once the node has left.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- what the node knows -----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.node
    }

    /// This node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The part the node plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether a notification lists this node up with its current life.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// The node's current life.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// The cluster map this node holds (its own if supervisor).
    pub fn map(&self) -> Option<&ClusterMap> {
        self.view.as_ref().map(|v| &v.map)
    }

    /// The supervisor's tables as this node last heard them (its own if supervisor).
    pub fn tables(&self) -> Option<&Tables> {
        self.view.as_ref().map(|v| &v.tables)
    }

    /// The supervisor this node follows.
    pub fn supervisor(&self) -> Option<NodeId> {
        self.map().map(|m| m.supervisor)
    }

    /// Ring neighbours: (upstream, downstream).
    pub fn ring_neighbours(&self) -> (Option<NodeId>, Option<NodeId>) {
        (self.ring.upstream().map(|(n, _)| n), self.ring.downstream())
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Keys: the runtime rotates them here (accept new, send new, retire old).
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    /// The keys this node seals with and accepts.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Configuration reload: the node now runs configuration version `version` (it
    /// reloaded its configuration, a new key say). Frames sealed from now on
    /// carry it, so nodes still on an older version see it and refetch; a
    /// version at or below one already seen raises no `ConfigOutdated`.
    pub fn set_config_version(&mut self, version: u32) {
        self.cfg.config_version = version;
        self.sealer.set_config_version(version);
        self.newest_config_seen = self.newest_config_seen.max(version);
    }

    // ----- timers -----

    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Listen => {
                if self.role == Role::Listening && self.view.is_none() {
                    let epoch = self.highest_epoch.next();
                    self.become_supervisor(now, Reason::Formation, epoch);
                }
            }
            Timer::Notify => {
                if self.role == Role::Supervisor {
                    self.notify_now = true;
                    self.notify_periodic = true;
                }
            }
            Timer::SupervisorSilence => self.on_supervisor_silent(now),
            Timer::Status => {
                let ring_len = self.view.as_ref().map_or(1, |v| v.map.ring.len());
                let period = crate::damping::load_refresh(&self.cfg.timing, ring_len);
                self.reports.refresh(now, period);
                self.send_status();
                self.arm_status(now);
            }
            Timer::UpstreamSilence => self.on_upstream_silent(now),
            Timer::Join => {
                if self.role == Role::Member && !self.joined && !self.leaving {
                    self.send_join();
                    let jitter = self.jitter(self.cfg.timing.join_retry / 4);
                    self.timers
                        .set(Timer::Join, now + self.cfg.timing.join_retry + jitter);
                }
            }
            Timer::Leave => {
                if self.leaving && self.role != Role::Left {
                    self.send_leave();
                    self.timers
                        .set(Timer::Leave, now + self.cfg.timing.leave_retry);
                }
            }
            Timer::Answer => self.answer_pulls(),
            Timer::Prompt => {
                if self.role == Role::Supervisor {
                    self.notify_now = true;
                }
            }
            Timer::Preempt => {
                let outranks = self
                    .map()
                    .is_some_and(|m| election::preempts(&self.cfg.timing, self.cfg.rank(), m));
                if self.role == Role::Member && !self.leaving && outranks {
                    let epoch = self.highest_epoch.next();
                    self.become_supervisor(now, Reason::Preemption, epoch);
                }
            }
        }
    }

    fn jitter(&mut self, max: Duration) -> Duration {
        let micros = max.as_micros() as u64;
        if micros == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.rng.gen_range(0..micros))
    }

    fn arm_status(&mut self, now: Instant) {
        self.timers
            .set(Timer::Status, now + self.cfg.timing.status_interval);
    }

    /// Local health: a timer that ran late means this node was paused; push
    /// the silence deadlines back by the gap so no neighbour is blamed for it.
    fn observe_clock(&mut self, now: Instant) {
        let t = &self.cfg.timing;
        self.health.decay(now, t.notification_time * 10);
        let Some(due) = self.timers.next() else {
            return;
        };
        let Some(gap) = self.health.observe(due, now, t.status_interval) else {
            return;
        };
        self.stats.clock_slips += 1;
        for timer in [Timer::SupervisorSilence, Timer::UpstreamSilence] {
            if let Some(at) = self.timers.get(timer) {
                self.timers
                    .set(timer, at.max(now) + gap.min(t.notification_time));
            }
        }
        self.events.push_back(Event::ClockSlipped { gap });
    }

    // ----- becoming and stopping supervisor -----

    fn own_member(&self) -> Member {
        Member {
            id: self.cfg.node,
            incarnation: self.incarnation,
            addrs: self.cfg.addrs,
            status: MemberStatus::Up,
        }
    }

    fn become_supervisor(&mut self, now: Instant, reason: Reason, epoch: Epoch) {
        let mut view = self.view.take().unwrap_or_else(|| View {
            map: ClusterMap {
                supervisor: self.cfg.node,
                epoch,
                supervisor_rank: self.cfg.rank(),
                version: 0,
                servers: Vec::new(),
                members: Vec::new(),
                ring: Vec::new(),
            },
            tables: Tables::default(),
            supervisor_addrs: self.cfg.addrs,
        });
        let previous = view.map.supervisor;
        let previous_status = match reason {
            Reason::Takeover | Reason::Resume => Some(MemberStatus::Failed),
            Reason::Handover => Some(MemberStatus::Left),
            Reason::Formation | Reason::Preemption | Reason::Reconfigured => None,
        };
        self.start_announcing(&view);
        view.take_over(
            self.own_member(),
            self.cfg.rank(),
            epoch,
            previous_status,
            &self.cfg.priority,
        );
        view.map.servers = self.cfg.servers.clone();
        let disks: Vec<DiskId> = self.cfg.disks.iter().map(|d| d.id).collect();
        view.tables
            .record_join(self.cfg.node, self.cfg.capacity, &disks);
        view.tables
            .record_load(self.cfg.node, self.reports.actual_load());
        self.highest_epoch = self.highest_epoch.max(epoch);
        self.view = Some(view);
        self.role = Role::Supervisor;
        self.joined = true;
        self.preempted_by = None;
        for t in [
            Timer::Listen,
            Timer::SupervisorSilence,
            Timer::Join,
            Timer::Preempt,
        ] {
            self.timers.clear(t);
        }
        if !self.timers.is_set(Timer::Status) {
            let phase = self.jitter(self.cfg.timing.status_interval);
            self.timers.set(Timer::Status, now + phase);
        }
        self.follow_ring(now);
        self.stats.supervisor_changes += 1;
        self.events
            .push_back(Event::BecameSupervisor { epoch, reason });
        // What this node's ring already knows counts at once: its own
        // declarations, and the accumulated reports of the others.
        self.apply_own_declarations(now);
        self.apply_ring_entries(now, None);
        if matches!(reason, Reason::Takeover | Reason::Resume | Reason::Handover)
            && previous != self.cfg.node
        {
            self.send(
                Destination::Bus,
                Message::SupervisorUpdate(SupervisorUpdate {
                    supervisor: self.cfg.node,
                    addrs: self.cfg.addrs,
                    epoch,
                    replaces: previous,
                }),
            );
        }
        self.notify_now = true;
    }

    /// Claims 12 and 18: the supervisor fell silent; take over (or resume).
    fn on_supervisor_silent(&mut self, now: Instant) {
        if self.role != Role::Member {
            return;
        }
        if self.leaving {
            // Nobody is left to acknowledge the leave: the node is gone.
            return self.finish_leaving();
        }
        let silent = self.supervisor();
        let reason = if silent.is_some() && silent == self.preempted_by {
            Reason::Resume
        } else {
            Reason::Takeover
        };
        let epoch = self.highest_epoch.next();
        self.become_supervisor(now, reason, epoch);
    }

    // ----- notifications (see notify.rs) -----

    fn arm_supervisor_silence(&mut self, now: Instant) {
        let Some(map) = self.map() else { return };
        // Claim 12 at O(1) per notification: the position changes only
        // with the map (its supervisor, epoch and version) or the priority
        // list (the configuration).
        let key = (
            map.supervisor,
            map.epoch,
            map.version,
            self.cfg.config_version,
        );
        let position = match self.succession {
            Some((k, position)) if k == key => position,
            _ => {
                let position = election::successor_position(map, &self.cfg.priority, self.cfg.node);
                self.succession = Some((key, position));
                position
            }
        };
        let wait = election::takeover_wait(&self.cfg.timing, position);
        let wait = self.health.stretch(wait);
        self.timers.set(Timer::SupervisorSilence, now + wait);
    }

    /// Claims 15, 20 and refutation: what the adopted map says of this node.
    fn check_own_entry(&mut self, now: Instant) {
        let me = self.cfg.node;
        let entry = self.map().and_then(|m| m.member(me)).cloned();
        let listed_up = entry
            .as_ref()
            .is_some_and(|m| m.status == MemberStatus::Up && m.incarnation == self.incarnation);
        if self.leaving {
            if !listed_up {
                self.finish_leaving();
            }
            return;
        }
        if listed_up {
            if !self.joined {
                self.joined = true;
                self.timers.clear(Timer::Join);
                self.events.push_back(Event::Joined {
                    supervisor: self.supervisor().unwrap_or(me),
                });
            } else if self.capacity_unannounced() {
                self.send_join();
            }
            return;
        }
        if let Some(m) = entry {
            if m.incarnation >= self.incarnation {
                // Another (earlier, or wrongly failed) life of this node is
                // listed: refute it with a newer life.
                self.incarnation = m.incarnation.next();
                self.sealer.set_incarnation(self.incarnation);
                if m.status == MemberStatus::Failed {
                    self.events.push_back(Event::Refuted {
                        incarnation: self.incarnation,
                    });
                }
            }
        }
        if self.joined {
            self.joined = false;
        }
        if !self.timers.is_set(Timer::Join) {
            self.timers.set(Timer::Join, now);
        }
    }

    fn on_supervisor_update(&mut self, now: Instant, from: NodeId, u: SupervisorUpdate) {
        if u.supervisor != from {
            return self.reject("inconsistent_update");
        }
        self.highest_epoch = self.highest_epoch.max(u.epoch);
        // The notification that follows carries the map; until it arrives,
        // give the new supervisor a full notification time.
        if self.role == Role::Member && self.map().is_some_and(|m| u.epoch > m.epoch) {
            self.arm_supervisor_silence(now);
        }
    }

    // ----- the ring -----

    /// Claim 6: takes neighbours from the current map.
    fn follow_ring(&mut self, now: Instant) {
        let Some(view) = self.view.as_ref() else {
            return;
        };
        let on_ring = view.map.is_up(self.cfg.node)
            && view.map.member(self.cfg.node).map(|m| m.incarnation) == Some(self.incarnation);
        if !on_ring {
            self.timers.clear(Timer::UpstreamSilence);
            return;
        }
        let changed = self.ring.follow(&view.map, self.cfg.node);
        let relisted = self.ring.take_relisted();
        if self.role == Role::Supervisor && !relisted.is_empty() {
            self.apply_ring_entries(now, Some(&relisted));
        }
        if self.ring.upstream().is_none() {
            self.timers.clear(Timer::UpstreamSilence);
        } else if changed || !self.timers.is_set(Timer::UpstreamSilence) {
            self.arm_upstream_silence(now);
        }
    }

    fn arm_upstream_silence(&mut self, now: Instant) {
        let wait = self.health.stretch(self.cfg.timing.upstream_timeout());
        self.upstream_heard = Some(now);
        self.timers.set(Timer::UpstreamSilence, now + wait);
    }

    fn on_status(&mut self, now: Instant, from: NodeId, s: Status) {
        if !matches!(self.role, Role::Member | Role::Supervisor) {
            return;
        }
        if self.view.is_none() {
            return;
        }
        if self.ring.hear(from, &s) == crate::ring::Hearing::Missed {
            self.ask_resend(now, from);
        }
        let Some(view) = self.view.as_ref() else {
            return;
        };
        let merged = self.ring.merge(s.entries, &view.map, self.cfg.node);
        if self.ring.upstream().map(|(n, _)| n) == Some(from) {
            self.arm_upstream_silence(now);
        }
        if self.role == Role::Supervisor && !merged.changed.is_empty() {
            self.apply_ring_entries(now, Some(&merged.changed));
        }
        if merged.news {
            self.send_status();
        }
    }

    /// Claims 6-7: the upstream told something this node missed: ask it to
    /// tell everything again, at most once per two status intervals (a
    /// lost request is repeated by the next status that still disagrees).
    fn ask_resend(&mut self, now: Instant, upstream: NodeId) {
        let holdoff = self.cfg.timing.status_interval * 2;
        if self.resend_asked.is_some_and(|at| now < at + holdoff) {
            return;
        }
        let Some(addr) = self
            .map()
            .and_then(|m| m.member(upstream))
            .map(|m| m.addrs.ring)
        else {
            return;
        };
        self.resend_asked = Some(now);
        let node = self.cfg.node;
        self.send(
            Destination::Node { id: upstream, addr },
            Message::Resend(crate::message::Resend { node }),
        );
    }

    /// Claims 6-7: the downstream missed something: tell it all at once.
    fn on_resend(&mut self, from: NodeId, r: crate::message::Resend) {
        if r.node != from {
            return self.reject("inconsistent_resend");
        }
        if self.ring.downstream() == Some(from) {
            self.ring.resend_to(from);
            self.send_status();
        }
    }

    /// Claims 7, 9 and 13: the supervisor reads the accumulation: the
    /// entries of `changed` (those a status brought anew), or every entry
    /// when it has just become supervisor (`None`). Only the disks those
    /// entries report are re-decided: the work is what changed.
    fn apply_ring_entries(&mut self, now: Instant, changed: Option<&[NodeId]>) {
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let entries: Vec<_> = match changed {
            Some(nodes) => nodes
                .iter()
                .filter_map(|n| self.ring.entry(*n))
                .cloned()
                .collect(),
            None => self.ring.entries().cloned().collect(),
        };
        let mut failed = Vec::new();
        let mut disks = Vec::new();
        let mut reported = Vec::new();
        for entry in &entries {
            let (declared, paths) = view.apply_entry(entry, &self.cfg.priority);
            for d in declared {
                failed.push((d.node, entry.node));
            }
            disks.extend(paths);
            reported.extend(entry.disks.iter().map(|r| r.disk));
        }
        reported.sort();
        reported.dedup();
        let quorum = self.cfg.timing.disk_quorum;
        disks.extend(match changed {
            Some(_) => view.tables.evaluate_disks_of(quorum, &reported),
            None => view.tables.evaluate_disks(quorum),
        });
        if !disks.is_empty() {
            self.notify_now = true;
        }
        for change in disks {
            self.events.push_back(Event::Disk(change));
        }
        if failed.is_empty() {
            return;
        }
        for (node, declared_by) in failed {
            self.events
                .push_back(Event::NodeFailed { node, declared_by });
        }
        self.notify_now = true;
        self.follow_ring(now);
    }

    /// Claim 8: upstream silent for `miss_limit` periods.
    fn on_upstream_silent(&mut self, now: Instant) {
        let declared = self.ring.declare_upstream();
        if let Some(d) = &declared {
            self.stats.failure_declarations += 1;
            if let Some(heard) = self.upstream_heard {
                self.stats
                    .detection
                    .observe(now.saturating_duration_since(heard));
            }
            self.events
                .push_back(Event::UpstreamDeclared { node: d.node });
        }
        if self.role == Role::Supervisor {
            // A declaration made while a member (it may never have reached
            // the old supervisor) counts as soon as this node supervises.
            self.apply_own_declarations(now);
        } else {
            self.send_status();
            if declared.is_some() {
                self.send_own_entry_to_supervisor();
            }
        }
    }

    /// Claim 9: as supervisor, marks failed every node this node itself declared.
    fn apply_own_declarations(&mut self, now: Instant) {
        let me = self.cfg.node;
        let pending: Vec<_> = self.ring.declarations().copied().collect();
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let mut declared = Vec::new();
        for d in pending {
            if view.apply_declaration(&d, me, &self.cfg.priority) {
                declared.push(d.node);
            }
        }
        if declared.is_empty() {
            return;
        }
        for node in declared {
            self.events.push_back(Event::NodeFailed {
                node,
                declared_by: me,
            });
        }
        self.notify_now = true;
        self.follow_ring(now);
    }
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.cfg.node)
            .field("role", &self.role)
            .field("incarnation", &self.incarnation)
            .field("supervisor", &self.supervisor())
            .field("joined", &self.joined)
            .field("leaving", &self.leaving)
            .finish()
    }
}
