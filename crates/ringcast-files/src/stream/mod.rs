//! The video file server (DESIGN section 6): `GET` and `HEAD` of the
//! titles on a node's disks over HTTP/1.1, with byte ranges (single and
//! `multipart/byteranges`), `ETag`/`Last-Modified`, `If-None-Match`,
//! `If-Modified-Since`, `If-Match`, `If-Unmodified-Since` and `If-Range`,
//! and a zero-copy data path.
//!
//! A connection whose requests are stream requests is served here on the raw
//! socket ([`serve_connection`]): file bytes go from the file to the socket
//! with `sendfile(2)`, driven by tokio's readiness API, never through a user
//! buffer, so the memory of an active stream is its request head (at most
//! [`MAX_HEAD`] bytes) and a few small headers whatever the file's size.
//! Which file a request names, and whether it may be read at all (stream
//! tokens, traversal, admission), is the [`Resolve`] implementation's
//! business; this module only speaks HTTP and moves bytes.
//!
//! The file is opened once per request and its length and validators are
//! taken from the open descriptor (`fstat`), so the `ETag` and
//! `Content-Length` describe the bytes actually sent even when the file is
//! replaced meanwhile. A file that shrinks under a response ends the
//! connection (the client sees a short body, never wrong bytes).
//!
//! Its parts: `head` parses request heads, `resolve` is the seam to
//! whoever owns the files, `content_type` names the types of video files,
//! `plan` turns a request into a response (preconditions, ranges),
//! `zero_copy` serves a raw connection with `sendfile(2)`, `copy` answers
//! on a connection hyper serves, `counters` keeps the load, and `handover`
//! says what another host needs to continue a response whose process died.

mod config;
mod content_type;
mod copy;
mod counters;
mod handover;
mod head;
mod plan;
mod resolve;
mod zero_copy;

pub use config::{Closing, StreamConfig, StreamContext};
pub use content_type::content_type_for;
pub use copy::{respond_via_hyper, COPY_CHUNK};
pub use counters::{DiskStreams, StreamCounters, StreamsSnapshot};
pub use handover::{Handover, HandoverHook, InFlight, Resume};
pub use head::{HeadError, RequestHead, MAX_HEADERS};
pub use resolve::{Refusal, Resolve, Resolved};
pub use zero_copy::{resume_connection, serve_connection, Outcome, SENDFILE_CHUNK};

pub use crate::limits::MAX_HEAD;

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod handover_tests;
