//! The answer to a query: one `<message/>` per archived message, then the IQ result
//! with `<fin/>` (XEP-0313 §4.2, §4.3).

use xmpp_parsers::minidom::Element;

use super::{DELAY_NS, FORWARD_NS, MAM_NS, clock, rsm};
use crate::store::archive::ArchiveRow;
use crate::xmpp::stanza;

/// The result message carrying `row` to `to` (the querying session's full JID).
/// `None` when the stored text is not a stanza any more (logged by the caller).
pub fn result_message(row: &ArchiveRow, query_id: Option<&str>, to: &str) -> Option<Element> {
    let archived: Element = row.message.stanza.parse().ok()?;
    let mut delay = Element::builder("delay", DELAY_NS).build();
    stanza::set_attr(&mut delay, "stamp", &clock::stamp(row.id));
    let forwarded = Element::builder("forwarded", FORWARD_NS)
        .append(delay)
        .append(archived)
        .build();
    let mut result = Element::builder("result", MAM_NS).append(forwarded).build();
    if let Some(q) = query_id {
        stanza::set_attr(&mut result, "queryid", q);
    }
    stanza::set_attr(&mut result, "id", &row.id.to_string());
    let mut message = Element::builder("message", stanza::CLIENT_NS)
        .append(result)
        .build();
    stanza::set_attr(&mut message, "to", to);
    stanza::set_attr(&mut message, "id", &stanza::random_id());
    Some(message)
}

/// The `<fin/>` after a page whose first and last ids (as sent) are `ends`.
pub fn fin(ends: Option<(u64, u64)>, complete: bool) -> Element {
    let mut fin = Element::builder("fin", MAM_NS)
        .append(rsm::answer(ends))
        .build();
    if complete {
        stanza::set_attr(&mut fin, "complete", "true");
    }
    fin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::archive::ArchivedMessage;

    #[test]
    fn a_result_forwards_the_message_with_its_time() {
        let row = ArchiveRow {
            id: 1_700_000_000_000_001,
            message: ArchivedMessage {
                with: "romeo@x/a".into(),
                outgoing: false,
                stanza: "<message xmlns='jabber:client' from='romeo@x/a'><body>hi</body></message>"
                    .into(),
            },
        };
        let m = result_message(&row, Some("q1"), "juliet@x/phone").unwrap();
        assert_eq!(m.attr("to"), Some("juliet@x/phone"));
        let r = m.get_child("result", MAM_NS).unwrap();
        assert_eq!(r.attr("queryid"), Some("q1"));
        assert_eq!(r.attr("id"), Some("1700000000000001"));
        let f = r.get_child("forwarded", FORWARD_NS).unwrap();
        assert_eq!(
            f.get_child("delay", DELAY_NS).unwrap().attr("stamp"),
            Some("2023-11-14T22:13:20.000001Z")
        );
        let inner = f.get_child("message", stanza::CLIENT_NS).unwrap();
        assert_eq!(
            inner.get_child("body", stanza::CLIENT_NS).unwrap().text(),
            "hi"
        );
    }

    #[test]
    fn damaged_text_gives_no_result() {
        let row = ArchiveRow {
            id: 1,
            message: ArchivedMessage {
                with: "romeo@x".into(),
                outgoing: false,
                stanza: "<message".into(),
            },
        };
        assert!(result_message(&row, None, "juliet@x/a").is_none());
    }

    #[test]
    fn fin_says_complete_only_when_it_is() {
        assert_eq!(fin(None, true).attr("complete"), Some("true"));
        assert_eq!(fin(Some((1, 2)), false).attr("complete"), None);
    }
}
