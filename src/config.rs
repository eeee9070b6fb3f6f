//! Typed configuration.
//!
//! The file is TOML with flat keys. Push options keep Prosody's names and defaults so an
//! admin can carry settings over from `mod_cloud_notify`. Every key is checked at start:
//! an unknown key, a wrong type or a value out of range stops the program with a message
//! that names the key, the value and what is allowed, because a push server that silently
//! ignores a typo runs for months with the wrong privacy setting.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Hard cap on `push_max_devices`: the capacity of the per-user registration list
/// (a `heapless::Vec`, so a user's registrations never reallocate or grow past it).
pub const MAX_DEVICES_CAP: usize = 16;

/// Which stanzas wake a phone on the stream-management paths (decision D18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    /// Every queued stanza, presence included (Prosody's behaviour).
    All,
    /// Only important stanzas (messages with a body, encrypted messages, calls).
    Important,
}

impl NotifyOn {
    fn as_str(self) -> &'static str {
        match self {
            NotifyOn::All => "all",
            NotifyOn::Important => "important",
        }
    }
}

/// The effective configuration. `Config::default()` is what runs with no file at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The XMPP domain served; also the `from` of every publish.
    pub domain: String,
    /// Put the real message body into notifications (privacy risk).
    pub push_notification_with_body: bool,
    /// Put the sender's full JID into notifications (privacy risk).
    pub push_notification_with_sender: bool,
    /// A registration is removed once this many counted errors came back in a row.
    pub push_max_errors: u32,
    /// Registrations kept per user; a new one evicts the one enabled longest ago.
    pub push_max_devices: usize,
    /// How long a push-linked hibernated session is kept before its first important push.
    pub push_max_hibernation_timeout: Duration,
    /// Placeholder body for important notifications; empty means no value (D1).
    pub push_notification_important_body: String,
    /// How long a publish is tracked while waiting for the app server's answer (D10).
    pub push_response_timeout: Duration,
    /// What wakes a phone on the stream-management paths (D18).
    pub push_notify_on: NotifyOn,
    /// Largest publish-options form (serialized bytes) accepted in `<enable/>` (D3).
    pub push_max_publish_options_size: usize,
    /// The batching delay of stanzas queued for a hibernated session (Prosody: 1 s).
    pub push_batch_window: Duration,
    /// Publishes awaiting an answer, per user; past it the oldest is treated as timed out.
    pub push_max_pending_publishes: usize,
    /// Users whose push state is held in memory at once; past it events for new users wait
    /// for idle users to be unloaded and requests are refused with `wait/resource-constraint`.
    pub push_max_active_users: usize,
    /// How long a user's push state stays in memory with nothing to do before it unloads.
    pub push_user_idle_time: Duration,
    /// PBKDF2 iterations for newly stored SCRAM credentials.
    pub scram_iterations: u32,
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// redb page cache in bytes.
    pub store_cache_size: usize,
    /// Writes waiting for the next group commit; past it requests fail fast.
    pub store_max_pending: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            push_notification_with_body: false,
            push_notification_with_sender: false,
            push_max_errors: 16,
            push_max_devices: 5,
            push_max_hibernation_timeout: Duration::from_secs(259_200),
            push_notification_important_body: "New Message!".into(),
            push_response_timeout: Duration::from_secs(60),
            push_notify_on: NotifyOn::All,
            push_max_publish_options_size: 4096,
            push_batch_window: Duration::from_secs(1),
            push_max_pending_publishes: 256,
            push_max_active_users: 10_000,
            push_user_idle_time: Duration::from_secs(30),
            scram_iterations: 10_000,
            data_dir: PathBuf::from("data"),
            store_cache_size: 4 * 1024 * 1024,
            store_max_pending: 4096,
        }
    }
}

/// Every key the file may hold, in the order `check` prints them.
pub const KEYS: &[&str] = &[
    "domain",
    "push_notification_with_body",
    "push_notification_with_sender",
    "push_max_errors",
    "push_max_devices",
    "push_max_hibernation_timeout",
    "push_notification_important_body",
    "push_response_timeout",
    "push_notify_on",
    "push_max_publish_options_size",
    "push_batch_window",
    "push_max_pending_publishes",
    "push_max_active_users",
    "push_user_idle_time",
    "scram_iterations",
    "data_dir",
    "store_cache_size",
    "store_max_pending",
];

/// Why a configuration was refused. The message names the key, the value and what is allowed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("configuration is not valid TOML: {0}")]
    Syntax(String),
    #[error("unknown configuration key `{key}`; known keys: {}", KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("`{key} = {value}` has the wrong type: expected {expected}")]
    WrongType {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("`{key} = {value}` is not allowed: {allowed}")]
    OutOfRange {
        key: String,
        value: String,
        allowed: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::parse(&text)
    }

    /// Parses and validates configuration text; keys not present keep their defaults.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.message().to_string()))?;
        let mut cfg = Config::default();
        for (key, value) in &table {
            let v = Value { key, value };
            match key.as_str() {
                "domain" => cfg.domain = v.domain()?,
                "push_notification_with_body" => cfg.push_notification_with_body = v.bool()?,
                "push_notification_with_sender" => cfg.push_notification_with_sender = v.bool()?,
                "push_max_errors" => cfg.push_max_errors = v.int(1, 1_000_000)? as u32,
                "push_max_devices" => {
                    cfg.push_max_devices = v.int(1, MAX_DEVICES_CAP as i64)? as usize
                }
                "push_max_hibernation_timeout" => {
                    cfg.push_max_hibernation_timeout = v.seconds(1.0, 31_536_000.0)?
                }
                "push_notification_important_body" => {
                    cfg.push_notification_important_body = v.string(1024)?
                }
                "push_response_timeout" => cfg.push_response_timeout = v.seconds(1.0, 3600.0)?,
                "push_notify_on" => {
                    cfg.push_notify_on = match v.string(16)?.as_str() {
                        "all" => NotifyOn::All,
                        "important" => NotifyOn::Important,
                        _ => return Err(v.out_of_range("\"all\" or \"important\"")),
                    }
                }
                "push_max_publish_options_size" => {
                    cfg.push_max_publish_options_size = v.int(64, 65_536)? as usize
                }
                "push_batch_window" => cfg.push_batch_window = v.seconds(0.001, 60.0)?,
                "push_max_pending_publishes" => {
                    cfg.push_max_pending_publishes = v.int(1, 65_536)? as usize
                }
                "push_max_active_users" => {
                    cfg.push_max_active_users = v.int(1, 10_000_000)? as usize
                }
                "push_user_idle_time" => cfg.push_user_idle_time = v.seconds(1.0, 86_400.0)?,
                "scram_iterations" => cfg.scram_iterations = v.int(4096, 1_000_000)? as u32,
                "data_dir" => cfg.data_dir = PathBuf::from(v.string(4096)?),
                "store_cache_size" => cfg.store_cache_size = v.int(64 * 1024, 1 << 30)? as usize,
                "store_max_pending" => cfg.store_max_pending = v.int(1, 1_000_000)? as usize,
                _ => return Err(ConfigError::UnknownKey { key: key.clone() }),
            }
        }
        Ok(cfg)
    }
}

/// One `key = value` pair being read; the readers check type and range.
struct Value<'a> {
    key: &'a str,
    value: &'a toml::Value,
}

impl Value<'_> {
    fn wrong_type(&self, expected: &'static str) -> ConfigError {
        ConfigError::WrongType {
            key: self.key.to_string(),
            value: self.value.to_string(),
            expected,
        }
    }

    fn out_of_range(&self, allowed: impl Into<String>) -> ConfigError {
        ConfigError::OutOfRange {
            key: self.key.to_string(),
            value: self.value.to_string(),
            allowed: allowed.into(),
        }
    }

    fn bool(&self) -> Result<bool, ConfigError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.wrong_type("true or false"))
    }

    fn int(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        let n = self
            .value
            .as_integer()
            .ok_or_else(|| self.wrong_type("an integer"))?;
        if n < min || n > max {
            return Err(self.out_of_range(format!("an integer from {min} to {max}")));
        }
        Ok(n)
    }

    /// Seconds as an integer or a float (Prosody's options are Lua numbers).
    fn seconds(&self, min: f64, max: f64) -> Result<Duration, ConfigError> {
        let secs = match self.value {
            toml::Value::Integer(n) => *n as f64,
            toml::Value::Float(f) => *f,
            _ => return Err(self.wrong_type("a number of seconds")),
        };
        if !(min..=max).contains(&secs) {
            return Err(self.out_of_range(format!("a number of seconds from {min} to {max}")));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn string(&self, max_len: usize) -> Result<String, ConfigError> {
        let s = self
            .value
            .as_str()
            .ok_or_else(|| self.wrong_type("a string"))?;
        if s.len() > max_len {
            return Err(self.out_of_range(format!("a string of at most {max_len} bytes")));
        }
        Ok(s.to_string())
    }

    fn domain(&self) -> Result<String, ConfigError> {
        let s = self.string(1023)?;
        match xmpp_parsers::jid::BareJid::new(&s) {
            Ok(jid) if jid.node().is_none() => Ok(jid.to_string()),
            _ => Err(self.out_of_range("a domain name such as \"example.org\" (no user part)")),
        }
    }
}

impl fmt::Display for Config {
    /// The effective configuration in the file's own syntax, so `check` output can be
    /// pasted back into a file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: Duration| {
            let s = d.as_secs_f64();
            if s.fract() == 0.0 {
                format!("{}", d.as_secs())
            } else {
                format!("{s}")
            }
        };
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        writeln!(f, "domain = {}", quote(&self.domain))?;
        writeln!(
            f,
            "push_notification_with_body = {}",
            self.push_notification_with_body
        )?;
        writeln!(
            f,
            "push_notification_with_sender = {}",
            self.push_notification_with_sender
        )?;
        writeln!(f, "push_max_errors = {}", self.push_max_errors)?;
        writeln!(f, "push_max_devices = {}", self.push_max_devices)?;
        writeln!(
            f,
            "push_max_hibernation_timeout = {}",
            secs(self.push_max_hibernation_timeout)
        )?;
        writeln!(
            f,
            "push_notification_important_body = {}",
            quote(&self.push_notification_important_body)
        )?;
        writeln!(
            f,
            "push_response_timeout = {}",
            secs(self.push_response_timeout)
        )?;
        writeln!(
            f,
            "push_notify_on = {}",
            quote(self.push_notify_on.as_str())
        )?;
        writeln!(
            f,
            "push_max_publish_options_size = {}",
            self.push_max_publish_options_size
        )?;
        writeln!(f, "push_batch_window = {}", secs(self.push_batch_window))?;
        writeln!(
            f,
            "push_max_pending_publishes = {}",
            self.push_max_pending_publishes
        )?;
        writeln!(f, "push_max_active_users = {}", self.push_max_active_users)?;
        writeln!(
            f,
            "push_user_idle_time = {}",
            secs(self.push_user_idle_time)
        )?;
        writeln!(f, "scram_iterations = {}", self.scram_iterations)?;
        writeln!(
            f,
            "data_dir = {}",
            quote(&self.data_dir.display().to_string())
        )?;
        writeln!(f, "store_cache_size = {}", self.store_cache_size)?;
        writeln!(f, "store_max_pending = {}", self.store_max_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn display_round_trips() {
        let cfg = Config {
            push_batch_window: Duration::from_millis(250),
            push_notify_on: NotifyOn::Important,
            push_notification_important_body: "say \"hi\"".into(),
            ..Config::default()
        };
        assert_eq!(Config::parse(&cfg.to_string()).unwrap(), cfg);
    }

    #[test]
    fn every_key_is_printed() {
        let text = Config::default().to_string();
        for key in KEYS {
            assert!(text.contains(&format!("{key} = ")), "{key} missing");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("push_max_device = 3").unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownKey {
                key: "push_max_device".into()
            }
        );
        assert!(err.to_string().contains("push_max_devices"));
    }

    #[test]
    fn wrong_type_names_key_value_and_type() {
        let err = Config::parse("push_notification_with_body = \"yes\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`push_notification_with_body = \"yes\"` has the wrong type: expected true or false"
        );
    }

    #[test]
    fn max_devices_zero_and_above_cap_are_refused() {
        let err = Config::parse("push_max_devices = 0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`push_max_devices = 0` is not allowed: an integer from 1 to 16"
        );
        assert!(Config::parse("push_max_devices = 17").is_err());
        assert_eq!(
            Config::parse("push_max_devices = 16")
                .unwrap()
                .push_max_devices,
            16
        );
    }

    #[test]
    fn seconds_accept_fractions() {
        let cfg =
            Config::parse("push_max_hibernation_timeout = 2\npush_batch_window = 0.5").unwrap();
        assert_eq!(cfg.push_max_hibernation_timeout, Duration::from_secs(2));
        assert_eq!(cfg.push_batch_window, Duration::from_millis(500));
        assert!(Config::parse("push_max_hibernation_timeout = 0.5").is_err());
        assert!(Config::parse("push_response_timeout = \"60\"").is_err());
        assert!(Config::parse("push_response_timeout = 0").is_err());
    }

    #[test]
    fn notify_on_is_an_enumeration() {
        assert_eq!(
            Config::parse("push_notify_on = \"important\"")
                .unwrap()
                .push_notify_on,
            NotifyOn::Important
        );
        let err = Config::parse("push_notify_on = \"some\"").unwrap_err();
        assert!(err.to_string().contains("\"all\" or \"important\""));
    }

    #[test]
    fn domain_must_be_a_domain() {
        assert_eq!(
            Config::parse("domain = \"Example.ORG\"").unwrap().domain,
            "example.org"
        );
        assert!(Config::parse("domain = \"user@example.org\"").is_err());
        assert!(Config::parse("domain = \"\"").is_err());
    }

    #[test]
    fn syntax_error_is_reported() {
        assert!(matches!(
            Config::parse("push_max_devices = "),
            Err(ConfigError::Syntax(_))
        ));
    }

    #[test]
    fn empty_important_body_is_kept() {
        assert_eq!(
            Config::parse("push_notification_important_body = \"\"")
                .unwrap()
                .push_notification_important_body,
            ""
        );
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    /// The shipped file documents every option with its default.
    #[test]
    fn shipped_config_is_the_defaults_and_lists_every_key() {
        let text = include_str!("../config/cloud-notify.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
        for key in KEYS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "{key} missing from config/cloud-notify.toml"
            );
        }
    }

    /// The README's configuration reference names every option.
    #[test]
    fn readme_documents_every_key() {
        let text = include_str!("../README.md");
        for key in KEYS {
            assert!(
                text.contains(&format!("`{key}`")),
                "{key} missing from README.md"
            );
        }
    }
}
