//! The single HTTP listener of a node (DESIGN section 6): the stream data
//! path and the API share one port.
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
//!
//! Both servers enforce the same limits against hostile clients
//! ([`HttpLimits`], shared state in [`Guard`]): connections in all and per
//! client address (over either, a new connection is closed at once), the
//! request rate per client address (`429` with `Retry-After`), the request
//! head's size (`431`) and the time to receive it, fixed when it starts so
//! that trickling bytes does not extend it (slowloris). On the stream server
//! a keep-alive connection may wait [`StreamConfig::idle_timeout`] for its
//! next request; hyper starts its header timeout when it starts waiting for
//! a request, so on a connection it serves the idle wait is the head timeout.

use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
use tower::Service;

use crate::buckets::retry_after_secs;
use crate::guard::{Guard, Refused};
use crate::limits::HttpLimits;
use crate::stream::{
    self, Closing, Outcome, RequestHead, Resolve, StreamConfig, StreamContext, StreamCounters,
    MAX_HEADERS,
};

pub use crate::limits::MAX_CONNECTIONS;

/// The most bytes hyper buffers per connection (request heads, and body
/// bytes not yet taken by the API): its default is about 400 KiB.
const API_MAX_BUFFER: usize = 64 * 1024;

/// How the listener serves its connections.
#[derive(Clone, Debug)]
pub struct HttpdConfig {
    /// The stream server's settings; its `prefix` says which paths are
    /// stream requests. Its head limit and head timeout apply to the API
    /// server too.
    pub stream: StreamConfig,
    /// The connection and request limits (the head limit and the
    /// timeouts are `stream`'s, which [`HttpdConfig::with_limits`] copies
    /// from here).
    pub limits: HttpLimits,
    /// With TLS settings, every connection is TLS (rustls in this process):
    /// requests are then served by the API server, file bodies copied
    /// through it ([`stream::respond_via_hyper`]) rather than by
    /// `sendfile`, and connections are not handed over to another host.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl HttpdConfig {
    /// The defaults, with stream requests being the paths under `prefix`.
    pub fn new(prefix: &str) -> HttpdConfig {
        HttpdConfig::with_limits(prefix, &HttpLimits::default())
    }

    /// `limits`, with stream requests being the paths under `prefix`.
    pub fn with_limits(prefix: &str, limits: &HttpLimits) -> HttpdConfig {
        HttpdConfig {
            stream: StreamConfig {
                prefix: Some(prefix.to_string()),
                max_head: limits.max_head,
                head_timeout: limits.head_timeout,
                idle_timeout: limits.idle_timeout,
                send_timeout: limits.send_timeout,
                ..StreamConfig::default()
            },
            limits: limits.clone(),
            tls: None,
        }
    }
}

/// Serves the node's HTTP port: stream requests (paths under `prefix`, such
/// as `/v1/streams/`) through `streams` with the zero-copy server, counted
/// in `counters`, and every other request through the `api` router, with
/// the default limits. Runs until the task is dropped; an accept error is
/// logged and retried after a short pause.
pub async fn serve(
    listener: TcpListener,
    api: Router,
    streams: Arc<dyn Resolve>,
    counters: Arc<StreamCounters>,
    prefix: &'static str,
) {
    let config = HttpdConfig::new(prefix);
    let guard = Arc::new(Guard::new(&config.limits));
    serve_with(listener, api, streams, counters, config, guard).await
}

/// [`serve`] with explicit settings and the [`Guard`] that enforces the
/// connection and request limits (built from `config.limits`; the caller
/// keeps it to mark exempt addresses and read its counters).
pub async fn serve_with(
    listener: TcpListener,
    api: Router,
    streams: Arc<dyn Resolve>,
    counters: Arc<StreamCounters>,
    config: HttpdConfig,
    guard: Arc<Guard>,
) {
    Server::new(api, streams, counters, config, guard)
        .serve(listener)
        .await
}

/// The address of the client an API request came from, set on every
/// request the API router sees (for limits that are per client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// One node's HTTP service, to run on any number of listeners (its own and
/// the service addresses it holds) and to continue connections rebuilt
/// here ([`Server::resume`]).
#[derive(Clone)]
pub struct Server {
    api: Router,
    ctx: Arc<StreamContext>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("ctx", &self.ctx).finish()
    }
}

impl Server {
    /// The service of `api` and of the stream requests `streams` resolves.
    pub fn new(
        api: Router,
        streams: Arc<dyn Resolve>,
        counters: Arc<StreamCounters>,
        config: HttpdConfig,
        guard: Arc<Guard>,
    ) -> Server {
        let ctx = Arc::new(StreamContext {
            resolver: streams,
            counters,
            config: config.stream,
            guard,
        });
        let tls = config.tls.map(tokio_rustls::TlsAcceptor::from);
        Server { api, ctx, tls }
    }

    /// Serves `listener` until the task is dropped; an accept error is
    /// logged and retried after a short pause.
    pub async fn serve(self, listener: TcpListener) {
        let closing = self.ctx.config.closing.clone();
        self.serve_closing(listener, closing).await
    }

    /// [`Server::serve`] where the connections accepted on `listener`
    /// close after each response once `closing` is set (a service address
    /// handed on: claim 13), whatever the other listeners do.
    pub async fn serve_closing(self, listener: TcpListener, closing: Arc<Closing>) {
        let Server { api, ctx, tls } = self;
        let ctx = if Arc::ptr_eq(&ctx.config.closing, &closing) {
            ctx
        } else {
            Arc::new(StreamContext {
                resolver: ctx.resolver.clone(),
                counters: ctx.counters.clone(),
                config: StreamConfig {
                    closing,
                    ..ctx.config.clone()
                },
                guard: ctx.guard.clone(),
            })
        };
        let guard = ctx.guard.clone();
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
            let slot = match guard.connect(peer.ip()) {
                Ok(slot) => slot,
                Err(why) => {
                    tracing::debug!("closing the connection from {peer}: {}", why.reason());
                    drop(sock);
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            let (api, ctx, tls) = (api.clone(), ctx.clone(), tls.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match tls {
                    Some(acceptor) => tls_connection(sock, peer.ip(), acceptor, api, ctx).await,
                    None => connection(sock, peer.ip(), api, ctx).await,
                }
            });
        }
    }

    /// Claim 13: continues a connection rebuilt on this host (its process
    /// died elsewhere): the rest of its response, then its requests as any
    /// connection's. It counts against its client's connections when a
    /// slot is free, and is served anyway: refusing it would cut a stream.
    pub async fn resume(&self, resume: stream::Resume) {
        let peer = IpAddr::V4(*resume.response.client.ip());
        let _slot = self.ctx.guard.connect(peer).ok();
        let _ = resume.stream.set_nodelay(true);
        let outcome = stream::resume_connection(resume, &self.ctx).await;
        after_streams(outcome, peer, self.api.clone(), self.ctx.clone()).await;
    }
}

/// The answer of the API server to a request over its client's rate.
fn too_many_requests(wait: Duration) -> Response<Body> {
    let mut r = Response::new(Body::from("too many requests from this address\n"));
    *r.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
    let headers = r.headers_mut();
    headers.insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(retry_after_secs(wait)),
    );
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn connection(sock: TcpStream, peer: IpAddr, api: Router, ctx: Arc<StreamContext>) {
    let outcome = stream::serve_connection(sock, Vec::new(), &ctx).await;
    after_streams(outcome, peer, api, ctx).await;
}

/// A TLS connection: the handshake within the head timeout (a client that
/// stalls it is dropped and counted as a slow head), then every request
/// through the API server.
async fn tls_connection(
    sock: TcpStream,
    peer: IpAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    api: Router,
    ctx: Arc<StreamContext>,
) {
    let handshake = tokio::time::timeout(ctx.config.head_timeout, acceptor.accept(sock)).await;
    match handshake {
        Ok(Ok(stream)) => serve_api(stream, peer, api, ctx).await,
        Ok(Err(e)) => {
            ctx.guard.refuse(Refused::Malformed);
            tracing::debug!("TLS handshake with {peer} failed: {e}");
        }
        Err(_) => {
            ctx.guard.refuse(Refused::HeadTimeout);
        }
    }
}

/// Hands a connection whose stream requests ended to the API server, when
/// it carries another request.
async fn after_streams(outcome: Outcome, peer: IpAddr, api: Router, ctx: Arc<StreamContext>) {
    let (sock, buffered) = match outcome {
        Outcome::Closed => return,
        Outcome::Handoff { stream, buffered } => (stream, buffered),
    };
    serve_api(Rewind::new(buffered, sock), peer, api, ctx).await
}

/// Serves every request of `io` with the API server, stream requests
/// through the copy path.
async fn serve_api<T>(io: T, peer: IpAddr, api: Router, ctx: Arc<StreamContext>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let prefix = ctx.config.prefix.clone().unwrap_or_default();
    let (max_head, head_timeout) = (ctx.config.max_head, ctx.config.head_timeout);
    let guard = ctx.guard.clone();
    // Whether bytes arrived since the last request was taken: a header
    // timeout then means a slow head rather than an idle connection.
    let arrived = Arc::new(AtomicBool::new(false));
    let seen = arrived.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ClientIp(peer));
        let mut api = api.clone();
        let ctx = ctx.clone();
        let seen = seen.clone();
        seen.store(false, Ordering::Relaxed);
        let is_stream = !prefix.is_empty() && req.uri().path().starts_with(prefix.as_str());
        async move {
            if let Err(wait) = ctx.guard.request(peer) {
                return Ok::<Response<Body>, Infallible>(too_many_requests(wait));
            }
            let mut response = if is_stream {
                let (parts, _body) = req.into_parts();
                let head = RequestHead::from_parts(&parts);
                stream::respond_via_hyper(&head, &ctx).await
            } else {
                api.call(req).await?
            };
            if ctx.config.closing.is_set() {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            // A request body was read by now (when the handler takes one).
            seen.store(false, Ordering::Relaxed);
            Ok(response)
        }
    });
    let io = TokioIo::new(Watched {
        inner: io,
        arrived: arrived.clone(),
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_header_size(max_head)
        .max_headers(MAX_HEADERS)
        .max_buf_size(API_MAX_BUFFER.max(max_head + 8192))
        .serve_connection(io, service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        if e.is_parse_too_large() {
            guard.refuse(Refused::HeadTooLarge);
        } else if e.is_timeout() && arrived.load(Ordering::Relaxed) {
            guard.refuse(Refused::HeadTimeout);
        } else if e.is_parse() {
            guard.refuse(Refused::Malformed);
        }
        tracing::debug!("HTTP API connection ended: {e}");
    }
}

/// A byte stream that notes when bytes arrive.
struct Watched<T> {
    inner: T,
    arrived: Arc<AtomicBool>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.arrived.store(true, Ordering::Relaxed);
        }
        polled
    }
}

/// Writes to a wrapper of a stream (a field `inner`) go straight to the stream.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<T: AsyncWrite + Unpin> AsyncWrite for $wrapper<T> {
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
    };
}

write_through!(Watched);

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

write_through!(Rewind);

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
