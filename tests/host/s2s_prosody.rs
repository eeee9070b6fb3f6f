//! Federation with a real peer: Debian's Prosody 0.12, run privately on 127.0.0.7 with
//! its own configuration in a temporary directory, `s2s_secure_auth = false` (our
//! certificate is self-signed, so dialback is what authenticates both ways). Our domain
//! is the IP literal 127.0.0.2, which Prosody reaches on port 5269 without DNS; we reach
//! Prosody through `s2s_hosts`. Prosody is found at `CLOUD_NOTIFY_PROSODY` or
//! /usr/bin/prosody (`.ci/interop-setup.sh` installs it); without it the test is skipped
//! with a notice, except under CI, where it fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha1::Digest;

use super::raw::Raw;
use super::{TestServer, until_user_stats};

const OURS: &str = "127.0.0.2";
const PEER: &str = "p.localhost";
const PEER_APP: &str = "push.p.localhost";
const PEER_APP_SECRET: &str = "peer-s3cr3t";

fn prosody() -> Option<PathBuf> {
    let path = std::env::var_os("CLOUD_NOTIFY_PROSODY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prosody"));
    if path.exists() {
        return Some(path);
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !ci,
        "CI must run the Prosody federation test: no {}",
        path.display()
    );
    eprintln!(
        "notice: Prosody not found at {}: federation interop test skipped",
        path.display()
    );
    None
}

fn free_port(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap()
}

/// Prosody running in `dir`; stopped (killed) when dropped.
struct Prosody {
    child: std::process::Child,
    s2s: SocketAddr,
    component: SocketAddr,
    dir: PathBuf,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prosody {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prosody.log")).unwrap_or_default()
    }
}

async fn start_prosody(bin: &Path, dir: &Path) -> Prosody {
    let (c2s, s2s, component) = (
        free_port("127.0.0.7"),
        free_port("127.0.0.7"),
        free_port("127.0.0.7"),
    );
    let ck = rcgen::generate_simple_self_signed(vec![PEER.to_string()]).unwrap();
    std::fs::write(dir.join("p.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("p.key"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let d = dir.display();
    let config = format!(
        r#"
daemonize = false
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
interfaces = {{ "127.0.0.7" }}
local_interfaces = {{ "127.0.0.7" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
component_ports = {{ {component} }}
component_interfaces = {{ "127.0.0.7" }}
http_ports = {{ }}
https_ports = {{ }}
s2s_secure_auth = false
s2s_require_encryption = true
modules_enabled = {{ "dialback", "disco", "ping", "tls", "saslauth", "roster" }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{d}/prosody.log" }} }}
VirtualHost "{PEER}"
  ssl = {{ certificate = "{d}/p.crt", key = "{d}/p.key" }}
Component "{PEER_APP}"
  component_secret = "{PEER_APP_SECRET}"
"#,
        c2s = c2s.port(),
        s2s = s2s.port(),
        component = component.port(),
    );
    let cfg = dir.join("prosody.cfg.lua");
    std::fs::write(&cfg, config).unwrap();
    let child = std::process::Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("prosody starts");
    let p = Prosody {
        child,
        s2s,
        component,
        dir: dir.to_path_buf(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(component).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "Prosody did not listen: {}{}",
            std::fs::read_to_string(dir.join("stderr")).unwrap_or_default(),
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p
}

/// The value of attribute `name` in the first tag of `xml` that has it (either quote).
fn attr(xml: &str, name: &str) -> Option<String> {
    for q in ['\'', '"'] {
        let key = format!(" {name}={q}");
        if let Some(at) = xml.find(&key) {
            let rest = &xml[at + key.len()..];
            return rest.split(q).next().map(str::to_string);
        }
    }
    None
}

/// An app server attached to Prosody as a component (XEP-0114), in raw bytes: Prosody's
/// component stream has no `version`, which the scripted client's stream refuses.
async fn prosody_component(addr: SocketAddr) -> Raw {
    let mut c = Raw::connect(addr).await;
    c.write(
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{PEER_APP}'>"
        )
        .as_bytes(),
    )
    .await;
    let header = c.until("<stream:stream").await;
    let header = header + &c.until(">").await;
    let id = attr(&header, "id").unwrap_or_else(|| panic!("no stream id in {header}"));
    let digest: String = sha1::Sha1::digest(format!("{id}{PEER_APP_SECRET}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    c.write(format!("<handshake>{digest}</handshake>").as_bytes())
        .await;
    c.until("<handshake").await;
    c
}

#[actix_rt::test]
async fn prosody_federation_iq_both_ways_and_a_push_to_its_component() {
    let Some(bin) = prosody() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = start_prosody(&bin, dir.path()).await;
    let peer = p.s2s;
    let t = TestServer::start(move |c| {
        c.domain = OURS.into();
        c.components.clear();
        c.s2s_listen = Some(SocketAddr::from(([127, 0, 0, 2], 5269)));
        c.s2s_hosts = [(PEER.to_string(), peer), (PEER_APP.to_string(), peer)]
            .into_iter()
            .collect();
        c.s2s_timeout = Duration::from_secs(15);
    })
    .await;
    let mut app = prosody_component(p.component).await;
    let mut juliet = t.login("juliet", "phone").await;
    // Out over our link (Prosody verifies our key on our listener), the answer back over
    // Prosody's link to us (we verify its key with it).
    let r = juliet
        .iq(&format!(
            "<iq type='get' id='p1' to='{PEER}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "{}\n{}",
        String::from(&r),
        p.log()
    );
    assert_eq!(r.attr("from"), Some(PEER));
    // A push to an app server attached to Prosody, as a phone with Conversations' p2
    // would use it; the answer comes back and is matched.
    super::s2s::enable_push_and_leave(juliet, PEER_APP).await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@127.0.0.2' id='m1'><body>hi</body></message>")
        .await;
    let publish = app
        .try_until("</iq>")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    let publish = &publish[publish.find("<iq").expect("an iq")..];
    assert_eq!(attr(publish, "from").as_deref(), Some(OURS), "{publish}");
    assert_eq!(attr(publish, "type").as_deref(), Some("set"), "{publish}");
    assert!(publish.contains("the-secret"), "{publish}");
    let id = attr(publish, "id").expect("publish id");
    app.write(format!("<iq type='result' id='{id}' from='{PEER_APP}' to='{OURS}'/>").as_bytes())
        .await;
    until_user_stats(&t, "juliet", "the answer through Prosody matched", |s| {
        s.pending_publishes == 0 && s.registrations == 1
    })
    .await;
}
