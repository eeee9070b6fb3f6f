//! Dialback's check (XEP-0220 §2.1.2): a peer claiming a domain gave us a key; we ask
//! the server that DNS (or `s2s_hosts`) names for that domain whether the key is its
//! own, over a connection of our own.

use super::Shared;
use super::connect::{self, LinkError};
use super::negotiate::verify_request;
use crate::xmpp::xml::{DIALBACK_NS, Read};

/// Whether `authoritative` confirms `key` for the stream `stream_id` it opened to our
/// domain `local`. Any failure to ask is a "no".
pub async fn confirmed(
    authoritative: &str,
    local: &str,
    stream_id: &str,
    key: &str,
    shared: &Shared,
) -> bool {
    let ask = ask(authoritative, local, stream_id, key, shared);
    match tokio::time::timeout(shared.cfg.s2s_timeout, ask).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(e)) => {
            tracing::info!(domain = %authoritative, error = %e, "dialback: cannot verify the key");
            false
        }
        Err(_) => {
            tracing::info!(domain = %authoritative, "dialback: verification timed out");
            false
        }
    }
}

async fn ask(
    authoritative: &str,
    local: &str,
    stream_id: &str,
    key: &str,
    shared: &Shared,
) -> Result<bool, LinkError> {
    let mut opened = connect::open(local, authoritative, shared, false).await?;
    let request = verify_request(local, authoritative, stream_id, key);
    opened
        .xml
        .send(&request)
        .await
        .map_err(LinkError::Connect)?;
    loop {
        match opened.xml.next().await {
            Read::Element(el)
                if el.is("verify", DIALBACK_NS) && el.attr("id") == Some(stream_id) =>
            {
                let _ = opened.xml.shutdown().await;
                return Ok(el.attr("type") == Some("valid"));
            }
            Read::Element(_) | Read::Idle => opened.guard.reset(),
            other => return Err(LinkError::Stream(format!("{other:?}"))),
        }
    }
}
