//! Whether a server's certificate is valid for a domain (XEP-0178, RFC 6125): a chain
//! to the system's trust roots (or `s2s_ca_file`'s), for that DNS name, now. This is
//! what lets a server authenticate with SASL EXTERNAL instead of dialback. The check
//! runs after the TLS handshake, which itself accepts any certificate: a peer without
//! a valid one still gets dialback.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The trust roots and the verifier built on them.
pub struct Trust {
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl Trust {
    /// The system's roots plus those of `extra`; with none at all, no certificate is valid
    /// (logged) and every peer uses dialback.
    pub fn load(extra: Option<&Path>) -> Result<Trust, String> {
        let mut roots = RootCertStore::empty();
        let system = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(system.certs);
        if !system.errors.is_empty() {
            tracing::debug!(
                errors = system.errors.len(),
                "some system trust roots unreadable"
            );
        }
        if let Some(path) = extra {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no certificate in the file", path.display()));
            }
            roots.add_parsable_certificates(certs);
        }
        tracing::debug!(
            system_roots = added,
            total = roots.len(),
            "server-to-server trust roots"
        );
        if roots.is_empty() {
            tracing::warn!("no trust roots: other servers authenticate by dialback only");
            return Ok(Trust { verifier: None });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Trust {
            verifier: Some(verifier),
        })
    }

    /// Whether `chain` (end entity first) is valid for `domain` now.
    pub fn valid_for(&self, chain: &[CertificateDer<'_>], domain: &str) -> bool {
        let (Some(verifier), Some((end, intermediates))) = (&self.verifier, chain.split_first())
        else {
            return false;
        };
        let Ok(name) = ServerName::try_from(domain.to_string()) else {
            return false;
        };
        verifier
            .verify_server_cert(end, intermediates, &name, &[], UnixTime::now())
            .is_ok()
    }
}
