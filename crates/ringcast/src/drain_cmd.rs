//! `ringcast drain NODE` and `ringcast undrain NODE`: take a node out of
//! service with no gap for any player, and put it back
//! (`ringcast-node/src/operator/drain.rs` says how). `drain` waits, with a
//! line per change, until the node is empty: then it may be stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringcast_config::clusterfile;
use serde::Deserialize;

use crate::http;

/// Where the node is and the admin token that may drain it.
pub struct Target {
    /// The node's HTTP base.
    pub base: String,
    /// The admin token.
    pub token: String,
}

/// The variable that may hold the admin token.
const TOKEN_ENV: &str = "RINGCAST_ADMIN_TOKEN";

/// Finds node `id`: through the cluster file (its address and admin token
/// file), or through any node's URL, with the token from `token_file` or
/// `$RINGCAST_ADMIN_TOKEN`.
pub fn target(
    id: u32,
    config: Option<&Path>,
    url: Option<&str>,
    token_file: Option<&PathBuf>,
) -> Result<Target> {
    let given_token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the admin token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty()),
    };
    let (base, file_token) = match (config, url) {
        (_, Some(url)) => {
            let agent = http::agent();
            let view = http::cluster(&agent, url)?;
            let http = view["nodes"]
                .as_array()
                .and_then(|nodes| nodes.iter().find(|n| n["id"] == id))
                .and_then(|n| n["http"].as_str())
                .with_context(|| format!("{url} lists no node {id}"))?;
            let scheme = if url.starts_with("https://") {
                "https"
            } else {
                "http"
            };
            (format!("{scheme}://{http}"), None)
        }
        (Some(path), None) => {
            let file = clusterfile::load(path)?;
            http::trust_file(&file)?;
            let http = file
                .http_addr(ringcast_proto::NodeId(id))
                .with_context(|| format!("{} defines no node {id}", path.display()))?;
            (http::base(http), file.admin_token().map(str::to_string))
        }
        (None, None) => bail!("give --config FILE (the cluster file) or --url http://NODE"),
    };
    let token = given_token.or(file_token).with_context(|| {
        format!("no admin token: give --config FILE with admin_token_file, --token-file FILE or ${TOKEN_ENV}")
    })?;
    Ok(Target { base, token })
}

/// What `GET /v1/drain` answers.
#[derive(Debug, Deserialize)]
struct DrainState {
    draining: bool,
    announced: bool,
    active_streams: u64,
    empty: bool,
}

fn post(target: &Target, path: &str) -> Result<()> {
    let url = format!("{}{path}", target.base);
    match http::agent()
        .post(&url)
        .set("Authorization", &format!("Bearer {}", target.token))
        .call()
    {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(401 | 403, _)) => {
            bail!("{url} refused the admin token")
        }
        Err(ureq::Error::Status(status, r)) => {
            bail!(
                "{url} answered {status}: {}",
                r.into_string().unwrap_or_default().trim()
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot reach {url}")),
    }
}

fn state(target: &Target) -> Result<DrainState> {
    let url = format!("{}/v1/drain", target.base);
    let body = http::agent()
        .get(&url)
        .call()
        .with_context(|| format!("cannot reach {url}"))?
        .into_string()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    serde_json::from_str(&body).with_context(|| format!("{url} did not answer a drain state"))
}

/// Drains node `id` and, unless `wait` is zero, waits at most `wait` until it is empty.
pub fn drain(id: u32, target: &Target, wait: Duration) -> Result<()> {
    post(target, "/v1/drain")?;
    println!("node {id}: draining (no new streams; its address moves to the next node)");
    if wait.is_zero() {
        return Ok(());
    }
    let deadline = Instant::now() + wait;
    let mut said = None;
    loop {
        let s = state(target)?;
        if !s.draining {
            bail!("node {id} is no longer draining (undrained meanwhile?)");
        }
        if s.empty {
            println!("node {id}: empty; it may be stopped");
            return Ok(());
        }
        let now = (s.announced, s.active_streams);
        if said != Some(now) {
            if s.announced {
                println!("node {id}: {} stream(s) still playing", s.active_streams);
            } else {
                println!("node {id}: waiting for the supervisor to announce it");
            }
            said = Some(now);
        }
        if Instant::now() >= deadline {
            bail!(
                "node {id} is not empty after {} s ({} stream(s) still playing); it keeps draining",
                wait.as_secs(),
                s.active_streams
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Puts node `id` back in service.
pub fn undrain(id: u32, target: &Target) -> Result<()> {
    post(target, "/v1/undrain")?;
    println!("node {id}: serving again");
    Ok(())
}
