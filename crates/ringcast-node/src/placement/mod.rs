//! Placement (DESIGN section 6, claim 13 at the node): where each stream
//! is served, and the stream tokens that let a node serve it.
//!
//! - `service`: [`Streaming`], the placement service: each disk's library
//!   as this node scanned it, play and place requests (decided by the
//!   supervisor, within capacity), the signed redirect to the serving node,
//!   the load this node reports, and the reassignment of streams when a
//!   node or disk fails.
//! - `addresses`: claim 13, `GET /v1/addresses`: the cluster's service
//!   addresses and who holds each.
//! - `tree`: claim 5, placement down a tree of clusters, one machine per
//!   level.
//! - `admission`: placements per client address, which each reserve
//!   capacity (`SECURITY.md`).
//! - `tokens`: the stream tokens at the serving node (signing keys, a key
//!   rotation) and the resolver the file server asks for each stream
//!   request.

mod addresses;
mod admission;
mod service;
mod tokens;
mod tree;

pub use addresses::{routes as address_routes, AddressEntry, AddressesAnswer};
pub use service::{
    CatalogAnswer, PlaceAnswer, StreamQuery, Streaming, TitleEntry, TitlesAnswer, MAX_PLAYLIST,
    STREAM_PREFIX, TOKEN_LIFETIME,
};
pub use tree::{MAX_HOPS, TREE_BOOK_LIMIT};
