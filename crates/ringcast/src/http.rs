//! A small blocking HTTP client for the CLI's talks with nodes: plain
//! HTTP, or HTTPS trusting only the cluster's CA once [`trust`] is called
//! (`--cacert FILE`, or a cluster file that names `tls_ca`).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// The TLS settings every agent uses, once the CLI speaks HTTPS.
static TRUST: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// From now on the CLI reaches nodes over HTTPS and trusts only the CA
/// certificate at `ca`. The first call wins.
pub fn trust(ca: &Path) -> Result<()> {
    if TRUST.get().is_none() {
        let config = ringcast_config::credentials::trusting(ca)
            .with_context(|| format!("cannot use the CA certificate {}", ca.display()))?;
        let _ = TRUST.set(config);
    }
    Ok(())
}

/// [`trust`] the CA a cluster file names, if it names one.
pub fn trust_file(file: &ringcast_config::clusterfile::ClusterFile) -> Result<()> {
    match file.tls_ca() {
        Some(ca) => trust(ca),
        None => Ok(()),
    }
}

/// The TLS settings of the CLI's HTTPS, once [`trust`] was called.
pub fn tls_client() -> Option<Arc<rustls::ClientConfig>> {
    TRUST.get().cloned()
}

/// An agent builder that speaks HTTPS as [`trust`] says.
pub fn builder() -> ureq::AgentBuilder {
    let builder = ureq::AgentBuilder::new();
    match TRUST.get() {
        Some(tls) => builder.tls_config(tls.clone()),
        None => builder,
    }
}

/// An agent with short timeouts: a node that does not answer quickly is down.
pub fn agent() -> ureq::Agent {
    builder()
        .timeout_connect(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .build()
}

/// `GET {base}/v1/cluster` as JSON.
pub fn cluster(agent: &ureq::Agent, base: &str) -> Result<Value> {
    let url = format!("{}/v1/cluster", base.trim_end_matches('/'));
    let body = agent
        .get(&url)
        .call()
        .with_context(|| format!("cannot reach {url}"))?
        .into_string()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    serde_json::from_str(&body).with_context(|| format!("{url} did not answer JSON"))
}

/// `http://ADDR` for a socket address, `https://ADDR` once the CLI
/// speaks HTTPS.
pub fn base(addr: std::net::SocketAddr) -> String {
    let scheme = if TRUST.get().is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}
