//! The placement service (DESIGN section 6, claim 13 at the node): the
//! library of each disk this node reaches, placement of play requests (by
//! the supervisor), the signed redirect, and the reassignment of streams
//! when a node or disk fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Extension, Path as AxPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ringcast_files::httpd::ClientIp;
use ringcast_files::limits::HttpLimits;
use ringcast_files::stream::StreamCounters;
use ringcast_proto::placement::{PlaceError, StreamBook};
use ringcast_proto::token::StreamToken;
use ringcast_proto::{DiskId, LocalEvent, NodeConfig, NodeId, Role};
use serde::{Deserialize, Serialize};

use ringcast_config::addresses::ServiceAddresses;

use super::admission::Admission;
use crate::host::addresses::holder::Holdings;
use crate::host::shared::{Shared, Snapshot};
use crate::host::web::Web;
use crate::library::catalog::{self, Catalog, Title};
use crate::library::gate::DiskGate;

/// How long a stream token stays valid: long enough to start the request.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// The path prefix of the data path.
pub const STREAM_PREFIX: &str = "/v1/streams/";
/// Largest HLS playlist the node rewrites.
pub const MAX_PLAYLIST: u64 = 1 << 20;

/// Everything the node needs to place and serve streams.
#[derive(Debug)]
pub struct Streaming {
    pub(super) me: NodeId,
    /// The cluster keys tokens derive from: the first signs, every one
    /// verifies (a key rotation changes them while the node runs).
    pub(super) keys: RwLock<Vec<[u8; 32]>>,
    pub(super) mounts: BTreeMap<DiskId, PathBuf>,
    /// This node's own scans of its disks' libraries.
    pub catalogs: RwLock<BTreeMap<DiskId, Catalog>>,
    /// The supervisor's view: titles of every disk, by digest.
    pub(super) known: Mutex<BTreeMap<DiskId, (u64, BTreeSet<String>)>>,
    pub(super) book: Mutex<StreamBook>,
    pub(super) disk_bytes: Mutex<BTreeMap<DiskId, (Instant, u64)>>,
    /// One client for the node's own requests (placement, catalogs), so
    /// connections to the supervisor are kept alive between requests.
    pub(super) agent: ureq::Agent,
    pub(super) shared: Arc<Shared>,
    /// Streams being served, for the load this node reports.
    pub counters: Arc<StreamCounters>,
    /// Claim 5: the sub-cluster each stream was last placed in, for the
    /// streams this machine placed as a parent's supervisor.
    pub(super) tree_book: Mutex<BTreeMap<u64, NodeId>>,
    /// Claim 13: the cluster's service addresses, and the priority list
    /// that says who holds them.
    pub(super) service: ServiceAddresses,
    pub(super) priority: Vec<NodeId>,
    /// The service addresses this node holds now.
    pub holdings: Arc<Holdings>,
    /// Filesystem calls in flight per disk (a hung disk keeps its calls).
    pub(super) gates: BTreeMap<DiskId, DiskGate>,
    /// Disks whose library scan is still running (a hung disk's never ends).
    pub(super) scanning: BTreeMap<DiskId, AtomicBool>,
    /// Streams that asked this node for something lately, by id: an HLS
    /// player is between segments most of the time, and still a stream.
    pub(super) recent: Mutex<HashMap<u64, Instant>>,
    /// New placements per client address (`admission.rs`).
    pub(super) admission: RwLock<Admission>,
}

/// How long a stream counts as served here after its last request: a few
/// HLS segments' worth, so a player between segments is still load.
pub const STREAM_IDLE: Duration = Duration::from_secs(10);

/// Most streams remembered as recent; beyond, the oldest are forgotten.
const MAX_RECENT: usize = 1 << 16;

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The play and place query: which stream a request belongs to.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// The client's stream id; a new one is drawn when absent.
    pub stream: Option<u64>,
    /// Claim 5, on `/v1/place`: decide within this cluster, which the asked
    /// machine supervises (placement descending the tree); without it the
    /// asked machine is the supervisor of its own cluster and sends the
    /// request up to the root first.
    pub within: Option<u32>,
    /// Claim 5, on `/v1/place`: machines the request passed through.
    pub hops: Option<u32>,
}

/// One title of `GET /v1/titles`.
#[derive(Debug, Serialize)]
pub struct TitleEntry {
    /// The title, as `/v1/play/{title}` takes it.
    pub title: String,
    /// Its content type (players pick HLS or native playback by it).
    pub content_type: &'static str,
    /// The disks holding it.
    pub disks: Vec<DiskId>,
}

/// `GET /v1/titles`: what the cluster can play.
#[derive(Debug, Serialize)]
pub struct TitlesAnswer {
    /// Every title, sorted.
    pub titles: Vec<TitleEntry>,
    /// Whether every disk's catalog is the one the tables report: `false`
    /// while a node that reaches a changed disk has not rescanned it yet,
    /// so the list may still change without the tables changing again.
    pub settled: bool,
}

/// The supervisor's answer to `GET /v1/place/...`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlaceAnswer {
    /// Where the client goes next.
    pub location: String,
    /// The serving node.
    pub node: NodeId,
}

/// A disk's library as one node serves it: `GET /v1/disks/{disk}/catalog`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CatalogAnswer {
    /// The digest the node reports on the ring.
    pub digest: u64,
    /// The titles.
    pub titles: Vec<String>,
}

/// A refusal as an HTTP response, boxed: responses are large and mostly unused.
pub(super) type Refused = Box<Response>;

pub(super) fn refused(r: Response) -> Refused {
    Box::new(r)
}

pub(super) fn refusal(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

pub(super) fn unavailable(message: &str, retry_after: u64) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, retry_after.to_string())],
        format!("{message}\n"),
    )
        .into_response()
}

impl Streaming {
    /// Streaming for the node `proto` configures (its id, the priority
    /// list, the timing its placements' reservations derive from): its
    /// disks' mount points, the cluster key, and its cluster's service
    /// addresses.
    pub fn new(
        proto: &NodeConfig,
        key: [u8; 32],
        mounts: BTreeMap<DiskId, PathBuf>,
        shared: Arc<Shared>,
        counters: Arc<StreamCounters>,
        service: ServiceAddresses,
    ) -> Arc<Streaming> {
        let me = proto.node;
        let priority = proto.priority.clone();
        Arc::new(Streaming {
            gates: mounts.keys().map(|d| (*d, DiskGate::default())).collect(),
            scanning: mounts
                .keys()
                .map(|d| (*d, AtomicBool::new(false)))
                .collect(),
            recent: Mutex::new(HashMap::new()),
            admission: RwLock::new(Admission::new(&HttpLimits::default())),
            holdings: Arc::new(Holdings::default()),
            service,
            priority,
            me,
            keys: RwLock::new(vec![key]),
            mounts,
            catalogs: RwLock::new(BTreeMap::new()),
            known: Mutex::new(BTreeMap::new()),
            book: Mutex::new(StreamBook::new(proto.timing.clone())),
            disk_bytes: Mutex::new(BTreeMap::new()),
            agent: shared.web().agent(Duration::from_secs(2)),
            shared,
            counters,
            tree_book: Mutex::new(BTreeMap::new()),
        })
    }

    /// Placements per client address from now on follow `limits`.
    pub fn set_placement_limits(&self, limits: &HttpLimits) {
        *self.admission.write().unwrap_or_else(|e| e.into_inner()) = Admission::new(limits);
    }

    /// Whether `client` may have one more placement (`admission.rs`).
    fn admit(&self, client: Option<Extension<ClientIp>>) -> Result<(), Box<Response>> {
        let client = client.map(|Extension(ClientIp(ip))| ip);
        // A member of this cluster is exempt from the moment it is in the
        // map (a member forwards all its players' placements; the guard's
        // own list of members follows the map only every EXEMPT_REFRESH).
        let member = client.is_some_and(|ip| {
            let snap = self
                .shared
                .snapshot
                .read()
                .unwrap_or_else(|e| e.into_inner());
            snap.map.as_ref().is_some_and(|m| {
                m.members
                    .iter()
                    .any(|n| n.addrs.http.ip() == ip || n.addrs.ring.ip() == ip)
            })
        });
        if member {
            return Ok(());
        }
        let admitted = self
            .admission
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .admit(self.shared.http_guard.get().map(|g| g.as_ref()), client);
        if admitted.is_err() {
            self.shared.metrics.count_placement("client_limit");
        }
        admitted
    }

    /// The routes of placement: play, place and catalogs.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/play/{*title}", get(play))
            .route("/v1/place/{*title}", get(place))
            .route("/v1/disks/{disk}/catalog", get(catalog_of))
            .route("/v1/titles", get(titles))
            .with_state(self.clone())
    }

    /// The disks whose libraries this node scans: every disk it reaches.
    pub fn catalog_disks(&self) -> Vec<DiskId> {
        self.mounts.keys().copied().collect()
    }

    /// The digest of this node's catalog of `disk` (0 before the first scan).
    pub fn digest(&self, disk: DiskId) -> u64 {
        self.catalogs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&disk)
            .map_or(0, Catalog::digest)
    }

    /// Rescans every disk's library, one after the other; returns the
    /// disks whose catalog changed (for tests and the first scan at start).
    pub fn rescan(&self) -> Vec<DiskId> {
        self.mounts
            .keys()
            .copied()
            .filter(|d| self.rescan_disk(*d))
            .collect()
    }

    /// Rescans the library of `disk` (on a blocking thread: it reads the
    /// disk) unless its previous scan is still running; returns whether the
    /// catalog changed.
    pub fn rescan_disk(&self, disk: DiskId) -> bool {
        let (Some(mount), Some(scanning)) = (self.mounts.get(&disk), self.scanning.get(&disk))
        else {
            return false;
        };
        if scanning.swap(true, Ordering::AcqRel) {
            return false;
        }
        let previous = self
            .catalogs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&disk)
            .map(Catalog::digest);
        let scanned = catalog::rescan_if_changed(mount, previous);
        scanning.store(false, Ordering::Release);
        match scanned {
            Ok(Some(c)) => {
                self.catalogs
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(disk, c);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::debug!("cannot scan the library of disk {disk}: {e}");
                false
            }
        }
    }

    /// The gate of `disk`'s filesystem calls (a shared one for a disk this
    /// node does not reach: nothing reads it).
    pub(super) fn gate(&self, disk: DiskId) -> &DiskGate {
        static NONE: std::sync::OnceLock<DiskGate> = std::sync::OnceLock::new();
        self.gates
            .get(&disk)
            .unwrap_or_else(|| NONE.get_or_init(DiskGate::default))
    }

    /// Counts `stream` as served here for [`STREAM_IDLE`] from now.
    pub(super) fn note_stream(&self, stream: u64) {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= MAX_RECENT && !recent.contains_key(&stream) {
            recent.retain(|_, seen| now.duration_since(*seen) < STREAM_IDLE);
            if recent.len() >= MAX_RECENT {
                return;
            }
        }
        recent.insert(stream, now);
    }

    /// Streams that asked this node for something within [`STREAM_IDLE`].
    pub fn recent_streams(&self) -> usize {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, seen| now.duration_since(*seen) < STREAM_IDLE);
        recent.len()
    }

    /// The supervisor's knowledge of which disks hold `title`, refreshing
    /// the catalog of every disk whose reported digest changed.
    fn replicas(
        &self,
        title: &Title,
        map: &ringcast_proto::ClusterMap,
        tables: &ringcast_proto::Tables,
    ) -> Vec<DiskId> {
        let known = self.refresh_known(map, tables);
        let mut replicas = Vec::new();
        for row in &tables.disk_usage {
            let holds = known
                .get(&row.disk)
                .is_some_and(|(_, t)| t.contains(title.as_str()));
            if holds {
                replicas.push(row.disk);
            }
        }
        replicas
    }

    /// The catalogs of every disk of the tables, each refreshed when its
    /// reported digest changed.
    fn refresh_known(
        &self,
        map: &ringcast_proto::ClusterMap,
        tables: &ringcast_proto::Tables,
    ) -> std::sync::MutexGuard<'_, BTreeMap<DiskId, (u64, BTreeSet<String>)>> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for row in &tables.disk_usage {
            if known.get(&row.disk).map(|(d, _)| *d) != Some(row.catalog) {
                if let Some(found) = self.fetch_catalog(row.disk, row.catalog, map, tables) {
                    known.insert(row.disk, found);
                }
            }
        }
        known
    }

    /// Every title of the cluster with the disks holding it, from the
    /// catalogs of the disks the tables list (this node's own scans, or
    /// `GET /v1/disks/{id}/catalog` of a node that reaches the disk), and
    /// whether every catalog matched the digest the tables report.
    pub fn titles(&self) -> (Vec<TitleEntry>, bool) {
        let snap = self.shared.snapshot();
        let mut by_title: BTreeMap<String, Vec<DiskId>> = BTreeMap::new();
        let mut settled = true;
        match (snap.map.as_ref(), snap.tables.as_ref()) {
            (Some(map), Some(tables)) => {
                let known = self.refresh_known(map, tables);
                settled = tables
                    .disk_usage
                    .iter()
                    .all(|r| known.get(&r.disk).is_some_and(|(d, _)| *d == r.catalog));
                for (disk, (_, titles)) in known.iter() {
                    if tables.disk_usage.iter().any(|r| r.disk == *disk) {
                        for t in titles {
                            by_title.entry(t.clone()).or_default().push(*disk);
                        }
                    }
                }
            }
            _ => {
                let catalogs = self.catalogs.read().unwrap_or_else(|e| e.into_inner());
                for (disk, c) in catalogs.iter() {
                    for t in c.titles.keys() {
                        by_title
                            .entry(t.as_str().to_string())
                            .or_default()
                            .push(*disk);
                    }
                }
            }
        }
        let titles = by_title
            .into_iter()
            .map(|(title, disks)| TitleEntry {
                content_type: ringcast_files::stream::content_type_for(&title),
                title,
                disks,
            })
            .collect();
        (titles, settled)
    }

    /// Reads the catalog of `disk` whose digest is `wanted`: this node's own
    /// scan, or a node's that serves the disk. A node whose scan is older or
    /// newer than the digest the tables report has other titles: the first
    /// such catalog is returned with its own digest only when none matches,
    /// so the caller asks again once the scans agree.
    fn fetch_catalog(
        &self,
        disk: DiskId,
        wanted: u64,
        map: &ringcast_proto::ClusterMap,
        tables: &ringcast_proto::Tables,
    ) -> Option<(u64, BTreeSet<String>)> {
        let mut fallback = None;
        if let Some(c) = self
            .catalogs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&disk)
        {
            let titles = c.titles.keys().map(|t| t.as_str().to_string()).collect();
            if c.digest() == wanted {
                return Some((wanted, titles));
            }
            fallback = Some((c.digest(), titles));
        }
        let agent = &self.agent;
        for node in &map.ring {
            if *node == self.me || !tables.serves_from(*node, disk) {
                continue;
            }
            let Some(http) = map.member(*node).map(|m| m.addrs.http) else {
                continue;
            };
            let url = self
                .shared
                .web()
                .url(http, &format!("/v1/disks/{}/catalog", disk.0));
            let answer = agent
                .get(&url)
                .call()
                .ok()
                .and_then(|r| r.into_json::<CatalogAnswer>().ok());
            if let Some(a) = answer {
                let titles = a.titles.into_iter().collect();
                if a.digest == wanted {
                    return Some((wanted, titles));
                }
                fallback.get_or_insert((a.digest, titles));
            }
        }
        fallback
    }

    /// Claim 13 / DESIGN 6: the supervisor's decision for one request.
    pub(super) fn decide(&self, title: &Title, stream: u64) -> Result<PlaceAnswer, Refused> {
        let snap = self.shared.snapshot();
        let metrics = &self.shared.metrics;
        let (Some(map), Some(tables)) = (snap.map.as_ref(), snap.tables.as_ref()) else {
            metrics.count_placement("not_ready");
            return Err(refused(unavailable("the cluster is forming", 1)));
        };
        let replicas = self.replicas(title, map, tables);
        let placed = self.book.lock().unwrap_or_else(|e| e.into_inner()).place(
            stream,
            replicas,
            map,
            tables,
            Instant::now(),
        );
        let p = match placed {
            Ok(p) => p,
            Err(PlaceError::UnknownTitle) => {
                metrics.count_placement("unknown_title");
                return Err(refused(refusal(
                    StatusCode::NOT_FOUND,
                    "no disk holds this title",
                )));
            }
            Err(e @ PlaceError::NoCapacity) => {
                metrics.count_placement("no_capacity");
                return Err(refused(unavailable(&e.to_string(), 1)));
            }
            Err(e @ PlaceError::NoHealthyReplica) => {
                metrics.count_placement("no_healthy_replica");
                return Err(refused(unavailable(&e.to_string(), 2)));
            }
        };
        let Some(http) = map.member(p.node).map(|m| m.addrs.http) else {
            metrics.count_placement("not_ready");
            return Err(refused(unavailable("the chosen node vanished", 1)));
        };
        metrics.count_placement("placed");
        let token = StreamToken {
            title: title.as_str().to_string(),
            disk: p.disk,
            node: p.node,
            stream,
            expires: unix_now() + TOKEN_LIFETIME.as_secs(),
        }
        .sign(&self.signing_key());
        // Claim 13: the serving node's service address, which outlives it.
        let at = self.service.of_node(p.node, http);
        Ok(PlaceAnswer {
            location: self
                .shared
                .web()
                .url(at, &format!("{STREAM_PREFIX}{token}/{}", title.as_str())),
            node: p.node,
        })
    }

    /// Claim 13: moves the streams of whatever failed; called on map and disk changes.
    pub fn reassign(&self) -> usize {
        let snap = self.shared.snapshot();
        if snap.role != Role::Supervisor {
            return 0;
        }
        let (Some(map), Some(tables)) = (snap.map.as_ref(), snap.tables.as_ref()) else {
            return 0;
        };
        let moved = self
            .book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reassign(map, tables, Instant::now());
        moved.len()
    }

    /// Streams and bytes per second this node reads from `disk`, measured
    /// since the previous call for the same disk.
    pub fn disk_load(&self, disk: DiskId) -> (u32, u64) {
        let snap = self.counters.snapshot();
        let Some(d) = snap.disks.get(&disk.0) else {
            return (0, 0);
        };
        let now = Instant::now();
        let mut last = self.disk_bytes.lock().unwrap_or_else(|e| e.into_inner());
        let (then, bytes) = last
            .insert(disk, (now, d.bytes_sent))
            .unwrap_or((now, d.bytes_sent));
        let secs = now.duration_since(then).as_secs_f64();
        let rate = if secs > 0.0 {
            (d.bytes_sent.saturating_sub(bytes) as f64 / secs) as u64
        } else {
            0
        };
        (u32::try_from(d.active_streams).unwrap_or(u32::MAX), rate)
    }

    /// Reports this node's load and disks to the protocol (claim 4).
    pub async fn report_load(&self, interval: Duration) {
        let mut last = (Instant::now(), self.counters.snapshot().bytes_sent);
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            let snap = self.counters.snapshot();
            let now = (Instant::now(), snap.bytes_sent);
            let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
            let streams = snap.active_streams.max(self.recent_streams() as u64);
            let load = ringcast_proto::Load {
                streams: u32::try_from(streams).unwrap_or(u32::MAX),
                bytes_per_s: ((now.1 - last.1) as f64 / secs) as u64,
            };
            last = now;
            if self
                .shared
                .control
                .send(LocalEvent::Load(load))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn play(
    State(s): State<Arc<Streaming>>,
    AxPath(title): AxPath<String>,
    Query(q): Query<StreamQuery>,
    client: Option<Extension<ClientIp>>,
) -> Response {
    let title = match catalog::parse_title(&title) {
        Ok(t) => t,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Err(r) = s.admit(client) {
        count_answer(&s.shared, "play", &r);
        return *r;
    }
    let stream = q.stream.unwrap_or_else(random_stream);
    let snap = s.shared.snapshot();
    let answer = if snap.role == Role::Supervisor {
        let s2 = s.clone();
        match tokio::task::spawn_blocking(move || s2.place_in_tree(&title, stream, None, 0)).await {
            Ok(a) => a,
            Err(_) => Err(refused(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "placement failed",
            ))),
        }
    } else {
        ask_supervisor(s.agent.clone(), s.shared.web(), &snap, &title, stream).await
    };
    let response = match answer {
        Ok(a) => (
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, a.location),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".to_string()),
            ],
        )
            .into_response(),
        Err(r) => *r,
    };
    count_answer(&s.shared, "play", &response);
    response
}

/// Counts a play or place answer for `/metrics`: its status, and 503s by route.
fn count_answer(shared: &Shared, route: &'static str, response: &Response) {
    let status = response.status();
    if route == "play" {
        shared.metrics.count_play(status.as_u16());
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        shared.metrics.count_unavailable(route);
    }
}

fn random_stream() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap_or_default();
    u64::from_le_bytes(b) >> 1
}

/// A member forwards the decision to the supervisor, so the client sees one redirect.
async fn ask_supervisor(
    agent: ureq::Agent,
    snap_web: Web,
    snap: &Snapshot,
    title: &Title,
    stream: u64,
) -> Result<PlaceAnswer, Refused> {
    let Some(map) = snap.map.as_ref() else {
        return Err(refused(unavailable("the cluster is forming", 1)));
    };
    let Some(http) = map.member(map.supervisor).map(|m| m.addrs.http) else {
        return Err(refused(unavailable("no supervisor is known", 1)));
    };
    let url = snap_web.url(
        http,
        &format!("/v1/place/{}?stream={stream}", title.as_str()),
    );
    tokio::task::spawn_blocking(move || ask_place(&agent, &url))
        .await
        .unwrap_or_else(|_| Err(refused(unavailable("placement failed", 1))))
}

/// Asks another machine's `/v1/place` (blocking); its refusal is passed on
/// with its status and `Retry-After`.
pub(super) fn ask_place(agent: &ureq::Agent, url: &str) -> Result<PlaceAnswer, Refused> {
    match agent.get(url).call() {
        Ok(r) => r
            .into_json::<PlaceAnswer>()
            .map_err(|_| refused(unavailable("the supervisor's answer was not understood", 1))),
        Err(ureq::Error::Status(code, r)) => {
            let retry = r.header("retry-after").map(String::from);
            let body = r.into_string().unwrap_or_default();
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut resp = (status, body).into_response();
            if let Some(v) = retry.and_then(|v| v.parse().ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Err(refused(resp))
        }
        Err(_) => Err(refused(unavailable("the supervisor does not answer", 1))),
    }
}

async fn place(
    State(s): State<Arc<Streaming>>,
    AxPath(title): AxPath<String>,
    Query(q): Query<StreamQuery>,
    client: Option<Extension<ClientIp>>,
) -> Response {
    if let Err(r) = s.admit(client) {
        count_answer(&s.shared, "place", &r);
        return *r;
    }
    if q.within.is_none() && s.shared.role() != Role::Supervisor {
        return refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "this node is not the supervisor",
        );
    }
    let title = match catalog::parse_title(&title) {
        Ok(t) => t,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let stream = q.stream.unwrap_or_else(random_stream);
    let (within, hops) = (q.within, q.hops.unwrap_or(0));
    let s2 = s.clone();
    let response =
        match tokio::task::spawn_blocking(move || s2.place_in_tree(&title, stream, within, hops))
            .await
        {
            Ok(Ok(a)) => Json(a).into_response(),
            Ok(Err(r)) => *r,
            Err(_) => refusal(StatusCode::INTERNAL_SERVER_ERROR, "placement failed"),
        };
    count_answer(&s.shared, "place", &response);
    response
}

async fn titles(State(s): State<Arc<Streaming>>) -> Response {
    match tokio::task::spawn_blocking(move || s.titles()).await {
        Ok((titles, settled)) => Json(TitlesAnswer { titles, settled }).into_response(),
        Err(_) => refusal(StatusCode::INTERNAL_SERVER_ERROR, "listing titles failed"),
    }
}

async fn catalog_of(State(s): State<Arc<Streaming>>, AxPath(disk): AxPath<u32>) -> Response {
    let catalogs = s.catalogs.read().unwrap_or_else(|e| e.into_inner());
    match catalogs.get(&DiskId(disk)) {
        Some(c) => Json(CatalogAnswer {
            digest: c.digest(),
            titles: c.titles.keys().map(|t| t.as_str().to_string()).collect(),
        })
        .into_response(),
        None => refusal(StatusCode::NOT_FOUND, "this node does not reach that disk"),
    }
}
