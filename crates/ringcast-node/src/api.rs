//! The node's HTTP API: the cluster as this node sees it, Prometheus metrics,
//! the event stream, and a guarded leave (claims 4 and 19).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use ringcast_proto::message::MessageKind;
use ringcast_proto::{LocalEvent, MemberStatus, NodeId, Role};
use serde::Serialize;
use tokio_stream::wrappers::BroadcastStream;

use crate::runtime::{Shared, Snapshot};

/// The routes of a node's HTTP API.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/cluster", get(cluster))
        .route("/v1/events", get(events))
        .route("/v1/leave", post(leave))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared)
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
}

/// The name of a role, as the API and metrics show it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Listening => "listening",
        Role::Member => "member",
        Role::Supervisor => "supervisor",
        Role::Left => "left",
    }
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
    }
}

async fn cluster(State(shared): State<Arc<Shared>>) -> Json<ClusterView> {
    let snap = shared.snapshot();
    Json(cluster_view(&shared, &snap))
}

async fn leave(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(expected) = shared.admin_token.as_deref() else {
        return (
            StatusCode::FORBIDDEN,
            "no admin token is configured for this cluster\n",
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid admin token is required (Authorization: Bearer ...)\n",
        )
            .into_response();
    }
    match shared.control.send(LocalEvent::Leave).await {
        Ok(()) => (StatusCode::ACCEPTED, "leaving\n").into_response(),
        Err(_) => (StatusCode::GONE, "the node has already stopped\n").into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let live = BroadcastStream::new(shared.events.subscribe()).filter_map(|e| async { e.ok() });
    let recent = stream::iter(shared.recent_events());
    let all = recent.chain(live).map(|e| {
        let data = serde_json::to_string(&e).unwrap_or_default();
        Ok(SseEvent::default().event(e.kind).data(data))
    });
    Sse::new(all).keep_alive(KeepAlive::default())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let snap = shared.snapshot();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&shared, &snap),
    )
}

/// The Prometheus text exposition of a node's counters.
pub fn render_metrics(shared: &Shared, snap: &Snapshot) -> String {
    let mut out = String::new();
    let s = &snap.stats;
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "ringcast_messages_sent_total",
        "counter",
        "Datagrams sent, by message kind.",
    );
    for kind in MessageKind::ALL {
        let t = s.sent.get(&kind).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "ringcast_messages_sent_total{{kind=\"{}\"}} {}",
            kind.name(),
            t.datagrams
        );
    }
    family(
        &mut out,
        "ringcast_message_bytes_sent_total",
        "counter",
        "Bytes sent, by message kind.",
    );
    for kind in MessageKind::ALL {
        let t = s.sent.get(&kind).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "ringcast_message_bytes_sent_total{{kind=\"{}\"}} {}",
            kind.name(),
            t.bytes
        );
    }
    family(
        &mut out,
        "ringcast_messages_received_total",
        "counter",
        "Messages received and accepted, by kind.",
    );
    for kind in MessageKind::ALL {
        let t = s.received.get(&kind).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "ringcast_messages_received_total{{kind=\"{}\"}} {}",
            kind.name(),
            t.datagrams
        );
    }
    family(
        &mut out,
        "ringcast_frames_rejected_total",
        "counter",
        "Datagrams refused, by reason.",
    );
    let mut rejected = s.rejected.clone();
    // Issue 7: datagrams dropped unread by the per-sender limits.
    rejected.insert(
        "rate_limited",
        shared.io.rate_limited.load(Ordering::Relaxed),
    );
    for (reason, n) in &rejected {
        let _ = writeln!(
            out,
            "ringcast_frames_rejected_total{{reason=\"{reason}\"}} {n}"
        );
    }
    family(
        &mut out,
        "ringcast_supervisor_changes_total",
        "counter",
        "Times the supervisor this node follows changed.",
    );
    let _ = writeln!(
        out,
        "ringcast_supervisor_changes_total {}",
        s.supervisor_changes
    );
    family(
        &mut out,
        "ringcast_failure_declarations_total",
        "counter",
        "Failure declarations this node made.",
    );
    let _ = writeln!(
        out,
        "ringcast_failure_declarations_total {}",
        s.failure_declarations
    );
    family(
        &mut out,
        "ringcast_clock_slips_total",
        "counter",
        "Times this node's timers ran late.",
    );
    let _ = writeln!(out, "ringcast_clock_slips_total {}", s.clock_slips);
    family(
        &mut out,
        "ringcast_send_errors_total",
        "counter",
        "Datagrams the socket refused to send.",
    );
    let _ = writeln!(
        out,
        "ringcast_send_errors_total {}",
        shared.io.send_errors.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "ringcast_role",
        "gauge",
        "1 for the role this node plays now.",
    );
    for role in [Role::Listening, Role::Member, Role::Supervisor, Role::Left] {
        let v = u8::from(role == snap.role);
        let _ = writeln!(out, "ringcast_role{{role=\"{}\"}} {v}", role_name(role));
    }
    family(
        &mut out,
        "ringcast_epoch",
        "gauge",
        "Epoch of the supervisor this node follows.",
    );
    let _ = writeln!(
        out,
        "ringcast_epoch {}",
        snap.map.as_ref().map_or(0, |m| m.epoch.0)
    );
    if let Some(streams) = shared.streams.get() {
        let st = streams.snapshot();
        let gauges = [
            (
                "ringcast_streams_active",
                "gauge",
                "Streams whose body is being sent now.",
                st.active_streams,
            ),
            (
                "ringcast_stream_requests_total",
                "counter",
                "Stream requests answered.",
                st.requests,
            ),
            (
                "ringcast_stream_bytes_sent_total",
                "counter",
                "Body bytes of streams sent.",
                st.bytes_sent,
            ),
            (
                "ringcast_sendfile_bytes_total",
                "counter",
                "File bytes sent with sendfile (zero-copy).",
                st.sendfile_bytes,
            ),
        ];
        for (name, kind, help, value) in gauges {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    if let Some(guard) = shared.http.get() {
        family(
            &mut out,
            "ringcast_http_refused_total",
            "counter",
            "HTTP connections and requests refused, by reason.",
        );
        for (reason, n) in guard.refusals() {
            let _ = writeln!(
                out,
                "ringcast_http_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        family(
            &mut out,
            "ringcast_http_connections",
            "gauge",
            "HTTP connections open now.",
        );
        let _ = writeln!(
            out,
            "ringcast_http_connections {}",
            guard.open_connections()
        );
    }
    family(
        &mut out,
        "ringcast_config_version",
        "gauge",
        "The configuration version this node runs.",
    );
    let _ = writeln!(out, "ringcast_config_version {}", snap.config_version);
    family(
        &mut out,
        "ringcast_cluster_key",
        "gauge",
        "1 for each cluster key the node accepts; use=\"seal\" for the one it seals with.",
    );
    for (i, key) in snap.keys.iter().enumerate() {
        let usage = if i == 0 { "seal" } else { "accept" };
        let _ = writeln!(
            out,
            "ringcast_cluster_key{{id=\"{}\",use=\"{usage}\"}} 1",
            key.0
        );
    }
    family(
        &mut out,
        "ringcast_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP or a newer version seen), by result.",
    );
    for (result, n) in [
        ("applied", &shared.reloads.applied),
        ("unchanged", &shared.reloads.unchanged),
        ("failed", &shared.reloads.failed),
    ] {
        let _ = writeln!(
            out,
            "ringcast_config_reloads_total{{result=\"{result}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    family(
        &mut out,
        "ringcast_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
    );
    let _ = writeln!(
        out,
        "ringcast_uptime_seconds {:.3}",
        shared.started.elapsed().as_secs_f64()
    );
    out
}
