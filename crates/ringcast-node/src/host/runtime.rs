//! The node's tokio loop: sockets and timers in, the protocol core in the
//! middle (through [`ringcast_proto::pump`]), datagrams and events out. No
//! protocol decision is taken here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringcast_proto::event::{Event, LocalEvent, Transmit};
use ringcast_proto::map::{changes, ClusterMap, MapChange};
use ringcast_proto::pump::{self, Input, Outputs};
use ringcast_proto::stats::Stats;
use ringcast_proto::{Incarnation, KeyId, Keyring, Node, NodeId, Role, Tables};
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

/// A node ready to run: its sockets are bound.
#[derive(Debug)]
pub struct Runtime {
    node: Node,
    transport: Transport,
    shared: Arc<Shared>,
    control: mpsc::Receiver<LocalEvent>,
    rekey: watch::Receiver<Option<Rekey>>,
    senders: SenderLimits,
    held: Option<ClusterMap>,
    life: Option<LifeFile>,
    /// Test-only transport faults (`RINGCAST_TEST_FAULTS`).
    faults: Option<super::faults::Faults>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Runtime {
    /// Builds the protocol node and binds its sockets.
    pub fn bind(settings: NodeSettings, life: Option<LifeFile>) -> Result<Runtime, NodeError> {
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
        let id = settings.proto.node;
        let node = Node::new(
            settings.proto.clone(),
            settings.keyring(),
            incarnation,
            u64::from_le_bytes(seed),
            now,
        )?;
        let ring = settings.proto.addrs.ring;
        let transport =
            Transport::bind(ring, &settings.bus, id).map_err(|source| NodeError::Bind {
                what: "bus and ring",
                addr: format!("{ring} ({:?})", settings.bus),
                source,
            })?;
        let (control_tx, control) = mpsc::channel(64);
        let (rekey_tx, rekey) = watch::channel(None);
        let (events, _) = broadcast::channel(1024);
        let bus = &settings.limits.bus;
        let mut senders = SenderLimits::new(bus.datagrams, bus.refused, bus.max_senders, ring, now);
        if let BusMode::Unicast { peers } = &settings.bus {
            senders.set_peers(peers.iter().map(|(_, addr)| *addr));
        }
        let shared = Arc::new(Shared {
            node: id,
            cluster_name: settings.cluster_name.clone(),
            cluster_id: settings.proto.cluster.0,
            http: settings.proto.addrs.http,
            admin_token: settings.admin_token.clone(),
            snapshot: RwLock::new(snapshot_of(&node)),
            events,
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
        Ok(Runtime {
            node,
            transport,
            shared,
            control,
            rekey,
            senders,
            held: None,
            life,
            faults: super::faults::Faults::from_env(),
        })
    }

    /// The state shared with the HTTP API.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Runs until the node has left the cluster.
    pub async fn run(mut self) {
        enum Wake {
            Datagram(usize, std::net::SocketAddr),
            Timeout,
            Local(LocalEvent),
            Rekey,
            Nothing,
        }
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Outbox::default();
        let mut next = pump::drain(&mut self.node, &mut out);
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
                    // A sender over its budget is dropped unread,
                    // without touching the protocol or the snapshot, and so
                    // is every such datagram already waiting behind it.
                    let Some((n, sender)) = self.admit(now, n, from, &mut buf) else {
                        continue;
                    };
                    let refused_before = self.node.stats().rejected_total();
                    let after =
                        pump::pump(&mut self.node, now, Input::Datagram(&buf[..n]), &mut out);
                    if self.node.stats().rejected_total() > refused_before {
                        self.senders.refused(now, sender);
                        if out.transmits.is_empty() && out.events.is_empty() {
                            // Nothing changed but a counter: the snapshot
                            // catches up at the next timer.
                            next = after;
                            continue;
                        }
                    }
                    after
                }
                Wake::Timeout => pump::pump(&mut self.node, now, Input::Timeout, &mut out),
                Wake::Local(ev) => pump::pump(&mut self.node, now, Input::Local(ev), &mut out),
                Wake::Rekey => {
                    let rekey = self.rekey.borrow_and_update().clone();
                    if let Some(r) = rekey {
                        self.apply(r);
                    }
                    self.node.poll_timeout()
                }
                Wake::Nothing => self.node.poll_timeout(),
            };
            self.publish(&mut out).await;
            if self.node.role() == Role::Left {
                return;
            }
        }
    }

    /// Charges the datagram of `n` bytes from `from` (in `buf`) to
    /// its sender. Returns it if it may be read; else drops it, and drains
    /// and drops the datagrams already waiting while their senders are over
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

    /// Takes new keys (a rotation stage) and the configuration
    /// version they came with.
    fn apply(&mut self, rekey: Rekey) {
        let before = self.node.keyring().key_ids();
        *self.node.keyring_mut() = rekey.keyring;
        let version = rekey.config_version.max(self.node.config().config_version);
        self.node.set_config_version(version);
        tracing::info!(
            "keys {:?} -> {:?} (the first seals), configuration version {version}",
            before,
            self.node.keyring().key_ids()
        );
    }

    async fn publish(&mut self, out: &mut Outbox) {
        for t in out.transmits.drain(..) {
            if let Err(e) = self.transport.send(&t).await {
                tracing::debug!("send to {:?} failed: {e}", t.destination);
                self.shared.io.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let id = self.shared.node;
        for e in out.events.drain(..) {
            if let (Event::Refuted { incarnation }, Some(f)) = (&e, &self.life) {
                if let Err(err) = f.record(*incarnation) {
                    tracing::warn!(
                        "cannot record the node's life in {}: {err}",
                        f.path().display()
                    );
                }
            }
            self.shared.publish(local_event(id, &e));
        }
        if let Some(map) = self.node.map() {
            let changed = self.held.as_ref().is_none_or(|h| h != map);
            if changed {
                for c in changes(self.held.as_ref(), map) {
                    self.shared.publish(map_event(id, &c));
                }
                // Members are limited each on its own ring address.
                self.senders
                    .set_peers(map.members.iter().map(|m| m.addrs.ring));
                self.held = Some(map.clone());
            }
        }
        *self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = snapshot_of(&self.node);
    }
}

#[derive(Default)]
struct Outbox {
    transmits: Vec<Transmit>,
    events: Vec<Event>,
}

impl Outputs for Outbox {
    fn transmit(&mut self, _node: &Node, t: Transmit) {
        self.transmits.push(t);
    }
    fn event(&mut self, _node: &Node, e: Event) {
        self.events.push(e);
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
