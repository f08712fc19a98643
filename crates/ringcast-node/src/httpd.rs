//! The node's single HTTP listener (DESIGN section 6, issue 4 item 4): the
//! stream data path and the API share one port.
//!
//! Each connection starts on the zero-copy stream server
//! ([`crate::stream::serve_connection`]), which reads the first request
//! head. A connection whose requests are stream requests (their path starts
//! with the stream prefix, `/v1/streams/`) stays there for as long as it
//! carries stream requests. At the first request that is not a stream
//! request, the connection is handed over, with the bytes already read
//! replayed first ([`Rewind`]), to hyper's HTTP/1 server running the API's
//! axum router, which keeps it (keep-alive, upgrades and long-lived
//! responses such as the event stream work as hyper does them). A stream
//! request that arrives later on such a connection, as a player following
//! a redirect on a reused connection does, is still answered, through
//! hyper, by [`crate::stream::respond_via_hyper`]: same statuses and
//! headers, file data copied in bounded chunks instead of `sendfile(2)`.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Service;

use crate::stream::{
    self, Outcome, RequestHead, Resolve, StreamConfig, StreamContext, StreamCounters,
};

/// The most connections served at once by default; a connection accepted
/// over the limit is closed at once.
pub const MAX_CONNECTIONS: usize = 4096;

/// How the listener serves its connections.
#[derive(Clone, Debug)]
pub struct HttpdConfig {
    /// The stream server's settings; its `prefix` says which paths are
    /// stream requests.
    pub stream: StreamConfig,
    /// The most connections served at once.
    pub max_connections: usize,
    /// hyper's limit on the time to receive a request head on an API
    /// connection (including the wait for the next request).
    pub api_header_timeout: Duration,
}

impl HttpdConfig {
    /// The defaults, with stream requests being the paths under `prefix`.
    pub fn new(prefix: &str) -> HttpdConfig {
        HttpdConfig {
            stream: StreamConfig {
                prefix: Some(prefix.to_string()),
                ..StreamConfig::default()
            },
            max_connections: MAX_CONNECTIONS,
            api_header_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves the node's HTTP port: stream requests (paths under `prefix`, such
/// as `/v1/streams/`) through `streams` with the zero-copy server, counted
/// in `counters`, and every other request through the `api` router. Runs
/// until the task is dropped; an accept error is logged and retried after a
/// short pause.
pub async fn serve(
    listener: TcpListener,
    api: Router,
    streams: Arc<dyn Resolve>,
    counters: Arc<StreamCounters>,
    prefix: &'static str,
) {
    serve_with(listener, api, streams, counters, HttpdConfig::new(prefix)).await
}

/// [`serve`] with explicit settings.
pub async fn serve_with(
    listener: TcpListener,
    api: Router,
    streams: Arc<dyn Resolve>,
    counters: Arc<StreamCounters>,
    config: HttpdConfig,
) {
    let ctx = Arc::new(StreamContext {
        resolver: streams,
        counters,
        config: config.stream,
    });
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let header_timeout = config.api_header_timeout;
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE, ENOBUFS, ECONNABORTED...: never give up the port.
                tracing::warn!("accepting an HTTP connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::debug!("too many HTTP connections: closing the one from {peer}");
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let (api, ctx) = (api.clone(), ctx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            connection(sock, api, ctx, header_timeout).await;
        });
    }
}

async fn connection(
    sock: TcpStream,
    api: Router,
    ctx: Arc<StreamContext>,
    header_timeout: Duration,
) {
    let (sock, buffered) = match stream::serve_connection(sock, Vec::new(), &ctx).await {
        Outcome::Closed => return,
        Outcome::Handoff { stream, buffered } => (stream, buffered),
    };
    let prefix = ctx.config.prefix.clone().unwrap_or_default();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut api = api.clone();
        let ctx = ctx.clone();
        let is_stream = !prefix.is_empty() && req.uri().path().starts_with(prefix.as_str());
        async move {
            if is_stream {
                let (parts, _body) = req.into_parts();
                let head = RequestHead::from_parts(&parts);
                Ok::<Response<Body>, Infallible>(stream::respond_via_hyper(&head, &ctx).await)
            } else {
                api.call(req).await
            }
        }
    });
    let io = TokioIo::new(Rewind::new(buffered, sock));
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!("HTTP API connection ended: {e}");
    }
}

/// A byte stream with some bytes put back in front: reads return `prefix`
/// first, then the inner stream's bytes; writes go to the inner stream. Used
/// to hand a connection whose first request head was already read to
/// another HTTP server.
#[derive(Debug)]
pub struct Rewind<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Rewind<T> {
    /// `inner`, with `prefix` to be read before its own bytes.
    pub fn new(prefix: Vec<u8>, inner: T) -> Rewind<T> {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The inner stream and the bytes of the prefix not read yet.
    pub fn into_inner(mut self) -> (T, Vec<u8>) {
        self.prefix.drain(..self.pos);
        (self.inner, self.prefix)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
