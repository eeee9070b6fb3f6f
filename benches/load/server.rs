//! The server under load: a release binary in its own process, on a temporary data dir,
//! observed through /proc.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DOMAIN: &str = "localhost";
pub const APP_JID: &str = "push.localhost";
pub const APP_SECRET: &str = "load-secret";
pub const PASSWORD: &str = "load-pw";
/// The lowest count the configuration accepts: account setup is not what is measured.
const SCRAM_ITERATIONS: u32 = 4096;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_cloud-notify")
}

fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

/// What a run configures beyond the defaults. Everything else is the shipped default.
pub struct Setup {
    pub dir: PathBuf,
    pub c2s: SocketAddr,
    pub component: SocketAddr,
    pub users: usize,
    pub tls: bool,
}

impl Setup {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("load.toml")
    }

    /// Writes the configuration: loopback listeners, plaintext allowed unless `tls`,
    /// `push_max_active_users` raised to the run's size (the default is 10,000), and the
    /// per-address and negotiating quotas lifted: every simulated phone connects from
    /// 127.0.0.1, which in real life would be thousands of addresses.
    pub fn write_config(&self) -> Result<(), String> {
        let (require_tls, plain) = if self.tls {
            (true, false)
        } else {
            (false, true)
        };
        let text = format!(
            r#"domain = "{DOMAIN}"
c2s_listen = "{c2s}"
component_listen = "{component}"
data_dir = "{data}"
c2s_require_encryption = {require_tls}
allow_unencrypted_plain_auth = {plain}
scram_iterations = {SCRAM_ITERATIONS}
push_max_active_users = {users}
c2s_max_connections_per_ip = 1000000
c2s_max_unauthenticated = 1000000

[[component]]
jid = "{APP_JID}"
secret = "{APP_SECRET}"
"#,
            c2s = self.c2s,
            component = self.component,
            data = self.dir.join("data").display(),
            users = self.users + 100,
        );
        std::fs::write(self.config_path(), text).map_err(|e| e.to_string())
    }
}

pub fn setup(dir: &Path, users: usize, tls: bool) -> Result<Setup, String> {
    let s = Setup {
        dir: dir.to_path_buf(),
        c2s: free_port()?,
        component: free_port()?,
        users,
        tls,
    };
    std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
    s.write_config()?;
    Ok(s)
}

/// `cloud-notify user import`, as an administrator would create the accounts.
pub fn import(setup: &Setup, users: usize, senders: usize) -> Result<(), String> {
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(setup.config_path())
        .args(["user", "import", "--create"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary()))?;
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().ok_or("no stdin")?);
        for u in 0..users {
            writeln!(stdin, "{} {PASSWORD}", user_jid(u)).map_err(|e| e.to_string())?;
        }
        for s in 0..senders {
            writeln!(stdin, "{} {PASSWORD}", sender_jid(s)).map_err(|e| e.to_string())?;
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("user import failed: {status}"));
    }
    Ok(())
}

pub fn user_name(u: usize) -> String {
    format!("u{u}")
}

pub fn user_jid(u: usize) -> String {
    format!("u{u}@{DOMAIN}")
}

pub fn sender_name(s: usize) -> String {
    format!("sender{s}")
}

fn sender_jid(s: usize) -> String {
    format!("sender{s}@{DOMAIN}")
}

pub struct Server {
    child: Child,
}

impl Server {
    pub async fn start(setup: &Setup) -> Result<Server, String> {
        let log = std::fs::File::create(setup.dir.join("server.log")).map_err(|e| e.to_string())?;
        // For profiling a miss: CLOUD_NOTIFY_LOAD_WRAPPER="valgrind --tool=massif" runs
        // the server under that command (its pid stays the server's).
        let wrapper = std::env::var("CLOUD_NOTIFY_LOAD_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .arg("--config")
            .arg(setup.config_path())
            .arg("serve")
            .env("CLOUD_NOTIFY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary()))?;
        let server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c2s = tokio::net::TcpStream::connect(setup.c2s).await;
            let comp = tokio::net::TcpStream::connect(setup.component).await;
            if c2s.is_ok() && comp.is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "server did not listen within 60 s; see {}",
                    setup.dir.join("server.log").display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as systemd stops it; the server must exit cleanly.
    pub fn stop(mut self) -> Result<(), String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("server exited with {status}"))
                };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err("server did not stop within 30 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Resident memory in bytes: (VmRSS, VmHWM).
pub fn memory(pid: u32) -> (u64, u64) {
    let m = memory_fields(pid, &["VmRSS:", "VmHWM:"]);
    (m[0], m[1])
}

/// The private part of resident memory (heap, stacks), without the binary's and the
/// libraries' code pages, which are file-backed and shared.
pub fn anonymous(pid: u32) -> u64 {
    memory_fields(pid, &["RssAnon:"])[0]
}

fn memory_fields(pid: u32, names: &[&str]) -> Vec<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    names.iter().map(|n| field(n)).collect()
}

/// CPU time of all the process's threads, from the scheduler's nanosecond accounting
/// (the tick-based utime/stime would be too coarse for a 100 ms burst).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Waits until resident memory stops changing: the server has digested what it was sent.
pub async fn settle(pid: u32) -> (u64, u64) {
    let mut last = memory(pid);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = memory(pid);
        if now.0 == last.0 {
            return now;
        }
        last = now;
    }
    last
}

/// A profiler attached to the server for one message phase only, from
/// CLOUD_NOTIFY_LOAD_PROFILE, e.g. `perf record -e cpu-clock -g -o perf.data -p {pid}`.
pub struct Profiler {
    child: Child,
}

impl Profiler {
    pub fn attach(pid: u32) -> Result<Option<Profiler>, String> {
        let Ok(command) = std::env::var("CLOUD_NOTIFY_LOAD_PROFILE") else {
            return Ok(None);
        };
        let command = command.replace("{pid}", &pid.to_string());
        let child = Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("profiler: {e}"))?;
        // perf needs a moment to attach before the phase starts.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Some(Profiler { child }))
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
