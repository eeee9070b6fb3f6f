//! The message archive over the wire (XEP-0313 v2, `#extended`, RSM paging, XEP-0359
//! stanza ids), its limits (retention, the per-user cap), and the archive push path
//! (B40, B41: a phone without a session is pushed while the user's desktop is online).

use std::time::{Duration, Instant};

use xmpp_parsers::minidom::Element;

use super::client::{Client, Component};
use super::{TestServer, body_of, enable_push, has_feature, node_of};

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const SID: &str = "urn:xmpp:sid:0";
const FWD: &str = "urn:xmpp:forward:0";

/// What a query brought: the result messages, in order, and the IQ that ended it.
struct Answer {
    results: Vec<Element>,
    iq: Element,
}

impl Answer {
    fn fin(&self) -> &Element {
        self.iq
            .get_child("fin", MAM)
            .unwrap_or_else(|| panic!("no <fin/>: {}", String::from(&self.iq)))
    }

    fn complete(&self) -> bool {
        self.fin().attr("complete") == Some("true")
    }

    fn ids(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|m| result(m).attr("id").unwrap_or_default().to_string())
            .collect()
    }

    fn bodies(&self) -> Vec<String> {
        self.results.iter().map(|m| body(inner(m))).collect()
    }

    /// The RSM `<first/>` and `<last/>` of the answer.
    fn ends(&self) -> (String, String) {
        let set = self.fin().get_child("set", RSM).expect("<set/>");
        let text = |n| set.get_child(n, RSM).map(|e| e.text()).unwrap_or_default();
        (text("first"), text("last"))
    }
}

fn result(m: &Element) -> &Element {
    m.get_child("result", MAM)
        .unwrap_or_else(|| panic!("not a result: {}", String::from(m)))
}

fn inner(m: &Element) -> &Element {
    result(m)
        .get_child("forwarded", FWD)
        .and_then(|f| f.get_child("message", "jabber:client"))
        .expect("a forwarded message")
}

fn body(m: &Element) -> String {
    m.get_child("body", "jabber:client")
        .map(|b| b.text())
        .unwrap_or_default()
}

fn stanza_id(m: &Element) -> Option<String> {
    m.children()
        .find(|c| c.is("stanza-id", SID) && c.attr("by") == Some("juliet@localhost"))
        .and_then(|c| c.attr("id").map(str::to_string))
}

/// Sends a MAM query with `inner` (form and `<set/>`) and reads until its answer.
async fn query(c: &mut Client, id: &str, inner: &str) -> Answer {
    c.send(&format!(
        "<iq type='set' id='{id}'><query xmlns='{MAM}' queryid='q-{id}'>{inner}</query></iq>"
    ))
    .await;
    let mut results = Vec::new();
    loop {
        let el = c.next().await;
        if el.name() == "iq" && el.attr("id") == Some(id) {
            return Answer { results, iq: el };
        }
        if el.name() == "message" && el.has_child("result", MAM) {
            assert_eq!(
                result(&el).attr("queryid"),
                Some(format!("q-{id}").as_str())
            );
            results.push(el);
        }
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut f = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
    );
    for (var, value) in fields {
        f.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    f.push_str("</x>");
    f
}

fn set(inner: &str) -> String {
    format!("<set xmlns='{RSM}'>{inner}</set>")
}

fn error_of(iq: &Element) -> String {
    assert_eq!(iq.attr("type"), Some("error"), "{}", String::from(iq));
    String::from(iq)
}

/// Juliet online (available), Romeo online; Romeo sends her `bodies`, which she reads.
/// Returns the stanza-ids her copies carried.
async fn romeo_sends(juliet: &mut Client, romeo: &mut Client, bodies: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for b in bodies {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost' id='{b}'><body>{b}</body></message>"
            ))
            .await;
        let (m, _) = juliet.until("message").await;
        assert_eq!(body(&m), *b);
        ids.push(stanza_id(&m).unwrap_or_else(|| panic!("no stanza-id: {}", String::from(&m))));
    }
    ids
}

/// Romeo sends `b`, with a stanza-id of Juliet's archive forged into it, and Juliet's
/// preferences keep it out: she gets it with no stanza-id of her archive, which would
/// name nothing there.
async fn romeo_sends_unarchived(juliet: &mut Client, romeo: &mut Client, b: &str) {
    romeo
        .send(&format!(
            "<message type='chat' to='juliet@localhost' id='{b}'><body>{b}</body><stanza-id xmlns='{SID}' by='juliet@localhost' id='forged'/></message>"
        ))
        .await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(body(&m), b);
    assert_eq!(stanza_id(&m), None, "{}", String::from(&m));
}

async fn online_pair(t: &TestServer) -> (Client, Client) {
    online_pair_as(t, "phone").await
}

#[actix_rt::test]
async fn mam_is_the_accounts_feature_with_extended() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let own = juliet
        .iq("<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert!(has_feature(&own, MAM), "{}", String::from(&own));
    assert!(has_feature(&own, "urn:xmpp:mam:2#extended"));
    let server = juliet
        .iq("<iq type='get' id='d2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert!(!has_feature(&server, MAM));
    let f = juliet
        .iq(&format!(
            "<iq type='get' id='f'><query xmlns='{MAM}'/></iq>"
        ))
        .await;
    let fields: Vec<&str> = f
        .get_child("query", MAM)
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .map(|x| x.children().filter_map(|c| c.attr("var")).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        [
            "FORM_TYPE",
            "with",
            "start",
            "end",
            "after-id",
            "before-id",
            "ids"
        ]
    );
}

#[actix_rt::test]
async fn messages_both_ways_are_archived_and_found_by_with() {
    let t = TestServer::start(|_| {}).await;
    let (mut juliet, mut romeo) = online_pair(&t).await;
    let ids = romeo_sends(&mut juliet, &mut romeo, &["one", "two"]).await;
    // A chat state is not archived (B40's premise), nor is an error.
    romeo
        .send("<message type='chat' to='juliet@localhost'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    juliet.until("message").await;
    juliet
        .send("<message type='chat' to='romeo@localhost' id='r1'><body>three</body></message>")
        .await;

    let a = query(&mut juliet, "q1", &form(&[("with", "romeo@localhost")])).await;
    assert_eq!(a.bodies(), ["one", "two", "three"]);
    assert_eq!(&a.ids()[..2], &ids[..]);
    assert!(a.complete());
    let out = inner(&a.results[2]);
    assert_eq!(out.attr("from"), Some("juliet@localhost/phone"));
    assert_eq!(out.attr("to"), Some("romeo@localhost"));
    assert!(
        result(&a.results[0])
            .get_child("forwarded", FWD)
            .and_then(|f| f.get_child("delay", "urn:xmpp:delay"))
            .and_then(|d| d.attr("stamp"))
            .is_some(),
        "every result carries its time"
    );
    // A full JID narrows `with` to that resource: Juliet's message went to the bare JID.
    let a = query(
        &mut juliet,
        "q2",
        &form(&[("with", "romeo@localhost/desk")]),
    )
    .await;
    assert_eq!(a.bodies(), ["one", "two"]);
    let a = query(&mut juliet, "q3", &form(&[("with", "nurse@localhost")])).await;
    assert!(a.results.is_empty() && a.complete());
    // Romeo's own archive has his side.
    let a = query(&mut romeo, "q4", "").await;
    assert_eq!(a.bodies(), ["one", "two", "three"]);
}

#[actix_rt::test]
async fn rsm_pages_forward_and_back_and_ids_bound_the_range() {
    let t = TestServer::start(|_| {}).await;
    let (mut juliet, mut romeo) = online_pair(&t).await;
    let ids = romeo_sends(&mut juliet, &mut romeo, &["m1", "m2", "m3", "m4", "m5"]).await;

    let p1 = query(&mut juliet, "a", &set("<max>2</max>")).await;
    assert_eq!(p1.bodies(), ["m1", "m2"]);
    assert!(!p1.complete());
    assert_eq!(p1.ends(), (ids[0].clone(), ids[1].clone()));
    let p2 = query(
        &mut juliet,
        "b",
        &set(&format!("<max>2</max><after>{}</after>", ids[1])),
    )
    .await;
    assert_eq!(p2.bodies(), ["m3", "m4"]);
    let p3 = query(
        &mut juliet,
        "c",
        &set(&format!("<max>2</max><after>{}</after>", ids[3])),
    )
    .await;
    assert_eq!(p3.bodies(), ["m5"]);
    assert!(p3.complete());

    // Backwards from the end, as a phone catching up does.
    let last = query(&mut juliet, "d", &set("<max>2</max><before/>")).await;
    assert_eq!(last.bodies(), ["m4", "m5"]);
    assert!(!last.complete());
    let before = query(
        &mut juliet,
        "e",
        &set(&format!("<max>2</max><before>{}</before>", ids[3])),
    )
    .await;
    assert_eq!(before.bodies(), ["m2", "m3"]);
    let flipped = query(
        &mut juliet,
        "f",
        &format!("{}<flip-page/>", set("<max>2</max><before/>")),
    )
    .await;
    assert_eq!(flipped.bodies(), ["m5", "m4"]);

    // `#extended`: after-id and before-id, and ids.
    let between = query(
        &mut juliet,
        "g",
        &form(&[("after-id", &ids[0]), ("before-id", &ids[4])]),
    )
    .await;
    assert_eq!(between.bodies(), ["m2", "m3", "m4"]);
    assert!(between.complete());
    let picked = query(&mut juliet, "h", &form(&[("ids", &ids[2])])).await;
    assert_eq!(picked.bodies(), ["m3"]);

    // Unknown ids and bad fields are refused with the reason.
    let r = query(&mut juliet, "i", &set("<after>12345</after>")).await;
    assert!(error_of(&r.iq).contains("item-not-found"));
    let r = query(&mut juliet, "j", &form(&[("start", "last tuesday")])).await;
    let e = error_of(&r.iq);
    assert!(e.contains("bad-request") && e.contains("XEP-0082"), "{e}");
    let r = query(&mut juliet, "k", &set("<index>2</index>")).await;
    assert!(error_of(&r.iq).contains("feature-not-implemented"));
}

#[actix_rt::test]
async fn start_and_end_select_a_time_range() {
    let t = TestServer::start(|_| {}).await;
    let (mut juliet, mut romeo) = online_pair(&t).await;
    romeo_sends(&mut juliet, &mut romeo, &["a", "b", "c", "d"]).await;
    let all = query(&mut juliet, "all", "").await;
    let stamp = |i: usize| {
        result(&all.results[i])
            .get_child("forwarded", FWD)
            .and_then(|f| f.get_child("delay", "urn:xmpp:delay"))
            .and_then(|d| d.attr("stamp"))
            .expect("stamp")
            .to_string()
    };
    let (from, to) = (stamp(1), stamp(2));
    let a = query(&mut juliet, "r", &form(&[("start", &from), ("end", &to)])).await;
    assert_eq!(a.bodies(), ["b", "c"]);
}

#[actix_rt::test]
async fn the_per_user_cap_keeps_the_newest() {
    let t = TestServer::start(|c| c.archive_max_messages_per_user = 3).await;
    let (mut juliet, mut romeo) = online_pair(&t).await;
    romeo_sends(&mut juliet, &mut romeo, &["1", "2", "3", "4", "5"]).await;
    let a = query(&mut juliet, "q", "").await;
    assert_eq!(a.bodies(), ["3", "4", "5"]);
}

/// Past `store_max_pending` archive writes held by the store, writers wait for room
/// rather than lose messages: a burst many times the room is archived whole, on both
/// sides (Juliet's incoming, Romeo's outgoing), and the waits show in the metrics.
#[actix_rt::test]
async fn a_burst_past_store_max_pending_is_archived_whole() {
    const N: usize = 400;
    let t = TestServer::start(|c| {
        c.store_max_pending = 8;
        c.max_archive_query_results = N;
    })
    .await;
    let (mut juliet, mut romeo) = online_pair(&t).await;
    let send = async {
        for i in 0..N {
            romeo
                .send(&format!(
                    "<message type='chat' to='juliet@localhost' id='b{i}'><body>{i}</body></message>"
                ))
                .await;
        }
    };
    // Read as they come: her session's channel must not overflow to offline storage.
    let read = async {
        let mut ids = Vec::new();
        while ids.len() < N {
            let (m, _) = juliet.until("message").await;
            ids.push(stanza_id(&m).unwrap_or_else(|| panic!("no stanza-id: {}", String::from(&m))));
        }
        ids
    };
    let ((), delivered) = tokio::join!(send, read);
    let bodies: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let hers = query(&mut juliet, "all", &set(&format!("<max>{N}</max>"))).await;
    assert_eq!(hers.bodies(), bodies, "Juliet's archive has holes");
    assert_eq!(
        hers.ids(),
        delivered,
        "archived under other ids than delivered"
    );
    let his = query(&mut romeo, "all", &set(&format!("<max>{N}</max>"))).await;
    assert_eq!(his.bodies(), bodies, "Romeo's archive has holes");
    let metrics = t.server.as_ref().expect("running").metrics.encode();
    let waits: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cloud_notify_archive_waits_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no archive_waits in {metrics}"));
    assert!(waits > 0.0, "no writer waited: the room was never full");
}

#[actix_rt::test]
async fn a_page_holds_at_most_max_archive_query_results() {
    let t = TestServer::start(|c| c.max_archive_query_results = 2).await;
    let (mut juliet, mut romeo) = online_pair(&t).await;
    romeo_sends(&mut juliet, &mut romeo, &["1", "2", "3"]).await;
    let a = query(&mut juliet, "q", &set("<max>100</max>")).await;
    assert_eq!(a.bodies(), ["1", "2"]);
    assert!(!a.complete());
}

#[actix_rt::test]
async fn archive_expires_after_empties_the_archive() {
    let t = TestServer::start(|c| c.archive_expires_after = Duration::from_secs(1)).await;
    let (mut juliet, mut romeo) = online_pair(&t).await;
    romeo_sends(&mut juliet, &mut romeo, &["old"]).await;
    let deadline = Instant::now() + super::patience::wait(Duration::from_secs(15));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut n = 0;
    loop {
        n += 1;
        let a = query(&mut juliet, &format!("q{n}"), "").await;
        if a.results.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the message never expired");
        tick.tick().await;
    }
}

/// XEP-0441: preferences are kept per user and decide what is archived from then on.
#[actix_rt::test]
async fn prefs_decide_what_is_archived() {
    let t = TestServer::start(|_| {}).await;
    let (mut juliet, mut romeo) = online_pair(&t).await;
    let p = juliet
        .iq(&format!(
            "<iq type='get' id='p'><prefs xmlns='{MAM}'/></iq>"
        ))
        .await;
    assert_eq!(
        p.get_child("prefs", MAM).and_then(|p| p.attr("default")),
        Some("always"),
        "never set: everything"
    );
    let set = |default: &str, list: &str| {
        format!(
            "<iq type='set' id='s-{default}'><prefs xmlns='{MAM}' default='{default}'>{list}</prefs></iq>"
        )
    };
    let r = juliet
        .iq(&set(
            "always",
            "<never><jid>romeo@localhost/desk</jid></never>",
        ))
        .await;
    let never: Vec<String> = r
        .get_child("prefs", MAM)
        .and_then(|p| p.get_child("never", MAM))
        .map(|n| n.children().map(|j| j.text()).collect())
        .unwrap_or_default();
    assert_eq!(never, ["romeo@localhost"], "{}", String::from(&r));
    romeo_sends_unarchived(&mut juliet, &mut romeo, "unkept").await;
    juliet
        .iq(&set("never", "<always><jid>romeo@localhost</jid></always>"))
        .await;
    romeo_sends(&mut juliet, &mut romeo, &["kept"]).await;
    let a = query(&mut juliet, "q", "").await;
    assert_eq!(a.bodies(), ["kept"]);
    let r = juliet.iq(&set("sometimes", "")).await;
    assert!(error_of(&r).contains("bad-request"));
    let p = juliet
        .iq(&format!(
            "<iq type='get' id='p2'><prefs xmlns='{MAM}'/></iq>"
        ))
        .await;
    assert_eq!(
        p.get_child("prefs", MAM).and_then(|p| p.attr("default")),
        Some("never"),
        "kept across requests"
    );
}

/// The `roster` default: a message from a peer in the roster is archived and stamped, one
/// from a peer not in it is neither, following the roster as it changes, and again after
/// a restart (the user actor reads the preferences and the roster when it starts).
#[actix_rt::test]
async fn the_roster_default_stamps_only_what_it_archives() {
    let mut t = TestServer::start(|_| {}).await;
    let roster = |id: &str, item: &str| {
        format!("<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'>{item}</query></iq>")
    };
    {
        let (mut juliet, mut romeo) = online_pair(&t).await;
        let r = juliet
            .iq(&format!(
                "<iq type='set' id='s'><prefs xmlns='{MAM}' default='roster'/></iq>"
            ))
            .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
        romeo_sends_unarchived(&mut juliet, &mut romeo, "stranger").await;
        let r = juliet
            .iq(&roster("r1", "<item jid='romeo@localhost'/>"))
            .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
        romeo_sends(&mut juliet, &mut romeo, &["friend"]).await;
        juliet.close().await;
        romeo.close().await;
    }
    t.server.take().unwrap().shutdown().await;
    tokio::time::timeout(super::patience::wait(Duration::from_secs(5)), async {
        t.server = Some(
            cloud_notify::xmpp::server::Server::start(t.cfg.clone())
                .await
                .expect("restart"),
        );
    })
    .await
    .expect("restart in time");
    let (mut juliet, mut romeo) = online_pair(&t).await;
    romeo_sends(&mut juliet, &mut romeo, &["friend again"]).await;
    let r = juliet
        .iq(&roster(
            "r2",
            "<item jid='romeo@localhost' subscription='remove'/>",
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    romeo_sends_unarchived(&mut juliet, &mut romeo, "removed").await;
    let a = query(&mut juliet, "q", "").await;
    assert_eq!(a.bodies(), ["friend", "friend again"]);
}

/// B37, B40: the phone has a registration and no session; the desktop is online. The
/// message reaches the desktop, is archived, and the phone is pushed.
#[actix_rt::test]
async fn b37_b40_wire_archived_message_pushes_the_absent_phone_while_the_desktop_is_online() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_millis(100);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut phone = t.login("juliet", "phone").await;
    enable_push(&mut phone, "n1").await;
    phone.close().await;
    let (mut desktop, mut romeo) = online_pair_as(&t, "desktop").await;
    romeo_sends(&mut desktop, &mut romeo, &["while you were out"]).await;
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n1"));
    assert_eq!(body_of(&p).as_deref(), Some("while you were out"));
}

/// B38: a registration whose session is online is not pushed from the archive; the
/// absent tablet's is, for each message.
#[actix_rt::test]
async fn b38_wire_archive_skips_the_registration_of_the_online_phone() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_millis(100);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n2").await;
    tablet.close().await;
    let (mut phone, mut romeo) = online_pair(&t).await;
    enable_push(&mut phone, "n1").await;
    for body in ["one", "two"] {
        romeo_sends(&mut phone, &mut romeo, &[body]).await;
        let p = app.next().await;
        assert_eq!(
            (node_of(&p).as_deref(), body_of(&p).as_deref()),
            (Some("n2"), Some(body)),
            "{}",
            String::from(&p)
        );
        app.answer_result(&p).await;
    }
}

/// B41: a call's proposal is pushed to every registration, even the online phone's.
#[actix_rt::test]
async fn b41_wire_call_propose_is_pushed_to_the_online_phone() {
    let t = TestServer::start(|c| c.push_batch_window = Duration::from_millis(100)).await;
    let mut app = Component::connect(&t).await;
    let (mut phone, mut romeo) = online_pair(&t).await;
    enable_push(&mut phone, "n1").await;
    romeo
        .send("<message to='juliet@localhost' id='c1'><propose xmlns='urn:xmpp:jingle-message:0' id='call1'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>")
        .await;
    let (m, _) = phone.until("message").await;
    assert!(stanza_id(&m).is_some(), "the proposal is archived");
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n1"));
}

/// Juliet online and available as `resource`, Romeo online.
async fn online_pair_as(t: &TestServer, resource: &str) -> (Client, Client) {
    let mut juliet = t.login("juliet", resource).await;
    juliet.send("<presence/>").await;
    // The presence is in force before anything is sent to her: a ping orders them.
    juliet
        .iq("<iq type='get' id='p0'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let romeo = t.login("romeo", "desk").await;
    (juliet, romeo)
}

/// B39 (D15): the user's own outgoing message, archived, wakes none of their phones; a
/// message to them right after does (the marker is the next publish).
#[actix_rt::test]
async fn b39_wire_own_outgoing_message_is_archived_but_not_pushed() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_millis(100);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut phone = t.login("juliet", "phone").await;
    enable_push(&mut phone, "n1").await;
    phone.close().await;
    let (mut desktop, mut romeo) = online_pair_as(&t, "desktop").await;
    desktop
        .send("<message type='chat' to='romeo@localhost'><body>from me</body></message>")
        .await;
    super::marker(&mut romeo, &mut app, "marker").await;
    let a = query(&mut desktop, "q", "").await;
    assert_eq!(a.bodies(), ["from me", "marker"]);
}
