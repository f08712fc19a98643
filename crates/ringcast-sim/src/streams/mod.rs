//! Claim 13 and DESIGN 6 on the simulator: titles on disks, players that
//! stream them, the supervisor's stream book and the service addresses of
//! a lone cluster, with three invariants checked after every step:
//!
//! 1. **capacity**: no supervisor's book assigns a node more streams than
//!    the node's configured `max_streams` (counting the streams it placed
//!    there whose players are there: an entry whose player went elsewhere,
//!    or never came, is the book's memory, not the node's load);
//! 2. **streams**: a stream whose node died, left or became unreachable
//!    from its player, or whose disk failed, is served again, from a live
//!    node of the player's side that reaches a healthy replica of its
//!    title, within [`stream_bound`] (unless no such node has room: by its
//!    capacity, or by the supervisor's accounting when all that counts
//!    beyond the truth is the capacity reserved for its latest answers);
//! 3. **addresses**: within each connected component of live nodes, every
//!    service address ([`ringcast_proto::service`]) is held by exactly one
//!    node but for at most [`failover_bound`].
//!
//! The model: every host reaches its own disk and maybe its predecessor's
//! ([`Layout`]); each title is on two disks. Disks break (probes fail at
//! once) or hang (probes fail after the probe timeout); each node's probe
//! loop turns outcomes into `LocalEvent::DiskProbe` reports as the daemon
//! does ([`disks`]), and its load into `LocalEvent::Load`. The supervisor's
//! host keeps a [`StreamBook`]: a node that becomes supervisor starts an
//! empty one, placements go through it with the supervisor's map and
//! tables, and every `MachineEvent::Reassign` of its node moves streams
//! (`StreamBook::reassign`). Players are soft state's other half: each
//! asks the supervisor of its side of the network (the one holding the
//! cluster address there) when its stream is not being served, at most
//! once per [`PLAYER_RETRY`].
//!
//! Like the nodes, the layer is sans-IO: the world shows it the hosts
//! ([`Hosts`]) and hands it the machines' events; it answers with local
//! events for the nodes ([`Streams::take_outbox`]), its next wake-up and
//! the violations it found.

pub mod addresses;
pub mod config;
pub mod disks;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringcast_proto::event::Event;
use ringcast_proto::placement::StreamBook;
use ringcast_proto::service::Address;
use ringcast_proto::tables::{DiskAccessStatus, DiskStatus, Load, Tables};
use ringcast_proto::{
    ClusterMap, DiskId, Incarnation, LocalEvent, MachineEvent, Node, NodeConfig, NodeId, Role,
};

use crate::schedule::Schedule;

pub use addresses::{Addresses, Found, HolderRule};
pub use config::{failover_bound, stream_bound, Bug, StreamsConfig, PLAYER_RETRY, STREAM_RATE};
pub use disks::{probe_timeout, Disks, Health, Layout};

/// What the layer sees of the world: its hosts, index = node id - 1.
pub trait Hosts {
    /// The virtual time.
    fn now(&self) -> Instant;
    /// Number of hosts.
    fn hosts(&self) -> usize;
    /// The running node of `host` (`None` while it is down).
    fn node(&self, host: usize) -> Option<&Node>;
    /// The life the host's process runs (a restart changes it, a refutation does not).
    fn life(&self, host: usize) -> Incarnation;
    /// The connected component `host` is in.
    fn component(&self, host: usize) -> u32;
    /// The configuration `host` runs with.
    fn config(&self, host: usize) -> &NodeConfig;
}

/// What the layer counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Successful placements (answers naming a node).
    pub placed: u64,
    /// Asks that got no placement (no supervisor on the player's side,
    /// no capacity, no healthy replica).
    pub refused: u64,
    /// Streams the books moved on a `Reassign` event.
    pub moved: u64,
    /// Addresses that a node took over from another (see [`Addresses::moved`]).
    pub addresses_moved: u64,
    /// Times a node began serving a stream beyond its `max_streams`,
    /// whoever placed them (not a violation: the two supervisors of a split
    /// that heals, or a new supervisor and the answers of the one before it,
    /// each place by what they know).
    pub over_capacity: u64,
    /// The longest a servable stream went unserved.
    pub longest_unserved: Duration,
    /// The longest an address went without exactly one holder in a component.
    pub longest_address_gap: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Serving {
    host: usize,
    disk: DiskId,
    life: Incarnation,
    /// The supervisor whose book placed it there, and that book's life.
    by: (usize, Incarnation),
}

#[derive(Clone, Debug)]
struct Player {
    id: u64,
    title: usize,
    /// The host whose side of the network the player is on.
    home: usize,
    at: Option<Serving>,
    last_ask: Option<Instant>,
    ask_at: Option<Instant>,
    /// Unserved though servable since then.
    bad_since: Option<Instant>,
    reported: bool,
}

#[derive(Debug)]
struct Book {
    life: Incarnation,
    book: StreamBook,
}

/// The stream layer of a lone cluster.
#[derive(Debug)]
pub struct Streams {
    cfg: StreamsConfig,
    layout: Layout,
    /// The hosts reaching each disk (index = disk id - 1).
    readers: Vec<Vec<usize>>,
    disks: Disks,
    addresses: Addresses,
    players: Vec<Player>,
    books: Vec<Option<Book>>,
    asks: Schedule<usize>,
    live: Vec<bool>,
    lives: Vec<Option<Incarnation>>,
    comps: Vec<u32>,
    touched: Vec<usize>,
    topology: bool,
    events: Vec<(usize, MachineEvent)>,
    served: Vec<u32>,
    reported_load: Vec<Option<u32>>,
    players_dirty: bool,
    addresses_dirty: bool,
    /// When the next player or address check is due.
    next_overdue: Option<Instant>,
    outbox: Vec<(u32, LocalEvent)>,
    found: Vec<Found>,
    /// Lines for the world's trace.
    notes: Vec<String>,
    started: bool,
    rng: ChaCha8Rng,
    stats: StreamStats,
}

impl Streams {
    /// The layer for `layout` (apply it to the hosts' configurations before
    /// they start), players not started yet.
    pub fn new(cfg: StreamsConfig, layout: Layout) -> Streams {
        let n = layout.disks();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_57ea);
        let players = (0..cfg.streams)
            .map(|i| Player {
                id: u64::from(i) + 1,
                title: rng.gen_range(0..layout.titles.len()),
                home: rng.gen_range(0..n),
                at: None,
                last_ask: None,
                ask_at: None,
                bad_since: None,
                reported: false,
            })
            .collect();
        let readers = (1..=n as u32)
            .map(|d| layout.readers(DiskId(d)).collect())
            .collect();
        let rule: HolderRule = match cfg.bug {
            Some(Bug::DeadNodesKeepTheirAddresses) => dead_nodes_keep_their_addresses,
            _ => addresses::protocol_rule,
        };
        Streams {
            disks: Disks::new(&layout, &cfg.timing),
            addresses: Addresses::new(n, rule),
            readers,
            players,
            books: (0..n).map(|_| None).collect(),
            asks: Schedule::default(),
            live: vec![false; n],
            lives: vec![None; n],
            comps: vec![0; n],
            touched: Vec::new(),
            topology: true,
            events: Vec::new(),
            served: vec![0; n],
            reported_load: vec![None; n],
            players_dirty: false,
            addresses_dirty: true,
            next_overdue: None,
            outbox: Vec::new(),
            found: Vec::new(),
            notes: Vec::new(),
            started: false,
            rng,
            stats: StreamStats::default(),
            layout,
            cfg,
        }
    }

    /// How the layer runs.
    pub fn config(&self) -> &StreamsConfig {
        &self.cfg
    }

    /// The layout of the cluster's data.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The disks' real health and probe loops.
    pub fn disks(&self) -> &Disks {
        &self.disks
    }

    /// Who holds which address.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// What was counted so far; `now` closes the open gaps' durations.
    pub fn stats(&self, now: Instant) -> StreamStats {
        let open = self
            .players
            .iter()
            .filter_map(|p| p.bad_since)
            .map(|since| now - since)
            .max()
            .unwrap_or_default();
        StreamStats {
            addresses_moved: self.addresses.moved,
            longest_unserved: self.stats.longest_unserved.max(open),
            longest_address_gap: self.addresses.longest(now),
            ..self.stats
        }
    }

    /// Streams not being served though their player's side has a live node
    /// with room reaching a healthy replica of their title.
    pub fn waiting(&self) -> usize {
        self.players
            .iter()
            .filter(|p| p.bad_since.is_some())
            .count()
    }

    /// Streams host `host` (node id - 1) serves now.
    pub fn served_by(&self, host: usize) -> u32 {
        self.served[host]
    }

    /// Streams being served now.
    pub fn served(&self) -> usize {
        self.players.iter().filter(|p| p.at.is_some()).count()
    }

    /// Starts the players: each asks for its stream within the next 100 ms.
    pub fn start_players(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        for p in 0..self.players.len() {
            let at = now + Duration::from_micros(self.rng.gen_range(0..100_000));
            self.players[p].ask_at = Some(at);
            self.asks.push(at, p);
        }
    }

    /// `disk` becomes `health` now.
    pub fn set_health(&mut self, disk: DiskId, health: Health, now: Instant) {
        for r in self.disks.set_health(disk, health, now) {
            self.probe_report(r.host, r.disk, r.ok);
        }
        self.players_dirty = true;
    }

    /// Host `host` handled an input.
    pub fn touch(&mut self, host: usize) {
        if self.touched.last() != Some(&host) {
            self.touched.push(host);
        }
    }

    /// Hosts started, crashed or moved between components.
    pub fn topology_changed(&mut self) {
        self.topology = true;
    }

    /// A machine event of `host`; the layer keeps what concerns it.
    pub fn event(&mut self, host: usize, e: &MachineEvent) {
        let keep = match e {
            MachineEvent::Reassign { level: 0, .. } => true,
            MachineEvent::Node { level: 0, event } => matches!(
                event,
                Event::BecameSupervisor { .. } | Event::StoppedSupervising { .. } | Event::Left
            ),
            _ => false,
        };
        if keep {
            self.events.push((host, e.clone()));
        }
    }

    /// The local events for the nodes, by node id.
    pub fn take_outbox(&mut self) -> Vec<(u32, LocalEvent)> {
        std::mem::take(&mut self.outbox)
    }

    /// Lines for the trace since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Violations found since the last call: kind and description.
    pub fn take_found(&mut self) -> Vec<Found> {
        std::mem::take(&mut self.found)
    }

    /// When the layer must next run.
    pub fn next_at(&self) -> Option<Instant> {
        [self.disks.next_at(), self.asks.next_at(), self.next_overdue]
            .into_iter()
            .flatten()
            .min()
    }

    /// Catches up with the world after a step: hosts that changed, machine
    /// events, due probes and asks, then the checks.
    pub fn after_step(&mut self, world: &dyn Hosts) {
        let now = world.now();
        if std::mem::take(&mut self.topology) {
            self.touched.clear();
            for h in 0..self.live.len() {
                self.refresh(world, h, now);
            }
        } else {
            for h in std::mem::take(&mut self.touched) {
                self.refresh(world, h, now);
            }
        }
        for (h, e) in std::mem::take(&mut self.events) {
            self.on_event(world, h, &e, now);
        }
        for r in self.disks.run(now) {
            self.probe_report(r.host, r.disk, r.ok);
        }
        while let Some((at, p)) = self.asks.pop_due(now) {
            if self.players[p].ask_at == Some(at) {
                self.players[p].ask_at = None;
                self.ask(world, p, now);
            }
        }
        if std::mem::take(&mut self.players_dirty) {
            self.sweep_players(world, now);
        }
        if std::mem::take(&mut self.addresses_dirty) {
            self.addresses.recount(&self.live, &self.comps, now);
            self.next_overdue = Some(now);
        }
        if self.next_overdue.is_some_and(|at| at <= now) {
            self.overdue(world, now);
        }
        self.report_loads();
    }

    fn refresh(&mut self, world: &dyn Hosts, h: usize, now: Instant) {
        let node = world.node(h);
        let live = node.is_some_and(|n| n.role() != Role::Left);
        let life = live.then(|| world.life(h));
        let comp = world.component(h);
        if (live, life, comp) != (self.live[h], self.lives[h], self.comps[h]) {
            self.players_dirty = true;
            self.addresses_dirty = true;
            if life != self.lives[h] {
                self.disks.host_life(h, life, now);
                self.reported_load[h] = None;
            }
            (self.live[h], self.lives[h], self.comps[h]) = (live, life, comp);
        }
        let map = node.filter(|_| live).and_then(Node::map);
        if self.addresses.follow(h, map, &world.config(h).priority) {
            self.addresses_dirty = true;
        }
        let supervises = live && node.is_some_and(|n| n.role() == Role::Supervisor);
        match &self.books[h] {
            Some(b) if !supervises || Some(b.life) != life => self.books[h] = None,
            None if supervises => self.new_book(h),
            _ => {}
        }
    }

    fn new_book(&mut self, h: usize) {
        if let Some(life) = self.lives[h] {
            self.books[h] = Some(Book {
                life,
                book: StreamBook::new(self.cfg.timing.clone()),
            });
        }
    }

    fn on_event(&mut self, world: &dyn Hosts, h: usize, e: &MachineEvent, now: Instant) {
        let supervises =
            self.live[h] && world.node(h).is_some_and(|n| n.role() == Role::Supervisor);
        match e {
            MachineEvent::Node { event, .. } => match event {
                // A new supervisor starts with an empty book (soft state).
                Event::BecameSupervisor { .. } if supervises => self.new_book(h),
                Event::BecameSupervisor { .. } => {}
                _ => self.books[h] = None,
            },
            MachineEvent::Reassign { .. } if supervises => {
                let Some((map, tables)) = world.node(h).and_then(|n| Some((n.map()?, n.tables()?)))
                else {
                    return;
                };
                let Some(b) = self.books[h].as_mut() else {
                    return;
                };
                let tables = bugged(self.cfg.bug, tables);
                let moved = b.book.reassign(map, &tables, now);
                self.stats.moved += moved.len() as u64;
                if !moved.is_empty() {
                    let moves: Vec<String> = moved
                        .iter()
                        .map(|(id, p)| format!("s{id}->{}/{}", p.node, p.disk))
                        .collect();
                    self.notes
                        .push(format!("n{} {e:?}: book moves {}", h + 1, moves.join(" ")));
                }
            }
            _ => {}
        }
    }

    /// The supervisor a player on `home`'s side asks: the live supervisor
    /// of that component of the newest epoch.
    fn supervisor_for<'w>(&self, world: &'w dyn Hosts, home: usize) -> Option<(usize, &'w Node)> {
        (0..self.live.len())
            .filter(|h| self.live[*h] && self.comps[*h] == self.comps[home])
            .filter(|h| self.books[*h].is_some())
            .filter_map(|h| world.node(h).map(|n| (h, n)))
            .filter(|(_, n)| n.role() == Role::Supervisor)
            .max_by_key(|(h, n)| (n.map().map(|m| m.epoch), std::cmp::Reverse(*h)))
    }

    fn ask(&mut self, world: &dyn Hosts, p: usize, now: Instant) {
        if self.players[p].at.is_some() {
            return;
        }
        self.players[p].last_ask = Some(now);
        self.players_dirty = true;
        let (id, home) = (self.players[p].id, self.players[p].home);
        let mut answer = None;
        if let Some((h, node)) = self.supervisor_for(world, home) {
            if let (Some(map), Some(tables), Some(b)) =
                (node.map(), node.tables(), self.books[h].as_mut())
            {
                let replicas = self.layout.titles[self.players[p].title].to_vec();
                let tables = bugged(self.cfg.bug, tables);
                let placed = b.book.place(id, replicas, map, &tables, now);
                self.notes
                    .push(format!("s{id} asks n{}: {placed:?}", h + 1));
                answer = placed.ok().map(|placed| (placed, (h, b.life)));
            }
        }
        let Some((placement, by)) = answer else {
            self.stats.refused += 1;
            return;
        };
        self.stats.placed += 1;
        let host = placement.node.0 as usize - 1;
        let Some(life) = self.lives.get(host).copied().flatten() else {
            return;
        };
        let at = Serving {
            host,
            disk: placement.disk,
            life,
            by,
        };
        if !self.connected(at, home) {
            self.notes
                .push(format!("s{id} cannot reach n{}/{}", host + 1, at.disk));
            return;
        }
        self.players[p].at = Some(at);
        self.served[host] += 1;
        let cap = self.layout.capacity[host];
        if self.served[host] > cap {
            // Whoever placed them: two supervisors of a healing split, or
            // one that has not heard a rejoined node's load yet.
            self.stats.over_capacity += 1;
            self.notes.push(format!(
                "n{} serves {} streams, over its max_streams {cap}",
                host + 1,
                self.served[host]
            ));
        }
        self.check_book(by, host);
    }

    /// Check 1: the streams that the book of `by` (its host and life)
    /// assigns to `host` and that are served there are at most its capacity.
    fn check_book(&mut self, by: (usize, Incarnation), host: usize) {
        let Some(b) = self.books[by.0].as_ref().filter(|b| b.life == by.1) else {
            return;
        };
        let assigned = self
            .players
            .iter()
            .filter(|p| {
                p.at.is_some_and(|s| s.host == host && s.by == by)
                    && b.book
                        .get(p.id)
                        .is_some_and(|e| e.placement.node.0 as usize == host + 1)
            })
            .count() as u32;
        let cap = self.layout.capacity[host];
        if assigned > cap {
            self.found.push((
                "capacity",
                format!(
                    "n{}'s book assigns n{} {assigned} streams that it serves, over its max_streams {cap}",
                    by.0 + 1,
                    host + 1
                ),
            ));
        }
    }

    /// Whether a player on `home`'s side is being served by `at`.
    fn connected(&self, at: Serving, home: usize) -> bool {
        self.live[at.host]
            && self.lives[at.host] == Some(at.life)
            && self.comps[at.host] == self.comps[home]
            && self.layout.reaches(at.host, at.disk)
            && self.disks.is_ok(at.disk)
    }

    /// Whether some live node on `home`'s side reaches a healthy replica of
    /// `title` and has room (`room`, by host).
    fn servable(&self, title: usize, home: usize, room: &[bool]) -> bool {
        self.layout.titles[title].iter().any(|d| {
            self.disks.is_ok(*d)
                && self.readers[d.0 as usize - 1]
                    .iter()
                    .any(|h| self.live[*h] && self.comps[*h] == self.comps[home] && room[*h])
        })
    }

    /// Which hosts have room for one more stream placed by the supervisor
    /// of `comp`'s side: below their capacity, and not full by that
    /// supervisor's accounting either when what makes it full is its
    /// reports of the node's load (not above the truth) and the capacity
    /// it reserved for the streams it answered in the last reservation period
    /// that are served there: placements count as load until the nodes'
    /// reports catch up, so a served stream answered lately counts twice.
    /// (Capacity reserved for answers whose players never got there is no
    /// excuse: it lasts only until the failure that stopped them is known.)
    fn room(&self, world: &dyn Hosts, comp: u32, now: Instant) -> Vec<bool> {
        let mut room: Vec<bool> = (0..self.live.len())
            .map(|h| self.served[h] < self.layout.capacity[h])
            .collect();
        let Some(home) = (0..self.live.len()).find(|h| self.comps[*h] == comp) else {
            return room;
        };
        let Some((sup, tables)) = self
            .supervisor_for(world, home)
            .and_then(|(h, n)| Some((h, n.tables()?)))
        else {
            return room;
        };
        let Some(book) = self.books[sup].as_ref().map(|b| &b.book) else {
            return room;
        };
        let mut twice = vec![0u32; self.live.len()];
        for p in &self.players {
            let Some(at) = p.at else {
                continue;
            };
            let reserved = book.get(p.id).is_some_and(|e| {
                e.placement.node.0 as usize == at.host + 1
                    && e.reserved_until.is_some_and(|u| u > now)
            });
            twice[at.host] += u32::from(reserved);
        }
        for (h, r) in room.iter_mut().enumerate() {
            let Some(usage) = tables.usage(NodeId(h as u32 + 1)) else {
                continue;
            };
            let load = usage.load.streams;
            if load <= self.served[h] && load + twice[h] >= usage.capacity.max_streams {
                *r = false;
            }
        }
        room
    }

    fn sweep_players(&mut self, world: &dyn Hosts, now: Instant) {
        if !self.started {
            return;
        }
        for p in 0..self.players.len() {
            let player = &self.players[p];
            if let Some(at) = player.at {
                if !self.connected(at, player.home) {
                    self.notes.push(format!(
                        "s{} broke off n{}/{}",
                        player.id,
                        at.host + 1,
                        at.disk
                    ));
                    self.served[at.host] -= 1;
                    self.players[p].at = None;
                }
            }
        }
        let mut comps: Vec<u32> = self.players.iter().map(|p| self.comps[p.home]).collect();
        comps.sort_unstable();
        comps.dedup();
        let rooms: std::collections::BTreeMap<u32, Vec<bool>> = comps
            .into_iter()
            .map(|c| (c, self.room(world, c, now)))
            .collect();
        for p in 0..self.players.len() {
            let comp = self.comps[self.players[p].home];
            let servable =
                self.servable(self.players[p].title, self.players[p].home, &rooms[&comp]);
            let player = &mut self.players[p];
            if player.at.is_some() || !servable {
                if let Some(since) = player.bad_since.take() {
                    self.stats.longest_unserved = self.stats.longest_unserved.max(now - since);
                }
                player.reported = false;
            } else if player.bad_since.is_none() {
                player.bad_since = Some(now);
            }
            if player.at.is_none() && player.ask_at.is_none() {
                let at = player.last_ask.map_or(now, |t| t + PLAYER_RETRY).max(now);
                player.ask_at = Some(at);
                self.asks.push(at, p);
            }
        }
        self.next_overdue = Some(now);
    }

    /// Checks 2 and 3 against their bounds; sets the next time they are due.
    fn overdue(&mut self, world: &dyn Hosts, now: Instant) {
        let mut next: Option<Instant> = None;
        for i in 0..self.players.len() {
            let p = &self.players[i];
            let Some(since) = p.bad_since else {
                continue;
            };
            if p.reported {
                continue;
            }
            let bound = self.cfg.stream_bound(self.missing(p.home));
            if now - since > bound {
                let (id, title, home) = (p.id, p.title, p.home);
                self.players[i].reported = true;
                let why = self.candidates(world, title, home, now);
                self.found.push((
                    "stream",
                    format!(
                        "stream {id} (title {title} on {:?}) unserved for over {bound:?} though n{}'s side has a live node with room reaching a healthy replica: {why}",
                        self.layout.titles[title],
                        home + 1
                    ),
                ));
            } else {
                let due = since + bound + Duration::from_nanos(1);
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        let cfg = &self.cfg;
        let bound = |members: usize| cfg.address_bound(cfg.nodes.saturating_sub(members as u32));
        self.found.extend(self.addresses.overdue(now, bound));
        if let Some(due) = self.addresses.next_due(bound) {
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        self.next_overdue = next;
    }

    /// How many nodes are not live on `home`'s side of the network.
    fn missing(&self, home: usize) -> u32 {
        let side = (0..self.live.len())
            .filter(|h| self.live[*h] && self.comps[*h] == self.comps[home])
            .count();
        (self.live.len() - side) as u32
    }

    /// Addresses not held exactly once in some component now: none may be
    /// once the cluster has converged (every live node follows one map
    /// whose ring is exactly the live nodes).
    pub fn open_address_gaps(&self) -> Vec<String> {
        self.addresses.open()
    }

    /// The nodes that could serve `title` to a player on `home`'s side, as
    /// they are and as the supervisor there sees them.
    fn candidates(&mut self, world: &dyn Hosts, title: usize, home: usize, now: Instant) -> String {
        let sup = self.supervisor_for(world, home).map(|(h, _)| h);
        let mut out = vec![format!("supervisor {:?}", sup.map(|h| h + 1))];
        for d in self.layout.titles[title] {
            for h in self.readers[d.0 as usize - 1].clone() {
                let view = sup.and_then(|s| {
                    let node = world.node(s)?;
                    let tables = node.tables()?;
                    let usage = tables.usage(NodeId(h as u32 + 1));
                    let book = &mut self.books[s].as_mut()?.book;
                    let reserved = book.reservations.count(NodeId(h as u32 + 1), now);
                    let holders: Vec<u64> = self
                        .players
                        .iter()
                        .map(|p| p.id)
                        .filter(|id| {
                            book.get(*id).is_some_and(|e| {
                                e.placement.node.0 as usize == h + 1
                                    && e.reserved_until.is_some_and(|u| u > now)
                            })
                        })
                        .collect();
                    Some(format!(
                        "up {} serves_from {} load {:?} reserved {reserved} by {holders:?}",
                        node.map()?.is_up(NodeId(h as u32 + 1)),
                        tables.serves_from(NodeId(h as u32 + 1), d),
                        usage.map(|u| u.load.streams)
                    ))
                });
                out.push(format!(
                    "n{}/{d} (disk {:?}, live {}, side {}, serves {}/{}; seen: {})",
                    h + 1,
                    self.disks.health(d),
                    self.live[h],
                    self.comps[h] == self.comps[home],
                    self.served[h],
                    self.layout.capacity[h],
                    view.unwrap_or_default()
                ));
            }
        }
        out.join("; ")
    }

    fn probe_report(&mut self, host: usize, disk: DiskId, ok: bool) {
        if !self.live[host] {
            return;
        }
        let streams = self
            .players
            .iter()
            .filter(|p| p.at.is_some_and(|s| s.host == host && s.disk == disk))
            .count() as u32;
        let report = disks::report(disk, ok, streams, STREAM_RATE);
        self.outbox
            .push((host as u32 + 1, LocalEvent::DiskProbe(report)));
    }

    fn report_loads(&mut self) {
        for h in 0..self.live.len() {
            if !self.live[h] || self.reported_load[h] == Some(self.served[h]) {
                continue;
            }
            self.reported_load[h] = Some(self.served[h]);
            let load = Load {
                streams: self.served[h],
                bytes_per_s: u64::from(self.served[h]) * STREAM_RATE,
            };
            self.outbox.push((h as u32 + 1, LocalEvent::Load(load)));
        }
    }
}

/// What placement sees under an injected bug: the supervisor's tables, or
/// a wrong copy of them.
fn bugged(bug: Option<Bug>, tables: &Tables) -> std::borrow::Cow<'_, Tables> {
    let mut t = match bug {
        Some(Bug::IgnoreCapacity | Bug::IgnoreDiskFailures) => tables.clone(),
        _ => return std::borrow::Cow::Borrowed(tables),
    };
    if bug == Some(Bug::IgnoreCapacity) {
        for u in &mut t.node_usage {
            u.capacity.max_streams = u.capacity.max_streams.saturating_mul(3);
        }
    } else {
        for row in &mut t.topology {
            for link in &mut row.disks {
                link.status = DiskAccessStatus::Ok;
            }
        }
        for d in &mut t.disk_usage {
            d.status = DiskStatus::Ok;
        }
    }
    std::borrow::Cow::Owned(t)
}

/// [`Bug::DeadNodesKeepTheirAddresses`]: a node's address stays with the
/// node even off the ring, so nobody live holds a dead node's address.
fn dead_nodes_keep_their_addresses(
    map: &ClusterMap,
    priority: &[NodeId],
    all: &[Address],
    me: NodeId,
    before: &[Address],
) -> Vec<Address> {
    let mut held = addresses::protocol_rule(map, priority, all, me, before);
    held.retain(|a| !matches!(a, Address::Node(owner) if *owner != me));
    held
}
