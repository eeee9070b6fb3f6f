//! AES-128-GCM for `tigase:push:encrypt:0`: a fresh 12-byte IV for every notification and
//! the 16-byte tag after the ciphertext, as the spec and Siskin lay it out. RustCrypto's
//! `aes-gcm` does the work: no cipher code is written here. (Prosody's community module
//! appends 16 zero bytes instead of the tag, which a device that checks it rejects.)

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};

/// The algorithm's own disco feature, next to `tigase:push:encrypt:0`.
pub const FEATURE_AES_128_GCM: &str = "tigase:push:encrypt:aes-128-gcm";

pub const IV_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// A fresh random IV from the operating system, `None` if it has none to give: then the
/// notification must not be encrypted at all, since a repeated IV under one key gives
/// GCM's key stream and its authentication away.
pub fn fresh_iv() -> Option<[u8; IV_LEN]> {
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv).ok()?;
    Some(iv)
}

/// `plain` encrypted under `key` and `iv`: the ciphertext followed by the tag.
pub fn seal(key: &[u8; 16], iv: &[u8; IV_LEN], plain: &[u8]) -> Option<Vec<u8>> {
    let cipher = Aes128Gcm::new(key.into());
    // Fails only for a plaintext beyond GCM's 64 GiB limit.
    cipher.encrypt(Nonce::from_slice(iv), plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GCM test vector of McGrew and Viega ("The Galois/Counter Mode of Operation",
    /// test case 3: AES-128, 96-bit IV, no additional data), which NIST's GCM validation
    /// uses too: the ciphertext and the tag come out as published.
    #[test]
    fn published_test_vector() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key: [u8; 16] = hex("feffe9928665731c6d6a8f9467308308").try_into().unwrap();
        let iv: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let plain = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        );
        let sealed = seal(&key, &iv, &plain).unwrap();
        let want = hex(concat!(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            "4d5c2af327cd64a62cf35abd2ba6fab4"
        ));
        assert_eq!(sealed, want);
        assert_eq!(sealed.len(), plain.len() + TAG_LEN);
    }

    #[test]
    fn ivs_differ() {
        assert_ne!(fresh_iv().unwrap(), fresh_iv().unwrap());
    }
}
