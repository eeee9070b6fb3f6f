//! SCRAM-SHA-1 and SCRAM-SHA-256, server side (RFC 5802, RFC 7677).
//!
//! Written here because the `sasl` crate's server refuses clients that send the `n,,`
//! GS2 header (those without channel binding, i.e. most of them), stores the salted
//! password (password-equivalent), and compares proofs in variable time. This one stores
//! only StoredKey and ServerKey, as Prosody does, and compares in constant time.
//! Channel binding (-PLUS) is not offered.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use subtle::ConstantTimeEq;

use crate::credentials::{Hash, ScramCredential};

/// Why an exchange failed; each maps to a SASL `<failure/>` condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    #[error("channel binding is not supported")]
    ChannelBindingUnsupported,
    #[error("authorization identity differs from the user")]
    InvalidAuthzid,
    #[error("wrong credentials")]
    NotAuthorized,
}

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name, with `=2C` and `=3D` decoded.
    pub username: String,
    gs2_header: String,
    bare: String,
    client_nonce: String,
}

/// Parses `gs2-header client-first-bare`.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
    let mut parts = msg.splitn(3, ',');
    let (Some(cb), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ScramError::Malformed);
    };
    match cb {
        // "y": the client could bind but thinks we cannot; we cannot, so that is fine.
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::Malformed),
    }
    let authzid = match authzid {
        "" => None,
        a => Some(decode_name(
            a.strip_prefix("a=").ok_or(ScramError::Malformed)?,
        )?),
    };
    let mut username = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            username = Some(decode_name(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_string());
        } else if attr.starts_with("m=") {
            // Mandatory extensions we do not know must fail the exchange (RFC 5802 5.1).
            return Err(ScramError::Malformed);
        }
    }
    let (Some(username), Some(client_nonce)) = (username, nonce) else {
        return Err(ScramError::Malformed);
    };
    if username.is_empty()
        || client_nonce.is_empty()
        || !client_nonce
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',')
    {
        return Err(ScramError::Malformed);
    }
    if let Some(a) = authzid
        && a != username
        && !a.starts_with(&format!("{username}@"))
    {
        return Err(ScramError::InvalidAuthzid);
    }
    Ok(ClientFirst {
        username,
        // Everything before the bare message, as sent: the client echoes it in `c=`.
        gs2_header: msg[..msg.len() - bare.len()].to_string(),
        bare: bare.to_string(),
        client_nonce,
    })
}

fn decode_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The server's half of one exchange, after the client's first message.
#[derive(Debug, Clone)]
pub struct ServerExchange {
    hash: Hash,
    first: ClientFirst,
    server_first: String,
    nonce: String,
    credential: ScramCredential,
}

impl ServerExchange {
    /// Starts the exchange. For an unknown user pass a made-up credential (see
    /// [`ScramCredential::decoy`]) so the answer does not reveal that the user is unknown.
    pub fn new(
        hash: Hash,
        first: ClientFirst,
        credential: ScramCredential,
    ) -> Result<Self, getrandom::Error> {
        let mut r = [0u8; 18];
        getrandom::fill(&mut r)?;
        let nonce = format!("{}{}", first.client_nonce, B64.encode(r));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        Ok(ServerExchange {
            hash,
            first,
            server_first,
            nonce,
            credential,
        })
    }

    /// The challenge to send.
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks the client's final message; on success returns the server-final message
    /// (`v=…`) to send with `<success/>`.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut cbind = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                cbind = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let cbind = B64
            .decode(cbind.ok_or(ScramError::Malformed)?)
            .map_err(|_| ScramError::Malformed)?;
        if cbind != self.first.gs2_header.as_bytes() {
            return Err(ScramError::NotAuthorized);
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::NotAuthorized);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed)?;
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let signature = self
            .hash
            .hmac(&self.credential.stored_key, &[auth_message.as_bytes()]);
        if proof.len() != signature.len() {
            return Err(ScramError::NotAuthorized);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let ok = self
            .hash
            .digest(&client_key)
            .ct_eq(&self.credential.stored_key);
        if !bool::from(ok) {
            return Err(ScramError::NotAuthorized);
        }
        let server_signature = self
            .hash
            .hmac(&self.credential.server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 section 5, SCRAM-SHA-1 with password "pencil".
    #[test]
    fn rfc5802_sha1_example() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let cred = ScramCredential::with_salt(Hash::Sha1, "pencil", salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(first.username, "user");
        let mut ex = ServerExchange::new(Hash::Sha1, first, cred).unwrap();
        // Use the RFC's server nonce so the client's proof matches.
        ex.nonce = "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j".into();
        ex.server_first =
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".into();
        let v = ex
            .finish(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(v, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    /// RFC 7677 section 3, SCRAM-SHA-256 with password "pencil".
    #[test]
    fn rfc7677_sha256_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = ScramCredential::with_salt(Hash::Sha256, "pencil", salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let mut ex = ServerExchange::new(Hash::Sha256, first, cred).unwrap();
        ex.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        ex.server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into();
        let v = ex
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(v, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn wrong_proof_is_refused() {
        let cred = ScramCredential::new(Hash::Sha256, "right", 4096).unwrap();
        let first = parse_client_first(b"n,,n=user,r=abc").unwrap();
        let ex = ServerExchange::new(Hash::Sha256, first, cred).unwrap();
        let fake = format!("c=biws,r={},p={}", ex.nonce, B64.encode([0u8; 32]));
        assert_eq!(ex.finish(fake.as_bytes()), Err(ScramError::NotAuthorized));
    }

    #[test]
    fn client_first_parsing() {
        assert_eq!(
            parse_client_first(b"n,,n=a=2Cb=3Dc,r=x").unwrap().username,
            "a,b=c"
        );
        assert!(parse_client_first(b"y,,n=u,r=x").is_ok());
        assert_eq!(
            parse_client_first(b"p=tls-exporter,,n=u,r=x"),
            Err(ScramError::ChannelBindingUnsupported)
        );
        assert_eq!(parse_client_first(b"n,,n=u"), Err(ScramError::Malformed));
        assert_eq!(
            parse_client_first(b"n,,n=u,r=x,m=ext"),
            Err(ScramError::Malformed)
        );
        assert_eq!(
            parse_client_first(b"n,,n=a=2,r=x"),
            Err(ScramError::Malformed)
        );
        assert_eq!(
            parse_client_first(b"n,a=other,n=u,r=x"),
            Err(ScramError::InvalidAuthzid)
        );
        assert!(parse_client_first(b"n,a=u,n=u,r=x").is_ok());
        assert_eq!(
            parse_client_first(&[0xff, 0xfe]),
            Err(ScramError::Malformed)
        );
    }
}
