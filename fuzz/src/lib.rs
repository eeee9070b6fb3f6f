//! Helpers shared by the fuzz targets in `fuzz_targets/`: feeding bytes to the stream
//! reader the way `XmlStream` does, and the checks every element the server builds from
//! peer input must pass.

use cloud_notify::xmpp::xml::reader::{Item, Limits, ReadError, Reader};
use cloud_notify::xmpp::xml::writer::{OurHeader, Writer};
use xmpp_parsers::minidom::{Element, Node};

/// A client's stream header, as a real client sends it (the prefix of the stanza-level
/// targets, so the fuzzer spends its time inside stanzas).
pub const CLIENT_HEAD: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

/// A component's stream header (XEP-0114).
pub const COMPONENT_HEAD: &str = "<stream:stream xmlns='jabber:component:accept' \
    xmlns:stream='http://etherx.jabber.org/streams' to='push.example.net'>";

pub const CLIENT_NS: &str = "jabber:client";
pub const COMPONENT_NS: &str = "jabber:component:accept";

/// What reading a stream gave: the items in order, then the error that ended it, if any.
#[derive(Debug)]
pub struct Outcome {
    pub items: Vec<Item>,
    pub error: Option<ReadError>,
}

/// Feeds `input` to `reader` as `XmlStream::next` does over a `BufReader`: a new chunk
/// (of the size `chunk` says) arrives only when everything before it was consumed. When
/// `restart_after_sasl` is set the reader restarts after each SASL element, as c2s does
/// after `<success/>`, and the bytes after it go to the restarted reader.
///
/// Asserts the property `XmlStream::next` relies on not to spin: when the reader asks
/// for more bytes (`Ok(None)`), it has taken every byte it was given.
pub fn feed(
    reader: &mut Reader,
    input: &[u8],
    mut chunk: impl FnMut() -> usize,
    restart_after_sasl: bool,
) -> Outcome {
    let mut items = Vec::new();
    let mut rest = input;
    let mut buf: &[u8] = &[];
    loop {
        if buf.is_empty() {
            if rest.is_empty() {
                return Outcome { items, error: None };
            }
            let n = chunk().clamp(1, rest.len());
            (buf, rest) = rest.split_at(n);
        }
        let before = buf.len();
        match reader.next(&mut buf, false) {
            Ok(None) => assert!(
                buf.is_empty(),
                "the reader asked for more bytes but left {} of {before} unconsumed: \
                 XmlStream::next would spin on them",
                buf.len()
            ),
            Ok(Some(item)) => {
                let restart = restart_after_sasl
                    && matches!(&item, Item::Element(el)
                        if el.has_ns("urn:ietf:params:xml:ns:xmpp-sasl")
                            && matches!(el.name(), "auth" | "response"));
                items.push(item);
                if restart {
                    reader.restart();
                }
            }
            Err(e) => {
                return Outcome {
                    items,
                    error: Some(e),
                };
            }
        }
    }
}

/// Reads `head` + `body` in one piece with `limits`; the top-level elements and the error.
pub fn elements(head: &str, body: &[u8], limits: Limits) -> (Vec<Element>, Option<ReadError>) {
    let mut input = head.as_bytes().to_vec();
    input.extend_from_slice(body);
    let mut reader = Reader::new(limits);
    let out = feed(&mut reader, &input, || usize::MAX, false);
    let els = out
        .items
        .into_iter()
        .filter_map(|i| match i {
            Item::Element(el) => Some(el),
            _ => None,
        })
        .collect();
    (els, out.error)
}

/// Items compared by value (`Item` has no `PartialEq`).
pub fn same_item(a: &Item, b: &Item) -> bool {
    match (a, b) {
        (Item::Header(x), Item::Header(y)) => x == y,
        (Item::Element(x), Item::Element(y)) => x == y,
        (Item::Footer, Item::Footer) => true,
        _ => false,
    }
}

/// Visits `el` and every descendant with its level (the element itself is level 1),
/// without recursion.
pub fn walk(el: &Element, mut f: impl FnMut(&Element, usize)) {
    let mut stack = vec![(el, 1)];
    while let Some((e, level)) = stack.pop() {
        f(e, level);
        stack.extend(e.children().map(|c| (c, level + 1)));
    }
}

/// Bytes of text and attribute values held in `el`'s tree, and its element count.
pub fn weight(el: &Element) -> (usize, usize) {
    let mut bytes = 0;
    let mut count = 0;
    walk(el, |e, _| {
        count += 1;
        bytes += e.attrs().iter().map(|(_, v)| v.len()).sum::<usize>();
        bytes += e
            .nodes()
            .map(|n| match n {
                Node::Text(t) => t.len(),
                Node::Element(_) => 0,
            })
            .sum::<usize>();
    });
    (bytes, count)
}

/// Serializes `el` with the server's stream writer on a stream whose default namespace
/// is `ns`, then reads it back with the server's reader: the peer must get exactly the
/// element the server meant to send. Returns the bytes written after the header.
pub fn wire_round_trip(el: &Element, ns: &'static str) -> Vec<u8> {
    let mut writer = Writer::new(ns);
    let mut out = Vec::new();
    writer
        .header(
            OurHeader {
                from: Some("example.com"),
                to: None,
                id: Some("s1"),
            },
            &mut out,
        )
        .expect("our header serializes");
    let head_len = out.len();
    writer.element(el, &mut out).unwrap_or_else(|e| {
        panic!("an element the server holds cannot be written to a peer: {e}\n{el:?}")
    });
    let mut reader = Reader::new(Limits {
        max_depth: 1024,
        max_attributes: 1 << 20,
        max_attribute_size: 1 << 24,
    });
    let got = feed(&mut reader, &out, || usize::MAX, false);
    assert!(
        got.error.is_none(),
        "the writer's output is not readable: {:?}\n{}",
        got.error,
        String::from_utf8_lossy(&out)
    );
    match &got.items[..] {
        [Item::Header(_), Item::Element(back)] => assert!(
            back == el,
            "the element changed on the wire:\nsent {el:?}\ngot  {back:?}\nas {}",
            String::from_utf8_lossy(&out)
        ),
        other => panic!(
            "the writer's output read back as {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
    out.split_off(head_len)
}

/// The text form the server keeps of a stanza (offline storage, the XEP-0198 queue,
/// publish-options) must parse back to the same element: `String::from(&Element)` panics
/// on an element it cannot write, and a text that does not parse back is dropped.
pub fn text_round_trip(el: &Element) -> String {
    let text = String::from(el);
    match text.parse::<Element>() {
        Ok(back) => assert!(
            &back == el,
            "the element changed in its stored text:\nheld {el:?}\ngot  {back:?}\nas {text}"
        ),
        Err(e) => panic!("the stored text of an element does not parse back: {e}\n{text}"),
    }
    text
}

/// The session every client-side target speaks for.
pub fn session() -> xmpp_parsers::jid::FullJid {
    "juliet@example.com/phone".parse().expect("a full JID")
}

/// A JID the server parsed (with `cloud_notify::jid::parse`, as everywhere a JID
/// enters) must come out the same when its text form (what is stored, logged, written
/// in attributes) is parsed again, by the jid crate alone too.
pub fn jid_round_trip(text: &str) -> Option<xmpp_parsers::jid::Jid> {
    use xmpp_parsers::jid::Jid;
    let jid = cloud_notify::jid::parse::<Jid>(text)?;
    let shown = jid.to_string();
    assert_eq!(
        shown.parse::<Jid>().as_ref(),
        Ok(&jid),
        "{text:?} parsed to {shown:?}, which parses differently"
    );
    let bare = jid.to_bare();
    assert_eq!(
        bare.to_string()
            .parse::<xmpp_parsers::jid::BareJid>()
            .as_ref(),
        Ok(&bare),
        "the bare form of {text:?} does not round-trip"
    );
    Some(jid)
}

/// Builds the publish IQ for `reg` and `summary` as the push module sends it to an app
/// server, and reads it on a component stream: it must be exactly one well-formed
/// element whose node, sender, body and publish-options are the ones the server meant.
pub fn check_publish(
    reg: &cloud_notify::push::registration::Registration,
    summary: &cloud_notify::push::publish::Summary,
) -> Element {
    use cloud_notify::push::publish::publish_xml;
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let text = publish_xml("example.com", reg, summary, id);
    let (els, err) = elements(COMPONENT_HEAD, text.as_bytes(), Limits::default());
    assert!(
        err.is_none() && els.len() == 1,
        "the publish is not one well-formed element: {err:?}\n{text}"
    );
    let iq = els.into_iter().next().expect("one element");
    let pubsub = "http://jabber.org/protocol/pubsub";
    let ps = iq.get_child("pubsub", pubsub).expect("pubsub");
    let publish = ps.get_child("publish", pubsub).expect("publish");
    assert_eq!(publish.attr("node"), reg.node(), "node changed\n{text}");
    assert_eq!(iq.attr("to"), Some(reg.jid.to_string().as_str()), "{text}");
    let form = publish
        .get_child("item", pubsub)
        .and_then(|i| i.get_child("notification", "urn:xmpp:push:0"))
        .and_then(|n| n.get_child("x", "jabber:x:data"))
        .expect("summary form");
    let value = |var: &str| {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", "jabber:x:data"))
            .map(|v| v.text())
    };
    assert_eq!(
        value("last-message-body"),
        summary.body,
        "body changed\n{text}"
    );
    assert_eq!(
        value("last-message-sender"),
        summary.sender,
        "sender changed\n{text}"
    );
    let options = ps
        .get_child("publish-options", pubsub)
        .and_then(|o| o.children().next());
    assert_eq!(
        options,
        reg.publish_options().as_ref(),
        "publish-options changed\n{text}"
    );
    iq
}

/// A registration as `UserPush::enable` builds it.
pub fn registration(
    jid: &xmpp_parsers::jid::Jid,
    node: Option<String>,
    publish_options: Option<String>,
    language: Option<String>,
) -> Result<
    cloud_notify::push::registration::Registration,
    cloud_notify::push::registration::RecordError,
> {
    use cloud_notify::push::registration::{Registration, identifier};
    let record = cloud_notify::store::RegistrationRecord {
        jid: jid.to_string(),
        node: node.clone(),
        publish_options,
        enabled_at_us: 1,
        client: "phone".into(),
        language,
        error_count: 0,
        last_success: None,
        last_error: None,
        last_timeout: None,
        extensions: None,
        last_s2s_failure: None,
    };
    Registration::from_record(identifier(jid, node.as_deref()), record)
}
