//! `cloud-notify check`'s look at the network, as the server would see it: what our own
//! domain's DNS tells other servers, and whether each remote app server's domain can be
//! reached the way a link reaches it (the same resolver, `s2s_hosts`, STARTTLS over a
//! stream header or direct TLS, the certificate judged for the domain). Nothing is
//! authenticated and nothing is sent beyond the stream's start: the probe stops once TLS
//! is up. Every step is bounded by `s2s_timeout`.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use xmpp_parsers::minidom::Element;

use super::connect::{self, LinkError};
use super::negotiate::{self, TLS_NS};
use super::resolve::{self, Resolver, Srv, Target};
use super::{client_tls, trust};
use crate::config::Config;
use crate::xmpp::io::{self, Transport};
use crate::xmpp::xml::{Read, SERVER_NS, XmlStream};

/// What a probe needs: the server's resolver, TLS client settings and trust roots.
pub struct Probe {
    cfg: Arc<Config>,
    resolver: Resolver,
    tls: Arc<rustls::ClientConfig>,
    tls_direct: Arc<rustls::ClientConfig>,
    trust: trust::Trust,
}

/// Our own domain as other servers find it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnRecords {
    /// `_xmpp-server._tcp` (STARTTLS).
    pub starttls: Vec<Srv>,
    /// `_xmpps-server._tcp` (direct TLS, XEP-0368).
    pub direct_tls: Vec<Srv>,
    /// The domain's own A/AAAA records, where peers go without SRV records.
    pub addresses: Vec<IpAddr>,
    /// A lookup did not answer within `s2s_timeout`.
    pub timed_out: bool,
}

/// A remote domain reached: where, and whether its certificate is valid for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub target: Target,
    pub certificate_valid: bool,
}

/// A remote domain not reached: why, and at which address when one was tried.
#[derive(Debug)]
pub struct Unreached {
    pub target: Option<Target>,
    pub error: LinkError,
}

impl Probe {
    pub fn new(cfg: Arc<Config>) -> Result<Probe, String> {
        let resolver = resolve::resolver(cfg.s2s_dns_server)?;
        let tls = client_tls::config(None, None).map_err(|e| e.to_string())?;
        let tls_direct =
            client_tls::config(Some(b"xmpp-server"), None).map_err(|e| e.to_string())?;
        let trust = trust::Trust::load(cfg.s2s_ca_file.as_deref())?;
        Ok(Probe {
            cfg,
            resolver,
            tls,
            tls_direct,
            trust,
        })
    }

    /// Our domain's SRV and A/AAAA records.
    pub async fn own_records(&self) -> OwnRecords {
        let domain = &self.cfg.domain;
        let step = self.cfg.s2s_timeout;
        let lookups = async {
            let starttls = resolve::srv(&self.resolver, "_xmpp-server", domain).await;
            let direct_tls = resolve::srv(&self.resolver, "_xmpps-server", domain).await;
            let addresses = resolve::host_ips(&self.resolver, &format!("{domain}.")).await;
            (starttls, direct_tls, addresses)
        };
        match timeout(step, lookups).await {
            Ok((starttls, direct_tls, addresses)) => OwnRecords {
                starttls,
                direct_tls,
                addresses,
                timed_out: false,
            },
            Err(_) => OwnRecords {
                timed_out: true,
                ..OwnRecords::default()
            },
        }
    }

    /// Reaches `domain` as a link would, up to the end of the TLS handshake.
    pub async fn reach(&self, domain: &str) -> Result<Reached, Unreached> {
        let step = self.cfg.s2s_timeout;
        let unreached = |target, error| Unreached { target, error };
        let resolving = resolve::addresses(domain, &self.cfg.s2s_hosts, &self.resolver);
        let targets = timeout(step, resolving)
            .await
            .map_err(|_| unreached(None, LinkError::Timeout))?;
        let mut last = unreached(None, LinkError::NoAddress);
        for target in targets {
            let tcp = match timeout(step, TcpStream::connect(target.addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    last = unreached(Some(target), LinkError::Connect(e));
                    continue;
                }
                Err(_) => {
                    last = unreached(Some(target), LinkError::Timeout);
                    continue;
                }
            };
            // As a link does: the first address that takes the connection is the one.
            return match timeout(step, self.secure(tcp, target.direct_tls, domain)).await {
                Ok(Ok(certificate_valid)) => Ok(Reached {
                    target,
                    certificate_valid,
                }),
                Ok(Err(e)) => Err(unreached(Some(target), e)),
                Err(_) => Err(unreached(Some(target), LinkError::Timeout)),
            };
        }
        Err(last)
    }

    /// TLS on `tcp` (after STARTTLS unless `direct_tls`); whether the certificate is
    /// valid for `domain`.
    async fn secure(
        &self,
        tcp: TcpStream,
        direct_tls: bool,
        domain: &str,
    ) -> Result<bool, LinkError> {
        let (tcp, config) = match direct_tls {
            true => (tcp, self.tls_direct.clone()),
            false => (self.starttls(tcp, domain).await?, self.tls.clone()),
        };
        let name = rustls::pki_types::ServerName::try_from(domain.to_string())
            .map_err(|e| LinkError::Tls(e.to_string()))?;
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| LinkError::Tls(e.to_string()))?;
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let valid = self.trust.valid_for(chain, domain);
        let _ = tls.shutdown().await;
        Ok(valid)
    }

    /// Our stream header, the peer's features, `<starttls/>` and its `<proceed/>`.
    async fn starttls(&self, tcp: TcpStream, domain: &str) -> Result<TcpStream, LinkError> {
        let (io, guard) = io::wrap(Transport::Plain(tcp), self.cfg.s2s_stanza_size_limit);
        let mut xml = XmlStream::new(io, SERVER_NS, self.cfg.xml_limits());
        let (_, features) = connect::start(&mut xml, &guard, &self.cfg.domain, domain).await?;
        if !negotiate::offered(&features).starttls {
            return Err(LinkError::NoTls);
        }
        xml.send(&Element::builder("starttls", TLS_NS).build())
            .await
            .map_err(LinkError::Connect)?;
        match xml.next().await {
            Read::Element(el) if el.is("proceed", TLS_NS) => {}
            other => return Err(connect::stream_failed("STARTTLS", &other)),
        }
        match io::unwrap(xml.into_inner()) {
            (Transport::Plain(tcp), _) => Ok(tcp),
            _ => Err(LinkError::Tls("the stream was encrypted already".into())),
        }
    }
}
