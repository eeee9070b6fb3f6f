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
        /// What the stream was writing when it broke (see [`Unsent`]).
        unsent: Vec<Queued>,
    },
}

/// A batch whose flush failed: the connection broke under it, so whether the peer got
/// any of it is unknown. Its stanzas are back in the client namespace, as queued.
pub struct Unsent {
    pub batch: Vec<Queued>,
    pub reason: String,
}

/// Writes `first` and what is queued behind it on a server stream (our link, or a peer's
/// stream used both ways), then flushes once. The batch is kept until the flush has
/// succeeded, so that a broken connection gives it back ([`Unsent`]) instead of losing
/// it without a word.
pub async fn write(
    xml: &mut XmlStream,
    first: Queued,
    rx: &flume::Receiver<Queued>,
) -> Result<(), Unsent> {
    let mut next = Some(first);
    let mut batch = Vec::new();
    let mut taken = 0;
    while let Some(queued) = next.take() {
        taken += 1;
        let Queued {
            item,
            give_up,
            charge,
        } = queued;
        let item = match item {
            Remote::Stanza(s) => {
                let s = stanza::rename_ns(*s, CLIENT_NS, SERVER_NS);
                match xml.feed(&s) {
                    Ok(()) => Some(Remote::Stanza(Box::new(s))),
                    Err(e) => {
                        tracing::warn!(error = %e, "stanza to a remote server not serializable; dropped");
                        None
                    }
                }
            }
            Remote::Publish(p) => {
                xml.feed_text(&p.xml);
                Some(Remote::Publish(p))
            }
        };
        if let Some(item) = item {
            batch.push(Queued {
                item,
                give_up,
                charge,
            });
        }
        if taken < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    match xml.flush().await {
        Ok(()) => Ok(()),
        Err(e) => Err(Unsent {
            batch: batch
                .into_iter()
                .map(|q| Queued {
                    item: match q.item {
                        Remote::Stanza(s) => {
                            Remote::Stanza(Box::new(stanza::rename_ns(*s, SERVER_NS, CLIENT_NS)))
                        }
                        publish => publish,
                    },
                    ..q
                })
                .collect(),
            reason: format!("the connection broke while writing: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::config::Config;
    use crate::metrics::held::HeldBytes;
    use crate::xmpp::io::{self, Transport};
    use crate::xmpp::route::RemotePublish;
    use crate::xmpp::xml::OurHeader;

    fn queued(item: Remote, held: &HeldBytes) -> Queued {
        Queued {
            charge: held.charge(bytes_of(&item)),
            item,
            give_up: None,
        }
    }

    fn chat(n: u32) -> Remote {
        let xml = format!(
            "<message xmlns='{CLIENT_NS}' from='juliet@ours' to='romeo@theirs' id='m{n}'><body>{n}</body></message>"
        );
        Remote::Stanza(Box::new(xml.parse().unwrap()))
    }

    /// Our end of a connection the peer has reset: the next flush on it fails.
    async fn reset_connection() -> XmlStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        // Deprecated for the wait on drop it can cause; a zero linger never waits, it
        // resets the connection at once, which is the point here.
        #[allow(deprecated)]
        theirs.set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop(theirs);
        // The reset has arrived once our end is readable (a read would fail now).
        ours.readable().await.unwrap();
        let (io, _) = io::wrap(Transport::Plain(ours), 1 << 16);
        let mut xml = XmlStream::new(io, SERVER_NS, Config::default().xml_limits());
        // Written with the batch, as on a link whose header had not gone out yet.
        xml.feed_header(OurHeader {
            from: Some("ours"),
            to: Some("theirs"),
            id: None,
        })
        .unwrap();
        xml
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_flushed_comes_back_whole_in_the_client_namespace() {
        let held = HeldBytes::default();
        let (tx, rx) = flume::bounded(8);
        tx.send(queued(
            Remote::Publish(RemotePublish {
                id: "p1".into(),
                xml: "<iq type='set' id='p1'/>".into(),
            }),
            &held,
        ))
        .unwrap();
        tx.send(queued(chat(2), &held)).unwrap();
        let mut xml = reset_connection().await;
        let unsent = write(&mut xml, queued(chat(1), &held), &rx)
            .await
            .expect_err("the flush fails on a reset connection");
        assert!(
            unsent
                .reason
                .starts_with("the connection broke while writing")
        );
        let ids: Vec<String> = unsent
            .batch
            .iter()
            .map(|q| match &q.item {
                Remote::Stanza(s) => {
                    assert!(s.has_ns(CLIENT_NS), "{}", String::from(s.as_ref()));
                    s.attr("id").unwrap_or_default().to_string()
                }
                Remote::Publish(p) => p.id.clone(),
            })
            .collect();
        assert_eq!(ids, ["m1", "p1", "m2"]);
        // Still charged while they wait for their fate; given back with them.
        assert!(held.get() > 0);
        drop(unsent);
        assert_eq!(held.get(), 0);
    }
}
