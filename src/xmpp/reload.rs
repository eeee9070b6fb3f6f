//! What SIGHUP can change in a running server. The parts read the configuration either
//! once, as they start (listen addresses, the data directory, the store's sizes: those
//! wait for a restart), or through a handle that can change: the log filter, the
//! certificate, the connection quotas, and the [`LiveConfig`](crate::config::LiveConfig)
//! that the owners of the other limits read when they decide. This decides which keys of
//! a new file the running configuration takes; every other changed key is named and
//! waits for a restart.

use crate::config::Config;

/// Copies one key from the file into the running configuration.
type Take = fn(&mut Config, &Config);

/// The limits SIGHUP applies at once, besides the log level and the certificate, with
/// when each change reaches what it bounds:
const LIMITS: &[(&str, Take)] = &[
    // The next connection (`admission`).
    ("c2s_max_connections", |r, n| {
        r.c2s_max_connections = n.c2s_max_connections
    }),
    ("c2s_max_connections_per_ip", |r, n| {
        r.c2s_max_connections_per_ip = n.c2s_max_connections_per_ip
    }),
    ("c2s_max_unauthenticated", |r, n| {
        r.c2s_max_unauthenticated = n.c2s_max_unauthenticated
    }),
    ("s2s_max_connections_per_ip", |r, n| {
        r.s2s_max_connections_per_ip = n.s2s_max_connections_per_ip
    }),
    // The next inbound connection and the next outbound link; open ones stay.
    ("s2s_max_connections", |r, n| {
        r.s2s_max_connections = n.s2s_max_connections
    }),
    // The next message stored offline; what is stored stays.
    ("offline_max_messages", |r, n| {
        r.offline_max_messages = n.offline_max_messages
    }),
    ("offline_max_bytes", |r, n| {
        r.offline_max_bytes = n.offline_max_bytes
    }),
    // Sessions that enable stream management from now on (a session's queue is sized
    // when it is enabled).
    ("smacks_max_queue_size", |r, n| {
        r.smacks_max_queue_size = n.smacks_max_queue_size
    }),
    // The next stanza held for an inactive client.
    ("csi_queue_size", |r, n| r.csi_queue_size = n.csi_queue_size),
    // Publishes that end from now on (the metrics' `app_server` label).
    ("metrics_app_servers", |r, n| {
        r.metrics_app_servers = n.metrics_app_servers.clone()
    }),
    // The push machines, at their next event (the user actor's executor hands them the
    // running configuration).
    ("push_max_errors", |r, n| {
        r.push_max_errors = n.push_max_errors
    }),
    ("push_max_devices", |r, n| {
        r.push_max_devices = n.push_max_devices
    }),
    ("push_max_hibernation_timeout", |r, n| {
        r.push_max_hibernation_timeout = n.push_max_hibernation_timeout
    }),
    ("push_max_filter_jids", |r, n| {
        r.push_max_filter_jids = n.push_max_filter_jids
    }),
    ("push_max_pending_publishes", |r, n| {
        r.push_max_pending_publishes = n.push_max_pending_publishes
    }),
    ("push_notification_with_body", |r, n| {
        r.push_notification_with_body = n.push_notification_with_body
    }),
    ("push_notification_with_sender", |r, n| {
        r.push_notification_with_sender = n.push_notification_with_sender
    }),
    ("push_notification_important_body", |r, n| {
        r.push_notification_important_body = n.push_notification_important_body.clone()
    }),
    ("push_encrypted_with_body", |r, n| {
        r.push_encrypted_with_body = n.push_encrypted_with_body
    }),
    // The next publish (its answer's deadline, and how long the server-to-server links
    // retry it) and the next batch window; those open keep theirs.
    ("push_response_timeout", |r, n| {
        r.push_response_timeout = n.push_response_timeout
    }),
    ("push_batch_window", |r, n| {
        r.push_batch_window = n.push_batch_window
    }),
    // The next user actor started (the router); a lowered limit stops none, new users
    // are refused until fewer run.
    ("push_max_active_users", |r, n| {
        r.push_max_active_users = n.push_max_active_users
    }),
    // The next time a user actor becomes idle.
    ("push_user_idle_time", |r, n| {
        r.push_user_idle_time = n.push_user_idle_time
    }),
];

/// The keys SIGHUP applies at once.
pub fn live_keys() -> impl Iterator<Item = &'static str> {
    ["log_level", "tls_certificate", "tls_key"]
        .into_iter()
        .chain(LIMITS.iter().map(|(key, _)| *key))
}

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

/// `key`'s value as the file writes it (`check`'s output), for the log.
fn value_of(cfg: &str, key: &str) -> String {
    cfg.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
        .unwrap_or_default()
        .to_string()
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
    let (old_text, new_text) = (running.to_string(), new.to_string());
    for (key, copy) in LIMITS {
        if take(key, value_of(&old_text, key), value_of(&new_text, key)) {
            copy(running, new);
        }
    }
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
            data_dir: "/elsewhere".into(),
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
                Applied {
                    key: "push_max_errors",
                    old: Config::default().push_max_errors.to_string(),
                    new: "3".into()
                },
            ]
        );
        assert_eq!(running.c2s_max_connections, 500);
        assert_eq!(running.push_max_errors, 3);
        assert_eq!(
            running.data_dir,
            Config::default().data_dir,
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
        for key in live_keys() {
            assert!(crate::config::KEYS.contains(&key), "{key}");
        }
    }

    /// Each limit is copied into its own field: after applying a file where every live
    /// key differs, nothing is left to apply and nothing else changed.
    #[test]
    fn every_limit_reaches_its_own_field() {
        let changed = Config {
            c2s_max_connections: 1,
            c2s_max_connections_per_ip: 1,
            c2s_max_unauthenticated: 1,
            s2s_max_connections_per_ip: 1,
            s2s_max_connections: 1,
            offline_max_messages: 1,
            offline_max_bytes: 1,
            smacks_max_queue_size: 1,
            csi_queue_size: 1,
            metrics_app_servers: vec!["push.example.org".into()],
            push_max_errors: 1,
            push_max_devices: 1,
            push_max_hibernation_timeout: std::time::Duration::from_secs(1),
            push_max_filter_jids: 1,
            push_max_pending_publishes: 1,
            push_notification_with_body: !Config::default().push_notification_with_body,
            push_notification_with_sender: !Config::default().push_notification_with_sender,
            push_notification_important_body: "changed".into(),
            push_encrypted_with_body: !Config::default().push_encrypted_with_body,
            push_response_timeout: std::time::Duration::from_secs(1),
            push_batch_window: std::time::Duration::from_secs(2),
            push_max_active_users: 1,
            push_user_idle_time: std::time::Duration::from_secs(1),
            ..Config::default()
        };
        let mut running = Config::default();
        let applied = apply(&mut running, &changed, ALL);
        let keys: Vec<&str> = applied.iter().map(|a| a.key).collect();
        assert_eq!(keys, LIMITS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        assert_eq!(running, changed);
        assert!(apply(&mut running, &changed, ALL).is_empty());
    }

    #[test]
    fn a_value_is_read_as_the_file_writes_it() {
        let text = Config {
            push_max_hibernation_timeout: std::time::Duration::from_secs(90),
            ..Config::default()
        }
        .to_string();
        assert_eq!(value_of(&text, "push_max_hibernation_timeout"), "90");
        assert_eq!(value_of(&text, "push_max_errors"), "16");
        // A key that is another's prefix is not taken for it.
        assert_eq!(value_of(&text, "push_max"), "");
    }
}
