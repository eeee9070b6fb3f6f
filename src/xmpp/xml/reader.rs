//! The stream reader: bytes in; a stream header, whole top-level elements and the stream
//! footer out. Every limit is enforced on the tokenizer's events, before the element
//! they belong to exists, so a hostile peer's cost stays linear in the bytes it sends:
//! rxml's parser is a state machine (no recursion), attribute names and values are
//! capped in its lexer, and the depth and attribute-count checks below run as each start
//! tag arrives. Trees are built with an explicit stack, never recursively.

use rxml::{Event, Parse, Parser, WithOptions};
use xmpp_parsers::minidom::Element;

use crate::config::Config;

/// The namespace of `<stream:stream>`.
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";

/// What a peer's XML may look like; past any of them the stream ends with
/// `policy-violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nesting levels inside a top-level element; the stanza itself is level 1.
    pub max_depth: usize,
    /// Attributes on one element.
    pub max_attributes: usize,
    /// Bytes in one attribute value or name (and in an element name). Text is not
    /// limited by it: rxml hands long text over in pieces of this size.
    pub max_attribute_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_attributes: 64,
            max_attribute_size: 8192,
        }
    }
}

// Here rather than in `config`, which sits below the host and must not import from it.
impl Config {
    /// The stream reader's limits, the same on every kind of stream.
    pub fn xml_limits(&self) -> Limits {
        Limits {
            max_depth: self.xml_max_depth,
            max_attributes: self.xml_max_attributes,
            max_attribute_size: self.xml_max_attribute_size,
        }
    }
}

/// The opening `<stream:stream>` of the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

/// What the reader produced.
#[derive(Debug)]
pub enum Item {
    Header(Header),
    Element(Element),
    /// `</stream:stream>`: the peer closed its stream.
    Footer,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not well-formed XML: {0}")]
    Xml(rxml::Error),
    #[error("elements nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("an element with more than {0} attributes")]
    TooManyAttributes(usize),
    #[error("a name or attribute value longer than {0} bytes")]
    TooLong(usize),
    #[error("text between top-level elements")]
    TextBetweenElements,
    #[error("the stream does not start with <stream:stream>")]
    NotAStream,
    #[error("an element in the reserved xml namespace")]
    XmlNamespaceElement,
}

impl ReadError {
    /// The stream error condition (RFC 6120 §4.9.3) this ends the stream with.
    pub fn condition(&self) -> &'static str {
        match self {
            ReadError::TooDeep(_) | ReadError::TooManyAttributes(_) | ReadError::TooLong(_) => {
                "policy-violation"
            }
            ReadError::NotAStream | ReadError::XmlNamespaceElement => "invalid-namespace",
            ReadError::Xml(_) | ReadError::TextBetweenElements => "not-well-formed",
        }
    }
}

/// One stream's reader state. After a stream restart (STARTTLS, SASL) call
/// [`Reader::restart`]; the bytes after the restart point are fed to the same reader.
pub struct Reader {
    parser: Parser,
    limits: Limits,
    /// 0 before the header, 1 inside the stream, more inside a top-level element.
    depth: usize,
    /// The top-level element being built and its open descendants.
    open: Vec<Element>,
    /// Whitespace before a (re)started stream's first byte is skipped: a client may
    /// legally end its last element before a restart with a newline, and the XML
    /// declaration of the new document must be its first byte for the parser.
    at_start: bool,
}

fn parser(limits: &Limits) -> Parser {
    Parser::with_options(rxml::Options {
        max_token_length: limits.max_attribute_size,
        ..Default::default()
    })
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl Reader {
    pub fn new(limits: Limits) -> Self {
        Reader {
            parser: parser(&limits),
            limits,
            depth: 0,
            open: Vec::new(),
            at_start: true,
        }
    }

    /// A new document starts: the next thing read is a stream header.
    pub fn restart(&mut self) {
        *self = Reader::new(self.limits);
    }

    /// True between top-level elements (nothing half-read that a restart would lose).
    pub fn between_elements(&self) -> bool {
        self.depth <= 1
    }

    /// Reads from `input`, advancing it past what was consumed. `Ok(None)`: more bytes
    /// are needed (or, with `eof`, the input ended where a document may end).
    pub fn next(&mut self, input: &mut &[u8], eof: bool) -> Result<Option<Item>, ReadError> {
        loop {
            if self.at_start {
                let skip = input.iter().take_while(|b| is_xml_space(**b)).count();
                *input = &input[skip..];
                if input.is_empty() {
                    return Ok(None);
                }
                self.at_start = false;
            }
            let event = match self.parser.parse(input, eof) {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(None),
                Err(rxml::error::EndOrError::NeedMoreData) => return Ok(None),
                Err(rxml::error::EndOrError::Error(e)) => return Err(self.classify(e)),
            };
            if let Some(item) = self.event(event)? {
                return Ok(Some(item));
            }
        }
    }

    fn classify(&self, e: rxml::Error) -> ReadError {
        if matches!(e, rxml::Error::RestrictedXml(_)) && e.to_string().contains("long") {
            ReadError::TooLong(self.limits.max_attribute_size)
        } else {
            ReadError::Xml(e)
        }
    }

    fn event(&mut self, event: Event) -> Result<Option<Item>, ReadError> {
        match event {
            Event::XmlDeclaration(..) => Ok(None),
            Event::StartElement(_, (ns, name), attrs) => {
                if attrs.len() > self.limits.max_attributes {
                    return Err(ReadError::TooManyAttributes(self.limits.max_attributes));
                }
                if self.depth == 0 {
                    if name.as_str() != "stream" || ns.as_str() != STREAM_NS {
                        return Err(ReadError::NotAStream);
                    }
                    self.depth = 1;
                    let get = |n: &str| attrs.get(&rxml::Namespace::NONE, n).cloned();
                    return Ok(Some(Item::Header(Header {
                        to: get("to"),
                        from: get("from"),
                        id: get("id"),
                        version: get("version"),
                        lang: attrs.get(rxml::Namespace::xml(), "lang").cloned(),
                    })));
                }
                if self.depth > self.limits.max_depth {
                    return Err(ReadError::TooDeep(self.limits.max_depth));
                }
                // `<xml:x/>` parses, but minidom cannot read its own text of it back (it
                // knows the `xml` prefix on attributes only), so the stored text of a
                // stanza carrying one (XEP-0198 queue, offline, archive) would not parse
                // again. No XMPP protocol puts an element there; refusing it here keeps
                // "everything accepted can be written and read again" true.
                if ns == *rxml::Namespace::xml() {
                    return Err(ReadError::XmlNamespaceElement);
                }
                let mut el = Element::bare(name.as_str(), ns.as_str());
                *el.attrs_mut() = attrs;
                self.open.push(el);
                self.depth += 1;
                Ok(None)
            }
            Event::Text(_, text) => {
                match self.open.last_mut() {
                    Some(el) => el.append_text(text),
                    // RFC 6120 §11.7: whitespace between elements is allowed anywhere.
                    None if text.bytes().all(is_xml_space) => {}
                    None => return Err(ReadError::TextBetweenElements),
                }
                Ok(None)
            }
            Event::EndElement(_) => {
                let Some(el) = self.open.pop() else {
                    self.depth = 0;
                    return Ok(Some(Item::Footer));
                };
                self.depth -= 1;
                match self.open.last_mut() {
                    Some(parent) => {
                        parent.append_child(el);
                        Ok(None)
                    }
                    None => Ok(Some(Item::Element(el))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>";

    fn read_all(reader: &mut Reader, mut input: &[u8]) -> Result<Vec<Item>, ReadError> {
        let mut out = Vec::new();
        while let Some(item) = reader.next(&mut input, false)? {
            out.push(item);
        }
        assert!(
            input.is_empty(),
            "the reader consumed everything it was given"
        );
        Ok(out)
    }

    fn nested(depth: usize) -> String {
        let mut s = String::from("<message>");
        for _ in 1..depth {
            s.push_str("<a>");
        }
        for _ in 1..depth {
            s.push_str("</a>");
        }
        s.push_str("</message>");
        s
    }

    #[test]
    fn header_stanzas_and_footer() {
        let mut r = Reader::new(Limits::default());
        let doc = format!(
            "{HEAD}\n <message to='a@b'><body>hi &amp; bye</body></message> <iq type='get' id='1'/></stream:stream>"
        );
        let items = read_all(&mut r, doc.as_bytes()).unwrap();
        let [
            Item::Header(h),
            Item::Element(m),
            Item::Element(iq),
            Item::Footer,
        ] = &items[..]
        else {
            panic!("unexpected items: {items:?}");
        };
        assert_eq!(h.to.as_deref(), Some("localhost"));
        assert_eq!(h.version.as_deref(), Some("1.0"));
        assert_eq!(h.lang.as_deref(), Some("en"));
        assert!(m.is("message", "jabber:client"));
        assert_eq!(m.attr("to"), Some("a@b"));
        assert_eq!(
            m.get_child("body", "jabber:client").unwrap().text(),
            "hi & bye"
        );
        assert!(iq.is("iq", "jabber:client"));
    }

    #[test]
    fn input_in_single_bytes_gives_the_same_items() {
        let mut r = Reader::new(Limits::default());
        let doc = format!("{HEAD}<message><body>x</body></message>");
        let mut items = Vec::new();
        for b in doc.as_bytes() {
            let mut one = std::slice::from_ref(b);
            while let Some(item) = r.next(&mut one, false).unwrap() {
                items.push(item);
            }
        }
        assert!(matches!(&items[..], [Item::Header(_), Item::Element(_)]));
    }

    #[test]
    fn whitespace_before_a_restarted_stream_is_skipped() {
        let mut r = Reader::new(Limits::default());
        let items = read_all(
            &mut r,
            format!("{HEAD}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        r.restart();
        let items = read_all(&mut r, format!("\n \r\n\t{HEAD}").as_bytes()).unwrap();
        assert!(matches!(&items[..], [Item::Header(_)]));
    }

    #[test]
    fn depth_at_the_limit_passes_and_one_more_fails() {
        let limits = Limits::default();
        let mut r = Reader::new(limits);
        let doc = format!("{HEAD}{}", nested(limits.max_depth));
        let items = read_all(&mut r, doc.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        let mut r = Reader::new(limits);
        let doc = format!("{HEAD}{}", nested(limits.max_depth + 1));
        let err = read_all(&mut r, doc.as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::TooDeep(32)), "{err}");
        assert_eq!(err.condition(), "policy-violation");
    }

    #[test]
    fn twenty_thousand_levels_fail_at_the_limit_without_building_them() {
        let mut r = Reader::new(Limits::default());
        let doc = format!("{HEAD}{}", "<a>".repeat(20_000));
        let err = read_all(&mut r, doc.as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::TooDeep(_)));
        assert!(r.open.len() <= Limits::default().max_depth);
    }

    #[test]
    fn attribute_count_and_size_are_capped() {
        let limits = Limits {
            max_attributes: 4,
            max_attribute_size: 64,
            ..Limits::default()
        };
        let mut r = Reader::new(limits);
        let ok = format!("{HEAD}<message a='1' b='2' c='3' d='4'/>");
        assert_eq!(read_all(&mut r, ok.as_bytes()).unwrap().len(), 2);
        let mut r = Reader::new(limits);
        let many = format!("{HEAD}<message a='1' b='2' c='3' d='4' e='5'/>");
        let err = read_all(&mut r, many.as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::TooManyAttributes(4)), "{err}");
        let mut r = Reader::new(limits);
        let long = format!("{HEAD}<message a='{}'/>", "x".repeat(65));
        let err = read_all(&mut r, long.as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::TooLong(64)), "{err}");
        assert_eq!(err.condition(), "policy-violation");
        // Text longer than the token limit is fine: it arrives in pieces.
        let mut r = Reader::new(limits);
        let text = format!("{HEAD}<message><body>{}</body></message>", "y".repeat(100));
        let items = read_all(&mut r, text.as_bytes()).unwrap();
        let Item::Element(m) = &items[1] else {
            panic!("element")
        };
        assert_eq!(
            m.get_child("body", "jabber:client").unwrap().text().len(),
            100
        );
    }

    #[test]
    fn text_between_stanzas_and_foreign_roots_are_refused() {
        let mut r = Reader::new(Limits::default());
        let err = read_all(&mut r, format!("{HEAD}hello<message/>").as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::TextBetweenElements));
        let mut r = Reader::new(Limits::default());
        let err = read_all(&mut r, b"<html>").unwrap_err();
        assert_eq!(err.condition(), "invalid-namespace");
        let mut r = Reader::new(Limits::default());
        let err = read_all(&mut r, format!("{HEAD}<a></b>").as_bytes()).unwrap_err();
        assert_eq!(err.condition(), "not-well-formed");
    }

    /// Found by the `stanza` fuzz target: the XEP-0198 queue could not read such a
    /// stanza back and lost it.
    #[test]
    fn an_element_in_the_xml_namespace_is_refused_at_any_depth() {
        for body in [
            "<xml:ping/>",
            "<iq type='get' id='p'><xml:ping xmlns='urn:xmpp:ping'/></iq>",
            "<message><body>hi</body><x xmlns='a'><y><xml:z/></y></x></message>",
        ] {
            let mut r = Reader::new(Limits::default());
            let err = read_all(&mut r, format!("{HEAD}{body}").as_bytes()).unwrap_err();
            assert!(
                matches!(err, ReadError::XmlNamespaceElement),
                "{body}: {err}"
            );
            assert_eq!(err.condition(), "invalid-namespace");
        }
        let mut r = Reader::new(Limits::default());
        let ok = format!("{HEAD}<message xml:lang='de'><body xml:lang='en'>hi</body></message>");
        assert_eq!(read_all(&mut r, ok.as_bytes()).unwrap().len(), 2);
    }
}
