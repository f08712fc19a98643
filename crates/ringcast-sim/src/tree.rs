//! Claim 5 and DESIGN section 7: a tree of clusters on one virtual clock.
//!
//! Every host is a leaf machine: a [`ringcast_proto::Machine`] driven through
//! the daemon's pump, with its leaf node and whatever seats the machine takes
//! in its ancestor clusters. Each cluster of the tree has its own network (bus
//! and ring); a seat is reached at its holder's own address for that level,
//! so a seat that moves moves to another address, as a real seat does. The
//! network's faults (loss, duplication, delay and reordering, partitions of
//! any cluster, pauses of any host) apply at every level, and the safety
//! invariants of DESIGN section 8 are checked on every node of every level
//! after every input; convergence is checked per cluster.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringcast_proto::event::{Destination, Event, LocalEvent};
use ringcast_proto::pump::{self, Input, Outbox};
use ringcast_proto::{
    ClusterId, Incarnation, KeyId, Keyring, Level, Machine, MachineConfig, MachineEvent,
    MemberStatus, Node, NodeAddrs, NodeConfig, NodeId, Role, Timing,
};

use crate::check::{self, ClusterView, Precedence};
use crate::schedule::{Schedule, Trace};
use crate::world::{node_config, NetFaults, SIM_KEY, SIM_WALL_START};

/// One cluster of the tree.
#[derive(Debug)]
pub struct Cluster {
    /// 0 is the root.
    pub level: usize,
    /// The parent cluster and this cluster's member id (its seat) there.
    pub parent: Option<(usize, u32)>,
    /// The sub-cluster of each member id (id - 1), above the leaves.
    pub children: Vec<usize>,
    /// Members: machines in a leaf, seats above.
    pub members: u32,
    /// The protocol timing of the cluster.
    pub timing: Timing,
    /// The hosts that run a node of this cluster now (a leaf's started
    /// machines; above, the holders of its seats).
    present: BTreeSet<usize>,
    /// Partition component of each member id (id - 1).
    component: Vec<u32>,
    /// Bytes sent and received by each member id (id - 1), whoever held it.
    pub bytes: Vec<u64>,
    /// Loss on this cluster's network alone, on top of the tree's faults.
    loss: f64,
}

/// One simulated host: a leaf machine and the seats it holds.
#[derive(Debug)]
pub struct Host {
    /// Its leaf cluster and id there, then each ancestor cluster and the
    /// seat's id there, nearest first: its place at every level.
    pub chain: Vec<(usize, u32)>,
    /// The running machine; `None` while crashed or not yet started.
    pub machine: Option<Machine>,
    /// The leaf node's life (or last life).
    pub incarnation: Incarnation,
    timer_gen: u64,
    paused_until: Option<Instant>,
    /// The precedence of the map each level's node last held.
    precedence: Vec<Option<Precedence>>,
    /// Bytes sent and received at every level together.
    pub bytes: u64,
}

impl Host {
    /// The node at `level`, if it runs.
    pub fn node(&self, level: Level) -> Option<&Node> {
        self.machine.as_ref().and_then(|m| m.node(level))
    }
}

/// A seat marked failed by one of its parent's nodes, for the audit of
/// false sub-cluster failures.
#[derive(Clone, Copy, Debug)]
pub struct SeatFailure {
    /// When.
    pub at: Duration,
    /// The parent cluster.
    pub parent: usize,
    /// The seat's id in it.
    pub seat: u32,
}

#[derive(Debug)]
enum Action {
    Deliver {
        host: usize,
        level: Level,
        bytes: Arc<Vec<u8>>,
    },
    Timer {
        host: usize,
        generation: u64,
    },
}

const TRACE_LINES: usize = 80;
/// The first ring port; a host's address at level `l` uses `RING_PORT + l`.
const RING_PORT: u16 = 7001;

/// The address of host `host` at `level`: one IPv4 address per host, one
/// port per level, so a datagram to a seat reaches the machine that held it
/// when it was sent.
fn host_addr(host: usize, level: Level) -> SocketAddr {
    let h = host as u32 + 1;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (h >> 16) as u8, (h >> 8) as u8, h as u8)),
        RING_PORT + level as u16,
    )
}

fn host_of(addr: SocketAddr) -> Option<(usize, Level)> {
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    let [_, a, b, c] = ip.octets();
    let h = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
    let level = addr.port().checked_sub(RING_PORT)?;
    Some(((h as usize).checked_sub(1)?, usize::from(level)))
}

/// The world of a whole tree.
pub struct TreeWorld {
    base: Instant,
    now: Instant,
    rng: ChaCha8Rng,
    queue: Schedule<Action>,
    /// The clusters, root first, each level after the one above.
    pub clusters: Vec<Cluster>,
    /// The hosts, leaf cluster by leaf cluster.
    pub hosts: Vec<Host>,
    net: NetFaults,
    trace: Trace,
    /// Safety violations found so far.
    pub violations: Vec<String>,
    /// Seats marked failed by a parent's node, in order.
    pub seat_failures: Vec<SeatFailure>,
    mtu: usize,
    seed: u64,
}

impl TreeWorld {
    /// A tree of `shape` (members per cluster at each level, root first)
    /// whose level `l` runs `timing(l)`; every host stopped.
    pub fn new(shape: &[u32], timing: impl Fn(usize) -> Timing, seed: u64) -> TreeWorld {
        let levels = shape.len();
        let mut clusters = Vec::new();
        let new_cluster = |level: usize, parent| Cluster {
            level,
            parent,
            children: Vec::new(),
            members: shape[level],
            timing: timing(level),
            present: BTreeSet::new(),
            component: vec![0; shape[level] as usize],
            bytes: vec![0; shape[level] as usize],
            loss: 0.0,
        };
        clusters.push(new_cluster(0, None));
        let mut level_start = 0;
        for (level, &members) in shape.iter().enumerate().take(levels - 1) {
            let level_end = clusters.len();
            for parent in level_start..level_end {
                for id in 1..=members {
                    let index = clusters.len();
                    clusters.push(new_cluster(level + 1, Some((parent, id))));
                    clusters[parent].children.push(index);
                }
            }
            level_start = level_end;
        }
        let mut hosts = Vec::new();
        for leaf in level_start..clusters.len() {
            for id in 1..=shape[levels - 1] {
                let mut chain = vec![(leaf, id)];
                let mut c = leaf;
                while let Some((parent, seat)) = clusters[c].parent {
                    chain.push((parent, seat));
                    c = parent;
                }
                hosts.push(Host {
                    chain,
                    machine: None,
                    incarnation: Incarnation(0),
                    timer_gen: 0,
                    paused_until: None,
                    precedence: vec![None; levels],
                    bytes: 0,
                });
            }
        }
        let base = Instant::now();
        TreeWorld {
            base,
            now: base,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: Schedule::default(),
            clusters,
            hosts,
            net: NetFaults::clean(),
            trace: Trace::new(TRACE_LINES),
            violations: Vec::new(),
            seat_failures: Vec::new(),
            mtu: 1400,
            seed,
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The seeded random source of the world.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Sets the faults of every cluster's network.
    pub fn set_net(&mut self, net: NetFaults) {
        self.note(format!("net {net:?}"));
        self.net = net;
    }

    /// Splits cluster `c`'s members into components; members not listed
    /// stay in component 0.
    pub fn partition(&mut self, c: usize, groups: &[&[u32]]) {
        let cluster = &mut self.clusters[c];
        cluster.component = vec![0; cluster.members as usize];
        for (g, ids) in groups.iter().enumerate() {
            for id in ids.iter() {
                cluster.component[*id as usize - 1] = g as u32 + 1;
            }
        }
        self.note(format!("partition cluster {c} {groups:?}"));
    }

    /// Loses `loss` of the datagrams on cluster `c`'s network alone (a
    /// lost announcement, say); 0 restores it.
    pub fn set_cluster_loss(&mut self, c: usize, loss: f64) {
        self.clusters[c].loss = loss;
        self.note(format!("loss {loss} on cluster {c}"));
    }

    /// Heals every partition of every cluster.
    pub fn heal(&mut self) {
        for c in &mut self.clusters {
            c.component.iter_mut().for_each(|g| *g = 0);
        }
        self.note("heal".to_string());
    }

    /// Pauses host `h` for `pause`: its timers and datagrams wait until then.
    pub fn pause(&mut self, h: usize, pause: Duration) {
        self.hosts[h].paused_until = Some(self.now + pause);
        self.note(format!("pause host {h} {pause:?}"));
    }

    /// The configuration of host `h`'s machine: its leaf node and a seat in
    /// every ancestor cluster, at its own address for that level.
    fn machine_config(&self, h: usize) -> MachineConfig {
        let host = &self.hosts[h];
        let config = |level: Level| -> NodeConfig {
            let (c, id) = host.chain[level];
            let cluster = &self.clusters[c];
            let mut cfg = node_config(id, cluster.members, &cluster.timing, self.mtu);
            cfg.cluster = ClusterId(c as u32 + 1);
            cfg.bus = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)), 7000 + c as u16);
            cfg.addrs = NodeAddrs {
                ring: host_addr(h, level),
                http: SocketAddr::new(host_addr(h, level).ip(), 8080),
            };
            if level > 0 {
                // A seat reaches no disk itself; its capacity is its
                // sub-cluster's, summed by the machine.
                cfg.disks.clear();
            }
            cfg
        };
        MachineConfig {
            leaf: config(0),
            seats: (1..host.chain.len()).map(config).collect(),
        }
    }

    /// Starts (or restarts) host `h` with a new life and `load` on its leaf node.
    pub fn start(&mut self, h: usize, load: ringcast_proto::Load) {
        let cfg = self.machine_config(h);
        let seed = self.rng.gen();
        let wall = SIM_WALL_START + self.elapsed();
        let host = &mut self.hosts[h];
        if let Some(n) = host.node(0) {
            host.incarnation = host.incarnation.max(n.incarnation());
        }
        host.incarnation = host.incarnation.next();
        host.paused_until = None;
        host.precedence.iter_mut().for_each(|p| *p = None);
        let keyring = Keyring::new(KeyId(1), SIM_KEY);
        let mut machine = Machine::new(cfg, keyring, host.incarnation, seed, self.now, wall)
            .expect("simulated configurations are valid");
        let mut out = Outbox::default();
        pump::pump(
            &mut machine,
            self.now,
            Input::Local(LocalEvent::Load(load)),
            &mut out,
        );
        host.machine = Some(machine);
        let (leaf, _) = host.chain[0];
        self.clusters[leaf].present.insert(h);
        let life = self.hosts[h].incarnation;
        self.note(format!("start host {h} {life}"));
        self.after_input(h, out);
    }

    /// Crashes host `h`: its machine, leaf node and seats stop at once.
    pub fn crash(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        if let Some(n) = host.node(0) {
            host.incarnation = host.incarnation.max(n.incarnation());
        }
        host.machine = None;
        host.timer_gen += 1;
        for &(c, _) in &self.hosts[h].chain {
            self.clusters[c].present.remove(&h);
        }
        self.note(format!("crash host {h}"));
    }

    /// Runs until `done` holds (checked every millisecond of virtual time)
    /// or `limit` passes; returns how long it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&TreeWorld) -> bool,
    ) -> Result<Duration, Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Ok(self.now - start);
            }
            if self.now - start >= limit {
                return Err(self.now - start);
            }
            self.run_for(Duration::from_millis(1));
        }
    }

    /// Whether host `h`'s machine runs.
    pub fn is_live(&self, h: usize) -> bool {
        self.hosts[h]
            .node(0)
            .is_some_and(|n| n.role() != Role::Left)
    }

    /// Runs the world for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step_until(end) {}
        self.now = self.now.max(end);
    }

    fn step_until(&mut self, end: Instant) -> bool {
        let Some((at, action)) = self.queue.pop_due(end) else {
            return false;
        };
        self.now = self.now.max(at);
        let host = match &action {
            Action::Deliver { host, .. } | Action::Timer { host, .. } => *host,
        };
        if let Some(until) = self.hosts[host].paused_until {
            if until > self.now {
                self.schedule(until, action);
                return true;
            }
            self.hosts[host].paused_until = None;
        }
        match action {
            Action::Deliver { host, level, bytes } => self.deliver(host, level, &bytes),
            Action::Timer { host, generation } => {
                if self.hosts[host].timer_gen == generation {
                    self.input(host, Input::Timeout);
                }
            }
        }
        true
    }

    fn deliver(&mut self, h: usize, level: Level, bytes: &[u8]) {
        if self.hosts[h].node(level).is_none() {
            // Its socket closed with the seat.
            return;
        }
        let (c, id) = self.hosts[h].chain[level];
        self.clusters[c].bytes[id as usize - 1] += bytes.len() as u64;
        self.hosts[h].bytes += bytes.len() as u64;
        self.input(h, Input::Datagram { level, bytes });
    }

    fn input(&mut self, h: usize, input: Input<'_>) {
        let now = self.now;
        let Some(machine) = self.hosts[h].machine.as_mut() else {
            return;
        };
        let mut out = Outbox::default();
        pump::pump(machine, now, input, &mut out);
        self.after_input(h, out);
    }

    fn after_input(&mut self, h: usize, out: Outbox) {
        for e in out.events {
            self.event(h, e);
        }
        for t in out.transmits {
            self.send(h, t.level, t.transmit);
        }
        let host = &mut self.hosts[h];
        host.timer_gen += 1;
        let generation = host.timer_gen;
        if let Some(at) = host.machine.as_ref().and_then(Machine::poll_timeout) {
            let at = at.max(self.now);
            self.schedule(
                at,
                Action::Timer {
                    host: h,
                    generation,
                },
            );
        }
        self.check_host(h);
    }

    fn event(&mut self, h: usize, e: MachineEvent) {
        let elapsed = self.elapsed();
        match &e {
            MachineEvent::SeatTaken { level, .. } => {
                let (c, _) = self.hosts[h].chain[*level];
                self.clusters[c].present.insert(h);
                self.hosts[h].precedence[*level] = None;
            }
            MachineEvent::SeatReleased { level, .. } => {
                let (c, _) = self.hosts[h].chain[*level];
                self.clusters[c].present.remove(&h);
            }
            MachineEvent::Node {
                level,
                event: Event::NodeFailed { node, .. },
            } if *level > 0 => {
                let (parent, _) = self.hosts[h].chain[*level];
                self.seat_failures.push(SeatFailure {
                    at: elapsed,
                    parent,
                    seat: node.0,
                });
            }
            _ => {}
        }
        if !matches!(e, MachineEvent::Rejected { .. }) {
            self.note(format!("host {h} {e:?}"));
        }
    }

    fn send(&mut self, from: usize, level: Level, t: ringcast_proto::Transmit) {
        let (c, from_id) = self.hosts[from].chain[level];
        let len = t.payload.len() as u64;
        self.clusters[c].bytes[from_id as usize - 1] += len;
        self.hosts[from].bytes += len;
        let bytes = Arc::new(t.payload);
        match t.destination {
            Destination::Bus => {
                let present: Vec<usize> = self.clusters[c].present.iter().copied().collect();
                for to in present.into_iter().filter(|to| *to != from) {
                    self.transport(c, from_id, to, level, bytes.clone());
                }
            }
            Destination::Node { addr, .. } => {
                if let Some((to, to_level)) = host_of(addr) {
                    if to < self.hosts.len()
                        && to_level == level
                        && self.hosts[to].chain[level].0 == c
                    {
                        self.transport(c, from_id, to, level, bytes);
                    }
                }
            }
        }
    }

    fn transport(&mut self, c: usize, from_id: u32, to: usize, level: Level, bytes: Arc<Vec<u8>>) {
        let (_, to_id) = self.hosts[to].chain[level];
        let cluster = &self.clusters[c];
        if cluster.component[from_id as usize - 1] != cluster.component[to_id as usize - 1] {
            return;
        }
        if self.hosts[to].node(level).is_none() {
            return;
        }
        let net = NetFaults {
            loss: self.net.loss.max(cluster.loss),
            ..self.net.clone()
        };
        for delay in net.deliveries(&mut self.rng) {
            let at = self.now + delay;
            let action = Action::Deliver {
                host: to,
                level,
                bytes: bytes.clone(),
            };
            self.schedule(at, action);
        }
    }

    fn schedule(&mut self, at: Instant, action: Action) {
        self.queue.push(at, action);
    }

    fn note(&mut self, line: String) {
        let elapsed = self.elapsed();
        self.trace.note(elapsed, line);
    }

    /// Records a violation with the seed and the recent trace.
    pub fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(format!(
                "seed {} at {:.1} ms: {what}\n--- last events ---\n{}",
                self.seed,
                self.elapsed().as_secs_f64() * 1000.0,
                self.trace.text()
            ));
        }
    }

    /// The safety invariants on every node host `h` runs, at every level.
    fn check_host(&mut self, h: usize) {
        let mut problems = Vec::new();
        let host = &mut self.hosts[h];
        let Some(machine) = host.machine.as_ref() else {
            return;
        };
        for level in 0..=machine.seats_held() {
            let Some(node) = machine.node(level) else {
                continue;
            };
            let (c, _) = host.chain[level];
            for p in check::node_safety(node, host.precedence[level], None) {
                problems.push(format!(
                    "cluster {c} (level {}): {p}",
                    self.clusters[c].level
                ));
            }
            if let Some(p) = check::precedence_of(Some(node)) {
                host.precedence[level] = Some(p);
            }
        }
        for p in problems {
            self.violation(p);
        }
    }

    // ----- what the tree looks like -----

    /// The level of host chains at which cluster `c` sits (0 for a leaf).
    pub fn chain_level(&self, c: usize) -> Level {
        let depth = self.clusters.last().map_or(0, |l| l.level);
        depth - self.clusters[c].level
    }

    /// Cluster `c` as the invariants see it.
    pub fn view(&self, c: usize) -> TreeCluster<'_> {
        TreeCluster {
            world: self,
            cluster: c,
            level: self.chain_level(c),
        }
    }

    /// The host whose node supervises cluster `c` (of the newest epoch if
    /// a partition left several), with that node's id there.
    pub fn supervisor_of(&self, c: usize) -> Option<(usize, u32)> {
        let level = self.chain_level(c);
        self.clusters[c]
            .present
            .iter()
            .filter_map(|&h| self.hosts[h].node(level).map(|n| (h, n)))
            .filter(|(_, n)| n.role() == Role::Supervisor)
            .max_by_key(|(h, n)| {
                (
                    n.map().map(|m| m.epoch),
                    Reverse(self.hosts[*h].chain[level].1),
                )
            })
            .map(|(h, _)| (h, self.hosts[h].chain[level].1))
    }

    /// The clusters whose supervisor runs on host `h`, leaf first.
    pub fn supervised_by(&self, h: usize) -> Vec<usize> {
        let host = &self.hosts[h];
        (0..host.chain.len())
            .take_while(|&l| host.node(l).is_some_and(|n| n.role() == Role::Supervisor))
            .map(|l| host.chain[l].0)
            .collect()
    }

    /// Whether every running node of cluster `c` follows one supervisor
    /// that itself runs: the cluster is served again.
    pub fn follows_one_live_supervisor(&self, c: usize) -> bool {
        let view = self.view(c);
        let running = view.running();
        let mut live = running.iter().filter(|(_, n)| n.role() != Role::Left);
        let Some((_, first)) = live.next() else {
            return true;
        };
        let Some(sup) = first.supervisor() else {
            return false;
        };
        live.all(|(_, n)| n.supervisor() == Some(sup))
            && running
                .iter()
                .any(|(id, n)| *id == sup.0 && n.role() == Role::Supervisor)
    }

    /// Whether every running node of cluster `c` lists member `id` with `status`.
    pub fn all_list(&self, c: usize, id: u32, status: MemberStatus) -> bool {
        let view = self.view(c);
        let running = view.running();
        !running.is_empty()
            && running.iter().all(|(_, n)| {
                n.map()
                    .and_then(|m| m.member(NodeId(id)))
                    .is_some_and(|m| m.status == status)
            })
    }

    /// The capacity and load the supervisor of cluster `c` sums for its parent.
    pub fn aggregate(&self, c: usize) -> Option<(ringcast_proto::Capacity, ringcast_proto::Load)> {
        let (h, _) = self.supervisor_of(c)?;
        self.hosts[h]
            .machine
            .as_ref()?
            .aggregate(self.chain_level(c))
    }
}

/// One cluster of a [`TreeWorld`], as the invariants see it.
pub struct TreeCluster<'a> {
    world: &'a TreeWorld,
    cluster: usize,
    level: Level,
}

impl ClusterView for TreeCluster<'_> {
    fn running(&self) -> Vec<(u32, &Node)> {
        let mut out: Vec<(u32, &Node)> = self.world.clusters[self.cluster]
            .present
            .iter()
            .filter_map(|&h| {
                let host = &self.world.hosts[h];
                host.node(self.level).map(|n| (host.chain[self.level].1, n))
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    fn life_is_running(&self, id: NodeId, incarnation: Incarnation) -> bool {
        self.running()
            .iter()
            .any(|(m, n)| *m == id.0 && n.incarnation() == incarnation && n.role() != Role::Left)
    }

    fn preempt(&self) -> bool {
        self.world.clusters[self.cluster].timing.preempt
    }
}
