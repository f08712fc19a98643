//! Claim 13: `GET /v1/addresses`: the cluster's service addresses, who
//! holds each under this node's map, and which this node has bound.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ringcast_proto::service::{self, Address};
use ringcast_proto::NodeId;
use serde::Serialize;

use super::service::Streaming;

/// One service address as `GET /v1/addresses` lists it.
#[derive(Debug, Serialize)]
pub struct AddressEntry {
    /// Whose it is: a node's id, or `null` for the cluster address.
    pub owner: Option<NodeId>,
    /// The address players use.
    pub address: SocketAddr,
    /// The node that holds it under this node's map (`null`: none can).
    pub holder: Option<NodeId>,
    /// Whether this node has it bound and serves it now.
    pub bound_here: bool,
}

/// `GET /v1/addresses`.
#[derive(Debug, Serialize)]
pub struct AddressesAnswer {
    /// The node answering.
    pub node: NodeId,
    /// Every service address of the cluster.
    pub addresses: Vec<AddressEntry>,
}

async fn addresses(State(s): State<Arc<Streaming>>) -> Response {
    Json(s.addresses_answer()).into_response()
}

/// The route of `GET /v1/addresses`.
pub fn routes(s: &Arc<Streaming>) -> axum::Router {
    axum::Router::new()
        .route("/v1/addresses", axum::routing::get(addresses))
        .with_state(s.clone())
}

impl Streaming {
    /// Every service address with its holder under this node's map.
    pub fn addresses_answer(&self) -> AddressesAnswer {
        let bound = self.holdings.held();
        let snap = self
            .shared
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let addresses = self
            .service
            .all()
            .map(|(a, socket)| AddressEntry {
                owner: match a {
                    Address::Node(n) => Some(n),
                    Address::Cluster => None,
                },
                address: socket,
                holder: snap
                    .map
                    .as_ref()
                    .and_then(|m| service::holder(m, snap.tables.as_ref(), &self.priority, a)),
                bound_here: bound.contains_key(&a),
            })
            .collect();
        AddressesAnswer {
            node: self.me,
            addresses,
        }
    }
}
