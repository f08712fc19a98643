//! What the loop shares with the rest of the daemon: the latest
//! [`Snapshot`] of each node it runs (for the API, metrics and placement),
//! the event stream, typed [`Signal`]s, and the channels into the loop.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use ringcast_config::settings::NodeSettings;
use ringcast_proto::event::LocalEvent;
use ringcast_proto::stats::Stats;
use ringcast_proto::{
    ClusterMap, Incarnation, KeyId, Keyring, Node, NodeId, Reassign, Role, Tables,
};
use tokio::sync::{broadcast, mpsc, watch};

use super::events::{event, ClusterEvent};

/// Failed admin attempts a client address may make at once (10), and how
/// many it gets back a second (1): guessing the admin token is bounded
/// however fast a client asks (`SECURITY.md`).
pub const ADMIN_FAILURES: ringcast_files::buckets::Rate = ringcast_files::buckets::Rate {
    per_second: 1,
    burst: 10,
};

/// Events kept for a subscriber that connects late.
const RECENT_EVENTS: usize = 200;

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
    /// Claim 1: the new priority list, when it changed.
    pub priority: Option<Vec<ringcast_proto::NodeId>>,
    /// Claim 4: the node's new streaming capacity, when it changed.
    pub capacity: Option<ringcast_proto::Capacity>,
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
    /// The digest of the admin token guarding `POST /v1/leave`, if configured.
    pub admin_token_sha256: Option<ringcast_config::admin::AdminDigest>,
    /// Failed admin attempts per client address ([`ADMIN_FAILURES`]).
    pub admin_failures: Mutex<ringcast_files::buckets::Buckets<std::net::IpAddr>>,
    /// What the node runs with, without secrets (`GET /v1/config`), as
    /// last reloaded.
    pub running: RwLock<ringcast_config::live::RunningConfig>,
    /// Set while the node drains (`POST /v1/drain`): its responses close
    /// their connections, and it announces a capacity of no stream, so it is
    /// given no new stream and hands its service address on.
    pub draining: Arc<ringcast_files::stream::Closing>,
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
    /// HTTPS or not, set before the HTTP side starts ([`Shared::web`]).
    pub web_setting: std::sync::OnceLock<super::web::Web>,
    /// New keys for the protocol loop to apply.
    pub rekey: watch::Sender<Option<Rekey>>,
    /// Configuration reloads.
    pub reloads: ReloadCounters,
    /// Claim 5: the seats this machine holds in its ancestor clusters,
    /// nearest parent first (see `seat`).
    pub seats: RwLock<Vec<Arc<Shared>>>,
    /// Claim 5: how many ancestor clusters this machine's cluster has.
    pub levels_above: std::sync::atomic::AtomicUsize,
    /// Claim 13: the cluster's service addresses and cluster address, the
    /// origins a player is sent to (the dashboard's page allows them).
    pub service: ringcast_config::addresses::ServiceAddresses,
}

impl Shared {
    /// How this node writes node URLs and reaches other nodes: plain
    /// HTTP until HTTPS is set.
    pub fn web(&self) -> super::web::Web {
        self.web_setting.get().cloned().unwrap_or_default()
    }

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

impl Shared {
    /// The state of a node run with `settings`, as the API shows it, with
    /// the receivers of its control and key channels.
    pub(crate) fn new(
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
            admin_token_sha256: settings.admin_token_sha256,
            admin_failures: Mutex::new(ringcast_files::buckets::Buckets::new(
                ADMIN_FAILURES,
                4096,
                std::time::Instant::now(),
            )),
            running: RwLock::new(ringcast_config::live::RunningConfig::of(settings)),
            draining: Arc::default(),
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
            web_setting: std::sync::OnceLock::new(),
            rekey: rekey_tx,
            reloads: ReloadCounters::default(),
            seats: RwLock::new(Vec::new()),
            levels_above: std::sync::atomic::AtomicUsize::new(0),
            service: settings.service.clone(),
        });
        (shared, control, rekey)
    }
}

/// What `node` knows now, as the API shows it.
pub(crate) fn snapshot_of(node: &Node) -> Snapshot {
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
