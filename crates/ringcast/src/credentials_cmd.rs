//! `ringcast credentials init`: a cluster's CA, the configuration
//! service's certificate and signing key, and one client certificate per
//! node of a cluster file (`ringcast_config::credentials`, `SECURITY.md`).

use std::path::Path;

use anyhow::{bail, Result};
use std::collections::BTreeSet;

use ringcast_config::clusterfile::{self, ClusterFile};
use ringcast_config::credentials;
use ringcast_proto::NodeId;

/// What each node's certificate is valid for: its own HTTP address, and
/// every service address of its own cluster and that cluster's address,
/// which any of its members may come to hold (claim 13); never another
/// cluster's.
pub fn certificate_names(file: &ClusterFile) -> Result<Vec<(NodeId, Vec<String>)>> {
    file.node_ids()
        .into_iter()
        .map(|n| {
            let settings = file.node_settings(n)?;
            let names: BTreeSet<String> = std::iter::once(settings.proto.addrs.http)
                .chain(settings.service.all().map(|(_, a)| a))
                .map(|a| a.ip().to_string())
                .collect();
            Ok((n, names.into_iter().collect()))
        })
        .collect()
}

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
    let named = certificate_names(&file)?;
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
