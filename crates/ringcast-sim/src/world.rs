//! The simulated world: many proto nodes on one virtual clock, a network with
//! seeded faults, and the invariants of DESIGN section 8 checked after every
//! step. One seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringcast_proto::event::{Destination, Event, LocalEvent, Transmit};
use ringcast_proto::pump::{self, Input, Outbox};
use ringcast_proto::{
    Capacity, ClusterId, ClusterMap, DiskAccess, DiskId, Incarnation, KeyId, Keyring,
    MachineConfig, MachineEvent, MemberStatus, NodeAddrs, NodeConfig, NodeId, Reload, Role, Timing,
};

use crate::check;
use crate::schedule::{Schedule, Trace};
use crate::streams::{self, Streams};

/// The cluster key every simulated node shares.
pub const SIM_KEY: [u8; 32] = [7; 32];

/// Faults of the simulated network.
#[derive(Clone, Debug, PartialEq)]
pub struct NetFaults {
    /// Probability a datagram is lost, per receiver.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Shortest one-way delay.
    pub delay_min: Duration,
    /// Longest one-way delay; a spread between the two reorders datagrams.
    pub delay_max: Duration,
}

impl NetFaults {
    /// A faulty network: `loss` and `duplicate` probabilities per datagram,
    /// one-way delays from 50 microseconds to `delay_max` (reordering).
    pub fn faulty(loss: f64, duplicate: f64, delay_max: Duration) -> Self {
        NetFaults {
            loss,
            duplicate,
            delay_min: Duration::from_micros(50),
            delay_max,
        }
    }

    /// The one-way delay of each copy of one datagram that the network
    /// delivers: none when it is lost, two when it is duplicated. Draws from
    /// `rng` in a fixed order (loss, duplication, each delay), so a seed
    /// replays exactly.
    pub fn deliveries(&self, rng: &mut impl Rng) -> Vec<Duration> {
        if self.loss > 0.0 && rng.gen_bool(self.loss.min(1.0)) {
            return Vec::new();
        }
        let copies = if self.duplicate > 0.0 && rng.gen_bool(self.duplicate.min(1.0)) {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                if self.delay_max > self.delay_min {
                    rng.gen_range(self.delay_min..=self.delay_max)
                } else {
                    self.delay_min
                }
            })
            .collect()
    }

    /// A quiet local network: no loss, 50-500 microseconds of delay.
    pub fn clean() -> Self {
        NetFaults {
            loss: 0.0,
            duplicate: 0.0,
            delay_min: Duration::from_micros(50),
            delay_max: Duration::from_micros(500),
        }
    }
}

/// How a simulation is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of everything random in the run.
    pub seed: u64,
    /// Number of nodes, ids 1..=nodes, priority in id order.
    pub nodes: u32,
    /// Protocol timing of every node.
    pub timing: Timing,
    /// Check "no live node is marked failed" (only meaningful without faults).
    pub strict_failures: bool,
    /// MTU of every node.
    pub mtu: usize,
}

impl SimConfig {
    /// `nodes` nodes with LAN timing.
    pub fn new(seed: u64, nodes: u32) -> Self {
        SimConfig {
            seed,
            nodes,
            timing: Timing::lan(),
            strict_failures: false,
            mtu: 1400,
        }
    }
}

/// One simulated host of a lone cluster: a [`ringcast_proto::Machine`]
/// without seats, driven through the daemon's pump.
#[derive(Debug)]
pub struct Host {
    /// Its node id.
    pub id: NodeId,
    /// The configuration the configuration service hands it.
    pub cfg: NodeConfig,
    /// The running machine; `None` while crashed or not yet started.
    pub machine: Option<ringcast_proto::Machine>,
    /// The life it runs (or last ran).
    pub incarnation: Incarnation,
    timer_gen: u64,
    paused_until: Option<Instant>,
    /// Every event its node emitted, with the virtual time since start.
    pub events: Vec<(Duration, Event)>,
    /// Bytes it sent (a bus datagram counts once).
    pub sent: u64,
    /// Bytes delivered to it.
    pub received: u64,
}

impl Host {
    /// The running node; `None` while crashed or not yet started.
    pub fn node(&self) -> Option<&ringcast_proto::Node> {
        self.machine.as_ref().map(ringcast_proto::Machine::leaf)
    }

    /// Whether the node runs (started, not crashed, not left).
    pub fn is_live(&self) -> bool {
        self.node().is_some_and(|n| n.role() != Role::Left)
    }
}

/// The events of a machine's leaf node, as the node emitted them: the
/// machine's map changes and reassignments are derived from these.
pub fn node_event(e: MachineEvent) -> Option<Event> {
    match e {
        MachineEvent::Node { event, .. } => Some(event),
        MachineEvent::ConfigOutdated { version } => Some(Event::ConfigOutdated { version }),
        MachineEvent::Rejected { reason, .. } => Some(Event::Rejected { reason }),
        MachineEvent::Map { .. }
        | MachineEvent::Reassign { .. }
        | MachineEvent::SeatTaken { .. }
        | MachineEvent::SeatReleased { .. } => None,
    }
}

/// The virtual wall clock of every simulated host at the start of a run
/// (2026-01-01 UTC): seats' lives grow with it.
pub const SIM_WALL_START: Duration = Duration::from_secs(1_767_225_600);

#[derive(Debug)]
enum Action {
    Deliver {
        to: usize,
        bytes: Arc<Vec<u8>>,
    },
    Timer {
        at: usize,
        generation: u64,
    },
    /// The stream layer's next wake-up.
    Streams,
}

/// Traffic totals of the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent by all nodes (a bus datagram counts once).
    pub sent: u64,
    /// Bytes delivered to all nodes.
    pub received: u64,
}

/// The simulated world.
pub struct Sim {
    /// How it was set up.
    pub config: SimConfig,
    base: Instant,
    now: Instant,
    rng: ChaCha8Rng,
    queue: Schedule<Action>,
    /// The machines, index = id - 1.
    pub machines: Vec<Host>,
    net: NetFaults,
    component: Vec<u32>,
    cut: BTreeSet<(usize, usize)>,
    /// Totals of traffic.
    pub traffic: Traffic,
    trace: Trace,
    /// Whether every trace line is also printed to stderr as it happens
    /// (`SIM_TRACE=1`, for following one seed whole; with `--threads 1`).
    echo_trace: bool,
    /// Invariant violations found so far (the first few, with their traces).
    pub violations: Vec<String>,
    /// Violations found so far, by kind: "protocol" (DESIGN section 8 and
    /// convergence), and the stream layer's "capacity", "stream", "address".
    pub kinds: BTreeMap<&'static str, u64>,
    precedence: Vec<Option<check::Precedence>>,
    /// Titles, disks, players, books and addresses, when enabled.
    streams: Option<Box<Streams>>,
    streams_busy: bool,
    streams_wake: Option<Instant>,
}

fn addr(id: u32, port_base: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (id >> 8) as u8, id as u8, 1)),
        port_base,
    )
}

/// The configuration of node `id` in a simulated cluster of `nodes`.
pub fn node_config(id: u32, nodes: u32, timing: &Timing, mtu: usize) -> NodeConfig {
    NodeConfig {
        cluster: ClusterId(1),
        node: NodeId(id),
        config_version: 1,
        bus: "239.1.1.1:7000".parse().expect("literal address"),
        priority: (1..=nodes).map(NodeId).collect(),
        addrs: NodeAddrs {
            ring: addr(id, 7001),
            http: addr(id, 8080),
        },
        disks: vec![DiskAccess {
            id: DiskId(id),
            mount: format!("/srv/disk{id}"),
            probe_path: format!("/srv/disk{id}/.probe"),
        }],
        capacity: Capacity {
            max_streams: 100,
            max_bytes_per_s: 1_000_000_000,
        },
        servers: vec![],
        timing: timing.clone(),
        mtu,
    }
}

const TRACE_LINES: usize = 60;

impl Sim {
    /// A world of stopped machines.
    pub fn new(config: SimConfig) -> Sim {
        let base = Instant::now();
        let machines = (1..=config.nodes)
            .map(|id| Host {
                id: NodeId(id),
                cfg: node_config(id, config.nodes, &config.timing, config.mtu),
                machine: None,
                incarnation: Incarnation(0),
                timer_gen: 0,
                paused_until: None,
                events: Vec::new(),
                sent: 0,
                received: 0,
            })
            .collect();
        Sim {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            base,
            now: base,
            queue: Schedule::default(),
            machines,
            net: NetFaults::clean(),
            component: vec![0; config.nodes as usize],
            cut: BTreeSet::new(),
            traffic: Traffic::default(),
            trace: Trace::new(TRACE_LINES),
            echo_trace: std::env::var_os("SIM_TRACE").is_some_and(|v| v == "1"),
            violations: Vec::new(),
            kinds: BTreeMap::new(),
            precedence: vec![None; config.nodes as usize],
            streams: None,
            streams_busy: false,
            streams_wake: None,
            config,
        }
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The seeded random source of the world (for scenario choices).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// The machine of `id`.
    pub fn machine(&self, id: u32) -> &Host {
        &self.machines[id as usize - 1]
    }

    /// The running node of `id`; panics in tests if it does not run.
    pub fn node(&self, id: u32) -> &ringcast_proto::Node {
        self.machine(id)
            .node()
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// Hands machine `id` new keys and configuration version, as the
    /// daemon's reload does (a stage of a key rotation, say).
    pub fn reload(&mut self, id: u32, keyring: Keyring, config_version: u32) {
        self.reload_with(
            id,
            Reload {
                keyring,
                config_version,
                priority: None,
                capacity: None,
            },
        );
    }

    /// Hands machine `id` a whole reloaded configuration: keys, version and
    /// what may change live (a priority list, a capacity).
    pub fn reload_with(&mut self, id: u32, reload: Reload) {
        self.input(id, Input::Reload(Box::new(reload)));
    }

    /// Ids of the machines whose node runs.
    pub fn live(&self) -> Vec<u32> {
        self.machines
            .iter()
            .filter(|m| m.is_live())
            .map(|m| m.id.0)
            .collect()
    }

    /// Sets the network's faults.
    pub fn set_net(&mut self, net: NetFaults) {
        self.net = net;
    }

    /// Starts (or restarts) node `id` with a new life.
    pub fn start(&mut self, id: u32) {
        let i = id as usize - 1;
        let seed = self.rng.gen();
        let m = &mut self.machines[i];
        // A new life is above every life before it, refutations included, as
        // the daemon's start time in milliseconds is.
        if let Some(n) = m.node() {
            m.incarnation = m.incarnation.max(n.incarnation());
        }
        m.incarnation = m.incarnation.next();
        m.paused_until = None;
        let keyring = Keyring::new(KeyId(1), SIM_KEY);
        let cfg = MachineConfig {
            leaf: m.cfg.clone(),
            seats: Vec::new(),
        };
        let wall = SIM_WALL_START + (self.now - self.base);
        let mut machine =
            ringcast_proto::Machine::new(cfg, keyring, m.incarnation, seed, self.now, wall)
                .expect("simulated configurations are valid");
        let mut out = Outbox::default();
        pump::drain(&mut machine, &mut out);
        m.machine = Some(machine);
        let incarnation = m.incarnation;
        self.precedence[i] = None;
        self.note(format!("start n{id} {incarnation}"));
        self.after_input(i, out);
        self.topology_changed();
    }

    /// Starts every machine at once.
    pub fn start_all(&mut self) {
        for id in 1..=self.config.nodes {
            self.start(id);
        }
    }

    /// Crashes node `id`: it stops at once, sending nothing more.
    pub fn crash(&mut self, id: u32) {
        let m = &mut self.machines[id as usize - 1];
        if let Some(n) = m.node() {
            m.incarnation = m.incarnation.max(n.incarnation());
        }
        m.machine = None;
        m.timer_gen += 1;
        self.note(format!("crash n{id}"));
        self.topology_changed();
    }

    /// Pauses node `id` for `pause`: its timers and datagrams wait until then.
    pub fn pause(&mut self, id: u32, pause: Duration) {
        let until = self.now + pause;
        self.machines[id as usize - 1].paused_until = Some(until);
        self.note(format!("pause n{id} {pause:?}"));
    }

    /// Asks node `id` to leave gracefully.
    pub fn leave(&mut self, id: u32) {
        self.local(id, LocalEvent::Leave);
    }

    /// Hands node `id` a local event (load, disk probe, leave).
    pub fn local(&mut self, id: u32, event: LocalEvent) {
        self.input(id, Input::Local(event));
    }

    /// [`Sim::local`] without a line in the trace: a host's routine report
    /// of its load or disks.
    pub fn report(&mut self, id: u32, event: LocalEvent) {
        self.apply(id, Input::Local(event));
    }

    /// Applies a host's input to machine `id` now, if it runs.
    fn input(&mut self, id: u32, input: Input<'_>) {
        if self.machines[id as usize - 1].machine.is_none() {
            return;
        }
        self.note(format!("input n{id} {input:?}"));
        self.apply(id, input);
    }

    /// [`Sim::input`] without a line in the trace.
    fn apply(&mut self, id: u32, input: Input<'_>) {
        let i = id as usize - 1;
        let now = self.now;
        let Some(machine) = self.machines[i].machine.as_mut() else {
            return;
        };
        let mut out = Outbox::default();
        pump::pump(machine, now, input, &mut out);
        self.after_input(i, out);
    }

    /// Delivers raw bytes to node `id` as if from the network (forgeries, garbage).
    pub fn inject(&mut self, id: u32, bytes: Vec<u8>) {
        let i = id as usize - 1;
        let at = self.now;
        self.schedule(
            at,
            Action::Deliver {
                to: i,
                bytes: Arc::new(bytes),
            },
        );
    }

    /// Splits the nodes into components; nodes not listed stay in component 0.
    pub fn partition(&mut self, groups: &[&[u32]]) {
        self.component = vec![0; self.config.nodes as usize];
        for (g, ids) in groups.iter().enumerate() {
            for id in ids.iter() {
                self.component[*id as usize - 1] = g as u32 + 1;
            }
        }
        self.note(format!("partition {groups:?}"));
        self.topology_changed();
    }

    /// Cuts the one-way link from `from` to `to`.
    pub fn cut(&mut self, from: u32, to: u32) {
        self.cut.insert((from as usize - 1, to as usize - 1));
        self.note(format!("cut n{from}->n{to}"));
    }

    /// Heals every partition and cut link.
    pub fn heal(&mut self) {
        self.component = vec![0; self.config.nodes as usize];
        self.cut.clear();
        self.note("heal".to_string());
        self.topology_changed();
    }

    /// Runs the world for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step_until(end) {}
        self.now = self.now.max(end);
    }

    /// Runs until `done` holds (checked every millisecond of virtual time) or
    /// `limit` passes. Returns how long it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<Duration, Duration> {
        let start = self.now;
        let end = start + limit;
        let tick = Duration::from_millis(1);
        loop {
            if done(self) {
                return Ok(self.now - start);
            }
            if self.now >= end {
                return Err(self.now - start);
            }
            let next = (self.now + tick).min(end);
            while self.step_until(next) {}
            self.now = next;
        }
    }

    /// Processes the next scheduled action if it is due by `end`.
    fn step_until(&mut self, end: Instant) -> bool {
        let Some((at, action)) = self.queue.pop_due(end) else {
            return false;
        };
        self.now = self.now.max(at);
        match action {
            Action::Deliver { to, bytes } => self.deliver(to, bytes),
            Action::Timer { at, generation } => self.timeout(at, generation),
            Action::Streams => self.streams_wake = None,
        }
        self.streams_step();
        true
    }

    fn deferred(&mut self, i: usize, action: Action) -> Option<Action> {
        match self.machines[i].paused_until {
            Some(until) if until > self.now => {
                self.schedule(until, action);
                None
            }
            Some(_) => {
                self.machines[i].paused_until = None;
                Some(action)
            }
            None => Some(action),
        }
    }

    fn deliver(&mut self, to: usize, bytes: Arc<Vec<u8>>) {
        let Some(Action::Deliver { to, bytes }) = self.deferred(to, Action::Deliver { to, bytes })
        else {
            return;
        };
        let now = self.now;
        let host = &mut self.machines[to];
        let Some(machine) = host.machine.as_mut() else {
            return;
        };
        host.received += bytes.len() as u64;
        self.traffic.received += bytes.len() as u64;
        let mut out = Outbox::default();
        let input = Input::Datagram {
            level: 0,
            bytes: &bytes,
        };
        pump::pump(machine, now, input, &mut out);
        self.after_input(to, out);
    }

    fn timeout(&mut self, at: usize, generation: u64) {
        if self.machines[at].timer_gen != generation {
            return;
        }
        let Some(Action::Timer { at, generation }) =
            self.deferred(at, Action::Timer { at, generation })
        else {
            return;
        };
        if self.machines[at].timer_gen != generation {
            return;
        }
        let now = self.now;
        let Some(machine) = self.machines[at].machine.as_mut() else {
            return;
        };
        let mut out = Outbox::default();
        pump::pump(machine, now, Input::Timeout, &mut out);
        self.after_input(at, out);
    }

    fn after_input(&mut self, i: usize, out: Outbox) {
        let elapsed = self.elapsed();
        if let Some(s) = self.streams.as_mut() {
            s.touch(i);
            for e in &out.events {
                s.event(i, e);
            }
        }
        for e in out.events.into_iter().filter_map(node_event) {
            self.note(format!("n{} {e:?}", i + 1));
            self.machines[i].events.push((elapsed, e));
        }
        for t in out.transmits {
            self.send(i, t.transmit);
        }
        let m = &mut self.machines[i];
        m.timer_gen += 1;
        let generation = m.timer_gen;
        if let Some(at) = m.machine.as_ref().and_then(|n| n.poll_timeout()) {
            self.schedule(at.max(self.now), Action::Timer { at: i, generation });
        }
        self.check_node(i);
    }

    fn send(&mut self, from: usize, t: Transmit) {
        self.traffic.sent += t.payload.len() as u64;
        self.machines[from].sent += t.payload.len() as u64;
        let bytes = Arc::new(t.payload);
        match t.destination {
            Destination::Bus => {
                for to in 0..self.machines.len() {
                    if to != from {
                        self.transport(from, to, bytes.clone());
                    }
                }
            }
            Destination::Node { id, .. } => {
                let to = id.0 as usize - 1;
                if to < self.machines.len() {
                    self.transport(from, to, bytes);
                }
            }
        }
    }

    fn transport(&mut self, from: usize, to: usize, bytes: Arc<Vec<u8>>) {
        if self.component[from] != self.component[to] || self.cut.contains(&(from, to)) {
            return;
        }
        if self.machines[to].machine.is_none() {
            return;
        }
        for delay in self.net.deliveries(&mut self.rng) {
            let at = self.now + delay;
            self.schedule(
                at,
                Action::Deliver {
                    to,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn schedule(&mut self, at: Instant, action: Action) {
        self.queue.push(at, action);
    }

    fn note(&mut self, line: String) {
        let elapsed = self.elapsed();
        if self.echo_trace {
            eprintln!("{:10.3} {line}", elapsed.as_secs_f64() * 1000.0);
        }
        self.trace.note(elapsed, line);
    }

    /// The last lines of the run, for a violation report.
    pub fn trace(&self) -> String {
        self.trace.text()
    }

    fn check_node(&mut self, i: usize) {
        let Some(node) = self.machines[i].node() else {
            return;
        };
        let strict = self
            .config
            .strict_failures
            .then_some(self as &dyn check::ClusterView);
        let problems = check::node_safety(node, self.precedence[i], strict);
        if let Some(p) = check::precedence_of(Some(node)) {
            self.precedence[i] = Some(p);
        }
        for p in problems {
            self.violation(p);
        }
    }

    /// Records a violation of the protocol's invariants with the seed and
    /// the recent trace.
    pub fn violation(&mut self, what: String) {
        self.violation_of("protocol", what);
    }

    /// Records a violation of kind `kind` with the seed and the recent trace.
    pub fn violation_of(&mut self, kind: &'static str, what: String) {
        *self.kinds.entry(kind).or_default() += 1;
        if self.violations.len() < 10 {
            let report = format!(
                "seed {} at {:.3} ms: {what}\n--- last events ---\n{}",
                self.config.seed,
                self.elapsed().as_secs_f64() * 1000.0,
                self.trace()
            );
            self.violations.push(report);
        }
    }

    /// The connected component node `id` is in (0 unless partitioned).
    pub fn component_of(&self, id: u32) -> u32 {
        self.component[id as usize - 1]
    }

    /// Turns on the stream layer (its layout already applied to the hosts'
    /// configurations): from now on its checks run after every step.
    pub fn enable_streams(&mut self, streams: Streams) {
        self.streams = Some(Box::new(streams));
        self.topology_changed();
    }

    /// The stream layer, when enabled.
    pub fn streams(&self) -> Option<&Streams> {
        self.streams.as_deref()
    }

    /// Acts on the stream layer now (start the players, break a disk, ...),
    /// then lets it catch up with the world.
    pub fn with_streams<R>(&mut self, f: impl FnOnce(&mut Streams, Instant) -> R) -> Option<R> {
        let now = self.now;
        let r = f(self.streams.as_mut()?, now);
        self.streams_step();
        Some(r)
    }

    fn topology_changed(&mut self) {
        if let Some(s) = self.streams.as_mut() {
            s.topology_changed();
        }
        self.streams_step();
    }

    /// Lets the stream layer catch up after a step, feeds the local events
    /// it makes to the nodes (which may make more), records what it found
    /// and schedules its next wake-up.
    fn streams_step(&mut self) {
        if self.streams_busy || self.streams.is_none() {
            return;
        }
        self.streams_busy = true;
        while let Some(mut s) = self.streams.take() {
            s.after_step(&*self);
            let outbox = s.take_outbox();
            let found = s.take_found();
            let notes = s.take_notes();
            let next = s.next_at();
            self.streams = Some(s);
            for line in notes {
                self.note(line);
            }
            for (kind, what) in found {
                self.violation_of(kind, what);
            }
            if let Some(at) = next {
                if self.streams_wake.is_none_or(|w| at < w) {
                    self.streams_wake = Some(at);
                    self.schedule(at.max(self.now), Action::Streams);
                }
            }
            if outbox.is_empty() {
                break;
            }
            for (id, event) in outbox {
                // Routine reports stay out of the trace; failed probes show.
                let routine = match &event {
                    LocalEvent::DiskProbe(r) => r.ok,
                    LocalEvent::Load(_) => true,
                    _ => false,
                };
                if routine {
                    self.apply(id, Input::Local(event));
                } else {
                    self.input(id, Input::Local(event));
                }
            }
        }
        self.streams_busy = false;
    }

    /// Whether life `incarnation` of node `id` is still running.
    pub fn life_is_running(&self, id: NodeId, incarnation: Incarnation) -> bool {
        let Some(m) = self.machines.get((id.0 as usize).wrapping_sub(1)) else {
            return false;
        };
        m.node()
            .is_some_and(|n| n.incarnation() == incarnation && n.role() != Role::Left)
    }

    /// The live supervisor that speaks for this cluster, with its life: the
    /// one of the newest epoch if a partition left several (claim 5: it holds
    /// the cluster's seat in the parent cluster).
    pub fn speaker(&self) -> Option<(u32, Incarnation)> {
        self.machines
            .iter()
            .filter_map(|m| m.node().map(|n| (m.id.0, n)))
            .filter(|(_, n)| n.role() == Role::Supervisor)
            .max_by_key(|(id, n)| (n.map().map(|m| m.epoch), std::cmp::Reverse(*id)))
            .map(|(id, n)| (id, n.incarnation()))
    }

    /// Whether every live node follows one supervisor that is itself live:
    /// the cluster is served again (the failover measure of every level).
    pub fn follows_one_live_supervisor(&self) -> bool {
        let mut live = self
            .machines
            .iter()
            .filter_map(Host::node)
            .filter(|n| n.role() != Role::Left);
        let Some(first) = live.next() else {
            return true;
        };
        let Some(sup) = first.supervisor() else {
            return false;
        };
        live.all(|n| n.supervisor() == Some(sup))
            && self
                .machines
                .get((sup.0 as usize).wrapping_sub(1))
                .is_some_and(Host::is_live)
    }

    /// The map node `id` holds.
    pub fn map_of(&self, id: u32) -> Option<&ClusterMap> {
        self.machine(id).node().and_then(|n| n.map())
    }

    /// Whether every node of `ids` lists `node` with `status`.
    pub fn all_list(&self, ids: &[u32], node: u32, status: MemberStatus) -> bool {
        ids.iter().all(|id| {
            self.map_of(*id)
                .and_then(|m| m.member(NodeId(node)))
                .is_some_and(|m| m.status == status)
        })
    }
}

impl streams::Hosts for Sim {
    fn now(&self) -> Instant {
        self.now
    }
    fn hosts(&self) -> usize {
        self.machines.len()
    }
    fn node(&self, host: usize) -> Option<&ringcast_proto::Node> {
        self.machines.get(host).and_then(Host::node)
    }
    fn life(&self, host: usize) -> Incarnation {
        self.machines[host].incarnation
    }
    fn component(&self, host: usize) -> u32 {
        self.component[host]
    }
    fn config(&self, host: usize) -> &NodeConfig {
        &self.machines[host].cfg
    }
}

impl check::ClusterView for Sim {
    fn running(&self) -> Vec<(u32, &ringcast_proto::Node)> {
        self.machines
            .iter()
            .filter_map(|m| m.node().map(|n| (m.id.0, n)))
            .collect()
    }
    fn life_is_running(&self, id: NodeId, incarnation: Incarnation) -> bool {
        Sim::life_is_running(self, id, incarnation)
    }
    fn preempt(&self) -> bool {
        self.config.timing.preempt
    }
}
