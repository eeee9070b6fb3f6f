//! The server's TLS configuration: rustls with the ring provider (smaller on ARM), the
//! admin's certificate or a self-signed one generated on first start and kept in the
//! data directory, so clients that pin it keep working across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::RwLock;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

/// Where the generated certificate and key live.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("tls-cert.pem"), data_dir.join("tls-key.pem"))
}

fn generate(domain: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec![domain.to_string()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |path: &Path, data: String, private: bool| -> Result<(), TlsError> {
        let err = |e: std::io::Error| TlsError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        use std::io::Write;
        opts.open(path)
            .map_err(err)?
            .write_all(data.as_bytes())
            .map_err(err)
    };
    write(key, ck.signing_key.serialize_pem(), true)?;
    // 0600 too: nothing in the data directory is for other users (issue 8).
    write(cert, ck.cert.pem(), true)?;
    tracing::info!(cert = %cert.display(), %domain, "generated a self-signed TLS certificate");
    Ok(())
}

/// The certificate the listeners present, swapped in place on SIGHUP: every TLS
/// handshake asks this resolver, so a renewed certificate is used from the next
/// connection on, with no restart and no client dropped.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Loads (or on first start creates) the certificate and key of `cfg`.
    pub fn load(cfg: &Config) -> Result<Arc<Certificates>, TlsError> {
        Ok(Arc::new(Certificates {
            current: RwLock::new(certified_key(cfg)?),
        }))
    }

    /// Reads the files again; on any error the certificate in use stays.
    pub fn reload(&self, cfg: &Config) -> Result<(), TlsError> {
        let fresh = certified_key(cfg)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate in use now (server-to-server links also present it as a client).
    pub fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain and key of `cfg` (generating the self-signed pair on first
/// start), checked to belong together.
fn certified_key(cfg: &Config) -> Result<Arc<CertifiedKey>, TlsError> {
    let (cert_path, key_path) = match (&cfg.tls_certificate, &cfg.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let (c, k) = self_signed_paths(&cfg.data_dir);
            if !c.exists() || !k.exists() {
                std::fs::create_dir_all(&cfg.data_dir).map_err(|e| TlsError::Write {
                    path: cfg.data_dir.clone(),
                    reason: e.to_string(),
                })?;
                // A half-written pair from an interrupted start is replaced whole.
                let _ = std::fs::remove_file(&c);
                let _ = std::fs::remove_file(&k);
                generate(&cfg.domain, &c, &k)?;
            }
            (c, k)
        }
    };
    let read_err = |path: &Path, e: String| TlsError::Read {
        path: path.to_path_buf(),
        reason: e,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| read_err(&cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(read_err(&cert_path, "no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&key_path).map_err(|e| read_err(&key_path, e.to_string()))?;
    let ck = CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(ck))
}

/// A listener's TLS configuration around the shared certificates. `alpn` is set for
/// the direct-TLS listener (XEP-0368: `xmpp-client`).
pub fn server_config_with(
    certificates: Arc<Certificates>,
    alpn: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    if let Some(proto) = alpn {
        config.alpn_protocols = vec![proto.to_vec()];
    }
    Ok(Arc::new(config))
}

/// Loads (or on first start creates) the certificate and builds a server config.
pub fn server_config(cfg: &Config, alpn: Option<&[u8]>) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(Certificates::load(cfg)?, alpn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        server_config(&cfg, None).unwrap();
        let (c, k) = self_signed_paths(dir.path());
        let first = std::fs::read(&c).unwrap();
        server_config(&cfg, Some(b"xmpp-client")).unwrap();
        assert_eq!(std::fs::read(&c).unwrap(), first, "kept across starts");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn missing_admin_certificate_is_a_clear_error() {
        let cfg = Config {
            tls_certificate: Some("/nonexistent/cert.pem".into()),
            tls_key: Some("/nonexistent/key.pem".into()),
            ..Config::default()
        };
        let err = server_config(&cfg, None).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
