//! Starts the whole server (store, push module, router, listeners) and shuts it down in
//! order: stop accepting, unload the push module (its ledger flushed), close the store.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admission::{Admission, Quotas};
use super::reload::{self, Applied, Taken};
use super::route::UseS2s;
use super::router::{EndAllSessions, Router};
use super::{c2s, component, connection, tls};
use crate::config::{Config, LiveConfig};
use crate::metrics::Metrics;
use crate::metrics::snapshot::Sources;
use crate::s2s;
use crate::store::{self, ArchiveGate, Close, Store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] store::OpenError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot create the admin socket {path}: {source}")]
    Admin {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or create the dialback secret {path}: {source}")]
    Secret {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the DNS resolver for server-to-server links: {0}")]
    Resolver(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    pub c2s_addr: SocketAddr,
    pub direct_tls_addr: Option<SocketAddr>,
    pub component_addr: SocketAddr,
    /// The server-to-server listener, when `s2s_listen` is set.
    pub s2s_addr: Option<SocketAddr>,
    /// The direct-TLS server-to-server listener, when `s2s_direct_tls_listen` is set.
    pub s2s_direct_tls_addr: Option<SocketAddr>,
    /// The OpenMetrics endpoint, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// What the server counts (for `status` and the metrics endpoint).
    pub metrics: Arc<Metrics>,
    pub store: Addr<Store>,
    pub router: Addr<Router>,
    stop: watch::Sender<bool>,
    data_dir: std::path::PathBuf,
    /// What the running server runs with: what it was started with, and the keys SIGHUP
    /// has applied since. Compared with the file at the next SIGHUP.
    running: std::sync::Mutex<Config>,
    /// `running`, as the owners of the limits SIGHUP applies read it.
    live: LiveConfig,
    certificates: Arc<tls::Certificates>,
    /// The client connection quotas, shared with the accept loops.
    admission: Admission,
    /// The inbound server-to-server connection quotas, likewise.
    s2s_admission: Admission,
}

/// What a SIGHUP did.
pub struct Reloaded {
    /// Whether the certificate files were read again (on an error the old one stays).
    pub certificate: Result<(), tls::TlsError>,
    /// The settings now in force with their old and new values.
    pub applied: Vec<Applied>,
    /// The keys that differ from the file and take effect at the next restart.
    pub restart: Vec<String>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

impl Server {
    /// Starts everything; must run inside an actix `System`.
    pub async fn start(cfg: Config) -> Result<Server, StartError> {
        let cfg = Arc::new(cfg);
        let started_at = std::time::SystemTime::now();
        let metrics = counted_metrics(&cfg);
        let db = store::open_database(&cfg.data_dir, cfg.store_cache_size)?;
        requeue_hibernated(&db, &cfg);
        let store = Store::start_with_metrics(db, cfg.store_max_pending, metrics.clone());
        let archive_gate =
            ArchiveGate::new(cfg.store_max_pending).counting(metrics.archive_waits());
        super::mam::expiry::start(store.clone(), cfg.archive_expires_after);
        let certificates = tls::Certificates::load(&cfg)?;
        let tls = tls::server_config_with(certificates.clone(), None)?;
        let direct_tls = tls::server_config_with(certificates.clone(), Some(b"xmpp-client"))?;
        let mut listeners = Listeners::bind(&cfg).await?;
        let admission = Admission::new(&cfg);
        let live = LiveConfig::new(cfg.clone());
        let router = Router::create(|ctx| {
            Router::new(
                live.clone(),
                store.clone(),
                archive_gate.clone(),
                metrics.clone(),
                ctx,
            )
        });
        let mut decoy_secret = [0u8; 32];
        let _ = getrandom::fill(&mut decoy_secret);
        let (stop, stopped) = watch::channel(false);
        let sources = Sources {
            store: store.clone(),
            router: router.clone(),
            metrics: metrics.clone(),
            started_at,
        };
        let client_shared = |tls| {
            Rc::new(connection::Shared {
                cfg: cfg.clone(),
                tls,
                router: router.clone(),
                store: store.clone(),
                archive_gate: archive_gate.clone(),
                decoy_secret,
                stopping: stopped.clone(),
            })
        };
        let s2s_shared = start_s2s(&live, &certificates, &router, &stopped, &metrics)?;
        let (c2s_shared, direct_shared) = (client_shared(tls), client_shared(direct_tls));
        let component_shared = Rc::new(component::Shared {
            cfg: cfg.clone(),
            router: router.clone(),
        });
        let addresses = listeners.addresses(&cfg)?;
        let s2s_admission = Admission::with_quotas(Quotas::s2s(&cfg));
        s2s::inbound::listen(
            listeners.s2s.take(),
            listeners.s2s_direct_tls.take(),
            s2s_shared,
            s2s_admission.clone(),
            stopped.clone(),
        );
        listeners.serve(
            c2s_shared,
            direct_shared,
            component_shared,
            admission.clone(),
            &sources,
            &stopped,
        );
        #[cfg(unix)]
        serve_admin(&cfg, &store, &router, sources, stop.subscribe())?;
        addresses.log(&cfg);
        Ok(Server {
            c2s_addr: addresses.c2s,
            direct_tls_addr: addresses.direct_tls,
            component_addr: addresses.component,
            s2s_addr: addresses.s2s,
            s2s_direct_tls_addr: addresses.s2s_direct_tls,
            metrics_addr: addresses.metrics,
            metrics,
            store,
            router,
            stop,
            data_dir: cfg.data_dir.clone(),
            running: std::sync::Mutex::new((*cfg).clone()),
            live,
            certificates,
            admission,
            s2s_admission,
        })
    }

    /// SIGHUP: the certificate is read again and used from the next TLS handshake on
    /// (a failure keeps the one in use); the connection quotas take their new values for
    /// the next connection, and the other limits [`reload`] names for the next decision
    /// each takes part in (through the [`LiveConfig`] their owners read). `log_filter`
    /// says whether the caller could apply `log_level`. The other settings that differ
    /// from what the server runs with are named; they take effect at the next restart.
    pub fn reload(&self, new: &Config, log_filter: bool) -> Reloaded {
        let certificate = self.certificates.reload(new);
        let taken = Taken {
            certificate: certificate.is_ok(),
            log_filter,
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let applied = reload::apply(&mut running, new, taken);
        self.admission.set_quotas(Quotas::c2s(&running));
        self.s2s_admission.set_quotas(Quotas::s2s(&running));
        if !applied.is_empty() {
            self.metrics.set_app_servers(counted_app_servers(&running));
            self.live.set(running.clone());
        }
        Reloaded {
            certificate,
            applied,
            restart: changed_keys(&running, new),
        }
    }

    /// Stops accepting, ends every session (each user actor writes its push ledger as it
    /// goes) and closes the store (flushed).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        #[cfg(unix)]
        let _ = std::fs::remove_file(super::admin::socket_path(&self.data_dir));
        // Sessions first: their unacked messages go to offline storage (and to the push
        // module) while both still run. Bounded: a stuck disk must not hold the stop.
        if tokio::time::timeout(SESSIONS_END, self.router.send(EndAllSessions))
            .await
            .is_err()
        {
            tracing::warn!("sessions did not all end in time; stopping anyway");
        }
        let _ = self.store.send(Close).await;
        tracing::info!("stopped");
    }
}

/// D23: messages that waited for hibernated sessions when the last run ended without an
/// orderly stop go to offline storage before any client connects (see
/// `store::requeue_hibernated`, which also says why they are kept past the offline
/// limits). A failure leaves them where they are for the next start; the server runs.
fn requeue_hibernated(db: &redb::Database, cfg: &Config) {
    match store::requeue_hibernated(db, cfg.offline_max_messages, cfg.offline_max_bytes) {
        Ok(r) => {
            if r.messages > 0 {
                tracing::warn!(
                    messages = r.messages,
                    users = r.users,
                    "the last run ended without an orderly stop: the messages that waited \
                     for hibernated sessions are now offline messages"
                );
            }
            for user in &r.over_limit {
                tracing::warn!(
                    %user,
                    "offline storage past offline_max_messages or offline_max_bytes after \
                     taking the hibernated sessions' messages: kept (nobody is left to bounce \
                     them to)"
                );
            }
            if r.no_such_user > 0 {
                tracing::warn!(
                    messages = r.no_such_user,
                    "messages queued for deleted accounts dropped"
                );
            }
        }
        Err(e) => tracing::error!(
            error = %e,
            "cannot move the hibernated sessions' messages to offline storage: they stay \
             stored and are tried again at the next start"
        ),
    }
}

/// How long an orderly stop waits for sessions to hand over their messages.
const SESSIONS_END: std::time::Duration = std::time::Duration::from_secs(10);

/// The counters, with publishes counted per app server only for the configured
/// components and the admin's `metrics_app_servers`.
fn counted_metrics(cfg: &Config) -> Arc<Metrics> {
    Arc::new(Metrics::new(counted_app_servers(cfg)))
}

/// The app servers the metrics name by their domain.
fn counted_app_servers(cfg: &Config) -> impl Iterator<Item = String> + '_ {
    cfg.components
        .iter()
        .map(|c| c.jid.clone())
        .chain(cfg.metrics_app_servers.iter().cloned())
}

/// The server-to-server links, handed to the router; what the inbound listener needs.
fn start_s2s(
    live: &LiveConfig,
    certificates: &Arc<tls::Certificates>,
    router: &Addr<Router>,
    stopped: &watch::Receiver<bool>,
    metrics: &Metrics,
) -> Result<Rc<s2s::Shared>, StartError> {
    let cfg = &live.get();
    let secret =
        s2s::dialback::load_or_create(&cfg.data_dir).map_err(|source| StartError::Secret {
            path: s2s::dialback::secret_path(&cfg.data_dir),
            source,
        })?;
    let resolver = s2s::resolve::resolver(cfg.s2s_dns_server)
        .map_err(|e| StartError::Resolver(e.to_string()))?;
    let rustls_err = |e: rustls::Error| StartError::Tls(tls::TlsError::Rustls(e.to_string()));
    let client = |alpn| s2s::client_tls::config(alpn, Some(certificates.clone()));
    let (tls_client, tls_client_direct) = (
        client(None).map_err(rustls_err)?,
        client(Some(b"xmpp-server")).map_err(rustls_err)?,
    );
    let server = |alpn| s2s::client_tls::server_config(certificates.clone(), alpn);
    let (tls_server, tls_direct) = (
        server(None).map_err(rustls_err)?,
        server(Some(b"xmpp-server")).map_err(rustls_err)?,
    );
    let trust = s2s::trust::Trust::load(cfg.s2s_ca_file.as_deref())
        .map_err(|e| StartError::Tls(tls::TlsError::Rustls(e)))?;
    let shared = Rc::new(s2s::Shared {
        cfg: cfg.clone(),
        live: live.clone(),
        tls_server,
        tls_direct,
        tls_client,
        tls_client_direct,
        secret,
        resolver,
        trust,
        router: router.clone().recipient(),
        answers: router.clone().recipient(),
        undelivered: router.clone().recipient(),
        bidi: Default::default(),
        stopping: stopped.clone(),
        held: metrics.held.clone(),
    });
    let links = s2s::links::Links::new(shared.clone()).start();
    router.do_send(UseS2s(links.recipient()));
    Ok(shared)
}

/// Every listening socket, bound before anything is served so that a taken port fails
/// the start.
struct Listeners {
    c2s: TcpListener,
    component: TcpListener,
    direct_tls: Option<TcpListener>,
    metrics: Option<TcpListener>,
    s2s: Option<TcpListener>,
    s2s_direct_tls: Option<TcpListener>,
}

/// Where the listeners ended up (a configured port 0 picks one).
struct Addresses {
    c2s: SocketAddr,
    component: SocketAddr,
    direct_tls: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    s2s: Option<SocketAddr>,
    s2s_direct_tls: Option<SocketAddr>,
}

impl Listeners {
    async fn bind(cfg: &Config) -> Result<Listeners, StartError> {
        let (c2s, component) = (
            bind(cfg.c2s_listen).await?,
            bind(cfg.component_listen).await?,
        );
        let direct_tls = match cfg.c2s_direct_tls_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let metrics = match cfg.metrics_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let s2s = match cfg.s2s_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let s2s_direct_tls = match cfg.s2s_direct_tls_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        Ok(Listeners {
            c2s,
            component,
            direct_tls,
            metrics,
            s2s,
            s2s_direct_tls,
        })
    }

    fn addresses(&self, cfg: &Config) -> Result<Addresses, StartError> {
        let local = |l: &TcpListener, addr| {
            l.local_addr()
                .map_err(|source| StartError::Listen { addr, source })
        };
        Ok(Addresses {
            c2s: local(&self.c2s, cfg.c2s_listen)?,
            component: local(&self.component, cfg.component_listen)?,
            direct_tls: self.direct_tls.as_ref().and_then(|l| l.local_addr().ok()),
            metrics: self.metrics.as_ref().and_then(|l| l.local_addr().ok()),
            s2s: self.s2s.as_ref().and_then(|l| l.local_addr().ok()),
            s2s_direct_tls: self
                .s2s_direct_tls
                .as_ref()
                .and_then(|l| l.local_addr().ok()),
        })
    }

    /// Accepts on every listener until `stopped`.
    fn serve(
        self,
        c2s_shared: Rc<connection::Shared>,
        direct_shared: Rc<connection::Shared>,
        component_shared: Rc<component::Shared>,
        admission: Admission,
        sources: &Sources,
        stopped: &watch::Receiver<bool>,
    ) {
        if let Some(l) = self.metrics {
            actix::spawn(crate::metrics::http::serve(
                l,
                sources.clone(),
                stopped.clone(),
            ));
        }
        accept_clients(
            self.c2s,
            c2s_shared,
            false,
            admission.clone(),
            stopped.clone(),
        );
        if let Some(l) = self.direct_tls {
            accept_clients(l, direct_shared, true, admission, stopped.clone());
        }
        accept_components(self.component, component_shared, stopped.clone());
    }
}

impl Addresses {
    fn log(&self, cfg: &Config) {
        let (c2s_addr, component_addr) = (self.c2s, self.component);
        tracing::info!(%c2s_addr, %component_addr, domain = %cfg.domain, "serving");
        if let Some(direct_tls_addr) = self.direct_tls {
            tracing::info!(%direct_tls_addr, "serving direct TLS (XEP-0368)");
        }
        if let Some(s2s_addr) = self.s2s {
            tracing::info!(%s2s_addr, "serving server-to-server");
        }
        if let Some(s2s_direct_tls_addr) = self.s2s_direct_tls {
            tracing::info!(%s2s_direct_tls_addr, "serving server-to-server over direct TLS");
        }
        if let Some(metrics_addr) = self.metrics {
            tracing::info!(%metrics_addr, "metrics endpoint: GET /metrics");
        }
    }
}

fn accept_components(
    listener: TcpListener,
    shared: Rc<component::Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    actix::spawn(async move {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, _)) => {
                        actix::spawn(component::serve(tcp, shared.clone()));
                    }
                    Err(e) => tracing::warn!(error = %e, "component accept failed"),
                },
                _ = stopped.changed() => break,
            }
        }
    });
}

/// The admin socket behind the `user`, `push` and `status` commands.
#[cfg(unix)]
fn serve_admin(
    cfg: &Config,
    store: &Addr<Store>,
    router: &Addr<Router>,
    sources: Sources,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), StartError> {
    let listener = super::admin::bind(&cfg.data_dir).map_err(|source| StartError::Admin {
        path: super::admin::socket_path(&cfg.data_dir),
        source,
    })?;
    let shared = Rc::new(super::admin::Shared {
        store: store.clone(),
        router: router.clone(),
        sources,
    });
    actix::spawn(async move {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => {
                        actix::spawn(super::admin::serve(s, shared.clone()));
                    }
                    Err(e) => tracing::warn!(error = %e, "admin socket accept failed"),
                },
                _ = stopped.changed() => break,
            }
        }
    });
    Ok(())
}

fn accept_clients(
    listener: TcpListener,
    shared: Rc<connection::Shared>,
    direct_tls: bool,
    admission: Admission,
    mut stopped: watch::Receiver<bool>,
) {
    actix::spawn(async move {
        let mut refusals = RefusalLog::default();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, peer)) => {
                        let (place, negotiating) = match admission.admit(peer.ip()) {
                            Ok(p) => p,
                            Err(refusal) => {
                                refusals.note(peer, refusal);
                                continue;
                            }
                        };
                        let _ = tcp.set_nodelay(true);
                        let shared = shared.clone();
                        actix::spawn(c2s::serve(tcp, shared, direct_tls, place, negotiating));
                    }
                    Err(e) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                _ = stopped.changed() => break,
            }
        }
    });
}

/// Logs refused connections without letting a flood write a line per connection to the
/// SD card: the first refusal, then at most one summary line per second.
#[derive(Default)]
struct RefusalLog {
    since: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl RefusalLog {
    fn note(&mut self, peer: std::net::SocketAddr, refusal: super::admission::Refusal) {
        let now = tokio::time::Instant::now();
        match self.since {
            Some(t) if now.duration_since(t) < std::time::Duration::from_secs(1) => {
                self.suppressed += 1;
            }
            _ => {
                tracing::warn!(
                    %peer,
                    limit = refusal.option(),
                    refused_before = self.suppressed,
                    "connection limit reached: connection closed"
                );
                self.since = Some(now);
                self.suppressed = 0;
            }
        }
    }
}

/// The keys whose value differs between two configurations (through their printed
/// form, which hides component secrets: a changed secret shows as the component).
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let lines = |c: &Config| -> Vec<String> { c.to_string().lines().map(str::to_string).collect() };
    let (a, b) = (lines(old), lines(new));
    let key = |l: &str| l.split(" = ").next().unwrap_or(l).trim().to_string();
    let mut keys: Vec<String> = a
        .iter()
        .filter(|l| !b.contains(l))
        .chain(b.iter().filter(|l| !a.contains(l)))
        .map(|l| key(l))
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_names_what_differs() {
        let old = Config::default();
        let new = Config {
            push_max_errors: 3,
            c2s_max_connections: 7,
            ..Config::default()
        };
        assert_eq!(
            changed_keys(&old, &new),
            ["c2s_max_connections", "push_max_errors"]
        );
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }
}
