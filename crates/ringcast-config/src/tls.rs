//! The configuration service over TLS (`SECURITY.md`): every connection
//! must present a client certificate of the cluster's CA, and each request
//! carries the node that certificate names ([`Peer`]) to the handlers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ringcast_proto::NodeId;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service as _;
use tracing::debug;

use crate::credentials::node_of_certificate;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; beyond, new ones are closed at once (a
/// flood of handshakes cannot take every file descriptor).
const MAX_CONNECTIONS: usize = 512;

/// The node whose certificate the request's connection presented, if it
/// names one (set on every request served by [`serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub Option<NodeId>);

/// Serves `app` on `listener` over TLS with `tls` until accepting fails
/// for good; a client that fails its handshake is dropped and logged at
/// debug level.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: wait, never give up the port.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("closing the connection from {from}: {MAX_CONNECTIONS} are served already");
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    debug!("TLS handshake with {from} failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!("TLS handshake with {from} timed out");
                    return;
                }
            };
            let peer = Peer(
                stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(node_of_certificate),
            );
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(peer);
                app.clone().call(req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
