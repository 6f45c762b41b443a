//! TLS between nodes, from `[cluster.tls]`'s PEM files: an acceptor for the
//! node server and a connector for the dialers, both on rustls with the
//! aws-lc-rs provider named explicitly (the build carries two providers,
//! so rustls cannot pick one by itself).

use std::path::Path;
use std::sync::Arc;

use nexus_swarm_runtime::config::ClusterTlsConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::ClusterError;

/// The acceptor and connector of a node.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

fn error(path: &Path, reason: impl std::fmt::Display) -> ClusterError {
    ClusterError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClusterError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, e))?;
    if certs.is_empty() {
        return Err(error(path, "no certificate in the file"));
    }
    Ok(certs)
}

impl Tls {
    /// Reads the files and builds both sides.
    pub(crate) fn load(config: &ClusterTlsConfig) -> Result<Self, ClusterError> {
        let chain = certs(&config.cert)?;
        let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| error(&config.key, e))?;
        let mut roots = RootCertStore::empty();
        for ca in certs(&config.ca)? {
            roots.add(ca).map_err(|e| error(&config.ca, e))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| error(&config.cert, e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| error(&config.key, e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| error(&config.ca, e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}
