//! `ringcast credentials init`: a cluster's CA, the configuration
//! service's certificate and signing key, and one client certificate per
//! node of a cluster file (`ringcast_config::credentials`, `SECURITY.md`).

use std::path::Path;

use anyhow::{bail, Result};
use ringcast_config::clusterfile;
use ringcast_config::credentials;
use ringcast_proto::NodeId;

/// Makes the credentials of every node of the cluster file `config` in
/// `dir`, the service's certificate valid for `service_names`.
pub fn init(config: &Path, dir: &Path, service_names: &[String], force: bool) -> Result<()> {
    let file = clusterfile::load(config)?;
    let nodes = file.node_ids();
    if nodes.is_empty() {
        bail!("{} defines no node", config.display());
    }
    for name in service_names {
        if name.trim().is_empty() {
            bail!("--service-name must not be empty");
        }
    }
    // Any node may come to hold any service address and the cluster
    // address (claim 13): each node's certificate is valid for all of
    // them, and for its own HTTP address.
    let shared: Vec<String> = nodes
        .iter()
        .filter_map(|n| file.service_addr(*n))
        .chain(file.cluster_address())
        .map(|a| a.ip().to_string())
        .collect();
    let named: Vec<(NodeId, Vec<String>)> = nodes
        .iter()
        .map(|n| {
            let mut names: Vec<String> = file
                .http_addr(*n)
                .map(|a| a.ip().to_string())
                .into_iter()
                .chain(shared.iter().cloned())
                .collect();
            names.sort();
            names.dedup();
            (*n, names)
        })
        .collect();
    let written = credentials::init(dir, &named, service_names, force)?;
    println!(
        "{} files written to {}: a CA, the service's certificate for {}, a signing key, and certificates for node(s) {}",
        written.len(),
        dir.display(),
        service_names.join(", "),
        nodes
            .iter()
            .map(|n| n.0.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "install on each node's host: {}, {} and node-N.crt, node-N.key; on the service's host: {}, {}, {} and {}; keep {} offline",
        credentials::CA_CERT,
        credentials::SIGNING_PUB,
        credentials::CA_CERT,
        credentials::SERVICE_CERT,
        credentials::SERVICE_KEY,
        credentials::SIGNING_KEY,
        credentials::CA_KEY
    );
    Ok(())
}
