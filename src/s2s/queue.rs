//! What waits to go out on a server-to-server stream, our link's or a peer's used both
//! ways (XEP-0288), and how a batch of it is written. Kept apart from the links, the
//! streams and `Shared` so that each of them can use it.

use actix::Message;
use tokio::time::Instant;

use crate::metrics::held::{self, Charge};
use crate::xmpp::route::Remote;
use crate::xmpp::stanza::{self, CLIENT_NS};
use crate::xmpp::xml::{SERVER_NS, XmlStream};

/// Which link: from our `local` domain (`.0`) to the remote one (`.1`).
pub type Key = (String, String);

/// What waits in a link's queue: a stanza or publish, and for a publish that failed once
/// already, when it is given up (D21: retried for a bounded time). Its bytes count in the
/// memory figures (`queues`) until it is written or dropped.
pub struct Queued {
    pub item: Remote,
    pub give_up: Option<Instant>,
    pub charge: Charge,
}

/// An item's bytes while it waits: a stanza's tree, a publish's text.
pub fn bytes_of(item: &Remote) -> usize {
    size_of::<Queued>()
        + match item {
            Remote::Stanza(s) => held::element_bytes(s),
            Remote::Publish(p) => p.id.len() + p.xml.len(),
        }
}

/// Stanzas written before one flush, so that a burst costs one write.
const WRITE_BATCH: usize = 64;

/// An inbound stream used both ways (XEP-0288) takes (`Up`) or gives back (`Down`) the
/// pairs it authenticated; `tx` is its queue, which also tells streams apart, and `rx`
/// lets the links actor take back what the stream did not write when it ends.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Bidi {
    Up {
        pairs: Vec<Key>,
        tx: flume::Sender<Queued>,
        rx: flume::Receiver<Queued>,
    },
    Down {
        pairs: Vec<Key>,
        tx: flume::Sender<Queued>,
    },
}

/// Writes `first` and what is queued behind it on a server stream (our link, or a peer's
/// stream used both ways), then flushes once; `false` when it is no longer writable.
pub async fn write(xml: &mut XmlStream, first: Queued, rx: &flume::Receiver<Queued>) -> bool {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(queued) = next.take() {
        match queued.item {
            Remote::Stanza(s) => {
                let s = stanza::rename_ns(*s, CLIENT_NS, SERVER_NS);
                if let Err(e) = xml.feed(&s) {
                    tracing::warn!(error = %e, "stanza to a remote server not serializable; dropped");
                }
            }
            Remote::Publish(p) => xml.feed_text(&p.xml),
        }
        written += 1;
        if written < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    xml.flush().await.is_ok()
}
