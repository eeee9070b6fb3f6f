//! Server dialback keys (XEP-0220 with the key generation of XEP-0185): a key proves that
//! a stream really comes from the server authoritative for its domain, because only
//! that server can recompute it from its secret when asked over a second connection.
//!
//! The secret is random, generated once into the data directory (`dialback-secret`,
//! mode 0600), so that keys handed out before a restart still verify after it.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The server's dialback secret. Never logged.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The key (XEP-0185): HMAC-SHA256 keyed with the hex SHA-256 of the secret, over
    /// `receiving originating stream-id`, in lowercase hex.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let k = hex(&Sha256::digest(self.0.as_bytes()));
        // HMAC takes keys of any length; the error branch cannot be reached.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(k.as_bytes()) else {
            return String::new();
        };
        mac.update(format!("{receiving} {originating} {stream_id}").as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `given` is the key for these names, compared in constant time.
    pub fn verify(&self, receiving: &str, originating: &str, stream_id: &str, given: &str) -> bool {
        let expected = self.key(receiving, originating, stream_id);
        let given = given.trim();
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    }
}

pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dialback-secret")
}

/// Reads the secret from the data directory, creating it (32 random bytes, hex, 0600)
/// on first start.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<Secret> {
    let path = secret_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret(text.trim().to_string())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    let text = hex(&b);
    std::fs::create_dir_all(data_dir)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(&path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(Secret(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of XEP-0185 §3.
    #[test]
    fn key_is_the_xep_0185_test_vector() {
        let s = Secret::new("s3cr3tf0rd14lb4ck");
        let key = s.key("example.net", "example.com", "D60000229F");
        assert_eq!(
            key,
            "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc"
        );
        assert!(s.verify("example.net", "example.com", "D60000229F", &key));
        assert!(!s.verify("example.net", "example.com", "D60000229G", &key));
        assert!(!s.verify("example.com", "example.net", "D60000229F", &key));
        assert!(!format!("{s:?}").contains("s3cr3t"), "never printed");
    }

    #[test]
    fn secret_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.key("x", "y", "z"), b.key("x", "y", "z"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(secret_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
