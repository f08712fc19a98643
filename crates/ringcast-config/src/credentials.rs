//! Who may fetch a node's configuration, and whether what a node fetched
//! is what the service sent (`SECURITY.md`): the credentials of a cluster.
//!
//! `ringcast credentials init` writes, into one folder:
//!
//! - `ca.crt`, `ca.key`: the cluster's certificate authority. Its key signs
//!   the others and should then be kept offline.
//! - `service.crt`, `service.key`: the configuration service's TLS
//!   certificate, for the names and addresses it is reached at.
//! - `node-N.crt`, `node-N.key`: node N's certificate (common name
//!   `ringcast-node-N`): a client certificate, which the service hands node
//!   N's configuration to and to no one else, and the node's HTTPS server
//!   certificate (`tls_cert`, `tls_key` in the cluster file), valid for the
//!   names given for it (its own HTTP address, and every service address
//!   and the cluster address, which any node may come to hold).
//! - `config-signing.key`, `config-signing.pub`: the Ed25519 key the service
//!   signs every configuration with, and the public half nodes check it by.
//!
//! A node's host needs `ca.crt`, `config-signing.pub` and its own
//! `node-N.crt` and `node-N.key`; the service's host needs `ca.crt`,
//! `service.crt`, `service.key` and `config-signing.key`. Keys are written
//! readable by their owner only.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ringcast_proto::NodeId;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::clusterfile::write_private_bytes;
use crate::settings::HttpTls;

/// The certificate authority's certificate.
pub const CA_CERT: &str = "ca.crt";
/// The certificate authority's key.
pub const CA_KEY: &str = "ca.key";
/// The configuration service's certificate.
pub const SERVICE_CERT: &str = "service.crt";
/// The configuration service's key.
pub const SERVICE_KEY: &str = "service.key";
/// The key the service signs configurations with.
pub const SIGNING_KEY: &str = "config-signing.key";
/// Its public half, which nodes check signatures by.
pub const SIGNING_PUB: &str = "config-signing.pub";
/// The HTTP header that carries a configuration's signature.
pub const SIGNATURE_HEADER: &str = "ringcast-signature";

/// Node `node`'s certificate file name.
pub fn node_cert(node: NodeId) -> String {
    format!("node-{}.crt", node.0)
}

/// Node `node`'s key file name.
pub fn node_key(node: NodeId) -> String {
    format!("node-{}.key", node.0)
}

/// The common name of node `node`'s certificate.
fn common_name(node: NodeId) -> String {
    format!("ringcast-node-{}", node.0)
}

/// Why credentials could not be made or used; each names its file.
#[derive(Debug, Error)]
pub enum CredentialError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{}: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// `init` would overwrite credentials that exist.
    #[error("{} exists; give --force to replace every credential of the folder", path.display())]
    Exists {
        /// The first file found.
        path: PathBuf,
    },
    /// Making a certificate failed.
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The TLS settings were refused.
    #[error("the TLS settings are not usable: {0}")]
    Tls(String),
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|source| CredentialError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, why: impl Into<String>) -> CredentialError {
    CredentialError::Invalid {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Makes a cluster's credentials in `dir` for `nodes`, each with the
/// names (host names or IP addresses) its HTTPS certificate is valid for,
/// and a service certificate valid for `service_names`. Refuses to replace
/// existing credentials unless `force`. Returns the files written.
pub fn init(
    dir: &Path,
    nodes: &[(NodeId, Vec<String>)],
    service_names: &[String],
    force: bool,
) -> Result<Vec<PathBuf>, CredentialError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).map_err(|source| CredentialError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !force {
        for name in [CA_KEY, SERVICE_KEY, SIGNING_KEY] {
            let path = dir.join(name);
            if path.exists() {
                return Err(CredentialError::Exists { path });
            }
        }
    }
    let mut written = Vec::new();
    let mut write = |name: &str, bytes: &[u8], private: bool| -> Result<(), CredentialError> {
        let path = dir.join(name);
        let result = if private {
            write_private_bytes(&path, bytes)
        } else {
            std::fs::write(&path, bytes)
        };
        result.map_err(|source| CredentialError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
        Ok(())
    };

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "ringcast cluster CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    write(CA_CERT, ca_cert.pem().as_bytes(), false)?;
    write(CA_KEY, ca_key.serialize_pem().as_bytes(), true)?;

    let service_key = KeyPair::generate()?;
    let mut service = CertificateParams::new(service_names.to_vec())?;
    service
        .distinguished_name
        .push(DnType::CommonName, SERVICE_NAME);
    service.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let service_cert = service.signed_by(&service_key, &ca_cert, &ca_key)?;
    write(SERVICE_CERT, service_cert.pem().as_bytes(), false)?;
    write(SERVICE_KEY, service_key.serialize_pem().as_bytes(), true)?;

    for (node, names) in nodes {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.clone())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name(*node));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        write(&node_cert(*node), cert.pem().as_bytes(), false)?;
        write(&node_key(*node), key.serialize_pem().as_bytes(), true)?;
    }

    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| CredentialError::Tls(format!("no randomness for the signing key: {e}")))?;
    let signing = SigningKey::from_bytes(&seed);
    write(
        SIGNING_KEY,
        format!("{}\n", hex::encode(seed)).as_bytes(),
        true,
    )?;
    write(
        SIGNING_PUB,
        format!("{}\n", hex::encode(signing.verifying_key().as_bytes())).as_bytes(),
        false,
    )?;
    Ok(written)
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CredentialError> {
    let bytes = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no certificate"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CredentialError> {
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| invalid(path, format!("not a PEM key: {e}")))?
        .ok_or_else(|| invalid(path, "holds no private key"))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, CredentialError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn hex32(path: &Path) -> Result<[u8; 32], CredentialError> {
    let text = String::from_utf8(read(path)?).map_err(|_| invalid(path, "is not text"))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| invalid(path, "does not hold 64 hexadecimal characters"))?;
    Ok(bytes)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The configuration service's side: its TLS settings, which require a
/// client certificate of the cluster's CA, and the key it signs with.
#[derive(Clone)]
pub struct ServiceCredentials {
    /// The TLS server settings.
    pub tls: Arc<rustls::ServerConfig>,
    /// Signs every configuration served.
    pub signing: Arc<SigningKey>,
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceCredentials(..)")
    }
}

impl ServiceCredentials {
    /// Loads the service's credentials from `dir` (see the module doc).
    pub fn load(dir: &Path) -> Result<ServiceCredentials, CredentialError> {
        let roots = Arc::new(roots(&dir.join(CA_CERT))?);
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| CredentialError::Tls(e.to_string()))?;
        let tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CredentialError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                certs(&dir.join(SERVICE_CERT))?,
                private_key(&dir.join(SERVICE_KEY))?,
            )
            .map_err(|e| invalid(&dir.join(SERVICE_KEY), e.to_string()))?;
        let signing = SigningKey::from_bytes(&hex32(&dir.join(SIGNING_KEY))?);
        Ok(ServiceCredentials {
            tls: Arc::new(tls),
            signing: Arc::new(signing),
        })
    }

    /// The signature of `body`, as the [`SIGNATURE_HEADER`] carries it.
    pub fn sign(&self, body: &[u8]) -> String {
        hex::encode(self.signing.sign(body).to_bytes())
    }
}

/// A node's side: its client certificate for the service, and the key the
/// configuration must be signed with.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The TLS client settings (the cluster's CA as the only root).
    pub tls: Arc<rustls::ClientConfig>,
    /// The service's public signing key.
    pub trust: VerifyingKey,
    /// The folder they were read from, for messages.
    pub dir: PathBuf,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeCredentials({})", self.dir.display())
    }
}

impl NodeCredentials {
    /// Loads node `node`'s credentials from `dir` (see the module doc).
    pub fn load(dir: &Path, node: NodeId) -> Result<NodeCredentials, CredentialError> {
        let cert_path = dir.join(node_cert(node));
        let chain = certs(&cert_path)?;
        match node_of_certificate(&chain[0]) {
            Some(n) if n == node => {}
            Some(n) => {
                return Err(invalid(
                    &cert_path,
                    format!("is node {}'s certificate, not node {}'s", n.0, node.0),
                ))
            }
            None => return Err(invalid(&cert_path, "is not a ringcast node certificate")),
        }
        // The service, and no other holder of a certificate of the CA (a
        // node's is valid for its own addresses): its common name too.
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(&dir.join(CA_CERT))?),
            provider(),
        )
        .build()
        .map_err(|e| CredentialError::Tls(e.to_string()))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CredentialError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServiceOnly(webpki)))
            .with_client_auth_cert(chain, private_key(&dir.join(node_key(node)))?)
            .map_err(|e| invalid(&dir.join(node_key(node)), e.to_string()))?;
        let pub_path = dir.join(SIGNING_PUB);
        let trust = VerifyingKey::from_bytes(&hex32(&pub_path)?)
            .map_err(|_| invalid(&pub_path, "is not an Ed25519 public key"))?;
        Ok(NodeCredentials {
            tls: Arc::new(tls),
            trust,
            dir: dir.to_path_buf(),
        })
    }

    /// Whether `signature` (hexadecimal, as the header carries it) is the
    /// service's signature of `body`.
    pub fn verify(&self, body: &[u8], signature: &str) -> bool {
        let mut bytes = [0u8; 64];
        if hex::decode_to_slice(signature.trim(), &mut bytes).is_err() {
            return false;
        }
        self.trust
            .verify(body, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

/// A node's HTTPS server settings from its `tls` files (`HttpTls`): its
/// certificate chain and key, no client certificate asked.
pub fn https_server(tls: &HttpTls) -> Result<Arc<rustls::ServerConfig>, CredentialError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CredentialError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs(&tls.cert)?, private_key(&tls.key)?)
        .map_err(|e| invalid(&tls.key, e.to_string()))?;
    Ok(Arc::new(config))
}

/// A node's HTTPS client settings for the other nodes: the cluster's CA as
/// the only root.
pub fn https_client(tls: &HttpTls) -> Result<Arc<rustls::ClientConfig>, CredentialError> {
    trusting(&tls.ca)
}

/// HTTPS client settings whose only root is the CA certificate at `ca`
/// (the operator's tools and the nodes, for the cluster's nodes).
pub fn trusting(ca: &Path) -> Result<Arc<rustls::ClientConfig>, CredentialError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CredentialError::Tls(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The common name of the configuration service's certificate, which a
/// node requires of the service beside the CA's signature.
pub const SERVICE_NAME: &str = "ringcast configuration service";

/// A server verifier that accepts only the configuration service: the
/// CA's chain for the name asked (`WebPkiServerVerifier`), and the
/// service's common name.
#[derive(Debug)]
struct ServiceOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ServiceOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.0.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if common_name_of(end_entity).as_deref() == Some(SERVICE_NAME) {
            Ok(verified)
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the configuration service's".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The common name of a certificate, if it has one.
fn common_name_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

/// The node a (verified) client certificate names: its common name
/// `ringcast-node-N`.
pub fn node_of_certificate(cert: &CertificateDer<'_>) -> Option<NodeId> {
    let cn = common_name_of(cert)?;
    let id: u32 = cn.strip_prefix("ringcast-node-")?.parse().ok()?;
    (id > 0).then_some(NodeId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_credentials_load_and_name_their_node() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = [(NodeId(1), vec![]), (NodeId(7), vec!["127.0.0.7".into()])];
        init(dir.path(), &nodes, &["127.0.0.1".into()], false).unwrap();
        let service = ServiceCredentials::load(dir.path()).unwrap();
        let node = NodeCredentials::load(dir.path(), NodeId(7)).unwrap();
        let cert = certs(&dir.path().join(node_cert(NodeId(7)))).unwrap();
        assert_eq!(node_of_certificate(&cert[0]), Some(NodeId(7)));
        let sig = service.sign(b"settings");
        assert!(node.verify(b"settings", &sig));
        assert!(!node.verify(b"settingz", &sig));
        assert!(!node.verify(b"settings", "00"));
        // A second init without --force keeps what exists.
        let err = init(dir.path(), &nodes, &[], false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        // Node 1's files renamed as node 7's are refused by name.
        std::fs::copy(
            dir.path().join(node_cert(NodeId(1))),
            dir.path().join(node_cert(NodeId(7))),
        )
        .unwrap();
        let err = NodeCredentials::load(dir.path(), NodeId(7)).unwrap_err();
        assert!(err.to_string().contains("node 1's certificate"), "{err}");
    }
}
