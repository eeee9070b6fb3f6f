//! Typed configuration.
//!
//! The file is TOML with flat keys. Push options keep Prosody's names and defaults so an
//! admin can carry settings over from `mod_cloud_notify`. Every key is checked at start:
//! an unknown key, a wrong type or a value out of range stops the program with a message
//! that names the key, the value and what is allowed, because a push server that silently
//! ignores a typo runs for months with the wrong privacy setting.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod live;

/// The configuration the server runs with, which SIGHUP changes (see `live.rs`).
pub type LiveConfig = live::Live<Config>;

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
    /// What the log shows (a tracing filter: `info`, `debug`, `cloud_notify=debug`);
    /// the environment's `CLOUD_NOTIFY_LOG` overrides it. Reloaded on SIGHUP.
    pub log_level: String,
    /// Put the real message body into notifications (privacy risk).
    pub push_notification_with_body: bool,
    /// Put the sender's full JID into notifications (privacy risk).
    pub push_notification_with_sender: bool,
    /// Put the sender and the text into a Tigase encrypted payload, which only the device
    /// can read, whatever the two options above say.
    pub push_encrypted_with_body: bool,
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
    /// Most JIDs one registration may name in the Tigase filters: muted JIDs and
    /// groupchat rooms, counted together.
    pub push_max_filter_jids: usize,
    /// The leading-edge batch window (D20) of stanzas queued for a hibernated or silent
    /// session; Prosody instead delays every such publish by a fixed 1 s.
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
    /// Where clients connect (STARTTLS).
    pub c2s_listen: SocketAddr,
    /// Optional direct-TLS listener for clients (XEP-0368).
    pub c2s_direct_tls_listen: Option<SocketAddr>,
    /// Where components (push app servers) connect (XEP-0114).
    pub component_listen: SocketAddr,
    /// Stanzas (publishes, mostly) waiting for a connected component to read them; past
    /// it a publish is dropped and logged, and the module hears no answer for it.
    pub component_queue_size: usize,
    /// PEM certificate chain; `None`: a self-signed certificate kept in `data_dir`.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key, with `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// Refuse authentication before TLS.
    pub c2s_require_encryption: bool,
    /// Allow SASL PLAIN without TLS (only with `c2s_require_encryption = false`).
    pub allow_unencrypted_plain_auth: bool,
    /// Largest stanza a client may send, in bytes; past it the stream ends with
    /// `policy-violation`.
    pub c2s_stanza_size_limit: usize,
    /// Nesting levels inside one stanza (the stanza is level 1), on every stream; past
    /// it the stream ends with `policy-violation` before the stanza is built.
    pub xml_max_depth: usize,
    /// Attributes on one element, on every stream.
    pub xml_max_attributes: usize,
    /// Bytes in one attribute value (or element or attribute name), on every stream.
    pub xml_max_attribute_size: usize,
    /// Client sockets from one IP address at once (authenticated or not).
    pub c2s_max_connections_per_ip: usize,
    /// Client sockets that have not bound a resource yet, in total.
    pub c2s_max_unauthenticated: usize,
    /// Client sockets open at once; past it new connections are closed at once. A
    /// hibernated session holds none.
    pub c2s_max_connections: usize,
    /// Seconds a client has to authenticate before its stream is closed.
    pub c2s_auth_timeout: Duration,
    /// Messages kept per user while they have no available session (XEP-0160); past it
    /// the sender gets `resource-constraint`.
    pub offline_max_messages: usize,
    /// Bytes of messages kept per user while they have no available session; past it the
    /// sender gets `resource-constraint`, as past `offline_max_messages`.
    pub offline_max_bytes: usize,
    /// How long archived messages (XEP-0313) are kept (Prosody's `archive_expires_after`).
    pub archive_expires_after: Duration,
    /// Archived messages kept per user; past it the oldest go.
    pub archive_max_messages_per_user: usize,
    /// Messages in one page of an archive query (Prosody's `max_archive_query_results`):
    /// a client asking for more gets this many and pages on.
    pub max_archive_query_results: usize,
    /// Stanzas held for an inactive client (XEP-0352) before they are all sent anyway
    /// (Prosody's `csi_queue_size`).
    pub csi_queue_size: usize,
    /// Roster items per user; past it new contacts (and strangers' subscription
    /// requests) are refused.
    pub roster_max_items: usize,
    /// How long a session that lost its connection stays resumable (XEP-0198).
    pub smacks_hibernation_time: Duration,
    /// Unacknowledged stanzas kept per session; past it the session ends.
    pub smacks_max_queue_size: usize,
    /// How long an `<r/>` may go unanswered before the push module hears of it.
    pub smacks_max_ack_delay: Duration,
    /// Unacknowledged stanzas before the server asks for an ack (0: after every one).
    pub smacks_max_unacked_stanzas: usize,
    /// Ended sessions remembered for `<failed h=…/>` on a late resume.
    pub smacks_max_old_sessions: usize,
    /// Components allowed to connect.
    pub components: Vec<ComponentConfig>,
    /// The OpenMetrics endpoint (`GET /metrics`), on a loopback address; off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// App servers reached over server-to-server links that the metrics count under
    /// their own domain (components always are); every other is `other`, so that the
    /// label's values stay a list the admin wrote, not what clients enable.
    pub metrics_app_servers: Vec<String>,
    /// Where other servers connect (server-to-server, STARTTLS); off when unset, and
    /// then only our own outbound links carry federation traffic.
    pub s2s_listen: Option<SocketAddr>,
    /// Where other servers connect with TLS from the first byte (XEP-0368); off when unset.
    pub s2s_direct_tls_listen: Option<SocketAddr>,
    /// Remote domains reached at a fixed address instead of through DNS (tests,
    /// split-horizon and LAN setups).
    pub s2s_hosts: BTreeMap<String, SocketAddr>,
    /// Certificate authorities trusted for other servers' certificates besides the
    /// system's (PEM), for SASL EXTERNAL; a private CA, or a test's.
    pub s2s_ca_file: Option<PathBuf>,
    /// The DNS server that server-to-server links ask (SRV, A, AAAA); `None`: the
    /// system's (/etc/resolv.conf).
    pub s2s_dns_server: Option<SocketAddr>,
    /// Refuse a server-to-server stream that is not encrypted (Prosody's name).
    pub s2s_require_encryption: bool,
    /// Require a certificate valid for the peer's domain, both ways: no dialback
    /// (Prosody's name).
    pub s2s_secure_auth: bool,
    /// Domains held to `s2s_secure_auth` even when it is off (Prosody's name).
    pub s2s_secure_domains: Vec<String>,
    /// Domains allowed dialback even with `s2s_secure_auth` (Prosody's name).
    pub s2s_insecure_domains: Vec<String>,
    /// How long an outbound link may take to connect and authenticate, and how long an
    /// inbound stream may stay unauthenticated (Prosody's name).
    pub s2s_timeout: Duration,
    /// Stanzas waiting for one remote domain's link while it connects; past it they
    /// bounce with `resource-constraint`.
    pub s2s_queue_size: usize,
    /// An outbound link with nothing sent or received for this long is closed.
    pub s2s_idle_timeout: Duration,
    /// Inbound server-to-server connections at once.
    pub s2s_max_connections: usize,
    /// Inbound server-to-server connections from one IP address at once.
    pub s2s_max_connections_per_ip: usize,
    /// Largest stanza another server may send, in bytes.
    pub s2s_stanza_size_limit: usize,
}

/// One `[[component]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    /// The component's domain, normalised as a JID when the file is read.
    pub jid: String,
    pub secret: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            log_level: "info".into(),
            push_notification_with_body: false,
            push_encrypted_with_body: true,
            push_notification_with_sender: false,
            push_max_errors: 16,
            push_max_devices: 5,
            push_max_hibernation_timeout: Duration::from_secs(259_200),
            push_notification_important_body: "New Message!".into(),
            push_response_timeout: Duration::from_secs(60),
            push_notify_on: NotifyOn::All,
            push_max_publish_options_size: 4096,
            push_max_filter_jids: 256,
            push_batch_window: Duration::from_secs(1),
            push_max_pending_publishes: 256,
            push_max_active_users: 10_000,
            push_user_idle_time: Duration::from_secs(30),
            scram_iterations: 10_000,
            data_dir: PathBuf::from("data"),
            store_cache_size: 4 * 1024 * 1024,
            store_max_pending: 4096,
            c2s_listen: SocketAddr::from(([127, 0, 0, 1], 5222)),
            c2s_direct_tls_listen: None,
            component_listen: SocketAddr::from(([127, 0, 0, 1], 5347)),
            component_queue_size: 4096,
            tls_certificate: None,
            tls_key: None,
            c2s_require_encryption: true,
            allow_unencrypted_plain_auth: false,
            c2s_stanza_size_limit: 256 * 1024,
            xml_max_depth: 32,
            xml_max_attributes: 64,
            xml_max_attribute_size: 8192,
            c2s_max_connections_per_ip: 20,
            c2s_max_unauthenticated: 100,
            c2s_max_connections: 1000,
            c2s_auth_timeout: Duration::from_secs(30),
            offline_max_messages: 1000,
            offline_max_bytes: 10 * 1024 * 1024,
            archive_expires_after: Duration::from_secs(7 * 86_400),
            archive_max_messages_per_user: 10_000,
            max_archive_query_results: 50,
            csi_queue_size: 256,
            roster_max_items: 1000,
            smacks_hibernation_time: Duration::from_secs(600),
            smacks_max_queue_size: 500,
            smacks_max_ack_delay: Duration::from_secs(30),
            smacks_max_unacked_stanzas: 0,
            smacks_max_old_sessions: 10,
            components: Vec::new(),
            metrics_listen: None,
            metrics_app_servers: DEFAULT_METRICS_APP_SERVERS
                .iter()
                .map(|d| d.to_string())
                .collect(),
            s2s_listen: None,
            s2s_direct_tls_listen: None,
            s2s_hosts: BTreeMap::new(),
            s2s_dns_server: None,
            s2s_ca_file: None,
            s2s_require_encryption: true,
            s2s_secure_auth: false,
            s2s_secure_domains: Vec::new(),
            s2s_insecure_domains: Vec::new(),
            s2s_timeout: Duration::from_secs(90),
            s2s_queue_size: 1024,
            s2s_idle_timeout: Duration::from_secs(300),
            s2s_max_connections: 100,
            s2s_max_connections_per_ip: 10,
            s2s_stanza_size_limit: 512 * 1024,
        }
    }
}

/// The public app servers of the stock apps: Conversations (p2), Monal (fpush, its two
/// regions), Siskin IM (Tigase).
pub const DEFAULT_METRICS_APP_SERVERS: &[&str] = &[
    "p2.siacs.eu",
    "eu.prod.push.monal-im.org",
    "us.prod.push.monal-im.org",
    "push.tigase.im",
];

/// Most `metrics_app_servers` entries: each adds a series per publish outcome.
pub const METRICS_APP_SERVERS_MAX: usize = 64;

/// Every key the file may hold, in the order `check` prints them.
pub const KEYS: &[&str] = &[
    "domain",
    "log_level",
    "push_notification_with_body",
    "push_notification_with_sender",
    "push_encrypted_with_body",
    "push_max_errors",
    "push_max_devices",
    "push_max_hibernation_timeout",
    "push_notification_important_body",
    "push_response_timeout",
    "push_notify_on",
    "push_max_publish_options_size",
    "push_max_filter_jids",
    "push_batch_window",
    "push_max_pending_publishes",
    "push_max_active_users",
    "push_user_idle_time",
    "scram_iterations",
    "data_dir",
    "store_cache_size",
    "store_max_pending",
    "c2s_listen",
    "c2s_direct_tls_listen",
    "component_listen",
    "component_queue_size",
    "tls_certificate",
    "tls_key",
    "c2s_require_encryption",
    "allow_unencrypted_plain_auth",
    "c2s_stanza_size_limit",
    "xml_max_depth",
    "xml_max_attributes",
    "xml_max_attribute_size",
    "c2s_max_connections_per_ip",
    "c2s_max_unauthenticated",
    "c2s_max_connections",
    "c2s_auth_timeout",
    "offline_max_messages",
    "offline_max_bytes",
    "archive_expires_after",
    "archive_max_messages_per_user",
    "max_archive_query_results",
    "csi_queue_size",
    "roster_max_items",
    "smacks_hibernation_time",
    "smacks_max_queue_size",
    "smacks_max_ack_delay",
    "smacks_max_unacked_stanzas",
    "smacks_max_old_sessions",
    "metrics_listen",
    "metrics_app_servers",
    "s2s_listen",
    "s2s_direct_tls_listen",
    "s2s_hosts",
    "s2s_dns_server",
    "s2s_ca_file",
    "s2s_require_encryption",
    "s2s_secure_auth",
    "s2s_secure_domains",
    "s2s_insecure_domains",
    "s2s_timeout",
    "s2s_queue_size",
    "s2s_idle_timeout",
    "s2s_max_connections",
    "s2s_max_connections_per_ip",
    "s2s_stanza_size_limit",
    "component",
];

/// Why a configuration was refused. The message names the key, the value and what is allowed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("configuration is not valid TOML: {0}")]
    Syntax(String),
    #[error(
        "`{key}` is inside a [[component]] table, where only jid and secret belong: a \
         [[component]] table takes every key below it, so put top-level keys above the \
         first [[component]]"
    )]
    KeyInComponent { key: String },
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

/// A TOML error with its line and column, and the key it is about when it names one.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let source = text.lines().nth(line - 1).unwrap_or("").trim();
    format!("line {line}, column {column}: {} (`{source}`)", e.message())
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
            .map_err(|e: toml::de::Error| ConfigError::Syntax(syntax_error(text, &e)))?;
        let mut cfg = Config::default();
        for (key, value) in &table {
            let v = Value { key, value };
            match key.as_str() {
                "domain" => cfg.domain = v.domain()?,
                "log_level" => {
                    let level = v.string(1024)?;
                    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
                        return Err(v.out_of_range(
                            "a log filter such as \"info\", \"debug\" or \"cloud_notify=debug\"",
                        ));
                    }
                    cfg.log_level = level;
                }
                "push_notification_with_body" => cfg.push_notification_with_body = v.bool()?,
                "push_notification_with_sender" => cfg.push_notification_with_sender = v.bool()?,
                "push_encrypted_with_body" => cfg.push_encrypted_with_body = v.bool()?,
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
                "push_max_filter_jids" => cfg.push_max_filter_jids = v.int(0, 4096)? as usize,
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
                "c2s_listen" => cfg.c2s_listen = v.socket()?,
                "c2s_direct_tls_listen" => cfg.c2s_direct_tls_listen = Some(v.socket()?),
                "component_listen" => cfg.component_listen = v.socket()?,
                "component_queue_size" => cfg.component_queue_size = v.int(1, 1_000_000)? as usize,
                "tls_certificate" => cfg.tls_certificate = Some(PathBuf::from(v.string(4096)?)),
                "tls_key" => cfg.tls_key = Some(PathBuf::from(v.string(4096)?)),
                "c2s_require_encryption" => cfg.c2s_require_encryption = v.bool()?,
                "allow_unencrypted_plain_auth" => cfg.allow_unencrypted_plain_auth = v.bool()?,
                "c2s_stanza_size_limit" => {
                    cfg.c2s_stanza_size_limit = v.int(10 * 1024, 16 * 1024 * 1024)? as usize
                }
                "c2s_max_connections" => cfg.c2s_max_connections = v.int(1, 1_000_000)? as usize,
                "xml_max_depth" => cfg.xml_max_depth = v.int(8, 256)? as usize,
                "xml_max_attributes" => cfg.xml_max_attributes = v.int(8, 4096)? as usize,
                "xml_max_attribute_size" => {
                    cfg.xml_max_attribute_size = v.int(1024, 1024 * 1024)? as usize
                }
                "c2s_max_connections_per_ip" => {
                    cfg.c2s_max_connections_per_ip = v.int(1, 1_000_000)? as usize
                }
                "c2s_max_unauthenticated" => {
                    cfg.c2s_max_unauthenticated = v.int(1, 1_000_000)? as usize
                }
                "c2s_auth_timeout" => cfg.c2s_auth_timeout = v.seconds(1.0, 3600.0)?,
                "offline_max_messages" => cfg.offline_max_messages = v.int(1, 1_000_000)? as usize,
                "offline_max_bytes" => cfg.offline_max_bytes = v.int(1024, 1 << 30)? as usize,
                "archive_expires_after" => {
                    cfg.archive_expires_after = v.seconds(1.0, 3650.0 * 86_400.0)?
                }
                "archive_max_messages_per_user" => {
                    cfg.archive_max_messages_per_user = v.int(1, 10_000_000)? as usize
                }
                "max_archive_query_results" => {
                    cfg.max_archive_query_results = v.int(1, 1000)? as usize
                }
                "csi_queue_size" => cfg.csi_queue_size = v.int(1, 100_000)? as usize,
                "roster_max_items" => cfg.roster_max_items = v.int(1, 100_000)? as usize,
                "smacks_hibernation_time" => {
                    cfg.smacks_hibernation_time = v.seconds(1.0, 604_800.0)?
                }
                "smacks_max_queue_size" => cfg.smacks_max_queue_size = v.int(1, 100_000)? as usize,
                "smacks_max_ack_delay" => cfg.smacks_max_ack_delay = v.seconds(1.0, 3600.0)?,
                "smacks_max_unacked_stanzas" => {
                    cfg.smacks_max_unacked_stanzas = v.int(0, 100_000)? as usize
                }
                "smacks_max_old_sessions" => {
                    cfg.smacks_max_old_sessions = v.int(0, 100_000)? as usize
                }
                "metrics_listen" => {
                    let addr = v.socket()?;
                    // The figures name no user, but they tell who is busy when; an
                    // endpoint reachable from the network is a reverse proxy's job.
                    if !addr.ip().is_loopback() {
                        return Err(v.out_of_range(
                            "a loopback address such as \"127.0.0.1:9540\" (for scrapes from \
                             elsewhere put a reverse proxy with TLS and authentication in front)",
                        ));
                    }
                    cfg.metrics_listen = Some(addr);
                }
                "metrics_app_servers" => {
                    let domains = v.domains()?;
                    if domains.len() > METRICS_APP_SERVERS_MAX {
                        return Err(v.out_of_range(format!(
                            "a list of at most {METRICS_APP_SERVERS_MAX} domains"
                        )));
                    }
                    cfg.metrics_app_servers = domains;
                }
                "s2s_listen" => cfg.s2s_listen = Some(v.socket()?),
                "s2s_direct_tls_listen" => cfg.s2s_direct_tls_listen = Some(v.socket()?),
                "s2s_hosts" => cfg.s2s_hosts = v.hosts()?,
                "s2s_dns_server" => cfg.s2s_dns_server = Some(v.socket()?),
                "s2s_ca_file" => cfg.s2s_ca_file = Some(PathBuf::from(v.string(4096)?)),
                "s2s_require_encryption" => cfg.s2s_require_encryption = v.bool()?,
                "s2s_secure_auth" => cfg.s2s_secure_auth = v.bool()?,
                "s2s_secure_domains" => cfg.s2s_secure_domains = v.domains()?,
                "s2s_insecure_domains" => cfg.s2s_insecure_domains = v.domains()?,
                "s2s_timeout" => cfg.s2s_timeout = v.seconds(1.0, 3600.0)?,
                "s2s_queue_size" => cfg.s2s_queue_size = v.int(1, 1_000_000)? as usize,
                "s2s_idle_timeout" => cfg.s2s_idle_timeout = v.seconds(1.0, 86_400.0)?,
                "s2s_max_connections" => cfg.s2s_max_connections = v.int(1, 1_000_000)? as usize,
                "s2s_max_connections_per_ip" => {
                    cfg.s2s_max_connections_per_ip = v.int(1, 1_000_000)? as usize
                }
                "s2s_stanza_size_limit" => {
                    cfg.s2s_stanza_size_limit = v.int(10 * 1024, 16 * 1024 * 1024)? as usize
                }
                "component" => cfg.components = v.components()?,
                _ => return Err(ConfigError::UnknownKey { key: key.clone() }),
            }
        }
        if cfg.tls_certificate.is_some() != cfg.tls_key.is_some() {
            return Err(ConfigError::OutOfRange {
                key: "tls_certificate".into(),
                value: format!("{:?}", cfg.tls_certificate),
                allowed: "tls_certificate and tls_key set together, or neither".into(),
            });
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

    fn socket(&self) -> Result<SocketAddr, ConfigError> {
        self.string(256)?
            .parse()
            .map_err(|_| self.out_of_range("an address and port such as \"127.0.0.1:5222\""))
    }

    /// `[[component]]` entries: each a table with `jid` and `secret`.
    fn components(&self) -> Result<Vec<ComponentConfig>, ConfigError> {
        let list = self
            .value
            .as_array()
            .ok_or_else(|| self.wrong_type("[[component]] tables with jid and secret"))?;
        let mut out = Vec::new();
        for entry in list {
            let table = entry
                .as_table()
                .ok_or_else(|| self.wrong_type("[[component]] tables with jid and secret"))?;
            if let Some(k) = table.keys().find(|k| *k != "jid" && *k != "secret") {
                return Err(ConfigError::KeyInComponent { key: k.clone() });
            }
            let field = |name: &str| {
                table
                    .get(name)
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        self.out_of_range(format!(
                            "every [[component]] needs a non-empty string `{name}`"
                        ))
                    })
            };
            // Kept normalised: the router and the component's stream compare it with
            // parsed domains.
            let jid = match crate::jid::parse::<xmpp_parsers::jid::BareJid>(&field("jid")?) {
                Some(j) if j.node().is_none() => j.to_string(),
                _ => {
                    return Err(self
                        .out_of_range("a component jid is a domain such as \"push.example.org\""));
                }
            };
            out.push(ComponentConfig {
                jid,
                secret: field("secret")?,
            });
        }
        Ok(out)
    }

    /// A list of domains (`s2s_secure_domains`, `s2s_insecure_domains`), lowercase.
    fn domains(&self) -> Result<Vec<String>, ConfigError> {
        let expected = "a list of domains such as [\"example.org\"]";
        let list = self
            .value
            .as_array()
            .ok_or_else(|| self.wrong_type(expected))?;
        list.iter()
            .map(|d| {
                d.as_str()
                    .and_then(crate::jid::parse::<xmpp_parsers::jid::BareJid>)
                    .filter(|j| j.node().is_none())
                    .map(|j| j.to_string())
                    .ok_or_else(|| self.out_of_range(expected))
            })
            .collect()
    }

    /// `s2s_hosts`: an inline table from a domain to an address and port.
    fn hosts(&self) -> Result<BTreeMap<String, SocketAddr>, ConfigError> {
        let expected = "a table such as { \"example.org\" = \"192.0.2.1:5269\" }";
        let table = self
            .value
            .as_table()
            .ok_or_else(|| self.wrong_type(expected))?;
        let mut out = BTreeMap::new();
        for (domain, addr) in table {
            let jid = crate::jid::parse::<xmpp_parsers::jid::BareJid>(domain)
                .filter(|j| j.node().is_none())
                .ok_or_else(|| {
                    self.out_of_range(format!("{expected}: `{domain}` is not a domain"))
                })?;
            let addr = addr
                .as_str()
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .ok_or_else(|| {
                    self.out_of_range(format!("{expected}: `{domain}` needs an address and port"))
                })?;
            out.insert(jid.to_string(), addr);
        }
        Ok(out)
    }

    fn domain(&self) -> Result<String, ConfigError> {
        let s = self.string(1023)?;
        match crate::jid::parse::<xmpp_parsers::jid::BareJid>(&s) {
            Some(jid) if jid.node().is_none() => Ok(jid.to_string()),
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
        writeln!(f, "log_level = {}", quote(&self.log_level))?;
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
        writeln!(
            f,
            "push_encrypted_with_body = {}",
            self.push_encrypted_with_body
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
        writeln!(f, "push_max_filter_jids = {}", self.push_max_filter_jids)?;
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
        writeln!(f, "store_max_pending = {}", self.store_max_pending)?;
        writeln!(f, "c2s_listen = {}", quote(&self.c2s_listen.to_string()))?;
        if let Some(a) = self.c2s_direct_tls_listen {
            writeln!(f, "c2s_direct_tls_listen = {}", quote(&a.to_string()))?;
        }
        writeln!(
            f,
            "component_listen = {}",
            quote(&self.component_listen.to_string())
        )?;
        writeln!(f, "component_queue_size = {}", self.component_queue_size)?;
        if let (Some(c), Some(k)) = (&self.tls_certificate, &self.tls_key) {
            writeln!(f, "tls_certificate = {}", quote(&c.display().to_string()))?;
            writeln!(f, "tls_key = {}", quote(&k.display().to_string()))?;
        }
        writeln!(
            f,
            "c2s_require_encryption = {}",
            self.c2s_require_encryption
        )?;
        writeln!(
            f,
            "allow_unencrypted_plain_auth = {}",
            self.allow_unencrypted_plain_auth
        )?;
        writeln!(f, "c2s_stanza_size_limit = {}", self.c2s_stanza_size_limit)?;
        writeln!(f, "c2s_max_connections = {}", self.c2s_max_connections)?;
        writeln!(f, "xml_max_depth = {}", self.xml_max_depth)?;
        writeln!(f, "xml_max_attributes = {}", self.xml_max_attributes)?;
        writeln!(
            f,
            "xml_max_attribute_size = {}",
            self.xml_max_attribute_size
        )?;
        writeln!(
            f,
            "c2s_max_connections_per_ip = {}",
            self.c2s_max_connections_per_ip
        )?;
        writeln!(
            f,
            "c2s_max_unauthenticated = {}",
            self.c2s_max_unauthenticated
        )?;
        writeln!(f, "c2s_auth_timeout = {}", secs(self.c2s_auth_timeout))?;
        writeln!(f, "offline_max_messages = {}", self.offline_max_messages)?;
        writeln!(f, "offline_max_bytes = {}", self.offline_max_bytes)?;
        writeln!(
            f,
            "archive_expires_after = {}",
            secs(self.archive_expires_after)
        )?;
        writeln!(
            f,
            "archive_max_messages_per_user = {}",
            self.archive_max_messages_per_user
        )?;
        writeln!(
            f,
            "max_archive_query_results = {}",
            self.max_archive_query_results
        )?;
        writeln!(f, "csi_queue_size = {}", self.csi_queue_size)?;
        writeln!(f, "roster_max_items = {}", self.roster_max_items)?;
        writeln!(
            f,
            "smacks_hibernation_time = {}",
            secs(self.smacks_hibernation_time)
        )?;
        writeln!(f, "smacks_max_queue_size = {}", self.smacks_max_queue_size)?;
        writeln!(
            f,
            "smacks_max_ack_delay = {}",
            secs(self.smacks_max_ack_delay)
        )?;
        writeln!(
            f,
            "smacks_max_unacked_stanzas = {}",
            self.smacks_max_unacked_stanzas
        )?;
        writeln!(
            f,
            "smacks_max_old_sessions = {}",
            self.smacks_max_old_sessions
        )?;
        if let Some(a) = self.metrics_listen {
            writeln!(f, "metrics_listen = {}", quote(&a.to_string()))?;
        }
        let list = |l: &[String]| l.iter().map(|d| quote(d)).collect::<Vec<_>>().join(", ");
        writeln!(
            f,
            "metrics_app_servers = [{}]",
            list(&self.metrics_app_servers)
        )?;
        if let Some(a) = self.s2s_listen {
            writeln!(f, "s2s_listen = {}", quote(&a.to_string()))?;
        }
        if let Some(a) = self.s2s_direct_tls_listen {
            writeln!(f, "s2s_direct_tls_listen = {}", quote(&a.to_string()))?;
        }
        let hosts: Vec<String> = self
            .s2s_hosts
            .iter()
            .map(|(d, a)| format!("{} = {}", quote(d), quote(&a.to_string())))
            .collect();
        writeln!(f, "s2s_hosts = {{ {} }}", hosts.join(", "))?;
        if let Some(a) = self.s2s_dns_server {
            writeln!(f, "s2s_dns_server = {}", quote(&a.to_string()))?;
        }
        if let Some(p) = &self.s2s_ca_file {
            writeln!(f, "s2s_ca_file = {}", quote(&p.display().to_string()))?;
        }
        writeln!(
            f,
            "s2s_require_encryption = {}",
            self.s2s_require_encryption
        )?;
        writeln!(f, "s2s_secure_auth = {}", self.s2s_secure_auth)?;
        writeln!(
            f,
            "s2s_secure_domains = [{}]",
            list(&self.s2s_secure_domains)
        )?;
        writeln!(
            f,
            "s2s_insecure_domains = [{}]",
            list(&self.s2s_insecure_domains)
        )?;
        writeln!(f, "s2s_timeout = {}", secs(self.s2s_timeout))?;
        writeln!(f, "s2s_queue_size = {}", self.s2s_queue_size)?;
        writeln!(f, "s2s_idle_timeout = {}", secs(self.s2s_idle_timeout))?;
        writeln!(f, "s2s_max_connections = {}", self.s2s_max_connections)?;
        writeln!(
            f,
            "s2s_max_connections_per_ip = {}",
            self.s2s_max_connections_per_ip
        )?;
        writeln!(f, "s2s_stanza_size_limit = {}", self.s2s_stanza_size_limit)?;
        for c in &self.components {
            // The secret is a password: never printed.
            writeln!(
                f,
                "[[component]]\njid = {}\nsecret = \"(hidden)\"",
                quote(&c.jid)
            )?;
        }
        Ok(())
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
        let cfg = Config {
            c2s_direct_tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5223))),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9540))),
            s2s_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5269))),
            s2s_dns_server: Some(SocketAddr::from(([127, 0, 0, 53], 53))),
            s2s_direct_tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5270))),
            s2s_ca_file: Some("ca.pem".into()),
            tls_certificate: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            components: vec![ComponentConfig {
                jid: "push.example.org".into(),
                secret: "s".into(),
            }],
            ..Config::default()
        };
        let text = cfg.to_string();
        for key in KEYS {
            let shown = if *key == "component" {
                text.contains("[[component]]")
            } else {
                text.contains(&format!("{key} = "))
            };
            assert!(shown, "{key} missing");
        }
        assert!(
            !text.contains("secret = \"s\""),
            "component secrets are never printed"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Config::parse("domain = \"example.org\"\n\npush_max_errors = = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("push_max_errors = = 3"), "{err}");
    }

    /// The example file's [[component]] entry, uncommented as the README says, keeps
    /// every other key where it was: the table is the file's last part.
    #[test]
    fn uncommenting_the_component_example_is_safe() {
        let text = include_str!("../config/cloud-notify.toml");
        let uncommented: String = text
            .lines()
            .map(|l| match l.trim_start() {
                "# [[component]]" => "[[component]]".to_string(),
                t if t.starts_with("# jid = ") || t.starts_with("# secret = ") => {
                    t.trim_start_matches("# ").to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cfg = Config::parse(&uncommented).expect("valid with the component");
        assert_eq!(cfg.components.len(), 1);
        assert_eq!(cfg.components[0].jid, "push.localhost");
    }

    #[test]
    fn components_are_checked() {
        let cfg =
            Config::parse("[[component]]\njid = \"push.example.org\"\nsecret = \"x\"").unwrap();
        assert_eq!(cfg.components[0].jid, "push.example.org");
        assert!(Config::parse("[[component]]\njid = \"push.example.org\"").is_err());
        assert!(Config::parse("[[component]]\njid = \"a@b\"\nsecret = \"x\"").is_err());
        let err = Config::parse("[[component]]\njid = \"p.example\"\nsecret = \"x\"\nport = 1")
            .unwrap_err();
        assert!(
            err.to_string().contains("`port` is inside a [[component]]"),
            "{err}"
        );
        assert!(Config::parse("c2s_listen = \"nonsense\"").is_err());
        assert!(
            Config::parse("tls_certificate = \"c.pem\"").is_err(),
            "key missing"
        );
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
    fn metrics_listen_is_off_by_default_and_loopback_only() {
        assert_eq!(Config::default().metrics_listen, None);
        let cfg = Config::parse("metrics_listen = \"127.0.0.1:9540\"").unwrap();
        assert_eq!(cfg.metrics_listen, Some("127.0.0.1:9540".parse().unwrap()));
        assert!(Config::parse("metrics_listen = \"[::1]:9540\"").is_ok());
        let e = Config::parse("metrics_listen = \"0.0.0.0:9540\"").unwrap_err();
        assert!(e.to_string().contains("a loopback address"), "{e}");
        assert_eq!(Config::parse(&cfg.to_string()).unwrap(), cfg);
    }

    #[test]
    fn metrics_app_servers_are_at_most_64_domains() {
        let cfg = Config::parse("metrics_app_servers = [\"P2.siacs.eu\"]").unwrap();
        assert_eq!(cfg.metrics_app_servers, ["p2.siacs.eu"]);
        assert_eq!(Config::parse(&cfg.to_string()).unwrap(), cfg);
        let none = Config::parse("metrics_app_servers = []").unwrap();
        assert_eq!(Config::parse(&none.to_string()).unwrap(), none);
        let e = Config::parse("metrics_app_servers = [\"u@p2.siacs.eu\"]").unwrap_err();
        assert!(e.to_string().contains("metrics_app_servers"), "{e}");
        let many: Vec<String> = (0..65).map(|i| format!("\"a{i}.test\"")).collect();
        let e = Config::parse(&format!("metrics_app_servers = [{}]", many.join(", ")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics_app_servers"), "{e}");
        assert!(e.contains("at most 64 domains"), "{e}");
        let (_, at_most) = many.split_at(1);
        assert!(Config::parse(&format!("metrics_app_servers = [{}]", at_most.join(", "))).is_ok());
    }

    #[test]
    fn s2s_hosts_map_domains_to_addresses() {
        let cfg = Config::parse(
            "s2s_hosts = { \"Example.ORG\" = \"127.0.0.2:5269\", \"b.test\" = \"[::1]:5270\" }",
        )
        .unwrap();
        assert_eq!(
            cfg.s2s_hosts.get("example.org"),
            Some(&"127.0.0.2:5269".parse().unwrap())
        );
        assert_eq!(cfg.s2s_hosts.len(), 2);
        assert_eq!(Config::parse(&cfg.to_string()).unwrap(), cfg);
        let e = Config::parse("s2s_hosts = { \"a.test\" = \"nowhere\" }").unwrap_err();
        assert!(e.to_string().contains("needs an address and port"), "{e}");
        let e = Config::parse("s2s_hosts = { \"u@a.test\" = \"127.0.0.1:1\" }").unwrap_err();
        assert!(e.to_string().contains("is not a domain"), "{e}");
        assert!(Config::parse("s2s_hosts = \"a.test\"").is_err());
        let cfg =
            Config::parse("s2s_secure_domains = [\"A.test\"]\ns2s_insecure_domains = []").unwrap();
        assert_eq!(cfg.s2s_secure_domains, ["a.test"]);
        assert_eq!(Config::parse(&cfg.to_string()).unwrap(), cfg);
        assert!(Config::parse("s2s_secure_domains = [\"u@a.test\"]").is_err());
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
            // Optional keys are shown commented out, with an example value.
            let listed = text.lines().any(|l| {
                let l = l.trim_start_matches("# ");
                l.starts_with(&format!("{key} = ")) || (*key == "component" && l == "[[component]]")
            });
            assert!(listed, "{key} missing from config/cloud-notify.toml");
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
