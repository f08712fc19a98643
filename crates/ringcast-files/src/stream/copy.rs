//! The copying path: a stream request on a connection served by hyper.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use axum::body::{Body as HttpBody, Bytes};
use axum::http::{self, HeaderName, HeaderValue};

use super::config::StreamContext;
use super::counters::{ActiveStream, StreamCounters};
use super::head::RequestHead;
use super::plan::{plan, Segment, Source};

/// The size of the chunks the copying path (a stream request that arrives
/// on a connection already handed to the API server) reads a file in.
pub const COPY_CHUNK: usize = 64 * 1024;

/// Answers a stream request that arrived on a connection already served by
/// the API's HTTP server (hyper), where the socket cannot be reached: same
/// statuses and headers as the zero-copy path, file data read in chunks of
/// [`COPY_CHUNK`] bytes on the blocking threads (memory stays bounded; the
/// bytes are counted in [`StreamsSnapshot::copied_bytes`]). hyper adds the
/// `Date` and `Connection` fields.
pub async fn respond_via_hyper(
    head: &RequestHead,
    ctx: &Arc<StreamContext>,
) -> http::Response<HttpBody> {
    let plan = plan(head, ctx).await;
    let mut builder = http::Response::builder()
        .status(
            http::StatusCode::from_u16(plan.status)
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .header(http::header::SERVER, "ringcast");
    for (name, value) in &plan.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(n, v);
        }
    }
    if let Some(len) = plan.length {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
    }
    if plan.close {
        builder = builder.header(http::header::CONNECTION, "close");
    }
    let body = if plan.segments.is_empty() {
        HttpBody::empty()
    } else {
        let active = match &plan.source {
            Source::File { disk, .. } => Some(ActiveStream::new(&ctx.counters, disk)),
            _ => None,
        };
        let state = CopyState {
            source: plan.source,
            segments: plan.segments.into(),
            counters: ctx.counters.clone(),
            _active: active,
        };
        HttpBody::from_stream(futures_util::stream::unfold(state, CopyState::next))
    };
    builder.body(body).unwrap_or_else(|_| {
        let mut r = http::Response::new(HttpBody::empty());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

struct CopyState {
    source: Source,
    segments: VecDeque<Segment>,
    counters: Arc<StreamCounters>,
    _active: Option<ActiveStream>,
}

impl CopyState {
    async fn next(mut self) -> Option<(io::Result<Bytes>, CopyState)> {
        let segment = self.segments.pop_front()?;
        let chunk = match (segment, &self.source) {
            (Segment::Lit(s), _) => Ok(Bytes::from(s)),
            (Segment::Data(r), Source::Memory(data)) => {
                self.counters.sent(None, r.end - r.start, false);
                Ok(Bytes::copy_from_slice(
                    &data[r.start as usize..r.end as usize],
                ))
            }
            (Segment::Data(r), Source::File { file, disk, .. }) => {
                let n = (r.end - r.start).min(COPY_CHUNK as u64);
                if r.start + n < r.end {
                    self.segments.push_front(Segment::Data(r.start + n..r.end));
                }
                let f = file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut v = vec![0u8; n as usize];
                    f.read_exact_at(&mut v, r.start).map(|()| Bytes::from(v))
                })
                .await
                .map_err(io::Error::other)
                .and_then(|r| r);
                if read.is_ok() {
                    self.counters.sent(Some(disk), n, false);
                } else {
                    self.segments.clear();
                }
                read
            }
            (Segment::Data(_), Source::Literal) => Ok(Bytes::new()),
        };
        Some((chunk, self))
    }
}
