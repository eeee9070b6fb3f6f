//! Client state indication (XEP-0352) over the wire, as Prosody's mod_csi_simple: an
//! inactive client's chat states wait; a message with a body, going active, or a full
//! buffer (`csi_queue_size`) sends them, in order; a lost connection loses none.

use super::TestServer;
use super::client::Client;

const CSI: &str = "urn:xmpp:csi:0";

fn composing(n: u32) -> String {
    format!(
        "<message type='chat' to='juliet@localhost/phone' id='s{n}'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
}

/// Three sessions: the phone (inactive), Juliet's laptop, and Romeo.
struct Scene {
    phone: Client,
    laptop: Client,
    romeo: Client,
    probes: u32,
}

impl Scene {
    async fn start(t: &TestServer) -> Scene {
        let mut phone = t.login("juliet", "phone").await;
        assert!(phone.features_xml.contains(CSI), "{}", phone.features_xml);
        phone
            .send_nonza(&format!("<inactive xmlns='{CSI}'/>"))
            .await;
        let laptop = t.login("juliet", "laptop").await;
        let romeo = t.login("romeo", "desk").await;
        let mut scene = Scene {
            phone,
            laptop,
            romeo,
            probes: 0,
        };
        // The phone's stream reads the state before the ping after it, and answers the
        // ping only then: the state is in force once a probe is through.
        assert!(scene.probe().await.is_empty());
        scene
    }

    /// Romeo's IQ to the laptop passes Juliet's user actor after everything Romeo sent
    /// before it, so once it is answered the actor has held or written those; one
    /// written is in the phone's channel, which its socket writes before it answers the
    /// phone's own ping (answered by the socket itself, without stream management).
    /// Returns the ids of the messages the phone got before that answer.
    async fn probe(&mut self) -> Vec<String> {
        self.probes += 1;
        let id = format!("probe{}", self.probes);
        self.romeo
            .send(&format!(
                "<iq type='get' id='{id}' to='juliet@localhost/laptop'><query xmlns='jabber:iq:version'/></iq>"
            ))
            .await;
        let (iq, _) = self.laptop.until("iq").await;
        assert_eq!(iq.attr("id"), Some(id.as_str()));
        self.laptop
            .send(&format!(
                "<iq type='result' id='{id}' to='romeo@localhost/desk'/>"
            ))
            .await;
        self.romeo.until("iq").await;
        self.phone
            .send(&format!(
                "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
        let (_, before) = self.phone.until("iq").await;
        before
            .iter()
            .filter(|e| e.name() == "message")
            .map(|m| m.attr("id").unwrap_or_default().to_string())
            .collect()
    }
}

#[actix_rt::test]
async fn chat_states_wait_until_a_message_with_a_body() {
    let t = TestServer::start(|_| {}).await;
    let mut s = Scene::start(&t).await;
    s.romeo.send(&composing(1)).await;
    s.romeo.send(&composing(2)).await;
    assert_eq!(s.probe().await, Vec::<String>::new(), "held");
    s.romeo
        .send("<message type='chat' to='juliet@localhost/phone' id='b'><body>hi</body></message>")
        .await;
    assert_eq!(s.probe().await, ["s1", "s2", "b"]);
}

#[actix_rt::test]
async fn going_active_sends_what_waited() {
    let t = TestServer::start(|_| {}).await;
    let mut s = Scene::start(&t).await;
    s.romeo.send(&composing(1)).await;
    assert_eq!(s.probe().await, Vec::<String>::new(), "held");
    s.phone
        .send_nonza(&format!("<active xmlns='{CSI}'/>"))
        .await;
    let (m, _) = s.phone.until("message").await;
    assert_eq!(m.attr("id"), Some("s1"));
    // Active again: nothing waits.
    s.romeo.send(&composing(2)).await;
    assert_eq!(s.probe().await, ["s2"]);
}

#[actix_rt::test]
async fn a_full_buffer_is_sent_and_holding_starts_again() {
    let t = TestServer::start(|c| c.csi_queue_size = 2).await;
    let mut s = Scene::start(&t).await;
    for n in 1..=3 {
        s.romeo.send(&composing(n)).await;
    }
    assert_eq!(s.probe().await, ["s1", "s2", "s3"]);
    s.romeo.send(&composing(4)).await;
    assert_eq!(s.probe().await, Vec::<String>::new(), "held");
}

/// SIGHUP lowers the buffer for the next stanza held, in sessions already inactive.
#[actix_rt::test]
async fn a_reloaded_csi_queue_size_bounds_the_buffer_at_once() {
    let t = TestServer::start(|_| {}).await;
    let mut s = Scene::start(&t).await;
    s.romeo.send(&composing(1)).await;
    assert_eq!(s.probe().await, Vec::<String>::new(), "held");
    let mut lowered = t.cfg.clone();
    lowered.csi_queue_size = 2;
    let done = t.server.as_ref().expect("running").reload(&lowered, true);
    assert!(done.applied.iter().any(|a| a.key == "csi_queue_size"));
    for n in 2..=3 {
        s.romeo.send(&composing(n)).await;
    }
    assert_eq!(s.probe().await, ["s1", "s2", "s3"]);
}

#[actix_rt::test]
async fn what_waited_is_not_lost_when_the_connection_drops() {
    let t = TestServer::start(|_| {}).await;
    let mut s = Scene::start(&t).await;
    s.romeo
        .send("<message type='normal' to='juliet@localhost/phone' id='r'><received xmlns='urn:xmpp:receipts' id='x'/></message>")
        .await;
    assert_eq!(s.probe().await, Vec::<String>::new(), "held");
    s.phone.drop_connection().await;
    // Without stream management the session ends with its connection; the held
    // message goes to offline storage and reaches the next session.
    s.laptop.close().await;
    let mut again = t.login("juliet", "tablet").await;
    again.send("<presence/>").await;
    let deadline = std::time::Instant::now() + super::patience::deadline();
    loop {
        let (m, _) = again.until("message").await;
        if m.attr("id") == Some("r") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the held message never came"
        );
    }
}

/// With stream management, what waited when the connection drops is counted like what
/// was written: it is in the hibernated session's queue, and the resumed stream gets it.
#[actix_rt::test]
async fn with_stream_management_what_waited_comes_after_resumption() {
    let t = TestServer::start(|_| {}).await;
    let mut phone = t.login("juliet", "phone").await;
    let previd = super::enable_sm(&mut phone).await;
    phone
        .send_nonza(&format!("<inactive xmlns='{CSI}'/>"))
        .await;
    // Answered through the user actor (stream management): the state is in force.
    phone
        .iq("<iq type='get' id='order' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    phone.send_nonza("<a xmlns='urn:xmpp:sm:3' h='1'/>").await;
    let mut laptop = t.login("juliet", "laptop").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo.send(&composing(1)).await;
    // Behind the chat state at Juliet's user actor: once answered, it was held.
    romeo
        .send("<iq type='get' id='v' to='juliet@localhost/laptop'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let (iq, _) = laptop.until("iq").await;
    laptop
        .send(&format!(
            "<iq type='result' id='{}' to='romeo@localhost/desk'/>",
            iq.attr("id").unwrap_or_default()
        ))
        .await;
    romeo.until("iq").await;
    phone.drop_connection().await;
    let mut phone = super::client::authenticate(&t, "juliet", "juliet-pw")
        .await
        .unwrap();
    phone
        .send_nonza(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='1'/>"
        ))
        .await;
    phone.until("resumed").await;
    let (m, _) = phone.until("message").await;
    assert_eq!(m.attr("id"), Some("s1"));
}

/// What waits for an inactive client counts in the memory figures (`queues`) at its
/// size, and leaves when the client goes active and gets it.
#[actix_rt::test]
async fn what_waits_counts_in_queues_at_its_size_until_it_is_sent() {
    let t = TestServer::start(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = t.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let queues = "cloud_notify_memory_bytes{kind=\"queues\"}";
    let mut s = Scene::start(&t).await;
    let before = super::operate::scrape_until(addr, "a first scrape", |m| m.contains_key(queues))
        .await[queues];
    let big = "x".repeat(1000);
    for n in 1..=5 {
        s.romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost/phone' id='s{n}'><composing xmlns='http://jabber.org/protocol/chatstates'/><x xmlns='urn:example:big'>{big}</x></message>"
            ))
            .await;
    }
    assert_eq!(s.probe().await, Vec::<String>::new(), "held");
    super::operate::scrape_until(addr, "the held stanzas counted at their size", |m| {
        m[queues] >= before + 5.0 * 1000.0
    })
    .await;
    s.phone
        .send_nonza(&format!("<active xmlns='{CSI}'/>"))
        .await;
    for n in 1..=5 {
        let (m, _) = s.phone.until("message").await;
        assert_eq!(m.attr("id"), Some(format!("s{n}").as_str()));
    }
    super::operate::scrape_until(addr, "their bytes gone once sent", |m| m[queues] == before).await;
}
