//! What an account's password is stored as: SCRAM StoredKey and ServerKey per hash
//! (RFC 5802), never the password or anything that logs in by itself.
//!
//! Its own module, below both the store (which persists credentials) and the host (whose
//! SASL exchange checks them), so neither reaches into the other for it.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The two hash functions offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha1 => "SCRAM-SHA-1",
            Hash::Sha256 => "SCRAM-SHA-256",
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        macro_rules! run {
            ($h:ty) => {{
                // HMAC accepts keys of any length, so this cannot fail.
                let mut mac = <Hmac<$h>>::new_from_slice(key).expect("HMAC takes any key length");
                for d in data {
                    mac.update(d);
                }
                mac.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            Hash::Sha1 => run!(Sha1),
            Hash::Sha256 => run!(Sha256),
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What is stored for one hash: never the password, nor anything that logs in by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Derives the credential from a password with a fresh random salt.
    pub fn new(hash: Hash, password: &str, iterations: u32) -> Result<Self, getrandom::Error> {
        let mut salt = vec![0u8; 16];
        getrandom::fill(&mut salt)?;
        Ok(Self::with_salt(hash, password, salt, iterations))
    }

    pub fn with_salt(hash: Hash, password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        ScramCredential {
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, &[b"Server Key"]),
            salt,
            iterations,
        }
    }

    /// Checks a plain password (SASL PLAIN) against the credential.
    pub fn verify_password(&self, hash: Hash, password: &str) -> bool {
        let derived = Self::with_salt(hash, password, self.salt.clone(), self.iterations);
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }

    /// A credential no password matches, with a salt stable per user name, so probing
    /// for accounts learns nothing from the challenge.
    pub fn decoy(hash: Hash, username: &str, iterations: u32, secret: &[u8]) -> Self {
        let salt = hash.hmac(secret, &[username.as_bytes()])[..16].to_vec();
        ScramCredential {
            salt,
            iterations,
            stored_key: hash.hmac(secret, &[b"stored", username.as_bytes()]),
            server_key: hash.hmac(secret, &[b"server", username.as_bytes()]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_password_check() {
        let cred = ScramCredential::new(Hash::Sha1, "secret", 4096).unwrap();
        assert!(cred.verify_password(Hash::Sha1, "secret"));
        assert!(!cred.verify_password(Hash::Sha1, "Secret"));
    }

    #[test]
    fn decoy_is_stable_and_matches_nothing() {
        let a = ScramCredential::decoy(Hash::Sha256, "ghost", 4096, b"k");
        assert_eq!(a, ScramCredential::decoy(Hash::Sha256, "ghost", 4096, b"k"));
        assert!(!a.verify_password(Hash::Sha256, ""));
    }
}
