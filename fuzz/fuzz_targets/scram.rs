//! The SCRAM server (src/xmpp/scram.rs, src/credentials.rs): client-first parsing and the client-final check,
//! for SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677).
//!
//! Input: byte 0 bit 0 picks SHA-256, bit 1 asks the harness to append the correct
//! proof (`,p=…`) for the password "pencil"; the rest is the client-first message, a
//! NUL byte, and the client-final message, in which `{r}` stands for the combined nonce
//! the server chose and `{c}` for the base64 of the client's GS2 header (the server's
//! nonce is random, so a fuzzer could not guess it).
//!
//! Asserts, besides no panic: a parsed client-first has a non-empty user name and nonce,
//! and the challenge starts with that nonce; the exchange succeeds only with the proof
//! the harness computed from the password, and then answers with the right server
//! signature; a correct client (`c={c},r={r}` plus the right proof) always succeeds.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cloud_notify::credentials::{Hash, ScramCredential};
use cloud_notify::xmpp::scram::{ServerExchange, parse_client_first};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha1::Sha1;
use sha2::{Digest, Sha256};

const PASSWORD: &str = "pencil";
const ITERATIONS: u32 = 4096;

/// What the client knows (ClientKey) and what the server stores, per hash.
struct Keys {
    client_key: Vec<u8>,
    credential: ScramCredential,
}

fn hmac(hash: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha1 => {
            let mut m = Hmac::<Sha1>::new_from_slice(key).expect("any key");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Hash::Sha256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

fn keys(hash: Hash) -> &'static Keys {
    static SHA1: OnceLock<Keys> = OnceLock::new();
    static SHA256: OnceLock<Keys> = OnceLock::new();
    let cell = match hash {
        Hash::Sha1 => &SHA1,
        Hash::Sha256 => &SHA256,
    };
    cell.get_or_init(|| {
        let salt = B64.decode("QSXCR+Q6sek8bf92").expect("RFC 5802 salt");
        let salted = match hash {
            Hash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(PASSWORD.as_bytes(), &salt, ITERATIONS, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(PASSWORD.as_bytes(), &salt, ITERATIONS, &mut out);
                out.to_vec()
            }
        };
        let client_key = hmac(hash, &salted, b"Client Key");
        let credential = ScramCredential::with_salt(hash, PASSWORD, salt, ITERATIONS);
        let stored = match hash {
            Hash::Sha1 => Sha1::digest(&client_key).to_vec(),
            Hash::Sha256 => Sha256::digest(&client_key).to_vec(),
        };
        assert_eq!(
            stored, credential.stored_key,
            "the harness derives as the server"
        );
        Keys {
            client_key,
            credential,
        }
    })
}

/// Replaces each `{r}` and `{c}` of the template in one pass (a nonce may itself hold
/// `{c}`).
fn expand(template: &[u8], nonce: &[u8], gs2_b64: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + nonce.len());
    let mut i = 0;
    while i < template.len() {
        if template[i..].starts_with(b"{r}") {
            out.extend_from_slice(nonce);
            i += 3;
        } else if template[i..].starts_with(b"{c}") {
            out.extend_from_slice(gs2_b64);
            i += 3;
        } else {
            out.push(template[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let hash = if flags & 1 == 1 {
        Hash::Sha256
    } else {
        Hash::Sha1
    };
    let prove = flags & 2 == 2;
    let (first_msg, final_template) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(first) = parse_client_first(first_msg) else {
        return;
    };
    assert!(!first.username.is_empty());
    // The parts the server keeps, as RFC 5802 defines them (the first message parsed, so
    // it is UTF-8 with at least two commas).
    let text = std::str::from_utf8(first_msg).expect("parsed, so UTF-8");
    let bare = text.splitn(3, ',').nth(2).expect("parsed, so three parts");
    let gs2 = &text[..text.len() - bare.len()];
    // sasl.rs normalise: the user name becomes a JID's local part.
    let _ = xmpp_parsers::jid::BareJid::new(&format!("{}@example.com", first.username));

    let keys = keys(hash);
    let exchange =
        ServerExchange::new(hash, first, keys.credential.clone()).expect("random source");
    let server_first = exchange.server_first().to_string();
    let nonce = server_first
        .strip_prefix("r=")
        .and_then(|s| s.split(',').next())
        .expect("the challenge starts with r=");
    let client_nonce = bare
        .split(',')
        .filter_map(|a| a.strip_prefix("r="))
        .last()
        .expect("parsed, so a nonce");
    assert!(
        nonce.starts_with(client_nonce) && nonce.len() > client_nonce.len(),
        "server nonce {nonce:?} does not extend the client's {client_nonce:?}"
    );

    let mut client_final = expand(final_template, nonce.as_bytes(), B64.encode(gs2).as_bytes());
    let mut expected = None;
    if prove {
        let without_proof = String::from_utf8_lossy(&client_final).into_owned();
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac(hash, &keys.credential.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        client_final = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
        let server_signature = hmac(hash, &keys.credential.server_key, auth_message.as_bytes());
        expected = Some(format!("v={}", B64.encode(server_signature)));
    }
    match exchange.finish(&client_final) {
        Ok(v) => assert_eq!(
            Some(&v),
            expected.as_ref(),
            "authenticated without the password's proof: {:?}",
            String::from_utf8_lossy(&client_final)
        ),
        Err(e) => assert!(
            !(prove && final_template == b"c={c},r={r}"),
            "a correct client was refused ({e}): {text:?}"
        ),
    }
});
