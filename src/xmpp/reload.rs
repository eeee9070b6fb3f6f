//! What SIGHUP can change in a running server. The configuration is shared as one
//! immutable value by every part, so only the settings read through a handle that can
//! change are applied at once: the log filter, the certificate files and the client
//! connection quotas. Every other changed key is named and waits for a restart.

use crate::config::Config;

/// The keys SIGHUP applies at once.
pub const LIVE_KEYS: &[&str] = &[
    "log_level",
    "tls_certificate",
    "tls_key",
    "c2s_max_connections",
    "c2s_max_connections_per_ip",
    "c2s_max_unauthenticated",
    "s2s_max_connections_per_ip",
];

/// One setting changed in the running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub key: &'static str,
    pub old: String,
    pub new: String,
}

/// What the parts outside this decision managed to take: a certificate that fails to
/// load, or a log filter the logger refuses, leaves its keys as they run.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    pub certificate: bool,
    pub log_filter: bool,
}

/// Brings the live keys of `running` (what the server runs with) to their value in
/// `new`, and says which changed. The other keys of `running` stay as they are, so a
/// later comparison with the file still names them.
pub fn apply(running: &mut Config, new: &Config, taken: Taken) -> Vec<Applied> {
    let mut applied = Vec::new();
    let mut take = |key: &'static str, old: String, new: String| {
        if old != new {
            applied.push(Applied { key, old, new });
            true
        } else {
            false
        }
    };
    if taken.log_filter
        && take(
            "log_level",
            running.log_level.clone(),
            new.log_level.clone(),
        )
    {
        running.log_level = new.log_level.clone();
    }
    if taken.certificate {
        let path = |p: &Option<std::path::PathBuf>| match p {
            Some(p) => p.display().to_string(),
            None => "(self-signed)".to_string(),
        };
        if take(
            "tls_certificate",
            path(&running.tls_certificate),
            path(&new.tls_certificate),
        ) {
            running.tls_certificate = new.tls_certificate.clone();
        }
        if take("tls_key", path(&running.tls_key), path(&new.tls_key)) {
            running.tls_key = new.tls_key.clone();
        }
    }
    let mut count = |key, old: &mut usize, new: usize| {
        if take(key, old.to_string(), new.to_string()) {
            *old = new;
        }
    };
    count(
        "c2s_max_connections",
        &mut running.c2s_max_connections,
        new.c2s_max_connections,
    );
    count(
        "c2s_max_connections_per_ip",
        &mut running.c2s_max_connections_per_ip,
        new.c2s_max_connections_per_ip,
    );
    count(
        "c2s_max_unauthenticated",
        &mut running.c2s_max_unauthenticated,
        new.c2s_max_unauthenticated,
    );
    // (`s2s_max_connections` also bounds the outbound links, which read it at start:
    // it is not one of these.)
    count(
        "s2s_max_connections_per_ip",
        &mut running.s2s_max_connections_per_ip,
        new.s2s_max_connections_per_ip,
    );
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Taken = Taken {
        certificate: true,
        log_filter: true,
    };

    #[test]
    fn live_keys_are_applied_with_old_and_new_values() {
        let mut running = Config::default();
        let new = Config {
            c2s_max_connections: 500,
            log_level: "debug".into(),
            push_max_errors: 3,
            ..Config::default()
        };
        let applied = apply(&mut running, &new, ALL);
        assert_eq!(
            applied,
            [
                Applied {
                    key: "log_level",
                    old: Config::default().log_level,
                    new: "debug".into()
                },
                Applied {
                    key: "c2s_max_connections",
                    old: Config::default().c2s_max_connections.to_string(),
                    new: "500".into()
                },
            ]
        );
        assert_eq!(running.c2s_max_connections, 500);
        assert_eq!(
            running.push_max_errors,
            Config::default().push_max_errors,
            "a restart key keeps its running value"
        );
    }

    #[test]
    fn nothing_changed_applies_nothing() {
        let mut running = Config::default();
        assert!(apply(&mut running, &Config::default(), ALL).is_empty());
    }

    #[test]
    fn a_certificate_that_failed_keeps_its_paths() {
        let mut running = Config::default();
        let new = Config {
            tls_certificate: Some("/new.crt".into()),
            tls_key: Some("/new.key".into()),
            ..Config::default()
        };
        let taken = Taken {
            certificate: false,
            log_filter: true,
        };
        assert!(apply(&mut running, &new, taken).is_empty());
        assert_eq!(running.tls_certificate, None);
        assert_eq!(apply(&mut running, &new, ALL).len(), 2);
        assert_eq!(running.tls_key, new.tls_key);
    }

    #[test]
    fn every_live_key_is_a_configuration_key() {
        for key in LIVE_KEYS {
            assert!(crate::config::KEYS.contains(key), "{key}");
        }
    }
}
