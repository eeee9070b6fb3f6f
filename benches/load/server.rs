//! The server under load: the release binary in its own process, observed through /proc.
//! Either started here on a temporary data dir, or run elsewhere (an emulated board) and
//! driven through a control command (`--server-ctl`, see `Remote`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DOMAIN: &str = "localhost";
pub const APP_JID: &str = "push.localhost";
pub const APP_SECRET: &str = "load-secret";
pub const PASSWORD: &str = "load-pw";
/// The lowest count the configuration accepts: account setup is not what is measured.
const SCRAM_ITERATIONS: u32 = 4096;
/// How long a server may take to listen, or to stop after SIGTERM.
const START_DEADLINE: Duration = Duration::from_secs(120);
const STOP_DEADLINE: Duration = Duration::from_secs(30);

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_cloud-notify")
}

fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

/// Where the server listens and keeps its data, as its configuration says.
pub struct Listen<'a> {
    pub c2s: &'a str,
    pub component: &'a str,
    pub data_dir: &'a str,
}

/// The configuration: plaintext allowed unless `tls`, `push_max_active_users` raised to
/// the run's size (the default is 10,000), and the per-address and negotiating quotas
/// lifted: every simulated phone connects from one address, which in real life would be
/// thousands. Everything else is the shipped default.
pub fn config_text(listen: &Listen, users: usize, tls: bool) -> String {
    let (require_tls, plain) = if tls { (true, false) } else { (false, true) };
    format!(
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
        c2s = listen.c2s,
        component = listen.component,
        data = listen.data_dir,
        users = users + 100,
    )
}

/// The accounts, as `cloud-notify user import` reads them: the users and the senders.
pub fn accounts(users: usize, senders: usize) -> String {
    let mut text = String::with_capacity((users + senders) * 32);
    for u in 0..users {
        text.push_str(&format!("{} {PASSWORD}\n", user_jid(u)));
    }
    for s in 0..senders {
        text.push_str(&format!("{} {PASSWORD}\n", sender_jid(s)));
    }
    text
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

/// Where the servers of a benchmark run.
pub enum Target {
    /// Started here, one temporary data dir per size.
    Local,
    /// Elsewhere, through `ctl VERB`: `info` prints `key=value` lines (c2s_listen,
    /// component_listen, data_dir and whatever describes the machine); `setup` takes the
    /// configuration on stdin and forgets any earlier server and data; `import` takes the
    /// accounts (`cloud-notify user import`'s input) and keeps the data as the template of
    /// every later `start`; `start` starts a server on a fresh copy of it and returns once it
    /// listens; `memory` prints its /proc/PID/smaps_rollup and /proc/PID/status; `cpu` its
    /// /proc/PID/task/*/schedstat and /proc/PID/stat; `stop` sends SIGTERM, waits, prints its log, and fails
    /// unless it exited. A non-zero exit of `ctl` is an error. `c2s` and `component` are the
    /// server's ports as reached from here.
    Remote {
        ctl: String,
        c2s: SocketAddr,
        component: SocketAddr,
    },
}

/// A target with the accounts of one size created: servers start from here.
pub struct Prepared {
    pub c2s: SocketAddr,
    pub component: SocketAddr,
    /// The local data dir (TLS needs the certificate the server writes there).
    pub local_dir: Option<tempfile::TempDir>,
    ctl: Option<String>,
}

impl Target {
    /// What the remote machine says of itself; nothing for a local one (the report's
    /// machine is this one).
    pub fn info(&self) -> Result<Option<BTreeMap<String, String>>, String> {
        let Target::Remote { ctl, .. } = self else {
            return Ok(None);
        };
        let text = run_ctl(ctl, "info", "")?;
        Ok(Some(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        ))
    }

    /// Writes the configuration and creates the accounts, as an administrator would with
    /// `cloud-notify user import`.
    pub fn prepare(&self, users: usize, senders: usize, tls: bool) -> Result<Prepared, String> {
        match self {
            Target::Local => {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let (c2s, component) = (free_port()?, free_port()?);
                let data = dir.path().join("data");
                std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
                let listen = Listen {
                    c2s: &c2s.to_string(),
                    component: &component.to_string(),
                    data_dir: &data.display().to_string(),
                };
                let config = dir.path().join("load.toml");
                std::fs::write(&config, config_text(&listen, users, tls))
                    .map_err(|e| e.to_string())?;
                import_local(&config, &accounts(users, senders))?;
                std::fs::copy(
                    data.join("cloud-notify.redb"),
                    dir.path().join("template.redb"),
                )
                .map_err(|e| format!("keep accounts: {e}"))?;
                Ok(Prepared {
                    c2s,
                    component,
                    local_dir: Some(dir),
                    ctl: None,
                })
            }
            Target::Remote {
                ctl,
                c2s,
                component,
            } => {
                if tls {
                    return Err("--tls is not supported with --server-ctl".into());
                }
                let info = self.info()?.unwrap_or_default();
                let get = |k: &str| {
                    info.get(k)
                        .map(String::as_str)
                        .ok_or(format!("`{ctl} info` gave no {k}"))
                };
                let listen = Listen {
                    c2s: get("c2s_listen")?,
                    component: get("component_listen")?,
                    data_dir: get("data_dir")?,
                };
                run_ctl(ctl, "setup", &config_text(&listen, users, tls))?;
                run_ctl(ctl, "import", &accounts(users, senders))?;
                Ok(Prepared {
                    c2s: *c2s,
                    component: *component,
                    local_dir: None,
                    ctl: Some(ctl.clone()),
                })
            }
        }
    }
}

fn import_local(config: &std::path::Path, accounts: &str) -> Result<(), String> {
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(config)
        .args(["user", "import", "--create"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary()))?;
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().ok_or("no stdin")?);
        stdin
            .write_all(accounts.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("user import failed: {status}"));
    }
    Ok(())
}

/// `ctl VERB` with `input` on its stdin; its stdout, or an error with its exit status.
/// The command bounds its own time (cross/vm.sh's: curl --max-time).
fn run_ctl(ctl: &str, verb: &str, input: &str) -> Result<String, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{ctl} \"$@\""))
        .arg("ctl")
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {ctl}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_string();
    // Written from a thread: a large input would fill the pipe while the command's
    // output, read below, fills the other one.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("`{ctl} {verb}` failed ({}): {text}", out.status));
    }
    Ok(text)
}

pub enum Server {
    Local { child: Child, log: PathBuf },
    Remote { ctl: String },
}

/// Marks the keys a phase adds to the configuration (see `Prepared::set_extra`).
const EXTRA_MARK: &str = "# phase settings\n";

impl Prepared {
    /// Sets keys of the local configuration beyond the benchmark's own (replacing those
    /// set before), for the servers started from now on.
    pub fn set_extra(&self, keys: &str) -> Result<(), String> {
        let dir = self
            .local_dir
            .as_ref()
            .ok_or("phase settings need a local server")?;
        let path = dir.path().join("load.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let (head, rest) = text
            .split_once("[[component]]")
            .ok_or("no component table")?;
        // Top-level keys must come before the first table.
        let head = head.split(EXTRA_MARK).next().unwrap_or(head);
        let text = format!("{head}{EXTRA_MARK}{keys}\n[[component]]{rest}");
        std::fs::write(&path, text).map_err(|e| e.to_string())
    }

    /// A server on a fresh copy of the accounts, once both its ports accept connections
    /// from here.
    pub async fn start(&self) -> Result<Server, String> {
        self.start_on(true).await
    }

    /// A local server again on the data the last one left (its archive, say).
    pub async fn restart(&self) -> Result<Server, String> {
        self.start_on(false).await
    }

    async fn start_on(&self, fresh: bool) -> Result<Server, String> {
        let server = match (&self.local_dir, &self.ctl) {
            (Some(dir), _) => {
                let dir = dir.path();
                let data = dir.join("data");
                if fresh {
                    let _ = std::fs::remove_dir_all(&data);
                    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
                    std::fs::copy(dir.join("template.redb"), data.join("cloud-notify.redb"))
                        .map_err(|e| format!("copy accounts: {e}"))?;
                }
                let log_path = dir.join("server.log");
                let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
                // For profiling a miss: CLOUD_NOTIFY_LOAD_WRAPPER="valgrind --tool=massif"
                // runs the server under that command (its pid stays the server's).
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
                    .arg(dir.join("load.toml"))
                    .arg("serve")
                    .env("CLOUD_NOTIFY_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", binary()))?;
                Server::Local {
                    child,
                    log: log_path,
                }
            }
            (None, Some(_)) if !fresh => {
                return Err("a restart on the same data needs a local server".into());
            }
            (None, Some(ctl)) => {
                run_ctl(ctl, "start", "")?;
                Server::Remote { ctl: ctl.clone() }
            }
            (None, None) => return Err("nothing prepared".into()),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let c2s = tokio::net::TcpStream::connect(self.c2s).await;
            let comp = tokio::net::TcpStream::connect(self.component).await;
            if c2s.is_ok() && comp.is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let _ = server.stop();
                return Err(format!(
                    "server did not listen on {} and {} within {START_DEADLINE:?}",
                    self.c2s, self.component
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Resident memory in bytes.
#[derive(Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reading {
    /// Rss of /proc/PID/smaps_rollup: a page walk, exact. (VmRSS of /proc/PID/status is
    /// the kernel's cached counters, which under-report on Debian's 6.1 kernels: 3.9 MB
    /// against 5.3 MB seen on aarch64.)
    pub rss: u64,
    /// Anonymous of smaps_rollup: heap, stacks, the binary's written data; not the code
    /// pages of the binary and libc, which are file-backed and shared.
    pub anon: u64,
    /// VmHWM: the peak of VmRSS.
    pub peak: u64,
}

/// Parses smaps_rollup and status text; status's VmRSS and RssAnon stand in where
/// smaps_rollup is missing (kernels before 4.14).
pub fn parse_memory(text: &str) -> Reading {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Reading {
        rss: field("Rss:").or_else(|| field("VmRSS:")).unwrap_or(0),
        anon: field("Anonymous:")
            .or_else(|| field("RssAnon:"))
            .unwrap_or(0),
        peak: field("VmHWM:").unwrap_or(0),
    }
}

/// CPU time of the server process, two ways.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    /// The threads' schedstat: nanoseconds, but only of the threads alive now.
    sched_ns: u64,
    /// utime + stime of /proc/PID/stat: whole ticks (USER_HZ, 100 on Linux), but counting
    /// the threads that have exited too (tokio's blocking threads end when idle).
    ticks_ns: u64,
}

impl Cpu {
    /// CPU time since `before`: the exact figure, unless threads that ran in between have
    /// exited and taken theirs with them (seen: a steady run read as 0).
    pub fn since(self, before: Cpu) -> u64 {
        let sched = self.sched_ns.saturating_sub(before.sched_ns);
        let ticks = self.ticks_ns.saturating_sub(before.ticks_ns);
        if ticks > sched + 10_000_000 {
            ticks
        } else {
            sched
        }
    }
}

/// Reads schedstat lines (three numbers, the first CPU nanoseconds) and the stat line.
fn parse_cpu(text: &str) -> Cpu {
    let mut cpu = Cpu::default();
    for line in text.lines() {
        if let Some((_, rest)) = line.rsplit_once(')') {
            // After the command's name: state is field 3, utime and stime 14 and 15.
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            cpu.ticks_ns = (tick(11) + tick(12)) * 10_000_000;
        } else if let Some(ns) = line
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            cpu.sched_ns += ns;
        }
    }
    cpu
}

impl Server {
    /// The pid, for a profiler; only a local server has one here.
    pub fn local_pid(&self) -> Option<u32> {
        match self {
            Server::Local { child, .. } => Some(child.id()),
            Server::Remote { .. } => None,
        }
    }

    pub fn memory(&self) -> Result<Reading, String> {
        match self {
            Server::Local { child, .. } => {
                let read = |f: &str| {
                    std::fs::read_to_string(format!("/proc/{}/{f}", child.id())).unwrap_or_default()
                };
                Ok(parse_memory(&(read("smaps_rollup") + &read("status"))))
            }
            Server::Remote { ctl } => Ok(parse_memory(&run_ctl(ctl, "memory", "")?)),
        }
    }

    /// CPU time of all the process's threads, from the scheduler's nanosecond accounting
    /// (the tick-based utime/stime would be too coarse for a 100 ms burst), and the
    /// ticks as a floor.
    pub fn cpu(&self) -> Result<Cpu, String> {
        match self {
            Server::Local { child, .. } => {
                let pid = child.id();
                let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                    return Ok(Cpu::default());
                };
                let mut text: String = tasks
                    .flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                    .collect();
                text.push_str(
                    &std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
                );
                Ok(parse_cpu(&text))
            }
            Server::Remote { ctl } => Ok(parse_cpu(&run_ctl(ctl, "cpu", "")?)),
        }
    }

    /// Waits until resident memory stops changing: the server has digested what it was
    /// sent. Bounded: 50 readings.
    pub async fn settle(&self) -> Result<Reading, String> {
        let mut last = self.memory()?;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.memory()?;
            if now.rss == last.rss {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// SIGTERM, as systemd stops it; the server must exit cleanly. Returns its log.
    pub fn stop(self) -> Result<String, String> {
        match self {
            Server::Remote { ctl } => run_ctl(&ctl, "stop", ""),
            Server::Local { mut child, log } => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + STOP_DEADLINE;
                loop {
                    if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                        let text = std::fs::read_to_string(&log).unwrap_or_default();
                        return if status.success() {
                            Ok(text)
                        } else {
                            Err(format!("server exited with {status}; its log:\n{text}"))
                        };
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        return Err(format!(
                            "server did not stop within {STOP_DEADLINE:?} of SIGTERM"
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
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
