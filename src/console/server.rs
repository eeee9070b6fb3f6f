//! The running server, as the commands reach it: its admin socket, with a bound on how
//! long an answer may take, and the encoding of what goes over it.

use std::time::Duration;

use crate::config::Config;
use crate::xmpp::admin::client::AdminClient;

/// The running server's admin socket, or `None` when no server answers on it. A
/// request waits at most `timeout` for its answer.
pub(super) fn server(cfg: &Config, timeout: Duration) -> Option<AdminClient> {
    let c = AdminClient::connect(&cfg.data_dir).ok()?;
    // Without a timeout a hung server would hang the command; failing to set one
    // leaves the wait unbounded, which is still a working command.
    let _ = c.set_timeout(Some(timeout));
    Some(c)
}

/// How long a request other than a test push may take: a status asks the store, which
/// waits behind the commits (an fsync on an SD card can take a while).
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// What a timed-out or broken request reads as.
pub(super) fn request(c: &mut AdminClient, line: &str) -> Result<String, String> {
    c.request(line).map_err(|e| {
        if e.contains("timed out") || e.contains("temporarily unavailable") {
            format!(
                "the server did not answer in time ({e}); is it stuck? `journalctl -u \
                 cloud-notify` (or its log) may say why"
            )
        } else {
            e
        }
    })
}

/// Decodes an answer of the admin socket (postcard in base64).
pub(super) fn decode<T: serde::de::DeserializeOwned>(answer: &str) -> Result<T, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(answer.trim())
        .ok()
        .and_then(|b| postcard::from_bytes(&b).ok())
        .ok_or_else(|| {
            "the running server's answer cannot be read: is it another version of \
             cloud-notify? Restart it after an upgrade"
                .to_string()
        })
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<String, String> {
    use base64::Engine;
    postcard::to_stdvec(value)
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .map_err(|e| e.to_string())
}
