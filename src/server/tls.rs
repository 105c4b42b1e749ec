use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::TlsError;

/// TLS termination for [`Server::serve_tls`](super::Server::serve_tls): rustls with the ring
/// provider, a certificate chain and key from PEM, ALPN `h2` then `http/1.1` (so browsers and
/// gRPC clients get HTTP/2).
///
/// # Examples
///
/// ```no_run
/// use tower_lb::server::TlsAcceptor;
///
/// # fn main() -> Result<(), tower_lb::server::error::TlsError> {
/// let tls = TlsAcceptor::from_pem_files("/etc/proxy/cert.pem", "/etc/proxy/key.pem")?;
/// # let _ = tls; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsAcceptor {
    pub(crate) inner: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// From a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::new("unreadable certificate PEM", Some(e.into())))?;
        if certs.is_empty() {
            return Err(TlsError::new("no certificate in the PEM", None));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| TlsError::new("unreadable private key PEM", Some(e.into())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("protocol versions", Some(e.into())))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::new("certificate and key do not fit", Some(e.into())))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the two PEM files of [`from_pem`](Self::from_pem).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let certs = std::fs::read(cert_chain)
            .map_err(|e| TlsError::new("cannot read the certificate file", Some(e.into())))?;
        let key = std::fs::read(key)
            .map_err(|e| TlsError::new("cannot read the key file", Some(e.into())))?;
        Self::from_pem(&certs, &key)
    }
}
