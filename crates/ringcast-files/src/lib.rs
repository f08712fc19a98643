//! The ringcast file server: HTTP/1.1 for video files, usable and testable
//! without a cluster.
//!
//! - [`httpd`]: the one listener of a node; stream requests stay on the
//!   zero-copy server, every other request goes to an axum router.
//! - [`stream`]: the stream server itself: request heads, content types,
//!   conditional requests and byte ranges, `sendfile(2)` on the raw socket,
//!   a copying path through hyper, and the load counters.
//! - [`range`]: the `Range` header (RFC 9110 section 14).
//! - [`guard`], [`limits`], [`buckets`]: the limits against hostile clients
//!   (connections, request rates, head size and time) and the token buckets
//!   they count with.
//!
//! What a request may read is not decided here: the caller implements
//! [`stream::Resolve`] (a node checks its stream tokens, its catalog and its
//! admission there) and passes it in with the load counters.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod buckets;
pub mod guard;
pub mod httpd;
pub mod limits;
pub mod range;
pub mod stream;
