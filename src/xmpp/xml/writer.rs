//! Serializes what the server sends through rxml's encoder: the stream header declares
//! the default namespace and the `stream` prefix once, and every stanza after it is its
//! child, so stanzas go out without namespace declarations of their own. Iterative: no
//! recursion on an element's depth.

use rxml::writer::{Encoder, Item, SimpleNamespaces, TrackNamespace};
use rxml::{Namespace, NcNameStr};
use xmpp_parsers::minidom::{Element, Node};

use super::reader::STREAM_NS;

pub struct Writer {
    encoder: Encoder<SimpleNamespaces>,
    default_ns: &'static str,
}

/// What our stream header says about us.
#[derive(Debug, Clone, Copy)]
pub struct OurHeader<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub id: Option<&'a str>,
}

fn encoder(default_ns: &'static str) -> Encoder<SimpleNamespaces> {
    let mut encoder = Encoder::new();
    let stream = NcNameStr::from_str("stream").ok().map(|n| n.to_ncname());
    encoder
        .ns_tracker_mut()
        .declare_fixed(stream.as_deref(), Namespace::from(STREAM_NS));
    encoder
        .ns_tracker_mut()
        .declare_fixed(None, Namespace::from(default_ns));
    // A server-to-server stream declares the dialback prefix on its header: that is how
    // a peer learns we speak dialback (XEP-0220 §2.1), and `<db:result/>` needs it.
    if default_ns == SERVER_NS {
        let db = NcNameStr::from_str("db").ok().map(|n| n.to_ncname());
        encoder
            .ns_tracker_mut()
            .declare_fixed(db.as_deref(), Namespace::from(DIALBACK_NS));
    }
    encoder
}

/// The default namespace of server-to-server streams.
pub const SERVER_NS: &str = "jabber:server";
/// Server dialback (XEP-0220).
pub const DIALBACK_NS: &str = "jabber:server:dialback";

enum Step<'a> {
    Open(&'a Element),
    Text(&'a str),
    Close,
}

impl Writer {
    pub fn new(default_ns: &'static str) -> Self {
        Writer {
            encoder: encoder(default_ns),
            default_ns,
        }
    }

    /// Our `<stream:stream>` for a new document, through a fresh encoder: the stanzas
    /// after it are its children, so they inherit its namespace declarations.
    pub fn header(&mut self, h: OurHeader<'_>, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.encoder = encoder(self.default_ns);
        self.encode(Item::XmlDeclaration(rxml::XmlVersion::V1_0), out)?;
        let stream = NcNameStr::from_str("stream").map_err(invalid)?;
        self.encode(
            Item::ElementHeadStart(Namespace::from(STREAM_NS), stream),
            out,
        )?;
        for (name, value) in [
            ("from", h.from),
            ("to", h.to),
            ("id", h.id),
            ("version", Some("1.0")),
        ] {
            if let Some(value) = value {
                let name = NcNameStr::from_str(name).map_err(invalid)?;
                self.encode(Item::Attribute(Namespace::NONE, name, value), out)?;
            }
        }
        let lang = NcNameStr::from_str("lang").map_err(invalid)?;
        self.encode(Item::Attribute(Namespace::xml().clone(), lang, "en"), out)?;
        self.encode(Item::ElementHeadEnd, out)
    }

    /// `</stream:stream>`, closing the header's element.
    pub fn footer(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.encode(Item::ElementFoot, out)
    }

    /// Appends `el` to `out`. Fails only for names that are not XML names, which no
    /// element read from a peer or built here has.
    pub fn element(&mut self, el: &Element, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut steps = vec![Step::Open(el)];
        while let Some(step) = steps.pop() {
            match step {
                Step::Open(e) => {
                    let name = NcNameStr::from_str(e.name()).map_err(invalid)?;
                    let ns = e.ns();
                    self.encode(
                        Item::ElementHeadStart(Namespace::from(ns.as_str()), name),
                        out,
                    )?;
                    for ((ns, name), value) in e.attrs().iter() {
                        self.encode(Item::Attribute(ns.clone(), name, value), out)?;
                    }
                    if e.nodes().next().is_some() {
                        self.encode(Item::ElementHeadEnd, out)?;
                    }
                    steps.push(Step::Close);
                    let start = steps.len();
                    for node in e.nodes() {
                        steps.push(match node {
                            Node::Element(c) => Step::Open(c),
                            Node::Text(t) => Step::Text(t),
                        });
                    }
                    steps[start..].reverse();
                }
                Step::Text(t) => self.encode(Item::Text(t), out)?,
                Step::Close => self.encode(Item::ElementFoot, out)?,
            }
        }
        Ok(())
    }

    fn encode(&mut self, item: Item<'_>, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.encoder.encode(item, out).map_err(invalid)
    }
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::reader::{Item as Read, Limits, Reader};
    use super::*;

    #[test]
    fn stanzas_use_the_stream_default_namespace_and_round_trip() {
        let mut w = Writer::new("jabber:client");
        let mut out = Vec::new();
        w.header(
            OurHeader {
                from: Some("localhost"),
                to: None,
                id: Some("a'b"),
            },
            &mut out,
        )
        .unwrap();
        let mut msg = Element::builder("message", "jabber:client")
            .append(Element::builder("body", "jabber:client").append("1 < 2 & 'q'"))
            .append(Element::builder("request", "urn:xmpp:receipts"))
            .build();
        crate::xmpp::stanza::set_attr(&mut msg, "to", "x@y");
        w.element(&msg, &mut out).unwrap();
        w.footer(&mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("id='a&#39;b'"), "{text}");
        assert!(text.contains("<message to='x@y'><body>"), "{text}");
        let mut r = Reader::new(Limits::default());
        let mut input = &out[..];
        let mut items = Vec::new();
        while let Some(i) = r.next(&mut input, false).unwrap() {
            items.push(i);
        }
        let [Read::Header(h), Read::Element(back), Read::Footer] = &items[..] else {
            panic!("{items:?}");
        };
        assert_eq!(h.id.as_deref(), Some("a'b"));
        assert_eq!(back, &msg);
    }

    #[test]
    fn features_are_written_with_the_stream_prefix() {
        let mut w = Writer::new("jabber:client");
        let mut out = Vec::new();
        let header = OurHeader {
            from: None,
            to: None,
            id: None,
        };
        w.header(header, &mut out).unwrap();
        out.clear();
        let f = Element::builder("features", STREAM_NS)
            .append(Element::builder("bind", "urn:ietf:params:xml:ns:xmpp-bind"))
            .build();
        w.element(&f, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("<stream:features>"), "{text}");
        assert!(text.ends_with("</stream:features>"), "{text}");
    }
}
