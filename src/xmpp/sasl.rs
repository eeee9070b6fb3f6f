//! SASL on a client stream (RFC 6120 §6): SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use super::connection::{Shared, Xml, next_before};
use super::io::SizeGuard;
use super::scram::{self, ServerExchange};
use crate::credentials::{Hash, ScramCredential};
use crate::store::{Account, LoadAccount};

/// Failed attempts before the stream is closed.
pub const MAX_ATTEMPTS: u32 = 3;

pub enum SaslOutcome {
    /// Authenticated as `username`; `success` is the `<success/>` to send at the reset.
    Success { username: String, success: Element },
    /// This attempt failed (a `<failure/>` was sent); the client may try again.
    Failed,
}

fn failure(condition: &str) -> Element {
    Element::builder("failure", ns::SASL)
        .append(Element::builder(condition, ns::SASL))
        .build()
}

fn success(data: Option<&str>) -> Element {
    let mut b = Element::builder("success", ns::SASL);
    if let Some(d) = data {
        b = b.append(B64.encode(d));
    }
    b.build()
}

/// The user part as stored: nodeprep'd through the JID rules.
fn normalise(username: &str, domain: &str) -> Option<String> {
    crate::jid::parse::<BareJid>(&format!("{username}@{domain}"))
        .and_then(|j| j.node().map(|n| n.to_string()))
}

async fn load(shared: &Shared, user: &str) -> Result<Option<Account>, ()> {
    match shared
        .store
        .send(LoadAccount {
            user: user.to_string(),
        })
        .await
    {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read account");
            Err(())
        }
        Err(_) => Err(()),
    }
}

fn decode(el: &Element) -> Option<Vec<u8>> {
    let text = el.text();
    let text = text.trim();
    if text == "=" {
        return Some(Vec::new());
    }
    B64.decode(text).ok()
}

/// Runs one SASL exchange that starts with `auth`. `None`: the stream was closed.
pub async fn exchange(
    xml: &mut Xml,
    guard: &SizeGuard,
    auth: Element,
    shared: &Shared,
    tls: bool,
    deadline: tokio::time::Instant,
) -> Option<SaslOutcome> {
    if !auth.is("auth", ns::SASL) {
        xml.send(&failure("malformed-request")).await.ok()?;
        return Some(SaslOutcome::Failed);
    }
    let mechanism = auth.attr("mechanism").unwrap_or_default().to_string();
    let Some(initial) = decode(&auth) else {
        xml.send(&failure("incorrect-encoding")).await.ok()?;
        return Some(SaslOutcome::Failed);
    };
    let domain = shared.cfg.domain.as_str();
    // The user name the client tried, for the failed-login line (fail2ban matches it).
    let mut tried = None;
    let result = match mechanism.as_str() {
        "PLAIN" if tls || shared.cfg.allow_unencrypted_plain_auth => {
            plain(&initial, domain, shared, &mut tried).await
        }
        "SCRAM-SHA-1" => {
            let scram = Scram {
                hash: Hash::Sha1,
                initial: &initial,
                deadline,
            };
            scram_exchange(xml, guard, scram, shared, &mut tried).await?
        }
        "SCRAM-SHA-256" => {
            let scram = Scram {
                hash: Hash::Sha256,
                initial: &initial,
                deadline,
            };
            scram_exchange(xml, guard, scram, shared, &mut tried).await?
        }
        _ => Err("invalid-mechanism"),
    };
    match result {
        Ok((username, data)) => {
            tracing::info!(user = %username, %mechanism, "authenticated");
            Some(SaslOutcome::Success {
                username,
                success: success(data.as_deref()),
            })
        }
        Err(condition) => {
            // One line per failure with the user tried; the session span carries the
            // client's address (`ip=`), so fail2ban's filter can act on both.
            tracing::warn!(
                user = tried.as_deref().unwrap_or("-"),
                %mechanism,
                %condition,
                "authentication failed"
            );
            xml.send(&failure(condition)).await.ok()?;
            Some(SaslOutcome::Failed)
        }
    }
}

type Auth = Result<(String, Option<String>), &'static str>;

async fn plain(initial: &[u8], domain: &str, shared: &Shared, tried: &mut Option<String>) -> Auth {
    let mut parts = initial.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed-request");
    };
    let (Ok(authcid), Ok(password), Ok(authzid)) = (
        std::str::from_utf8(authcid),
        std::str::from_utf8(password),
        std::str::from_utf8(authzid),
    ) else {
        return Err("malformed-request");
    };
    *tried = Some(authcid.to_string());
    let user = normalise(authcid, domain).ok_or("not-authorized")?;
    if !authzid.is_empty()
        && normalise(authzid.split('@').next().unwrap_or(""), domain).as_deref() != Some(&user)
    {
        return Err("invalid-authzid");
    }
    let account = load(shared, &user)
        .await
        .map_err(|_| "temporary-auth-failure")?;
    let credential = plain_credential(
        account.as_ref(),
        &user,
        shared.cfg.scram_iterations,
        &shared.decoy_secret,
    );
    let password = password.to_string();
    // PBKDF2 takes milliseconds: off the actor thread, so a stream of PLAIN attempts
    // cannot stall every session.
    let matches =
        tokio::task::spawn_blocking(move || credential.verify_password(Hash::Sha256, &password))
            .await
            .unwrap_or(false);
    if matches && account.is_some() {
        Ok((user, None))
    } else {
        Err("not-authorized")
    }
}

/// The credential a PLAIN password is checked against: the account's, or for an
/// unknown user a decoy with the configured iteration count, so that both cost one
/// PBKDF2 and a failed login does not tell whether the user exists.
pub fn plain_credential(
    account: Option<&Account>,
    user: &str,
    iterations: u32,
    decoy_secret: &[u8],
) -> ScramCredential {
    match account {
        Some(a) => a.credential(Hash::Sha256).clone(),
        None => ScramCredential::decoy(Hash::Sha256, user, iterations, decoy_secret),
    }
}

/// A SCRAM exchange about to start.
struct Scram<'a> {
    hash: Hash,
    initial: &'a [u8],
    deadline: tokio::time::Instant,
}

async fn scram_exchange(
    xml: &mut Xml,
    guard: &SizeGuard,
    scram: Scram<'_>,
    shared: &Shared,
    tried: &mut Option<String>,
) -> Option<Auth> {
    let Scram {
        hash,
        initial,
        deadline,
    } = scram;
    let first = match scram::parse_client_first(initial) {
        Ok(f) => f,
        Err(scram::ScramError::InvalidAuthzid) => return Some(Err("invalid-authzid")),
        Err(_) => return Some(Err("malformed-request")),
    };
    *tried = Some(first.username.clone());
    let Some(user) = normalise(&first.username, &shared.cfg.domain) else {
        return Some(Err("not-authorized"));
    };
    let account = match load(shared, &user).await {
        Ok(a) => a,
        Err(()) => return Some(Err("temporary-auth-failure")),
    };
    // An unknown user gets a challenge like any other and fails at the proof.
    let credential = account
        .as_ref()
        .map(|a| a.credential(hash).clone())
        .unwrap_or_else(|| {
            ScramCredential::decoy(
                hash,
                &user,
                shared.cfg.scram_iterations,
                &shared.decoy_secret,
            )
        });
    let Ok(exchange) = ServerExchange::new(hash, first, credential) else {
        return Some(Err("temporary-auth-failure"));
    };
    let challenge = Element::builder("challenge", ns::SASL)
        .append(B64.encode(exchange.server_first()))
        .build();
    xml.send(&challenge).await.ok()?;
    let response = next_before(xml, guard, deadline, shared).await?;
    if response.is("abort", ns::SASL) {
        return Some(Err("aborted"));
    }
    if !response.is("response", ns::SASL) {
        return Some(Err("malformed-request"));
    }
    let Some(client_final) = decode(&response) else {
        return Some(Err("incorrect-encoding"));
    };
    match exchange.finish(&client_final) {
        Ok(v) if account.is_some() => Some(Ok((user, Some(v)))),
        Ok(_) | Err(scram::ScramError::NotAuthorized) => Some(Err("not-authorized")),
        Err(_) => Some(Err("malformed-request")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown user's decoy has the configured iteration count (the cost of the
    /// check) and never matches; a known user's is the account's own.
    #[test]
    fn plain_checks_unknown_users_against_an_equal_cost_decoy() {
        let account = Account::from_password("pw", 4096).unwrap();
        let known = plain_credential(Some(&account), "juliet", 4096, &[1; 32]);
        assert!(known.verify_password(Hash::Sha256, "pw"));
        let decoy = plain_credential(None, "nobody", 4096, &[1; 32]);
        assert_eq!(decoy.iterations, known.iterations);
        assert!(!decoy.verify_password(Hash::Sha256, "pw"));
        assert!(!decoy.verify_password(Hash::Sha256, ""));
    }
}
