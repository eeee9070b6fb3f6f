//! The `cloud-notify` command.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cloud_notify::config::Config;
use cloud_notify::store::{Account, admin};

mod alloc_tuning;

#[derive(Parser)]
#[command(
    name = "cloud-notify",
    version,
    about = "XEP-0357 push notifications for XMPP, server side"
)]
struct Cli {
    /// Configuration file (TOML). Without it the built-in defaults apply.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Validate the configuration and the data directory, and print the effective
    /// settings; then, unless --offline, our domain's DNS records and whether each remote
    /// app server's domain can be reached.
    Check {
        /// Skip the network checks (DNS, connections to app servers' domains).
        #[arg(long)]
        offline: bool,
    },
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// A user's push registrations: their health, removal, a test push.
    #[cfg(unix)]
    #[command(subcommand)]
    Push(cloud_notify::console::PushCommand),
    /// Whether the server runs: uptime, sessions, registrations, publishes, memory.
    /// Exit code 3 when it does not run.
    #[cfg(unix)]
    Status,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password: --password, else prompted for on a terminal,
    /// else the first line of standard input.
    Add {
        jid: String,
        #[arg(long)]
        password: Option<String>,
        /// Create the data directory and database if there are none yet.
        #[arg(long)]
        create: bool,
    },
    /// Change an account's password (given, prompted for, or read as for `add`).
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account with its push registrations.
    Del { jid: String },
    /// List the accounts.
    List,
    /// Create accounts from `jid password` lines on standard input.
    Import {
        /// Create the data directory and database if there are none yet.
        #[arg(long)]
        create: bool,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

fn open(cfg: &Config) -> Result<redb::Database, String> {
    let file = cloud_notify::store::open_database(&cfg.data_dir, cfg.store_cache_size);
    file.map_err(|e| {
        let msg = e.to_string();
        if msg.contains("already open") || msg.contains("DatabaseAlreadyOpen") {
            format!(
                "{msg}: another cloud-notify holds {}",
                cfg.data_dir.display()
            )
        } else {
            msg
        }
    })
    .map(cloud_notify::store::StoreFile::into_database)
}

/// The password for `add` and `passwd`: given, else prompted for on a terminal, else the
/// first line of standard input (for scripts).
fn password(given: Option<String>) -> Result<String, String> {
    use std::io::IsTerminal;
    if let Some(p) = given {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return prompt_password(true);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let p = line.trim_end_matches(['\r', '\n']);
    if p.is_empty() {
        return Err(
            "a password is needed: give --password, type it at a terminal, or write it as \
             the first line of standard input"
                .into(),
        );
    }
    Ok(p.to_string())
}

fn prompt_password(confirm: bool) -> Result<String, String> {
    let p = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    if confirm {
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if again != p {
            return Err("the passwords differ".into());
        }
    }
    if p.is_empty() {
        return Err("empty password".into());
    }
    Ok(p)
}

/// Where the `user` commands take effect: the running server (through its admin
/// socket), or the database file when no server holds it.
enum Accounts {
    Direct(redb::Database),
    #[cfg(unix)]
    Server(cloud_notify::xmpp::admin::client::AdminClient),
}

impl Accounts {
    /// `create`: a missing database may be created; otherwise a missing one is an error
    /// (a `user list` run from the wrong directory must not make an empty database).
    fn open(cfg: &Config, create: bool) -> Result<Self, String> {
        #[cfg(unix)]
        if let Ok(c) = cloud_notify::xmpp::admin::client::AdminClient::connect(&cfg.data_dir) {
            return Ok(Accounts::Server(c));
        }
        let file = cfg.data_dir.join(cloud_notify::store::DB_FILE);
        if !create && !file.exists() {
            return Err(format!(
                "no database at {} and no server running there: is the configuration \
                 (--config) the server's? To start a new one, use `user add --create` or \
                 start the server",
                file.display()
            ));
        }
        open(cfg).map(Accounts::Direct)
    }

    fn exists(&mut self, user: &str) -> Result<bool, String> {
        match self {
            Accounts::Direct(db) => admin::user_exists(db, user).map_err(|e| e.to_string()),
            #[cfg(unix)]
            Accounts::Server(c) => c.request(&format!("exists {user}")).map(|a| a == "yes"),
        }
    }

    fn put(&mut self, user: &str, account: &Account, replace: bool) -> Result<(), String> {
        match self {
            Accounts::Direct(db) => {
                admin::put_account(db, user, account, replace).map_err(|e| e.to_string())
            }
            #[cfg(unix)]
            Accounts::Server(c) => {
                let verb = if replace { "set" } else { "add" };
                let cred = cloud_notify::xmpp::admin::client::AdminClient::credentials(account)?;
                c.request(&format!("{verb} {user} {cred}"))
                    .map(drop)
                    .map_err(|e| match e.as_str() {
                        "exists" => format!("user {user} already exists"),
                        "missing" => format!("no such user: {user}"),
                        _ => e,
                    })
            }
        }
    }

    fn delete(&mut self, user: &str) -> Result<(), String> {
        match self {
            Accounts::Direct(db) => admin::delete_user(db, user).map_err(|e| e.to_string()),
            #[cfg(unix)]
            Accounts::Server(c) => c.request(&format!("del {user}")).map(drop).map_err(|e| {
                if e == "missing" {
                    format!("no such user: {user}")
                } else {
                    e
                }
            }),
        }
    }

    fn list(&mut self) -> Result<Vec<String>, String> {
        match self {
            Accounts::Direct(db) => admin::list_users(db).map_err(|e| e.to_string()),
            #[cfg(unix)]
            Accounts::Server(c) => c
                .request("list")
                .map(|l| l.split_whitespace().map(str::to_string).collect()),
        }
    }

    fn import(&mut self, accounts: Vec<(String, Account)>) -> Result<(usize, Vec<String>), String> {
        match self {
            Accounts::Direct(db) => admin::import_accounts(db, accounts).map_err(|e| e.to_string()),
            #[cfg(unix)]
            Accounts::Server(_) => {
                let mut added = 0;
                let mut skipped = Vec::new();
                for (user, account) in accounts {
                    match self.put(&user, &account, false) {
                        Ok(()) => added += 1,
                        Err(e) if e.ends_with("already exists") => skipped.push(user),
                        Err(e) => return Err(e),
                    }
                }
                Ok((added, skipped))
            }
        }
    }
}

fn user(cmd: UserCommand, cfg: &Config) -> Result<String, String> {
    let create = matches!(
        cmd,
        UserCommand::Add { create: true, .. } | UserCommand::Import { create: true }
    );
    let mut accounts = Accounts::open(cfg, create)?;
    let iterations = cfg.scram_iterations;
    let derive = |p: &str| admin::derive(p, iterations).map_err(|e| e.to_string());
    match cmd {
        UserCommand::Add { jid, password, .. } => {
            let user = cloud_notify::console::user_of(&jid, cfg)?;
            if accounts.exists(&user)? {
                return Err(format!("user {user} already exists"));
            }
            let password = self::password(password)?;
            accounts.put(&user, &derive(&password)?, false)?;
            Ok(format!("added {user}@{}", cfg.domain))
        }
        UserCommand::Passwd { jid, password } => {
            let user = cloud_notify::console::user_of(&jid, cfg)?;
            if !accounts.exists(&user)? {
                return Err(format!("no such user: {user}"));
            }
            let password = self::password(password)?;
            accounts.put(&user, &derive(&password)?, true)?;
            Ok(format!("password of {user}@{} changed", cfg.domain))
        }
        UserCommand::Del { jid } => {
            let user = cloud_notify::console::user_of(&jid, cfg)?;
            accounts.delete(&user)?;
            Ok(format!("deleted {user}@{}", cfg.domain))
        }
        UserCommand::List => Ok(accounts
            .list()?
            .iter()
            .map(|u| format!("{u}@{}", cfg.domain))
            .collect::<Vec<_>>()
            .join("\n")),
        UserCommand::Import { .. } => {
            let mut users = Vec::new();
            for (n, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line.map_err(|e| e.to_string())?;
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((jid, password)) = line.split_once(char::is_whitespace) else {
                    return Err(format!("line {}: expected `jid password`", n + 1));
                };
                users.push((
                    cloud_notify::console::user_of(jid, cfg)
                        .map_err(|e| format!("line {}: {e}", n + 1))?,
                    password.trim().to_string(),
                ));
            }
            let derived = admin::derive_all(users, iterations).map_err(|e| e.to_string())?;
            let (added, skipped) = accounts.import(derived)?;
            let mut out = format!("imported {added} accounts");
            if !skipped.is_empty() {
                out.push_str(&format!(
                    "; {} already existed and were left alone: {}",
                    skipped.len(),
                    skipped.join(", ")
                ));
            }
            Ok(out)
        }
    }
}

/// The read-only preflight: every finding is printed, and any problem fails the check.
fn check(cfg: &Config, source: &str, offline: bool) -> Result<String, String> {
    use cloud_notify::xmpp::preflight;
    let running = preflight::server_running(&cfg.data_dir);
    let now = chrono::Utc::now().timestamp();
    let findings: Vec<preflight::Finding> = preflight::tls(cfg, now)
        .into_iter()
        .chain(preflight::listeners(cfg, running))
        .chain(preflight::federation(cfg))
        .chain(preflight::data(cfg, running))
        .collect();
    let findings = match offline {
        true => findings,
        false => {
            let domains = preflight::app_server_domains(cfg, running);
            let network = preflight::network::run(cfg, domains);
            findings.into_iter().chain(network).collect()
        }
    };
    let report: String = findings
        .iter()
        .map(|f| format!("# {} {}\n", if f.ok { "ok:  " } else { "FAIL:" }, f.what))
        .collect();
    let failed = findings.iter().filter(|f| !f.ok).count();
    if failed > 0 {
        return Err(format!(
            "{failed} problem(s) found ({source}):\n{}",
            report.trim_end()
        ));
    }
    Ok(format!(
        "# cloud-notify {}: configuration OK ({source})\n{report}{cfg}",
        env!("CARGO_PKG_VERSION")
    ))
}

type LogFilter =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// The log filter: `CLOUD_NOTIFY_LOG` when set, else the configuration's `log_level`.
fn log_filter(cfg: &Config) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("CLOUD_NOTIFY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Starts the log; the returned handle swaps its filter on SIGHUP.
fn init_logging(cfg: &Config) -> LogFilter {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(cfg));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(cloud_notify::logging::fields())
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init();
    handle
}

/// What the process was asked to do.
enum Signal {
    Stop,
    Reload,
}

/// SIGTERM or Ctrl-C (stop) and SIGHUP (reload), listened for from before the server
/// starts: "serving" is logged inside the start, and a SIGTERM sent as soon as it appears
/// must already find our handler, not the default one that kills the process uncleanly.
struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Must run inside the runtime.
    fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(hup)) => Some((term, hup)),
                _ => {
                    tracing::warn!(
                        "cannot listen for SIGTERM and SIGHUP: only Ctrl-C stops the server"
                    );
                    None
                }
            };
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        if let Some((term, hup)) = &mut self.unix {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                _ = term.recv() => Signal::Stop,
                _ = hup.recv() => Signal::Reload,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}

/// SIGHUP: the configuration file is read again; the log filter, the certificate, the
/// connection quotas and the limits `xmpp::reload` lists take the new values at once,
/// each change logged with its old and new value, and whatever else changed is named (it
/// applies at the next restart). A file that no longer parses changes nothing.
fn reload(server: &cloud_notify::xmpp::server::Server, path: Option<&PathBuf>, log: &LogFilter) {
    let cfg = match load_config(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: configuration not reloaded");
            return;
        }
    };
    let log_filter = match log.reload(log_filter(&cfg)) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP: log filter not applied");
            false
        }
    };
    let done = server.reload(&cfg, log_filter);
    match done.certificate {
        Ok(()) => tracing::info!("SIGHUP: certificate reloaded; used from the next TLS handshake"),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: certificate not reloaded; the old one stays")
        }
    }
    for change in &done.applied {
        tracing::info!(
            "SIGHUP: {} {} -> {} (applied)",
            change.key,
            change.old,
            change.new
        );
    }
    if !done.restart.is_empty() {
        tracing::warn!(
            keys = %done.restart.join(", "),
            "SIGHUP: changed settings take effect at the next restart"
        );
    }
}

/// A panic in an actor would otherwise vanish quietly (the runtime swallows it) and may
/// leave, say, the store's writer thread dead while the server looks alive. Log it and
/// stop the process with a failure code so the service manager restarts it. Everything
/// acknowledged is already durable; only unsynced ledger fields can be lost.
///
/// A panic the store catches (redb on a damaged page) is the exception: the store turns it
/// into a failed request and logs what to do, so the hook only records where it was.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if cloud_notify::store::panic_is_contained() {
            tracing::warn!(panic = %info, "the store caught an internal error");
            return;
        }
        tracing::error!(panic = %info, "internal error: stopping so the service restarts");
        default(info);
        std::process::exit(70);
    }));
}

fn serve(cfg: Config, path: Option<&PathBuf>, allocator_tuned: bool) -> Result<String, String> {
    let log = init_logging(&cfg);
    tracing::debug!(allocator_tuned, "glibc malloc thresholds fixed at start");
    exit_on_panic();
    let system = actix::System::new();
    system.block_on(async move {
        let mut signals = Signals::listen();
        let server = cloud_notify::xmpp::server::Server::start(cfg)
            .await
            .map_err(|e| e.to_string())?;
        while let Signal::Reload = signals.next().await {
            reload(&server, path, &log);
        }
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(String::new())
    })
}

/// A panic the store catches is reported by the store as an error (for `check` and the
/// `user` commands, the damaged-file message); Rust's default report of it would only be
/// noise in front of that message.
fn quiet_contained_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !cloud_notify::store::panic_is_contained() {
            default(info);
        }
    }));
}

fn main() -> ExitCode {
    // Before anything else, so no thread (and no allocation worth keeping) exists yet.
    let allocator_tuned = alloc_tuning::apply();
    quiet_contained_panics();
    let cli = Cli::parse();
    let cfg = match load_config(cli.config.as_ref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("cloud-notify: {e}");
            return ExitCode::from(2);
        }
    };
    let source = cli
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    let result = match cli.command {
        None | Some(Command::Serve) => serve(cfg, cli.config.as_ref(), allocator_tuned),
        Some(Command::Check { offline }) => check(&cfg, &source, offline),
        Some(Command::User(cmd)) => user(cmd, &cfg),
        #[cfg(unix)]
        Some(Command::Push(cmd)) => return cloud_notify::console::push(cmd, &cfg),
        #[cfg(unix)]
        Some(Command::Status) => return cloud_notify::console::status(&cfg),
    };
    match result {
        Ok(text) if text.is_empty() => ExitCode::SUCCESS,
        Ok(text) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cloud-notify: {e}");
            ExitCode::FAILURE
        }
    }
}
