//! The node's tokio loop: sockets and timers in, the protocol core in the
//! middle (through [`ringcast_proto::pump`]), datagrams and events out. No
//! protocol decision is taken here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringcast_proto::event::{Event, LocalEvent};
use ringcast_proto::map::{ClusterMap, MapChange};
use ringcast_proto::pump::{self, Input, Outbox};
use ringcast_proto::stats::Stats;
use ringcast_proto::{
    Incarnation, KeyId, Keyring, Level, Machine, MachineConfig, MachineEvent, Node, NodeId,
    Reassign, Reload, Role, Tables,
};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};

use super::life::LifeFile;
use super::limit::SenderLimits;
use super::transport::{Transport, MAX_DATAGRAM};
use ringcast_config::settings::{BusMode, NodeSettings};

/// Events kept for a subscriber that connects late.
const RECENT_EVENTS: usize = 200;

/// The most datagrams of senders over their budget dropped in one
/// go before the loop looks at its timers again.
const DRAIN_BATCH: usize = 256;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The configuration does not pass the protocol's checks.
    #[error("invalid configuration: {0}")]
    Config(#[from] ringcast_proto::ConfigError),
    /// A socket could not be opened.
    #[error("cannot open the {what} socket on {addr}: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Its address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One line of the cluster's event stream.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ClusterEvent {
    /// Unix time in milliseconds, as the observing node saw it.
    pub at_ms: u64,
    /// The node that observed it.
    pub observer: NodeId,
    /// What happened: `supervisor`, `joined`, `failed`, `left`, or a local
    /// event of the observer (`became_supervisor`, `declared`, `refuted`, ...).
    pub kind: &'static str,
    /// The node it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
    /// The epoch, for supervisor events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The configuration version, for `config_outdated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// A readable sentence.
    pub text: String,
    /// Claim 5: the cluster it happened in: the observer's own, or, for an
    /// event of a seat the machine holds, the parent cluster's.
    pub cluster: u32,
}

/// What the node knows right now, for the HTTP API.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The part the node plays.
    pub role: Role,
    /// Its life.
    pub incarnation: Incarnation,
    /// The map it holds.
    pub map: Option<ClusterMap>,
    /// The tables it holds.
    pub tables: Option<Tables>,
    /// Its protocol counters.
    pub stats: Stats,
    /// Ring neighbours.
    pub upstream: Option<NodeId>,
    /// Ring neighbours.
    pub downstream: Option<NodeId>,
    /// The keys the node accepts, the one it seals with first.
    pub keys: Vec<KeyId>,
    /// The configuration version the node runs.
    pub config_version: u32,
}

/// Counters of the socket layer.
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Datagrams that could not be sent.
    pub send_errors: AtomicU64,
    /// Receive errors.
    pub recv_errors: AtomicU64,
    /// Datagrams dropped unread because their sender was over its
    /// budget ([`SenderLimits`]); shown as the `rate_limited` reason of
    /// `ringcast_frames_rejected_total`.
    pub rate_limited: AtomicU64,
}

/// Counters of configuration reloads (`SIGHUP`, or a newer
/// configuration version seen on the bus).
#[derive(Debug, Default)]
pub struct ReloadCounters {
    /// Reloads that changed the keys or the configuration version.
    pub applied: AtomicU64,
    /// Reloads that found nothing the node could change.
    pub unchanged: AtomicU64,
    /// Reloads that failed (unreadable or invalid configuration, another
    /// cluster or node, an older version).
    pub failed: AtomicU64,
}

/// What a running node changes without a restart: the keys it
/// seals with and accepts, and the configuration version its frames carry.
#[derive(Clone, Debug)]
pub struct Rekey {
    /// The new keys.
    pub keyring: Keyring,
    /// The configuration version they came with.
    pub config_version: u32,
}

/// State shared between the loop and the HTTP API.
#[derive(Debug)]
pub struct Shared {
    /// The node's id.
    pub node: NodeId,
    /// The cluster's name.
    pub cluster_name: String,
    /// The cluster's id.
    pub cluster_id: u32,
    /// This node's HTTP address, as configured.
    pub http: std::net::SocketAddr,
    /// The admin token guarding `POST /v1/leave`, if configured.
    pub admin_token: Option<String>,
    /// The latest snapshot.
    pub snapshot: RwLock<Snapshot>,
    /// Live event stream.
    pub events: broadcast::Sender<ClusterEvent>,
    /// Typed signals for the rest of the daemon (streams to move, a
    /// configuration to refetch).
    pub signals: broadcast::Sender<Signal>,
    /// The latest events, for late subscribers.
    pub recent: Mutex<VecDeque<ClusterEvent>>,
    /// Local events for the loop (leave, load, disk probes).
    pub control: mpsc::Sender<LocalEvent>,
    /// Socket-layer counters.
    pub io: IoCounters,
    /// When the node started.
    pub started: Instant,
    /// The data path's counters, once streaming runs.
    pub streams: std::sync::OnceLock<Arc<ringcast_files::stream::StreamCounters>>,
    /// Counters outside the protocol core (probes, placement, 503s), for `/metrics`.
    pub metrics: super::counters::NodeMetrics,
    /// The HTTP listener's guard (its refusal counters), once it runs.
    pub http_guard: std::sync::OnceLock<Arc<ringcast_files::guard::Guard>>,
    /// New keys for the protocol loop to apply.
    pub rekey: watch::Sender<Option<Rekey>>,
    /// Configuration reloads.
    pub reloads: ReloadCounters,
    /// Claim 5: the seats this machine holds in its ancestor clusters,
    /// nearest parent first (see `seat`).
    pub seats: RwLock<Vec<Arc<Shared>>>,
    /// Claim 5: how many ancestor clusters this machine's cluster has.
    pub levels_above: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// A copy of the latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The part the node plays right now.
    pub fn role(&self) -> Role {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).role
    }

    /// The seats this machine holds now, nearest parent first.
    pub fn held_seats(&self) -> Vec<Arc<Shared>> {
        self.seats.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Claim 5: whether this machine's cluster is a sub-cluster of a tree.
    pub fn in_tree(&self) -> bool {
        self.levels_above.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// The latest events, oldest first.
    pub fn recent_events(&self) -> Vec<ClusterEvent> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Publishes an event of this node's own (such as `reassigned`) on its
    /// event stream, beside those the protocol produces.
    pub fn publish_local(&self, kind: &'static str, node: Option<NodeId>, text: String) {
        self.publish(event(self.node, kind, node, None, text));
    }

    /// Records and broadcasts an event; one of this node's own is stamped
    /// with its cluster.
    pub(crate) fn publish(&self, mut event: ClusterEvent) {
        if event.cluster == 0 {
            event.cluster = self.cluster_id;
        }
        tracing::info!(kind = event.kind, cluster = event.cluster, "{}", event.text);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        let _ = self.events.send(event);
    }
}

/// What the loop tells the rest of the daemon, typed: streams to move, a
/// configuration to refetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Claim 13: a node or disk failed in a cluster this machine sits in.
    Reassign(Reassign),
    /// A frame carried a newer configuration version than this node's.
    ConfigOutdated(u32),
}

/// The sockets of one seat the machine may hold in an ancestor cluster,
/// open while it holds the seat.
#[derive(Debug)]
struct SeatIo {
    settings: NodeSettings,
    transport: Option<Arc<Transport>>,
    senders: SenderLimits,
    shared: Option<Arc<Shared>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl SeatIo {
    fn close(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        self.transport = None;
        self.shared = None;
    }
}

impl Drop for SeatIo {
    fn drop(&mut self) {
        self.close();
    }
}

/// A datagram a seat's socket received: (level, bytes, sender).
type SeatDatagram = (Level, Vec<u8>, std::net::SocketAddr);

/// A machine ready to run: its leaf sockets are bound.
#[derive(Debug)]
pub struct Runtime {
    machine: Machine,
    transport: Arc<Transport>,
    shared: Arc<Shared>,
    control: mpsc::Receiver<LocalEvent>,
    rekey: watch::Receiver<Option<Rekey>>,
    senders: SenderLimits,
    /// Claim 5: one per ancestor cluster, nearest parent first (level 1).
    seats: Vec<SeatIo>,
    seat_tx: mpsc::Sender<SeatDatagram>,
    seat_rx: mpsc::Receiver<SeatDatagram>,
    life: Option<LifeFile>,
    /// Test-only transport faults (`RINGCAST_TEST_FAULTS`).
    faults: Option<super::faults::Faults>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn sender_limits(settings: &NodeSettings, now: Instant) -> SenderLimits {
    let bus = &settings.limits.bus;
    let ring = settings.proto.addrs.ring;
    let mut senders = SenderLimits::new(bus.datagrams, bus.refused, bus.max_senders, ring, now);
    if let BusMode::Unicast { peers } = &settings.bus {
        senders.set_peers(peers.iter().map(|(_, addr)| *addr));
    }
    senders
}

fn bind_transport(settings: &NodeSettings) -> Result<Transport, NodeError> {
    let ring = settings.proto.addrs.ring;
    Transport::bind(ring, &settings.bus, settings.proto.node).map_err(|source| NodeError::Bind {
        what: "bus and ring",
        addr: format!("{ring} ({:?})", settings.bus),
        source,
    })
}

impl Shared {
    /// The state of a node run with `settings`, as the API shows it, with
    /// the receivers of its control and key channels.
    fn new(
        settings: &NodeSettings,
        node: &Node,
        now: Instant,
    ) -> (
        Arc<Shared>,
        mpsc::Receiver<LocalEvent>,
        watch::Receiver<Option<Rekey>>,
    ) {
        let (control_tx, control) = mpsc::channel(64);
        let (rekey_tx, rekey) = watch::channel(None);
        let (events, _) = broadcast::channel(1024);
        let (signals, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            node: settings.proto.node,
            cluster_name: settings.cluster_name.clone(),
            cluster_id: settings.proto.cluster.0,
            http: settings.proto.addrs.http,
            admin_token: settings.admin_token.clone(),
            snapshot: RwLock::new(snapshot_of(node)),
            events,
            signals,
            recent: Mutex::new(VecDeque::new()),
            control: control_tx,
            io: IoCounters::default(),
            started: now,
            streams: std::sync::OnceLock::new(),
            metrics: super::counters::NodeMetrics::default(),
            http_guard: std::sync::OnceLock::new(),
            rekey: rekey_tx,
            reloads: ReloadCounters::default(),
            seats: RwLock::new(Vec::new()),
            levels_above: std::sync::atomic::AtomicUsize::new(0),
        });
        (shared, control, rekey)
    }
}

impl Runtime {
    /// Builds the protocol machine and binds its leaf sockets. `seats` are
    /// the settings of its seat in each ancestor cluster, nearest parent
    /// first (claim 5): their sockets open while the machine holds the seat.
    pub fn bind(
        settings: NodeSettings,
        seats: Vec<NodeSettings>,
        life: Option<LifeFile>,
    ) -> Result<Runtime, NodeError> {
        let now = Instant::now();
        // A new life at every start, above every earlier one.
        let incarnation = life
            .as_ref()
            .map_or(Incarnation(unix_ms()), |f| f.next(unix_ms()));
        if let Some(f) = &life {
            if let Err(e) = f.record(incarnation) {
                tracing::warn!(
                    "cannot record the node's life in {}: {e}",
                    f.path().display()
                );
            }
        }
        let mut seed = [0u8; 8];
        getrandom::getrandom(&mut seed).unwrap_or_default();
        let cfg = MachineConfig {
            leaf: settings.proto.clone(),
            seats: seats.iter().map(|s| s.proto.clone()).collect(),
        };
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let machine = Machine::new(
            cfg,
            settings.keyring(),
            incarnation,
            u64::from_le_bytes(seed),
            now,
            wall,
        )?;
        let transport = Arc::new(bind_transport(&settings)?);
        let senders = sender_limits(&settings, now);
        let (shared, control, rekey) = Shared::new(&settings, machine.leaf(), now);
        let seats = seats
            .into_iter()
            .map(|settings| SeatIo {
                senders: sender_limits(&settings, now),
                settings,
                transport: None,
                shared: None,
                reader: None,
            })
            .collect();
        let (seat_tx, seat_rx) = mpsc::channel(1024);
        Ok(Runtime {
            machine,
            transport,
            shared,
            control,
            rekey,
            senders,
            seats,
            seat_tx,
            seat_rx,
            life,
            faults: super::faults::Faults::from_env(),
        })
    }

    /// The state shared with the HTTP API.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Runs until the leaf node has left the cluster.
    pub async fn run(mut self) {
        enum Wake {
            Datagram(usize, std::net::SocketAddr),
            Seat(SeatDatagram),
            Timeout,
            Local(LocalEvent),
            Rekey,
            Nothing,
        }
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Outbox::default();
        let mut next = pump::drain(&mut self.machine, &mut out);
        self.publish(&mut out).await;
        loop {
            let sleep = next.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            let wake = tokio::select! {
                r = self.transport.recv(&mut buf) => match r {
                    Ok((n, from, _)) => Wake::Datagram(n, from),
                    Err(e) => {
                        tracing::debug!("receive failed: {e}");
                        self.shared.io.recv_errors.fetch_add(1, Ordering::Relaxed);
                        Wake::Nothing
                    }
                },
                Some(d) = self.seat_rx.recv() => Wake::Seat(d),
                _ = tokio::time::sleep(sleep) => Wake::Timeout,
                ev = self.control.recv() => ev.map_or(Wake::Nothing, Wake::Local),
                r = self.rekey.changed(), if self.rekey.has_changed().is_ok() => {
                    if r.is_ok() { Wake::Rekey } else { Wake::Nothing }
                }
            };
            let now = Instant::now();
            next = match wake {
                Wake::Datagram(n, from) => {
                    if let Some(faults) = self.faults.as_mut() {
                        if faults.drops(now, from.ip()) {
                            continue;
                        }
                    }
                    // A sender over its budget is dropped unread, without
                    // touching the protocol or the snapshot, and so is every
                    // such datagram already waiting behind it.
                    let Some((n, sender)) = self.admit(now, n, from, &mut buf) else {
                        continue;
                    };
                    let input = Input::Datagram {
                        level: 0,
                        bytes: &buf[..n],
                    };
                    let after = pump::pump(&mut self.machine, now, input, &mut out);
                    if out
                        .events
                        .iter()
                        .any(|e| matches!(e, MachineEvent::Rejected { .. }))
                    {
                        self.senders.refused(now, sender);
                        if out.transmits.is_empty()
                            && out
                                .events
                                .iter()
                                .all(|e| matches!(e, MachineEvent::Rejected { .. }))
                        {
                            // Nothing changed but a counter: the snapshot
                            // catches up at the next timer.
                            out.events.clear();
                            next = after;
                            continue;
                        }
                    }
                    after
                }
                Wake::Seat((level, bytes, from)) => {
                    if let Some(faults) = self.faults.as_mut() {
                        if faults.drops(now, from.ip()) {
                            continue;
                        }
                    }
                    let Some(seat) = self.seats.get_mut(level - 1) else {
                        continue;
                    };
                    let Some(sender) = seat.senders.admit(now, from) else {
                        self.shared.io.rate_limited.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let input = Input::Datagram {
                        level,
                        bytes: &bytes,
                    };
                    let after = pump::pump(&mut self.machine, now, input, &mut out);
                    if out
                        .events
                        .iter()
                        .any(|e| matches!(e, MachineEvent::Rejected { .. }))
                    {
                        seat.senders.refused(now, sender);
                    }
                    after
                }
                Wake::Timeout => pump::pump(&mut self.machine, now, Input::Timeout, &mut out),
                Wake::Local(ev) => pump::pump(&mut self.machine, now, Input::Local(ev), &mut out),
                Wake::Rekey => {
                    let rekey = self.rekey.borrow_and_update().clone();
                    match rekey {
                        Some(r) => {
                            let before = self.machine.keyring().key_ids();
                            tracing::info!(
                                "keys {:?} -> {:?} (the first seals), configuration version {}",
                                before,
                                r.keyring.key_ids(),
                                r.config_version
                            );
                            let reload = Reload {
                                keyring: r.keyring,
                                config_version: r.config_version,
                            };
                            let input = Input::Reload(Box::new(reload));
                            pump::pump(&mut self.machine, now, input, &mut out)
                        }
                        None => self.machine.poll_timeout(),
                    }
                }
                Wake::Nothing => self.machine.poll_timeout(),
            };
            next = self.publish(&mut out).await.or(next);
            if self.machine.leaf().role() == Role::Left {
                return;
            }
        }
    }

    /// Charges the datagram of `n` bytes from `from` (in `buf`) to its
    /// sender. Returns it if it may be read; else drops it, and drains and
    /// drops the datagrams already waiting while their senders are over
    /// budget too (at most [`DRAIN_BATCH`], so timers are not kept waiting),
    /// returning the first one that may be read, if any.
    fn admit(
        &mut self,
        now: Instant,
        mut n: usize,
        mut from: std::net::SocketAddr,
        buf: &mut [u8],
    ) -> Option<(usize, super::limit::Sender)> {
        for i in 1.. {
            if let Some(sender) = self.senders.admit(now, from) {
                return Some((n, sender));
            }
            self.shared.io.rate_limited.fetch_add(1, Ordering::Relaxed);
            if i == DRAIN_BATCH {
                break;
            }
            match self.transport.try_recv(buf, i % 2 == 1) {
                Ok(Some((next, next_from, _))) => (n, from) = (next, next_from),
                Ok(None) | Err(_) => break,
            }
        }
        None
    }

    /// Claim 5: opens the sockets of the seat at `level` and starts reading
    /// them; on failure the machine is told, and takes the seat again later.
    fn open_seat(&mut self, now: Instant, level: Level, out: &mut Outbox) -> Option<Instant> {
        let seat = self.seats.get_mut(level - 1)?;
        let node = self.machine.node(level)?;
        match bind_transport(&seat.settings) {
            Ok(t) => {
                let t = Arc::new(t);
                let (shared, _, _) = Shared::new(&seat.settings, node, now);
                tracing::info!(
                    "took the seat of {} in cluster {}",
                    shared.node,
                    shared.cluster_name
                );
                seat.senders = sender_limits(&seat.settings, now);
                let reader = t.clone();
                let tx = self.seat_tx.clone();
                seat.reader = Some(tokio::spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    loop {
                        match reader.recv(&mut buf).await {
                            Ok((n, from, _)) => {
                                if tx.send((level, buf[..n].to_vec(), from)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::debug!("seat receive failed: {e}"),
                        }
                    }
                }));
                seat.transport = Some(t);
                seat.shared = Some(shared);
                None
            }
            Err(e) => {
                tracing::warn!(
                    "cannot take the seat of {} in cluster {}: {e}",
                    seat.settings.proto.node,
                    seat.settings.cluster_name
                );
                let input = Input::SeatUnavailable { level };
                pump::pump(&mut self.machine, now, input, out)
            }
        }
    }

    /// Acts on the machine's outputs: opens and closes seats' sockets,
    /// publishes events and signals, sends datagrams, refreshes snapshots.
    /// Returns a new next timeout if acting on them pumped the machine again.
    async fn publish(&mut self, out: &mut Outbox) -> Option<Instant> {
        let now = Instant::now();
        let mut next = None;
        let mut i = 0;
        while i < out.events.len() {
            let e = out.events[i].clone();
            i += 1;
            match e {
                MachineEvent::SeatTaken { level, .. } => {
                    if let Some(t) = self.open_seat(now, level, out) {
                        next = Some(t);
                    }
                }
                MachineEvent::SeatReleased { level, seat } => {
                    if let Some(io) = self.seats.get_mut(level - 1) {
                        if io.shared.is_some() {
                            tracing::info!(
                                "released the seat of {seat} in cluster {}",
                                io.settings.cluster_name
                            );
                        }
                        io.close();
                    }
                }
                MachineEvent::Node { level, event } => {
                    if let (Event::Refuted { incarnation }, 0, Some(f)) =
                        (&event, level, &self.life)
                    {
                        if let Err(err) = f.record(*incarnation) {
                            tracing::warn!(
                                "cannot record the node's life in {}: {err}",
                                f.path().display()
                            );
                        }
                    }
                    let (observer, cluster) = self.observer(level);
                    let mut e = local_event(observer, &event);
                    e.cluster = cluster;
                    self.shared.publish(e);
                }
                MachineEvent::Map { level, change } => {
                    let (observer, cluster) = self.observer(level);
                    let mut e = map_event(observer, &change);
                    e.cluster = cluster;
                    self.shared.publish(e);
                    // Members are limited each on its own ring address.
                    if let Some(map) = self.machine.node(level).and_then(|n| n.map()) {
                        let peers = map.members.iter().map(|m| m.addrs.ring);
                        match level {
                            0 => self.senders.set_peers(peers),
                            l => {
                                if let Some(seat) = self.seats.get_mut(l - 1) {
                                    seat.senders.set_peers(peers);
                                }
                            }
                        }
                    }
                }
                MachineEvent::Reassign { what, .. } => {
                    let _ = self.shared.signals.send(Signal::Reassign(what));
                }
                MachineEvent::ConfigOutdated { version } => {
                    let me = self.shared.node;
                    self.shared.publish(ClusterEvent {
                        version: Some(version),
                        ..event(
                            me,
                            "config_outdated",
                            Some(me),
                            None,
                            format!("{me} saw configuration version {version}"),
                        )
                    });
                    let _ = self.shared.signals.send(Signal::ConfigOutdated(version));
                }
                // Counted in the node's statistics, and charged to the
                // sender by the loop; not news for the event stream.
                MachineEvent::Rejected { .. } => {}
            }
        }
        out.events.clear();
        for t in out.transmits.drain(..) {
            let transport = match t.level {
                0 => Some(&self.transport),
                l => self.seats.get(l - 1).and_then(|s| s.transport.as_ref()),
            };
            // A seat released since the datagram was made sends nothing.
            let Some(transport) = transport else { continue };
            if let Err(e) = transport.send(&t.transmit).await {
                tracing::debug!("send to {:?} failed: {e}", t.transmit.destination);
                self.shared.io.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        *self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = snapshot_of(self.machine.leaf());
        let mut held = Vec::new();
        for (k, seat) in self.seats.iter().enumerate() {
            let (Some(shared), Some(node)) = (&seat.shared, self.machine.node(k + 1)) else {
                break;
            };
            *shared.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot_of(node);
            held.push(shared.clone());
        }
        let changed = {
            let current = self.shared.seats.read().unwrap_or_else(|e| e.into_inner());
            current.len() != held.len()
                || current.iter().zip(&held).any(|(a, b)| !Arc::ptr_eq(a, b))
        };
        if changed {
            *self.shared.seats.write().unwrap_or_else(|e| e.into_inner()) = held;
        }
        next
    }

    /// The node id that observes events at `level` and its cluster's id.
    fn observer(&self, level: Level) -> (NodeId, u32) {
        match level {
            0 => (self.shared.node, self.shared.cluster_id),
            l => self
                .seats
                .get(l - 1)
                .map_or((self.shared.node, self.shared.cluster_id), |s| {
                    (s.settings.proto.node, s.settings.proto.cluster.0)
                }),
        }
    }
}

fn snapshot_of(node: &Node) -> Snapshot {
    let (upstream, downstream) = node.ring_neighbours();
    Snapshot {
        role: node.role(),
        incarnation: node.incarnation(),
        map: node.map().cloned(),
        tables: node.tables().cloned(),
        stats: node.stats().clone(),
        upstream,
        downstream,
        keys: node.keyring().key_ids(),
        config_version: node.config().config_version,
    }
}

fn event(
    observer: NodeId,
    kind: &'static str,
    node: Option<NodeId>,
    epoch: Option<u64>,
    text: String,
) -> ClusterEvent {
    ClusterEvent {
        at_ms: unix_ms(),
        observer,
        kind,
        node,
        epoch,
        version: None,
        text,
        cluster: 0,
    }
}

fn map_event(observer: NodeId, c: &MapChange) -> ClusterEvent {
    match c {
        MapChange::Supervisor { node, epoch } => event(
            observer,
            "supervisor",
            Some(*node),
            Some(epoch.0),
            format!("{node} supervises (epoch {})", epoch.0),
        ),
        MapChange::Joined { node, incarnation } => event(
            observer,
            "joined",
            Some(*node),
            None,
            format!("{node} is up ({incarnation})"),
        ),
        MapChange::Failed { node } => event(
            observer,
            "failed",
            Some(*node),
            None,
            format!("{node} failed"),
        ),
        MapChange::Left { node } => {
            event(observer, "left", Some(*node), None, format!("{node} left"))
        }
    }
}

fn disk_event(me: NodeId, change: &ringcast_proto::tables::DiskChange) -> ClusterEvent {
    use ringcast_proto::tables::DiskChange;
    match *change {
        DiskChange::Failed(d) => event(
            me,
            "disk_failed",
            None,
            None,
            format!("disk {d} declared failed"),
        ),
        DiskChange::Recovered(d) => event(
            me,
            "disk_recovered",
            None,
            None,
            format!("disk {d} works again"),
        ),
        DiskChange::PathBroken { node, disk } => event(
            me,
            "path_broken",
            Some(node),
            None,
            format!("{node}'s path to disk {disk} is broken"),
        ),
        DiskChange::PathRestored { node, disk } => event(
            me,
            "path_restored",
            Some(node),
            None,
            format!("{node}'s path to disk {disk} works again"),
        ),
    }
}

fn local_event(me: NodeId, e: &Event) -> ClusterEvent {
    match e {
        Event::BecameSupervisor { epoch, reason } => event(
            me,
            "became_supervisor",
            Some(me),
            Some(epoch.0),
            format!("{me} became supervisor ({reason:?}, epoch {})", epoch.0),
        ),
        Event::StoppedSupervising { successor } => event(
            me,
            "stopped_supervising",
            Some(*successor),
            None,
            format!("{me} stopped supervising in favour of {successor}"),
        ),
        Event::SupervisorChanged { supervisor, epoch } => event(
            me,
            "follows",
            Some(*supervisor),
            Some(epoch.0),
            format!("{me} follows {supervisor} (epoch {})", epoch.0),
        ),
        Event::Joined { supervisor } => event(
            me,
            "joined_cluster",
            Some(*supervisor),
            None,
            format!("{me} joined, supervisor {supervisor}"),
        ),
        Event::Left => event(
            me,
            "left_cluster",
            Some(me),
            None,
            format!("{me} left the cluster"),
        ),
        Event::NodeJoined { node } => event(
            me,
            "admitted",
            Some(*node),
            None,
            format!("{me} admitted {node}"),
        ),
        Event::NodeLeft { node } => event(
            me,
            "released",
            Some(*node),
            None,
            format!("{me} saw {node} leave"),
        ),
        Event::NodeFailed { node, declared_by } => event(
            me,
            "marked_failed",
            Some(*node),
            None,
            format!("{me} marked {node} failed (declared by {declared_by})"),
        ),
        Event::UpstreamDeclared { node } => event(
            me,
            "declared",
            Some(*node),
            None,
            format!("{me} declared its upstream {node} failed"),
        ),
        Event::Refuted { incarnation } => event(
            me,
            "refuted",
            Some(me),
            None,
            format!("{me} refuted a failure declaration with {incarnation}"),
        ),
        Event::ClockSlipped { gap } => event(
            me,
            "clock_slipped",
            Some(me),
            None,
            format!("{me}'s timers ran {} ms late", gap.as_millis()),
        ),
        Event::Disk(change) => disk_event(me, change),
        Event::RivalSupervisor { rival, epoch } => event(
            me,
            "rival_supervisor",
            Some(*rival),
            Some(epoch.0),
            format!("{me} hears rival supervisor {rival} (epoch {})", epoch.0),
        ),
        Event::OwnIdHeard { incarnation } => event(
            me,
            "own_id_heard",
            Some(me),
            None,
            format!("another process runs {me} with a newer life ({incarnation})"),
        ),
        Event::Rejected { reason } => event(
            me,
            "rejected",
            None,
            None,
            format!("{me} refused a datagram ({reason})"),
        ),
        Event::ConfigOutdated { version } => ClusterEvent {
            version: Some(*version),
            ..event(
                me,
                "config_outdated",
                Some(me),
                None,
                format!("{me} saw configuration version {version}"),
            )
        },
    }
}
