//! How this node speaks HTTP to players and to the other nodes: plain, or
//! HTTPS with the cluster's CA as the only root (`SECURITY.md`). Every URL
//! the node writes for a node or service address (redirects, playlists,
//! requests to other nodes) takes its scheme from here.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

/// The scheme of the cluster's HTTP surfaces, and a client for them.
#[derive(Clone, Debug, Default)]
pub struct Web {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Web {
    /// HTTPS, trusting what `tls` trusts (the cluster's CA).
    pub fn https(tls: Arc<rustls::ClientConfig>) -> Web {
        Web { tls: Some(tls) }
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The URL of `path` at `addr`.
    pub fn url(&self, addr: impl Display, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme())
    }

    /// A client for other nodes: no redirects followed, `timeout` for a
    /// whole request.
    pub fn agent(&self, timeout: Duration) -> ureq::Agent {
        let builder = ureq::AgentBuilder::new().timeout(timeout).redirects(0);
        match &self.tls {
            Some(tls) => builder.tls_config(tls.clone()),
            None => builder,
        }
        .build()
    }
}
