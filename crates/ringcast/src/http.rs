//! A small blocking HTTP client for the CLI's talks with nodes.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// An agent with short timeouts: a node that does not answer quickly is down.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
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

/// `http://ADDR` for a socket address.
pub fn base(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}
