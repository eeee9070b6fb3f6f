//! The OpenMetrics endpoint: `GET /metrics` over HTTP/1.x, one request per connection.
//!
//! Hand-written on tokio rather than an HTTP crate: it answers one fixed path to a
//! scraper on loopback, and a server framework would cost more binary than the whole
//! push module. Bounded like everything else: at most [`MAX_CONNECTIONS`] at once (more
//! are closed at accept), [`MAX_REQUEST`] bytes of request head, [`DEADLINE`] per
//! connection.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::snapshot::{Sources, gather};

/// Scrapes served at once.
pub const MAX_CONNECTIONS: usize = 4;
/// Largest request head read (a scraper's is a few hundred bytes).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time for a whole exchange.
pub const DEADLINE: Duration = Duration::from_secs(10);

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves scrapes until `stopped` changes.
pub async fn serve(listener: TcpListener, sources: Sources, mut stopped: watch::Receiver<bool>) {
    let sources = Rc::new(sources);
    let active = Rc::new(Cell::new(0usize));
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => {
                    if active.get() >= MAX_CONNECTIONS {
                        drop(tcp);
                        continue;
                    }
                    active.set(active.get() + 1);
                    let (sources, active) = (sources.clone(), active.clone());
                    actix::spawn(async move {
                        let _ = tokio::time::timeout(DEADLINE, exchange(tcp, &sources)).await;
                        active.set(active.get() - 1);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stopped.changed() => break,
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics,
    NotFound,
    BadMethod,
    Bad,
}

fn parse(head: &[u8]) -> Ask {
    let Some(line) = head.split(|b| *b == b'\n').next() else {
        return Ask::Bad;
    };
    let line = String::from_utf8_lossy(line);
    let mut words = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Ask::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Ask::Bad;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Ask::Metrics,
        ("GET", _) => Ask::NotFound,
        _ => Ask::BadMethod,
    }
}

async fn exchange(mut tcp: TcpStream, sources: &Sources) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut tcp,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    match parse(&head) {
        Ask::Metrics => {
            gather(sources).await;
            let body = sources.metrics.encode();
            respond(&mut tcp, "200 OK", CONTENT_TYPE, &body).await
        }
        Ask::NotFound => {
            respond(
                &mut tcp,
                "404 Not Found",
                "text/plain",
                "cloud-notify serves /metrics only\n",
            )
            .await
        }
        Ask::BadMethod => respond(&mut tcp, "405 Method Not Allowed", "text/plain", "").await,
        Ask::Bad => respond(&mut tcp, "400 Bad Request", "text/plain", "").await,
    }
}

async fn respond(
    tcp: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    tcp.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ask::Metrics
        );
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Ask::Metrics);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Ask::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Ask::BadMethod);
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Ask::Bad);
        assert_eq!(parse(b"\xff\xfe\r\n\r\n"), Ask::Bad);
        assert_eq!(parse(b"GET /metrics SPDY/3\r\n\r\n"), Ask::Bad);
    }
}
