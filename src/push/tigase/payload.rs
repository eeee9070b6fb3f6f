//! The JSON an encrypted notification carries (field names as the spec and Siskin read
//! them: `unread`, `sender`, `type`, `message`, `nickname`, `sid`, `media`), cut to the
//! client's `max-size`.

use serde::Serialize;

use super::encrypt::TAG_LEN;
use super::notice::Notice;

/// The `max-size` when the client gives none: Tigase's own default, under the 4 KB that
/// APNs and FCM take for a whole notification.
pub const DEFAULT_MAX_SIZE: u32 = 3000;

#[derive(Serialize)]
struct Json<'a> {
    unread: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nickname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<&'a [String]>,
}

fn json(notice: Option<&Notice>, message: Option<&str>) -> Vec<u8> {
    let call = notice.and_then(|n| n.call.as_ref());
    let value = Json {
        unread: 1,
        sender: notice.and_then(|n| n.sender.as_deref()),
        kind: notice.and_then(|n| n.kind).map(|k| k.as_str()),
        message,
        nickname: notice.and_then(|n| n.nickname.as_deref()),
        sid: call.map(|c| c.sid.as_str()),
        media: call.filter(|c| c.rings()).map(|c| c.media.as_slice()),
    };
    // Serializing strings and numbers cannot fail; the fallback is still valid JSON.
    serde_json::to_vec(&value).unwrap_or_else(|_| b"{\"unread\":1}".to_vec())
}

/// The base64 length of `plain` bytes once encrypted (the tag added).
pub fn encoded_len(plain: usize) -> usize {
    4 * (plain + TAG_LEN).div_ceil(3)
}

/// The JSON for `notice` (`None`: a ping, with no stanza), its `message` cut on a
/// character boundary so that the encrypted, base64-encoded payload takes at most
/// `max_size` bytes. If even no text does not fit, the JSON goes without `message`:
/// the client's limit is a hint for the text, and the rest is a few dozen bytes.
pub fn fit(notice: Option<&Notice>, max_size: Option<u32>) -> Vec<u8> {
    let max = usize::try_from(max_size.unwrap_or(DEFAULT_MAX_SIZE)).unwrap_or(usize::MAX);
    let Some(full) = notice.and_then(|n| n.message.as_deref()) else {
        return json(notice, None);
    };
    let whole = json(notice, Some(full));
    if encoded_len(whole.len()) <= max {
        return whole;
    }
    // The longest prefix that fits, by bisection over the character boundaries: the
    // JSON grows with the prefix, but not by its bytes alone (escapes), so the cut is
    // found by trying rather than computed.
    let fits = |end: usize| encoded_len(json(notice, Some(&full[..end])).len()) <= max;
    let ends: Vec<usize> = full.char_indices().map(|(i, _)| i).skip(1).collect();
    // `ends[i]` is the end of the first i + 1 characters; the whole text is known not to fit.
    let (mut lo, mut hi) = (0usize, ends.len());
    // Invariant: a prefix of `lo` characters fits (0 counts as "no text"); `hi` does not.
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(ends[mid - 1]) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if lo == 0 {
        return json(notice, None);
    }
    json(notice, Some(&full[..ends[lo - 1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::tigase::notice::{Call, Kind};

    fn chat(text: &str) -> Notice {
        Notice {
            kind: Some(Kind::Chat),
            sender: Some("juliet@capulet.example".into()),
            message: Some(text.into()),
            important: true,
            ..Notice::default()
        }
    }

    fn parse(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn the_spec_example() {
        let v = parse(&fit(Some(&chat("Wherefore art thou, Romeo?")), None));
        assert_eq!(
            v,
            serde_json::json!({
                "unread": 1,
                "sender": "juliet@capulet.example",
                "type": "chat",
                "message": "Wherefore art thou, Romeo?"
            })
        );
    }

    #[test]
    fn a_call_has_sid_and_media() {
        let n = Notice {
            kind: Some(Kind::Call),
            sender: Some("romeo@example.net/phone".into()),
            call: Some(Call {
                action: "propose".into(),
                sid: "c1".into(),
                media: vec!["audio".into()],
            }),
            ..Notice::default()
        };
        let v = parse(&fit(Some(&n), None));
        assert_eq!(v["type"], "call");
        assert_eq!(v["sid"], "c1");
        assert_eq!(v["media"], serde_json::json!(["audio"]));
        assert!(v.get("message").is_none());
    }

    #[test]
    fn a_ping_is_the_count_alone() {
        assert_eq!(parse(&fit(None, None)), serde_json::json!({"unread": 1}));
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_within_max_size() {
        // Three-byte characters, quotes and newlines (escaped in JSON) mixed.
        let text = "€\"x\n".repeat(500);
        for max in [200u32, 333, 512, 1000, 2999] {
            let out = fit(Some(&chat(&text)), Some(max));
            assert!(encoded_len(out.len()) <= max as usize, "max {max}");
            let v = parse(&out);
            let kept = v["message"].as_str().unwrap();
            assert!(text.starts_with(kept) && !kept.is_empty(), "max {max}");
            // Not cut more than needed: one more character would not fit.
            let longer =
                &text[..kept.len() + text[kept.len()..].chars().next().unwrap().len_utf8()];
            let more = json(Some(&chat(&text)), Some(longer));
            assert!(encoded_len(more.len()) > max as usize, "max {max}");
        }
    }

    #[test]
    fn short_text_is_whole_and_a_tiny_limit_drops_it() {
        let out = parse(&fit(Some(&chat("hi")), Some(3000)));
        assert_eq!(out["message"], "hi");
        let out = parse(&fit(Some(&chat("hello there")), Some(8)));
        assert!(out.get("message").is_none());
        assert_eq!(out["sender"], "juliet@capulet.example");
    }
}
