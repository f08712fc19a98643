//! Draining a node (`POST /v1/drain`, `POST /v1/undrain`, `GET /v1/drain`):
//! taking it out of service with no gap for any player.
//!
//! A draining node announces a capacity of no stream (claim 4), so the
//! supervisor places nothing new on it, and by the service address rule
//! (`ringcast_proto::service`) its own address goes to the next node that
//! serves, as on a failure: players' next connections reach that node,
//! which reads the same titles from its replicas. On one host the next
//! holder listens beside the drained node before it stops listening
//! (`host/addresses/holder.rs`); on a LAN the connections in flight are
//! taken over, as on a failure. Meanwhile the drained node finishes every
//! response it is sending and closes each connection after its response,
//! so a player's next request reconnects to the address's new holder. It
//! is empty once the tables announce its zero capacity and it sends no
//! file. Nothing is declared failed: the node stays on the ring, and may
//! supervise.

use std::sync::Arc;

use axum::extract::{Path as AxPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ringcast_proto::{Capacity, LocalEvent, NodeId};
use serde::Serialize;

use super::admin::{forward, Admin};
use crate::host::shared::Shared;

/// The drain routes.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/drain", get(state).post(drain))
        .route("/v1/undrain", post(undrain))
        .route("/v1/nodes/{id}/drain", post(drain_node))
        .route("/v1/nodes/{id}/undrain", post(undrain_node))
        .with_state(shared)
}

/// `GET /v1/drain`: where a drain stands.
#[derive(Debug, Serialize)]
pub struct DrainState {
    /// The node.
    pub node: u32,
    /// Whether it drains.
    pub draining: bool,
    /// Whether the supervisor's tables, as this node last heard them, show
    /// the capacity it announces (no stream while it drains).
    pub announced: bool,
    /// File responses it is sending now.
    pub active_streams: u64,
    /// Draining, announced and sending nothing: it may be stopped.
    pub empty: bool,
}

/// The capacity the node announces: none while it drains, else its own.
fn announced_capacity(shared: &Shared) -> Capacity {
    let own = shared
        .running
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .proto
        .capacity;
    if shared.draining.is_set() {
        Capacity {
            max_streams: 0,
            ..own
        }
    } else {
        own
    }
}

fn drain_state(shared: &Shared) -> DrainState {
    let capacity = announced_capacity(shared);
    let announced = shared
        .snapshot()
        .tables
        .as_ref()
        .and_then(|t| t.usage(shared.node).map(|u| u.capacity == capacity))
        .unwrap_or(false);
    let active_streams = shared
        .streams
        .get()
        .map_or(0, |c| c.snapshot().active_streams);
    let draining = shared.draining.is_set();
    DrainState {
        node: shared.node.0,
        draining,
        announced,
        active_streams,
        empty: draining && announced && active_streams == 0,
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Json<DrainState> {
    Json(drain_state(&shared))
}

async fn drain(State(shared): State<Arc<Shared>>, _: Admin) -> Response {
    set(&shared, true).await
}

async fn undrain(State(shared): State<Arc<Shared>>, _: Admin) -> Response {
    set(&shared, false).await
}

/// Drains or undrains this node; the admin token was checked.
async fn set(shared: &Shared, draining: bool) -> Response {
    if shared.draining.is_set() != draining {
        shared.draining.set(draining);
        shared.publish_local(
            if draining { "draining" } else { "undrained" },
            Some(shared.node),
            if draining {
                "drains: takes no new stream and hands its address on".to_string()
            } else {
                "serves again".to_string()
            },
        );
    }
    let capacity = announced_capacity(shared);
    if shared
        .control
        .send(LocalEvent::Capacity(capacity))
        .await
        .is_err()
    {
        return (StatusCode::GONE, "the node has already stopped\n").into_response();
    }
    let said = if draining {
        "draining\n"
    } else {
        "serving again\n"
    };
    (StatusCode::ACCEPTED, said).into_response()
}

/// `POST /v1/nodes/{id}/drain` and `/undrain`: the dashboard's actions,
/// asked of any node and passed on to node `id`.
async fn drain_node(
    State(shared): State<Arc<Shared>>,
    AxPath(id): AxPath<u32>,
    Admin(token): Admin,
) -> Response {
    on_node(&shared, id, token, true).await
}

async fn undrain_node(
    State(shared): State<Arc<Shared>>,
    AxPath(id): AxPath<u32>,
    Admin(token): Admin,
) -> Response {
    on_node(&shared, id, token, false).await
}

/// Drains or undrains node `id`: this one, or another through its API
/// with the operator's `token` (already checked here).
async fn on_node(shared: &Shared, id: u32, token: String, draining: bool) -> Response {
    if NodeId(id) == shared.node {
        return set(shared, draining).await;
    }
    let path = if draining { "/v1/drain" } else { "/v1/undrain" };
    forward(shared, NodeId(id), token, path).await
}
