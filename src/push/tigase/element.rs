//! The elements the extensions put into a `<notification/>`, written as text like the
//! rest of the publish.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::enable::{NS_ENCRYPT, NS_JINGLE, NS_PRIORITY};
use super::notice::Call;
use crate::push::xml_text::escape;

/// `<encrypted xmlns='tigase:push:encrypt:0' iv='…' [type='voip']>…</encrypted>`: the IV
/// and the ciphertext with its tag, each in standard base64. `voip` asks iOS to ring.
pub fn encrypted(out: &mut String, iv: &[u8], sealed: &[u8], voip: bool) {
    out.push_str("<encrypted xmlns='");
    out.push_str(NS_ENCRYPT);
    out.push_str("' iv='");
    STANDARD.encode_string(iv, out);
    if voip {
        out.push_str("' type='voip");
    }
    out.push_str("'>");
    STANDARD.encode_string(sealed, out);
    out.push_str("</encrypted>");
}

/// `<priority xmlns='tigase:push:priority:0'>high</priority>`.
pub fn high_priority(out: &mut String) {
    out.push_str("<priority xmlns='");
    out.push_str(NS_PRIORITY);
    out.push_str("'>high</priority>");
}

/// `<jingle xmlns='tigase:push:jingle:0' action='…' sid='…'><media>audio</media>…</jingle>`,
/// as Tigase's server writes it for a call signal.
pub fn jingle(out: &mut String, call: &Call) {
    out.push_str("<jingle xmlns='");
    out.push_str(NS_JINGLE);
    out.push_str("' action='");
    escape(out, &call.action);
    out.push_str("' sid='");
    escape(out, &call.sid);
    out.push('\'');
    if call.media.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for m in &call.media {
        out.push_str("<media>");
        escape(out, m);
        out.push_str("</media>");
    }
    out.push_str("</jingle>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::minidom::Element;

    #[test]
    fn jingle_element() {
        let mut s = String::new();
        jingle(
            &mut s,
            &Call {
                action: "propose".into(),
                sid: "a'b".into(),
                media: vec!["audio".into(), "video".into()],
            },
        );
        let e: Element = s.parse().unwrap();
        assert!(e.is("jingle", NS_JINGLE));
        assert_eq!(e.attr("sid"), Some("a'b"));
        let media: Vec<String> = e.children().map(|m| m.text()).collect();
        assert_eq!(media, ["audio", "video"]);
    }

    #[test]
    fn encrypted_element() {
        let mut s = String::new();
        encrypted(&mut s, &[1; 12], &[2; 20], true);
        let e: Element = s.parse().unwrap();
        assert_eq!(e.attr("type"), Some("voip"));
        assert_eq!(STANDARD.decode(e.attr("iv").unwrap()).unwrap(), [1; 12]);
        assert_eq!(STANDARD.decode(e.text()).unwrap(), [2; 20]);
    }
}
