//! XEP-0059 result set management, as far as MAM uses it: a page's size and where it
//! starts, and the `<set/>` that says what a page held.

use xmpp_parsers::minidom::Element;

pub const RSM_NS: &str = "http://jabber.org/protocol/rsm";

/// A client's `<set/>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub max: Option<usize>,
    /// The page after this id.
    pub after: Option<String>,
    /// `Some(None)`: the last page (`<before/>`); `Some(Some(id))`: the page before `id`.
    pub before: Option<Option<String>>,
}

/// Why a `<set/>` is refused (with `bad-request` unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RsmError {
    BadMax,
    /// `<index/>`: paging by position is not offered (`feature-not-implemented`).
    Index,
}

pub fn parse(set: &Element) -> Result<Request, RsmError> {
    let mut r = Request::default();
    for c in set.children().filter(|c| c.has_ns(RSM_NS)) {
        let text = c.text();
        match c.name() {
            "max" => r.max = Some(text.trim().parse().map_err(|_| RsmError::BadMax)?),
            "after" => r.after = Some(text.trim().to_string()),
            "before" => {
                let t = text.trim();
                r.before = Some((!t.is_empty()).then(|| t.to_string()));
            }
            "index" => return Err(RsmError::Index),
            _ => {}
        }
    }
    Ok(r)
}

/// The `<set/>` of an answer: the first and last ids of the page, none for an empty one.
pub fn answer(first_last: Option<(u64, u64)>) -> Element {
    let mut set = Element::builder("set", RSM_NS).build();
    if let Some((first, last)) = first_last {
        set.append_child(
            Element::builder("first", RSM_NS)
                .append(first.to_string())
                .build(),
        );
        set.append_child(
            Element::builder("last", RSM_NS)
                .append(last.to_string())
                .build(),
        );
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(inner: &str) -> Element {
        format!("<set xmlns='{RSM_NS}'>{inner}</set>")
            .parse()
            .unwrap()
    }

    #[test]
    fn reads_max_after_and_both_kinds_of_before() {
        assert_eq!(
            parse(&set("<max>10</max><after>5</after>")),
            Ok(Request {
                max: Some(10),
                after: Some("5".into()),
                before: None
            })
        );
        assert_eq!(parse(&set("<before/>")).unwrap().before, Some(None));
        assert_eq!(
            parse(&set("<before>9</before>")).unwrap().before,
            Some(Some("9".into()))
        );
    }

    #[test]
    fn refuses_a_bad_max_and_index() {
        assert_eq!(parse(&set("<max>-1</max>")), Err(RsmError::BadMax));
        assert_eq!(parse(&set("<index>3</index>")), Err(RsmError::Index));
    }

    #[test]
    fn an_answer_names_the_ends_of_its_page() {
        let a = answer(Some((1, 7)));
        assert_eq!(a.get_child("first", RSM_NS).unwrap().text(), "1");
        assert_eq!(a.get_child("last", RSM_NS).unwrap().text(), "7");
        assert_eq!(answer(None).children().count(), 0);
    }
}
