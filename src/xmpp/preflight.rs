//! `cloud-notify check`: what would stop or hurt `serve`, found before it runs, without
//! changing anything (no data directory, certificate or database is created) and next to
//! a running server.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;
use crate::store::app_servers::AppServerDomains;

pub mod network;

/// One finding: `ok` lines inform, the others make `check` fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Self {
        Finding {
            ok: true,
            what: what.into(),
        }
    }
    fn fail(what: impl Into<String>) -> Self {
        Finding {
            ok: false,
            what: what.into(),
        }
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// DNS names (subjectAltName), or the subject's CN when there are none.
    pub names: Vec<String>,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// Names and validity of the first certificate of a PEM chain.
pub fn cert_facts(pem: &[u8]) -> Result<CertFacts, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let first = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or("no certificate in the file")?
        .map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref())
        .map_err(|e| format!("not a readable certificate: {e}"))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string)),
        );
    }
    Ok(CertFacts {
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// RFC 6125 DNS-ID matching: exact (case-insensitive), or a wildcard for one leftmost
/// label.
pub fn name_matches(pattern: &str, domain: &str) -> bool {
    let (p, d) = (pattern.to_ascii_lowercase(), domain.to_ascii_lowercase());
    if p == d {
        return true;
    }
    match (p.strip_prefix("*."), d.split_once('.')) {
        (Some(rest), Some((label, d_rest))) => !label.is_empty() && rest == d_rest,
        _ => false,
    }
}

/// The certificate and key `serve` would use.
pub fn tls(cfg: &Config, now: i64) -> Vec<Finding> {
    let (cert, key) = match (&cfg.tls_certificate, &cfg.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let (c, k) = super::tls::self_signed_paths(&cfg.data_dir);
            if !c.exists() || !k.exists() {
                return vec![Finding::ok(format!(
                    "no tls_certificate: a self-signed certificate for {} will be generated \
                     at first start in {} (clients must accept it; server-to-server peers \
                     will not trust it)",
                    cfg.domain,
                    cfg.data_dir.display()
                ))];
            }
            (c, k)
        }
    };
    let mut out = Vec::new();
    // The same loading as serve: unreadable files, no certificate, a key that does not
    // belong to the certificate.
    match super::tls::server_config(cfg, None) {
        Ok(_) => out.push(Finding::ok(format!(
            "certificate {} and key {} load and match",
            cert.display(),
            key.display()
        ))),
        Err(e) => {
            out.push(Finding::fail(format!("{e}")));
            return out;
        }
    }
    let facts = match std::fs::read(&cert)
        .map_err(|e| e.to_string())
        .and_then(|pem| cert_facts(&pem))
    {
        Ok(f) => f,
        Err(e) => {
            out.push(Finding::fail(format!("{}: {e}", cert.display())));
            return out;
        }
    };
    if facts.names.iter().any(|n| name_matches(n, &cfg.domain)) {
        out.push(Finding::ok(format!("certificate is for {}", cfg.domain)));
    } else {
        out.push(Finding::fail(format!(
            "certificate is for {} but the domain is {}: clients will refuse it",
            facts.names.join(", "),
            cfg.domain
        )));
    }
    let days = (facts.not_after - now).div_euclid(86_400);
    if facts.not_after <= now {
        out.push(Finding::fail(format!(
            "certificate expired {} days ago",
            -days
        )));
    } else if facts.not_before > now {
        out.push(Finding::fail("certificate is not valid yet".to_string()));
    } else if days < 14 {
        out.push(Finding::fail(format!(
            "certificate expires in {days} days: renew it (and send SIGHUP to reload)"
        )));
    } else {
        out.push(Finding::ok(format!("certificate expires in {days} days")));
    }
    out
}

/// Whether each listen address can be bound; `server_running`: a failure to bind is
/// the running server holding it.
pub fn listeners(cfg: &Config, server_running: bool) -> Vec<Finding> {
    let mut addrs: Vec<(&str, SocketAddr)> = vec![
        ("c2s_listen", cfg.c2s_listen),
        ("component_listen", cfg.component_listen),
    ];
    if let Some(a) = cfg.c2s_direct_tls_listen {
        addrs.push(("c2s_direct_tls_listen", a));
    }
    if let Some(a) = cfg.s2s_listen {
        addrs.push(("s2s_listen", a));
    }
    if let Some(a) = cfg.s2s_direct_tls_listen {
        addrs.push(("s2s_direct_tls_listen", a));
    }
    addrs
        .into_iter()
        .map(|(key, addr)| match std::net::TcpListener::bind(addr) {
            Ok(_) => Finding::ok(format!("{key} {addr} can be bound")),
            Err(_) if server_running => {
                Finding::ok(format!("{key} {addr} is held (by the running server)"))
            }
            Err(e) => Finding::fail(format!("{key} {addr} cannot be bound: {e}")),
        })
        .collect()
}

/// Which federation setup this is: whether other servers can reach us, and how they
/// will authenticate us. Informational: a server with only local app servers needs
/// none of it.
pub fn federation(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    match cfg.s2s_listen {
        None => out.push(Finding::ok(
            "s2s_listen is unset (behind NAT): other servers cannot connect here or check \
             our dialback key, so only those that accept our certificate (SASL EXTERNAL) \
             take our links; bidirectional streams (XEP-0288) are used: what they send \
             back (app servers' answers included) arrives on our own links when they \
             support it (Prosody with mod_s2s_bidi), otherwise nothing comes back (set \
             s2s_listen and forward TCP 5269 to federate fully)",
        )),
        Some(a) => out.push(Finding::ok(format!(
            "s2s_listen {a}: other servers connect here; {}; bidirectional streams \
             (XEP-0288) are offered to them and used on our links when offered",
            if cfg.s2s_require_encryption {
                "STARTTLS is required (s2s_require_encryption)"
            } else {
                "s2s_require_encryption = false: streams may stay unencrypted"
            }
        ))),
    }
    if cfg.tls_certificate.is_none() {
        out.push(Finding::ok(
            "no tls_certificate: with the self-signed certificate, server dialback is the \
             only way other servers authenticate us (peers requiring a valid certificate \
             refuse us)",
        ));
    }
    if !cfg.s2s_hosts.is_empty() {
        let names: Vec<&str> = cfg.s2s_hosts.keys().map(String::as_str).collect();
        out.push(Finding::ok(format!(
            "s2s_hosts: {} reached without DNS",
            names.join(", ")
        )));
    }
    out
}

/// The data directory and database, without creating either.
pub fn data(cfg: &Config, server_running: bool) -> Vec<Finding> {
    let dir = &cfg.data_dir;
    let file = dir.join(crate::store::DB_FILE);
    if server_running {
        return vec![Finding::ok(format!(
            "a server is running on {} (its admin socket answers)",
            file.display()
        ))];
    }
    if !dir.exists() {
        return vec![Finding::ok(format!(
            "data_dir {} does not exist yet: the server creates it (mode 0700)",
            dir.display()
        ))];
    }
    if !file.exists() {
        return vec![Finding::ok(format!(
            "no database in {} yet: the server creates it",
            dir.display()
        ))];
    }
    match crate::store::open_database(dir, cfg.store_cache_size) {
        Ok(_) => vec![Finding::ok(format!("database {} opens", file.display()))],
        Err(e) => vec![Finding::fail(format!("{e}"))],
    }
}

/// The app servers' domains the stored registrations publish to: asked of the running
/// server (its admin socket), else read from the database file; none without one.
pub fn app_server_domains(cfg: &Config, server_running: bool) -> Result<AppServerDomains, String> {
    #[cfg(unix)]
    if server_running {
        use base64::Engine;
        let mut admin =
            super::admin::client::AdminClient::connect(&cfg.data_dir).map_err(|e| e.to_string())?;
        admin
            .set_timeout(Some(std::time::Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let answer = admin.request("app-servers")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer.trim())
            .map_err(|e| e.to_string())?;
        return postcard::from_bytes(&bytes).map_err(|e| e.to_string());
    }
    let _ = server_running;
    if !cfg.data_dir.join(crate::store::DB_FILE).exists() {
        return Ok(AppServerDomains::default());
    }
    let db = crate::store::open_database(&cfg.data_dir, cfg.store_cache_size)
        .map_err(|e| e.to_string())?
        .into_database();
    crate::store::admin::app_server_domains(&db).map_err(|e| e.to_string())
}

/// True when a server answers on the data directory's admin socket.
pub fn server_running(data_dir: &Path) -> bool {
    #[cfg(unix)]
    {
        super::admin::client::AdminClient::connect(data_dir).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = data_dir;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("example.org", "EXAMPLE.org"));
        assert!(name_matches("*.example.org", "chat.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("example.org", "chat.example.org"));
    }

    #[test]
    fn a_generated_certificate_reads_back() {
        let ck = rcgen::generate_simple_self_signed(vec!["chat.example.org".into()]).unwrap();
        let facts = cert_facts(ck.cert.pem().as_bytes()).unwrap();
        assert_eq!(facts.names, ["chat.example.org"]);
        assert!(facts.not_after > facts.not_before);
        assert!(cert_facts(b"not pem").is_err());
    }
}
