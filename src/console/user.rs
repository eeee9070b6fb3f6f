//! The user a command names, the same way for every command.

use xmpp_parsers::jid::BareJid;

use crate::config::Config;

/// The local part of a JID of our domain (or a bare local part), as every command
/// that names a user takes it.
pub fn user_of(jid: &str, cfg: &Config) -> Result<String, String> {
    let full = if jid.contains('@') {
        jid.to_string()
    } else {
        format!("{jid}@{}", cfg.domain)
    };
    let bare =
        crate::jid::parse::<BareJid>(&full).ok_or_else(|| format!("{jid} is not a valid JID"))?;
    if bare.domain().as_str() != cfg.domain {
        return Err(format!(
            "{jid} is not on this server's domain ({})",
            cfg.domain
        ));
    }
    bare.node()
        .map(|n| n.to_string())
        .ok_or_else(|| format!("{jid} has no user part"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_local_parts_of_our_domain() {
        let cfg = Config::default();
        assert_eq!(user_of("juliet@localhost", &cfg), Ok("juliet".into()));
        assert_eq!(user_of("juliet", &cfg), Ok("juliet".into()));
        assert!(user_of("juliet@elsewhere", &cfg).is_err());
    }
}
