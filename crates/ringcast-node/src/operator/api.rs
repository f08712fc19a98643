//! The node's HTTP API: the cluster as this node sees it, Prometheus metrics,
//! the event stream, and a guarded leave (claims 4 and 19); and the
//! dashboard's overview, which follows the supervisor.
//!
//! Read-only routes that the dashboard of another node of the cluster reads
//! (`/v1/cluster`, `/v1/events`) allow that node's origin by CORS, and no
//! other origin.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as AxPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use ringcast_proto::{LocalEvent, MemberStatus, NodeId, Role};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;

use super::admin::{forward, Admin};
use super::metrics::role_name;
use super::overview::{ClusterEntry, Overview};
use crate::host::shared::{Shared, Snapshot};

/// The routes of a node's HTTP API.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/cluster", get(cluster))
        .route("/v1/events", get(events))
        .route("/v1/leave", post(leave))
        .route("/v1/config", get(running_config))
        .route("/v1/overview", get(overview))
        .route("/v1/nodes/{id}/leave", post(leave_node))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared.clone())
        .merge(super::drain::routes(shared.clone()))
        .merge(super::dashboard::routes(shared))
}

/// One node in `GET /v1/cluster`.
#[derive(Debug, Serialize)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// `up`, `failed` or `left`.
    pub status: &'static str,
    /// `supervisor` or `member`.
    pub role: &'static str,
    /// Its life.
    pub incarnation: u64,
    /// Ring address.
    pub ring: String,
    /// HTTP address.
    pub http: String,
}

/// `GET /v1/cluster`: the node's view of the cluster (claim 4's tables).
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// The cluster's name.
    pub cluster: String,
    /// The answering node.
    pub node: NodeId,
    /// Its role: `listening`, `member`, `supervisor` or `left`.
    pub node_role: &'static str,
    /// The supervisor this node follows.
    pub supervisor: Option<NodeId>,
    /// The supervisor's epoch.
    pub epoch: u64,
    /// Version of the map within the epoch.
    pub map_version: u64,
    /// Every node of the cluster map.
    pub nodes: Vec<NodeView>,
    /// Ring order.
    pub ring: Vec<NodeId>,
    /// This node's ring neighbours.
    pub upstream: Option<NodeId>,
    /// This node's ring neighbours.
    pub downstream: Option<NodeId>,
    /// Servers the cluster talks to.
    pub servers: Vec<String>,
    /// Claim 4: topology, node usage and disk usage.
    pub tables: Option<ringcast_proto::Tables>,
    /// Claim 5: the cluster's id.
    pub cluster_id: u32,
    /// The configuration version the node runs.
    pub config_version: u32,
    /// The ids of the cluster keys the node accepts, the one it
    /// seals with first (never the keys themselves).
    pub keys: Vec<ringcast_proto::KeyId>,
    /// Claim 5: the seats this machine holds in its ancestor clusters, each
    /// as that cluster's view, nearest parent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seats: Vec<ClusterView>,
    /// Claim 5: whether the members of this cluster are sub-clusters (this
    /// is the view of a seat's cluster) rather than machines.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub members_are_clusters: bool,
}

fn status_name(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::Up => "up",
        MemberStatus::Failed => "failed",
        MemberStatus::Left => "left",
    }
}

/// Builds the cluster view from a snapshot.
pub fn cluster_view(shared: &Shared, snap: &Snapshot) -> ClusterView {
    let map = snap.map.as_ref();
    ClusterView {
        cluster: shared.cluster_name.clone(),
        node: shared.node,
        node_role: role_name(snap.role),
        supervisor: map.map(|m| m.supervisor),
        epoch: map.map_or(0, |m| m.epoch.0),
        map_version: map.map_or(0, |m| m.version),
        nodes: map
            .map(|m| {
                m.members
                    .iter()
                    .map(|e| NodeView {
                        id: e.id,
                        status: status_name(e.status),
                        role: if e.id == m.supervisor {
                            "supervisor"
                        } else {
                            "member"
                        },
                        incarnation: e.incarnation.0,
                        ring: e.addrs.ring.to_string(),
                        http: e.addrs.http.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ring: map.map(|m| m.ring.clone()).unwrap_or_default(),
        upstream: snap.upstream,
        downstream: snap.downstream,
        servers: map
            .map(|m| m.servers.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        tables: snap.tables.clone(),
        cluster_id: shared.cluster_id,
        config_version: snap.config_version,
        keys: snap.keys.clone(),
        seats: shared
            .held_seats()
            .iter()
            .map(|seat| ClusterView {
                members_are_clusters: true,
                ..cluster_view(seat, &seat.snapshot())
            })
            .collect(),
        members_are_clusters: false,
    }
}

async fn cluster(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let snap = shared.snapshot();
    with_cors(
        &shared,
        &headers,
        Json(cluster_view(&shared, &snap)).into_response(),
    )
}

/// Adds `Access-Control-Allow-Origin` when the request comes from a page
/// served by a node of this cluster (its `Origin` is a member's HTTP
/// address), so one node's dashboard can read another's read-only routes.
fn with_cors(shared: &Shared, headers: &HeaderMap, mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return response;
    };
    if super::dashboard::cluster_origins(shared)
        .iter()
        .any(|o| o == origin)
    {
        if let Ok(v) = HeaderValue::from_str(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
    }
    response
}

fn own_overview(shared: &Shared, snap: &Snapshot) -> Overview {
    let view = cluster_view(shared, snap);
    let entry = ClusterEntry {
        id: shared.cluster_id,
        name: shared.cluster_name.clone(),
        parent: None,
        view_of: shared.node,
        supervisor_view: snap.role == Role::Supervisor,
        view: serde_json::to_value(&view).unwrap_or_default(),
    };
    Overview {
        answered_by: shared.node,
        answered_by_http: shared.http.to_string(),
        clusters: vec![entry],
    }
}

/// The supervisor's HTTP address, when this node follows another node.
fn supervisor_http(shared: &Shared, snap: &Snapshot) -> Option<String> {
    let map = snap.map.as_ref()?;
    if snap.role == Role::Supervisor || map.supervisor == shared.node {
        return None;
    }
    map.member(map.supervisor)
        .filter(|m| m.status == MemberStatus::Up)
        .map(|m| m.addrs.http.to_string())
}

async fn overview(State(shared): State<Arc<Shared>>) -> Json<Overview> {
    let snap = shared.snapshot();
    let mut answer = own_overview(&shared, &snap);
    if shared.in_tree() {
        let own = serde_json::to_value(cluster_view(&shared, &snap)).unwrap_or_default();
        let web = shared.web();
        let walked = tokio::task::spawn_blocking(move || super::overview::walk(&web, own))
            .await
            .unwrap_or_default();
        if !walked.is_empty() {
            answer.clusters = walked;
        }
        return Json(answer);
    }
    if let Some(http) = supervisor_http(&shared, &snap) {
        let web = shared.web();
        let url = web.url(&http, "/v1/cluster");
        let fetched = tokio::task::spawn_blocking(move || {
            web.agent(Duration::from_secs(1))
                .get(&url)
                .call()
                .ok()
                .and_then(|r| r.into_json::<serde_json::Value>().ok())
        })
        .await
        .ok()
        .flatten();
        if let Some(view) = fetched.filter(|v| v["node_role"] == "supervisor") {
            let entry = &mut answer.clusters[0];
            entry.view_of = NodeId(view["node"].as_u64().unwrap_or(0) as u32);
            entry.supervisor_view = true;
            entry.view = view;
        }
    }
    Json(answer)
}

/// `GET /v1/config`: what the node runs with, without its keys and admin
/// token (`ringcast config check --against-running`); needs the admin token.
async fn running_config(State(shared): State<Arc<Shared>>, _: Admin) -> Response {
    let running = shared
        .running
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut response = Json(running).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn leave(State(shared): State<Arc<Shared>>, _: Admin) -> Response {
    leave_now(&shared).await
}

async fn leave_now(shared: &Shared) -> Response {
    match shared.control.send(LocalEvent::Leave).await {
        Ok(()) => (StatusCode::ACCEPTED, "leaving\n").into_response(),
        Err(_) => (StatusCode::GONE, "the node has already stopped\n").into_response(),
    }
}

/// `POST /v1/nodes/{id}/leave`: makes node `id` leave, from any node (the
/// dashboard's admin action). The admin token is checked here and passed on
/// to that node's `POST /v1/leave`, which checks it again; it is not stored.
async fn leave_node(
    State(shared): State<Arc<Shared>>,
    AxPath(id): AxPath<u32>,
    Admin(token): Admin,
) -> Response {
    if NodeId(id) == shared.node {
        return leave_now(&shared).await;
    }
    forward(&shared, NodeId(id), token, "/v1/leave").await
}

/// The query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// With `view=1`, the stream also carries `event: view` messages: this
    /// node's overview (as `GET /v1/overview` without following), sent at
    /// once and whenever its map or tables change, at most twice a second.
    #[serde(default)]
    pub view: Option<u8>,
}

/// How often the event stream checks for a changed view.
const VIEW_CHECK: Duration = Duration::from_millis(500);

async fn events(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let live = BroadcastStream::new(shared.events.subscribe()).filter_map(|e| async { e.ok() });
    let recent = stream::iter(shared.recent_events());
    let all = recent.chain(live).map(|e| {
        let data = serde_json::to_string(&e).unwrap_or_default();
        Ok::<_, Infallible>(SseEvent::default().event(e.kind).data(data))
    });
    let sse = if q.view == Some(1) {
        let views = view_changes(shared.clone());
        Sse::new(stream::select(all, views).boxed())
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        Sse::new(all)
            .keep_alive(KeepAlive::default())
            .into_response()
    };
    with_cors(&shared, &headers, sse)
}

/// `event: view` messages whenever this node's map or tables change.
fn view_changes(shared: Arc<Shared>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(VIEW_CHECK));
    let mut last: Option<(
        Option<ringcast_proto::ClusterMap>,
        Option<ringcast_proto::Tables>,
    )> = None;
    ticks.filter_map(move |_| {
        let snap = shared.snapshot();
        let key = (snap.map.clone(), snap.tables.clone());
        let changed = last.as_ref() != Some(&key);
        last = Some(key);
        let event = changed.then(|| {
            let data = serde_json::to_string(&own_overview(&shared, &snap)).unwrap_or_default();
            Ok(SseEvent::default().event("view").data(data))
        });
        async move { event }
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let snap = shared.snapshot();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::render(&shared, &snap),
    )
}
