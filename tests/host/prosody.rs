//! Debian's Prosody 0.12 as a federated peer, run privately on 127.0.0.7 with its own
//! configuration in a temporary directory: what the federation tests with it share.
//! Prosody is found at `CLOUD_NOTIFY_PROSODY` or /usr/bin/prosody (`.ci/interop-setup.sh`
//! installs it); without it a test is skipped with a notice, except under CI, where it
//! fails.
//!
//! Prosody finds our named domains through `mod_test_s2s_hosts` (a fixture in
//! `prosody_plugins/`), its counterpart of our `s2s_hosts`: Prosody 0.12's resolver asks
//! only /etc/resolv.conf's servers on port 53.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use sha1::Digest;
use tokio::io::AsyncWriteExt;
use xmpp_parsers::minidom::Element;

use super::raw::Raw;

pub const PEER: &str = "p.localhost";
pub const PEER_APP: &str = "push.p.localhost";
const PEER_APP_SECRET: &str = "peer-s3cr3t";
pub fn prosody() -> Option<PathBuf> {
    let path = std::env::var_os("CLOUD_NOTIFY_PROSODY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prosody"));
    if path.exists() {
        return Some(path);
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !ci,
        "CI must run the Prosody federation tests: no {}",
        path.display()
    );
    eprintln!(
        "notice: Prosody not found at {}: federation interop test skipped",
        path.display()
    );
    None
}

pub fn free_port(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap()
}

/// A certificate authority made by the test, written to `ca.pem` in its directory.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // OpenSSL (Prosody's) takes a leaf whose issuer name is its own subject name for
        // self-signed: rcgen's default name would be the same for both.
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, format!("cloud-notify test CA {name}"));
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        TestCa { issuer, pem }
    }

    /// A certificate for `domains` signed by this CA (the file is the full chain, as
    /// Let's Encrypt's is) and its key.
    pub fn leaf(&self, dir: &Path, domains: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names = domains.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        let mut leaf = CertificateParams::new(names).unwrap();
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name.push(DnType::CommonName, domains[0]);
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf = leaf.signed_by(&key, &self.issuer).unwrap();
        let (cert, key_path) = (
            dir.join(format!("{}.crt", domains[0])),
            dir.join(format!("{}.key", domains[0])),
        );
        std::fs::write(&cert, leaf.pem() + &self.issuer.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert, key_path)
    }
}

/// What a test changes in Prosody's configuration.
#[derive(Default)]
pub struct Setup {
    /// Where our domains listen (`test_s2s_hosts`).
    pub hosts: Vec<(String, SocketAddr)>,
    /// Certificate and key for p.localhost and its component; self-signed when unset.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// The authorities Prosody trusts for other servers' certificates (its default:
    /// the system's).
    pub ca: Option<PathBuf>,
    pub secure_auth: bool,
    /// `mod_s2s_bidi`: XEP-0288 both ways.
    pub bidi: bool,
}

/// Prosody running in `dir`; killed when dropped (its log shown if a test failed).
pub struct Prosody {
    bin: PathBuf,
    child: Option<std::process::Child>,
    pub s2s: SocketAddr,
    c2s: SocketAddr,
    component: SocketAddr,
    dir: PathBuf,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Prosody's log:\n{}", self.log());
        }
        self.stop();
    }
}

fn lua_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Prosody {
    pub async fn start(bin: &Path, dir: &Path, setup: Setup) -> Prosody {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let (c2s, s2s, component) = (
            free_port("127.0.0.7"),
            free_port("127.0.0.7"),
            free_port("127.0.0.7"),
        );
        let (cert, key) = setup.cert.unwrap_or_else(|| {
            let ck =
                rcgen::generate_simple_self_signed(vec![PEER.into(), PEER_APP.into()]).unwrap();
            let (c, k) = (dir.join("p.crt"), dir.join("p.key"));
            std::fs::write(&c, ck.cert.pem()).unwrap();
            std::fs::write(&k, ck.signing_key.serialize_pem()).unwrap();
            (c, k)
        });
        let d = dir.display();
        let mut modules = vec![
            "dialback",
            "disco",
            "ping",
            "tls",
            "saslauth",
            "roster",
            "presence",
            "message",
            "iq",
            "test_s2s_hosts",
        ];
        if setup.bidi {
            modules.push("s2s_bidi");
        }
        let hosts = setup
            .hosts
            .iter()
            .map(|(domain, at)| {
                format!(
                    "[{domain:?}] = {{ {:?}, {} }}",
                    at.ip().to_string(),
                    at.port()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let cafile = setup
            .ca
            .map(|ca| format!(", cafile = {:?}", ca.display().to_string()))
            .unwrap_or_default();
        let config = format!(
            r#"
daemonize = false
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
plugin_paths = {{ {plugins:?} }}
interfaces = {{ "127.0.0.7" }}
local_interfaces = {{ "127.0.0.7" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
component_ports = {{ {component} }}
component_interfaces = {{ "127.0.0.7" }}
http_ports = {{ }}
https_ports = {{ }}
s2s_secure_auth = {secure_auth}
s2s_require_encryption = true
-- The Prosody users log in over plaintext on loopback: the test's client has no TLS for
-- another server than ours.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
test_s2s_hosts = {{ {hosts} }}
modules_enabled = {{ {modules} }}
ssl = {{ certificate = {cert:?}, key = {key:?}{cafile} }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{d}/prosody.log" }} }}
VirtualHost "{PEER}"
Component "{PEER_APP}"
  component_secret = "{PEER_APP_SECRET}"
"#,
            plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/host/prosody_plugins"),
            c2s = c2s.port(),
            s2s = s2s.port(),
            component = component.port(),
            secure_auth = setup.secure_auth,
            modules = lua_list(&modules),
            cert = cert.display().to_string(),
            key = key.display().to_string(),
        );
        std::fs::write(dir.join("prosody.cfg.lua"), config).unwrap();
        let mut p = Prosody {
            bin: bin.to_path_buf(),
            child: None,
            s2s,
            c2s,
            component,
            dir: dir.to_path_buf(),
        };
        p.restart().await;
        p
    }

    /// Starts Prosody again with the same configuration and data; returns once it listens.
    pub async fn restart(&mut self) {
        let child = std::process::Command::new(&self.bin)
            .arg("--config")
            .arg(self.dir.join("prosody.cfg.lua"))
            .stdout(std::fs::File::create(self.dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(self.dir.join("stderr")).unwrap())
            .spawn()
            .expect("prosody starts");
        self.child = Some(child);
        // Prosody says nothing when it is ready: its last listener accepting is the sign.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(self.component)
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "Prosody did not listen: {}{}",
                std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills Prosody, as a crash or a power cut does: no stream is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prosody.log")).unwrap_or_default()
    }

    /// Creates the Prosody account `user`@p.localhost with password `{user}-pw`.
    pub fn register(&self, user: &str) {
        let ctl = self.bin.with_file_name("prosodyctl");
        let out = std::process::Command::new(&ctl)
            .arg("--config")
            .arg(self.dir.join("prosody.cfg.lua"))
            .args(["register", user, PEER, &format!("{user}-pw")])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", ctl.display()));
        assert!(
            out.status.success(),
            "prosodyctl register: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An app server attached to Prosody as a component (XEP-0114), in raw bytes:
    /// Prosody's component stream has no `version`, which the scripted client's stream
    /// refuses.
    pub async fn component(&self) -> Raw {
        let mut c = Raw::connect(self.component).await;
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

    /// Logs `user` in to Prosody (PLAIN over plaintext, loopback only), binds
    /// `resource`, sends the initial presence and asks for the roster (so Prosody counts
    /// the session as interested in subscription requests).
    pub async fn login(&self, user: &str, resource: &str) -> PeerClient {
        use base64::Engine;
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{PEER}' version='1.0'>"
        );
        let mut c = Raw::connect(self.c2s).await;
        c.write(header.as_bytes()).await;
        c.until("</stream:features>").await;
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{user}-pw"));
        c.write(
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
            )
            .as_bytes(),
        )
        .await;
        c.until("<success").await;
        c.until(">").await;
        c.write(header.as_bytes()).await;
        c.until("</stream:features>").await;
        c.write(
            format!(
                "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>{resource}</resource></bind></iq>"
            )
            .as_bytes(),
        )
        .await;
        c.until("</iq>").await;
        let (rx, wr) = c.split();
        let mut client = PeerClient { rx, wr };
        client
            .send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        client.until(|e| e.name() == "iq").await;
        client.send("<presence/>").await;
        client
    }
}

/// A user of Prosody's, reading elements parsed by our stream reader.
pub struct PeerClient {
    rx: tokio::sync::mpsc::UnboundedReceiver<Element>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

impl PeerClient {
    pub async fn send(&mut self, xml: &str) {
        self.wr.write_all(xml.as_bytes()).await.unwrap();
    }

    /// The first element that `pred` accepts (others are skipped); panics at the
    /// deadline, showing what came instead.
    pub async fn until(&mut self, pred: impl Fn(&Element) -> bool) -> Element {
        let wait = super::patience::deadline();
        let deadline = tokio::time::Instant::now() + wait;
        let mut skipped = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(el)) if pred(&el) => return el,
                Ok(Some(el)) => skipped.push(String::from(&el)),
                Ok(None) => panic!("Prosody closed the stream; before: {skipped:?}"),
                Err(_) => panic!("nothing expected within {wait:?}; got {skipped:?}"),
            }
        }
    }
}

/// The value of attribute `name` in the first tag of `xml` that has it (either quote).
pub fn attr(xml: &str, name: &str) -> Option<String> {
    for q in ['\'', '"'] {
        let key = format!(" {name}={q}");
        if let Some(at) = xml.find(&key) {
            let rest = &xml[at + key.len()..];
            return rest.split(q).next().map(str::to_string);
        }
    }
    None
}
