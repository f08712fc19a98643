//! What a stream request serves, as the caller of the server decides it: a
//! file, small generated content, or a refusal. This is the one seam
//! between the file server and whoever owns the files (the node's
//! placement, stream tokens and catalog implement [`Resolve`]).

use std::borrow::Cow;
use std::path::PathBuf;

use super::head::RequestHead;

/// Maps a stream request to what it serves; implemented by the node (stream
/// tokens, the catalog, traversal checks, admission). Called once per
/// request, on one of tokio's blocking threads under the disk timeout
/// (`StreamConfig::disk_timeout`), never on an async worker: it may
/// read the disk, and a disk may hang. An implementation bounds how many
/// requests wait on one disk.
pub trait Resolve: Send + Sync + 'static {
    /// What `req` names, or why it is refused.
    fn resolve(&self, req: &RequestHead) -> Result<Resolved, Refusal>;
}

/// What a stream request serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A file on one of the node's disks, sent with `sendfile(2)`.
    File {
        /// Where it is; it is opened once for this request.
        path: PathBuf,
        /// Its `Content-Type` (see [`content_type_for`]).
        content_type: Cow<'static, str>,
        /// The disk it is on, for the per-disk load counters.
        disk: u32,
    },
    /// Small generated content, such as a rewritten HLS playlist.
    Bytes {
        /// The content.
        body: Vec<u8>,
        /// Its `Content-Type`.
        content_type: Cow<'static, str>,
        /// Its entity tag, e.g. `"v3"` or `W/"v3"` (quotes are added when
        /// missing).
        etag: String,
    },
}

/// Why a stream request is not served: its status, a one-line message for
/// the body, and extra header fields (for example `Retry-After` with a 503).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status code, such as 400, 403, 404 or 503.
    pub status: u16,
    /// A short explanation, sent as the `text/plain` body.
    pub message: String,
    /// Header fields added to the answer; fields whose name or value is not
    /// valid HTTP are dropped.
    pub extra_headers: Vec<(String, String)>,
}

impl Refusal {
    /// A refusal with no extra header field.
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            extra_headers: Vec::new(),
        }
    }

    /// Adds a header field to the answer.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Refusal {
        self.extra_headers.push((name.into(), value.into()));
        self
    }
}
