//! The pure parts of a server-to-server stream: the features we offer, what a peer's
//! features offer, the dialback elements, and whether an inbound stanza may enter.

use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;

use crate::config::Config;
use crate::xmpp::stanza::set_attr;
use crate::xmpp::xml::{DIALBACK_NS, STREAM_NS};

pub const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// The stream feature that announces dialback (XEP-0220 §2.4).
pub const DIALBACK_FEATURE_NS: &str = "urn:xmpp:features:dialback";
/// The stream feature that offers bidirectional streams (XEP-0288 §2).
pub const BIDI_FEATURE_NS: &str = "urn:xmpp:features:bidi";
/// The element an initiating server sends to use the stream both ways (XEP-0288 §2).
pub const BIDI_NS: &str = "urn:xmpp:bidi";

/// The features of an inbound stream: STARTTLS until the stream is encrypted, SASL
/// EXTERNAL when the peer's certificate is valid for the domain it claims (`external`),
/// dialback once it may be used (encrypted, or encryption not required) and is allowed
/// for the peer (`dialback`). Bidirectional use (XEP-0288) is offered on every stream
/// not yet authenticated, so a peer that cannot accept connections (behind NAT) gets our
/// stanzas back on the stream it opened.
pub fn inbound_features(
    tls: bool,
    require_encryption: bool,
    external: bool,
    dialback: bool,
) -> Element {
    let mut f = Element::builder("features", STREAM_NS).build();
    if tls || !require_encryption {
        f.append_child(Element::builder("bidi", BIDI_FEATURE_NS).build());
    }
    if tls && external {
        f.append_child(
            Element::builder("mechanisms", SASL_NS)
                .append(Element::builder("mechanism", SASL_NS).append("EXTERNAL"))
                .build(),
        );
    }
    if !tls {
        let mut starttls = Element::builder("starttls", TLS_NS).build();
        if require_encryption {
            starttls.append_child(Element::builder("required", TLS_NS).build());
        }
        f.append_child(starttls);
    }
    if dialback && (tls || !require_encryption) {
        f.append_child(
            Element::builder("dialback", DIALBACK_FEATURE_NS)
                .append(Element::builder("errors", DIALBACK_FEATURE_NS))
                .build(),
        );
    }
    f
}

/// What a peer's `<stream:features/>` offer us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    pub starttls: bool,
    /// SASL EXTERNAL: the peer found our certificate valid for our domain.
    pub external: bool,
    /// Bidirectional streams (XEP-0288).
    pub bidi: bool,
}

pub fn offered(features: &Element) -> Offered {
    let external = features.get_child("mechanisms", SASL_NS).is_some_and(|m| {
        m.children()
            .any(|c| c.is("mechanism", SASL_NS) && c.text().trim() == "EXTERNAL")
    });
    Offered {
        starttls: features.has_child("starttls", TLS_NS),
        external,
        bidi: features.has_child("bidi", BIDI_FEATURE_NS),
    }
}

/// `<auth mechanism='EXTERNAL'/>` for our domain (XEP-0178 §3: the authorization
/// identity is the domain, base64).
pub fn external_auth(ours: &str) -> Element {
    use base64::Engine;
    let mut el = Element::builder("auth", SASL_NS).build();
    set_attr(&mut el, "mechanism", "EXTERNAL");
    el.append_text_node(base64::engine::general_purpose::STANDARD.encode(ours));
    el
}

/// The domain an inbound `<auth/>` asks to be authenticated as: its EXTERNAL
/// authorization identity, or when that is empty ("="), the stream header's `from`.
/// `None` for another mechanism or an undecodable identity.
pub fn external_identity(auth: &Element, header_from: Option<&str>) -> Option<String> {
    use base64::Engine;
    if auth.attr("mechanism") != Some("EXTERNAL") {
        return None;
    }
    let text = auth.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return header_from.map(str::to_ascii_lowercase);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes)
        .ok()
        .map(|s| s.to_ascii_lowercase())
}

pub fn sasl_success() -> Element {
    Element::builder("success", SASL_NS).build()
}

pub fn sasl_failure(condition: &str) -> Element {
    Element::builder("failure", SASL_NS)
        .append(Element::builder(condition, SASL_NS))
        .build()
}

/// Our next step on an outbound stream, from what the peer offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    StartTls,
    /// Authenticate (dialback) on this stream as it is.
    Authenticate,
    /// Encryption is required and the peer offers none.
    NoTls,
}

pub fn next_step(offered: Offered, tls: bool, require_encryption: bool) -> Step {
    match (tls, offered.starttls) {
        (false, true) => Step::StartTls,
        (false, false) if require_encryption => Step::NoTls,
        _ => Step::Authenticate,
    }
}

fn db(name: &str, from: &str, to: &str) -> Element {
    let mut el = Element::builder(name, DIALBACK_NS).build();
    set_attr(&mut el, "from", from);
    set_attr(&mut el, "to", to);
    el
}

/// `<db:result/>` carrying our key (XEP-0220 §2.1.1).
pub fn result_request(from: &str, to: &str, key: &str) -> Element {
    let mut el = db("result", from, to);
    el.append_text_node(key);
    el
}

/// The answer to a `<db:result/>`: `valid` or `invalid`.
pub fn result_answer(from: &str, to: &str, valid: bool) -> Element {
    let mut el = db("result", from, to);
    set_attr(&mut el, "type", if valid { "valid" } else { "invalid" });
    el
}

/// `<db:verify/>`: asks the authoritative server whether `key` is its key for `id`.
pub fn verify_request(from: &str, to: &str, id: &str, key: &str) -> Element {
    let mut el = db("verify", from, to);
    set_attr(&mut el, "id", id);
    el.append_text_node(key);
    el
}

pub fn verify_answer(from: &str, to: &str, id: &str, valid: bool) -> Element {
    let mut el = db("verify", from, to);
    set_attr(&mut el, "id", id);
    set_attr(&mut el, "type", if valid { "valid" } else { "invalid" });
    el
}

/// Why an inbound stanza may not enter: the stream error it ends the stream with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its `from` is not a domain authenticated on this stream.
    InvalidFrom,
    /// Its `to` is not our domain.
    HostUnknown,
}

impl Refused {
    pub fn condition(self) -> &'static str {
        match self {
            Refused::InvalidFrom => "invalid-from",
            Refused::HostUnknown => "host-unknown",
        }
    }
}

/// The domain of a stanza's address. Only the domain decides whether the stream may
/// carry the stanza: a node or resource that does not read back as itself is that
/// stanza's fault (the router answers it `jid-malformed`), not a reason to end a
/// stream a whole server shares.
fn domain_of(attr: Option<&str>) -> Option<String> {
    let jid = attr?.parse::<Jid>().ok()?;
    let domain = jid.domain().as_str();
    let again = domain.parse::<BareJid>().ok()?;
    (again.as_str() == domain).then(|| domain.to_string())
}

/// Whether we answer for `domain` on server-to-server streams: our own domain and our
/// components' (an app server attached as a component is reached by other servers
/// through us, and answers them through us).
pub fn served(cfg: &Config, domain: &str) -> bool {
    domain.eq_ignore_ascii_case(&cfg.domain)
        || cfg
            .components
            .iter()
            .any(|c| c.jid.eq_ignore_ascii_case(domain))
}

/// Whether `domain` may authenticate with dialback (and be reached without a valid
/// certificate): `s2s_insecure_domains` yes, `s2s_secure_domains` no, otherwise unless
/// `s2s_secure_auth` (Prosody's three options, with its precedence).
pub fn dialback_allowed(cfg: &Config, domain: &str) -> bool {
    let listed = |l: &[String]| l.iter().any(|d| d.eq_ignore_ascii_case(domain));
    if listed(&cfg.s2s_insecure_domains) {
        return true;
    }
    !listed(&cfg.s2s_secure_domains) && !cfg.s2s_secure_auth
}

/// A remote domain authenticated towards one of ours on an inbound stream (dialback
/// authenticates such a pair, XEP-0220 §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub remote: String,
    pub local: String,
}

/// RFC 6120 §8.1.1.2 and §8.1.2.2: a stanza on an inbound stream must be addressed to a
/// domain we serve and come from a domain authenticated on the stream towards it.
pub fn admit(stanza: &Element, authenticated: &[Pair], cfg: &Config) -> Result<(), Refused> {
    let from = domain_of(stanza.attr("from")).ok_or(Refused::InvalidFrom)?;
    let to = domain_of(stanza.attr("to")).ok_or(Refused::HostUnknown)?;
    if !served(cfg, &to) {
        return Err(Refused::HostUnknown);
    }
    let pair = Pair {
        remote: from,
        local: to,
    };
    match authenticated.contains(&pair) {
        true => Ok(()),
        false => Err(Refused::InvalidFrom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starttls_first_then_dialback() {
        let plain = inbound_features(false, true, true, true);
        assert!(plain.has_child("starttls", TLS_NS));
        assert!(!plain.has_child("dialback", DIALBACK_FEATURE_NS));
        assert!(
            !plain.has_child("mechanisms", SASL_NS),
            "no SASL before TLS"
        );
        let secure = inbound_features(true, true, false, true);
        assert!(!secure.has_child("starttls", TLS_NS));
        assert!(secure.has_child("dialback", DIALBACK_FEATURE_NS));
        assert!(!offered(&secure).external);
        assert!(offered(&inbound_features(true, true, true, true)).external);
        assert!(
            inbound_features(false, false, false, true).has_child("dialback", DIALBACK_FEATURE_NS)
        );
    }

    #[test]
    fn bidi_is_offered_once_the_stream_may_authenticate() {
        assert!(!offered(&inbound_features(false, true, true, true)).bidi);
        assert!(offered(&inbound_features(true, true, false, false)).bidi);
        assert!(offered(&inbound_features(false, false, false, true)).bidi);
    }

    #[test]
    fn dialback_policy_follows_prosodys_three_options() {
        let mut cfg = Config::default();
        assert!(dialback_allowed(&cfg, "a.test"));
        cfg.s2s_secure_domains = vec!["a.test".into()];
        assert!(!dialback_allowed(&cfg, "A.test"));
        assert!(dialback_allowed(&cfg, "b.test"));
        cfg.s2s_secure_auth = true;
        assert!(!dialback_allowed(&cfg, "b.test"));
        cfg.s2s_insecure_domains = vec!["b.test".into()];
        assert!(dialback_allowed(&cfg, "b.test"));
        assert!(
            !inbound_features(true, true, false, false).has_child("dialback", DIALBACK_FEATURE_NS)
        );
    }

    #[test]
    fn external_identity_is_the_authzid_or_the_header() {
        let auth = external_auth("a.test");
        assert_eq!(
            external_identity(&auth, Some("x.test")).as_deref(),
            Some("a.test")
        );
        let mut empty = Element::builder("auth", SASL_NS).build();
        set_attr(&mut empty, "mechanism", "EXTERNAL");
        empty.append_text_node("=");
        assert_eq!(
            external_identity(&empty, Some("X.test")).as_deref(),
            Some("x.test")
        );
        let mut other = Element::builder("auth", SASL_NS).build();
        set_attr(&mut other, "mechanism", "PLAIN");
        assert_eq!(external_identity(&other, Some("x.test")), None);
        let mut junk = external_auth("a.test");
        junk.take_nodes();
        junk.append_text_node("!!");
        assert_eq!(external_identity(&junk, Some("x.test")), None);
    }

    #[test]
    fn outbound_steps_follow_the_offer_and_the_policy() {
        let tls = Offered {
            starttls: true,
            external: false,
            bidi: false,
        };
        let none = Offered {
            starttls: false,
            external: false,
            bidi: false,
        };
        assert_eq!(next_step(tls, false, true), Step::StartTls);
        assert_eq!(next_step(none, false, true), Step::NoTls);
        assert_eq!(next_step(none, false, false), Step::Authenticate);
        assert_eq!(next_step(none, true, true), Step::Authenticate);
        assert_eq!(offered(&inbound_features(false, true, false, true)), tls);
    }

    #[test]
    fn inbound_stanzas_need_an_authenticated_from_and_our_to() {
        let cfg = Config {
            domain: "b.test".into(),
            components: vec![crate::config::ComponentConfig {
                jid: "push.b.test".into(),
                secret: "s".into(),
            }],
            ..Config::default()
        };
        assert!(served(&cfg, "B.test") && served(&cfg, "push.b.test"));
        assert!(!served(&cfg, "c.test"));
        let auth = vec![Pair {
            remote: "a.test".into(),
            local: "b.test".into(),
        }];
        let el = |from: &str, to: &str| {
            let mut m = Element::builder("message", "jabber:server").build();
            set_attr(&mut m, "from", from);
            set_attr(&mut m, "to", to);
            m
        };
        assert_eq!(admit(&el("x@a.test/r", "y@b.test"), &auth, &cfg), Ok(()));
        assert_eq!(
            admit(&el("x@c.test", "y@b.test"), &auth, &cfg),
            Err(Refused::InvalidFrom)
        );
        assert_eq!(
            admit(&el("x@a.test", "y@d.test"), &auth, &cfg),
            Err(Refused::HostUnknown)
        );
        // Authenticated towards b.test only, not towards the component's domain.
        assert_eq!(
            admit(&el("x@a.test", "push.b.test"), &auth, &cfg),
            Err(Refused::InvalidFrom)
        );
        let no_from = Element::builder("message", "jabber:server").build();
        assert_eq!(admit(&no_from, &auth, &cfg), Err(Refused::InvalidFrom));
        // A node that does not read back as itself (U+1D40 prints as `T`) is the
        // stanza's fault, left to the router; a domain that does not is refused.
        assert_eq!(
            admit(&el("x@a.test", "r\u{1D40}meo@b.test"), &auth, &cfg),
            Ok(())
        );
        assert_eq!(
            admit(&el("r\u{1D40}meo@a.test/r", "y@b.test"), &auth, &cfg),
            Ok(())
        );
        assert_eq!(
            admit(&el("x@a.test", "y@b.tes\u{1D40}"), &auth, &cfg),
            Err(Refused::HostUnknown)
        );
    }

    #[test]
    fn dialback_elements_carry_names_ids_and_keys() {
        let r = result_request("a.test", "b.test", "k");
        assert!(r.is("result", DIALBACK_NS));
        assert_eq!(r.attr("from"), Some("a.test"));
        assert_eq!(r.text(), "k");
        let v = verify_answer("a.test", "b.test", "id1", false);
        assert_eq!(v.attr("type"), Some("invalid"));
        assert_eq!(v.attr("id"), Some("id1"));
    }
}
