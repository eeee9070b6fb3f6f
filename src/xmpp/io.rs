//! The transport under an XML stream: plain TCP or TLS, with a byte counter that lets the
//! session enforce `c2s_stanza_size_limit`, and the connection's place under
//! `c2s_max_connections`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::admission::Place;

/// Plain or TLS; the session's type does not change at STARTTLS, only this.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// TLS on a connection we opened (an outbound server-to-server link).
    TlsOut(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_) | Transport::TlsOut(_))
    }
}

/// Counts bytes read since the session last reset the counter (after each complete
/// element). Past the limit, reads fail with `InvalidData`, and the session ends the
/// stream with `policy-violation`.
pub struct Limited {
    inner: Transport,
    read_since_reset: Arc<AtomicUsize>,
    eof: Arc<std::sync::atomic::AtomicBool>,
    limit: usize,
    /// The client connection's place under `c2s_max_connections`. It lives with the
    /// socket: a hibernated session (no socket) holds none, and a resumption's socket
    /// brings its own.
    permit: Option<Place>,
}

fn poll_write_transport(
    inner: &mut Transport,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    match inner {
        Transport::Plain(s) => Pin::new(s).poll_write(cx, data),
        Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_write(cx, data),
    }
}

/// The session's handle on the counter.
#[derive(Clone)]
pub struct SizeGuard {
    count: Arc<AtomicUsize>,
    limit: usize,
    eof: Arc<std::sync::atomic::AtomicBool>,
}

impl SizeGuard {
    pub fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
    }

    pub fn exceeded(&self) -> bool {
        self.count.load(Ordering::Relaxed) > self.limit
    }

    /// The peer's side of the connection ended (a read returned no bytes). The parser
    /// reports that as invalid data when it happens between stanzas; it is a lost
    /// connection, not bad XML.
    pub fn saw_eof(&self) -> bool {
        self.eof.load(Ordering::Relaxed)
    }
}

pub type Io = BufStream<Limited>;

/// Wraps a transport; returns the buffered I/O for the XML stream and the size guard.
pub fn wrap(inner: Transport, limit: usize) -> (Io, SizeGuard) {
    let count = Arc::new(AtomicUsize::new(0));
    let eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guard = SizeGuard {
        count: count.clone(),
        limit,
        eof: eof.clone(),
    };
    (
        BufStream::new(Limited {
            inner,
            read_since_reset: count,
            eof,
            limit,
            permit: None,
        }),
        guard,
    )
}

/// Takes the transport back out (for the TLS upgrade), with its connection permit.
/// Buffered unread bytes are lost, which is correct at STARTTLS: a client must not send
/// before the handshake.
pub fn unwrap(io: Io) -> (Transport, Option<Place>) {
    let limited = io.into_inner();
    (limited.inner, limited.permit)
}

/// Ties a connection permit to the transport under `io`.
pub fn hold(io: &mut Io, permit: Option<Place>) {
    io.get_mut().permit = permit;
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_since_reset.load(Ordering::Relaxed) > this.limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "stanza size limit exceeded",
            )));
        }
        let before = buf.filled().len();
        let res = match &mut this.inner {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let n = buf.filled().len() - before;
        this.read_since_reset.fetch_add(n, Ordering::Relaxed);
        if n == 0 && matches!(res, Poll::Ready(Ok(()))) && buf.remaining() > 0 {
            this.eof.store(true, Ordering::Relaxed);
        }
        res
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write_transport(&mut self.get_mut().inner, cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::TlsOut(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// The permit lives exactly as long as the transport.
    #[tokio::test]
    async fn the_connection_permit_goes_with_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).await.unwrap();
            got
        });
        let (server, _) = listener.accept().await.unwrap();
        let (mut io, _guard) = wrap(Transport::Plain(server), 1024);
        let admission = super::super::admission::Admission::new(&crate::config::Config::default());
        let (place, negotiating) = admission.admit(addr.ip()).unwrap();
        drop(negotiating);
        hold(&mut io, Some(place));
        io.write_all(b"<a/>").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(admission.open(), 1);
        io.shutdown().await.unwrap();
        drop(io);
        assert_eq!(admission.open(), 0, "the place went with the socket");
        assert_eq!(client.await.unwrap(), "<a/>");
    }
}
