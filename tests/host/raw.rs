//! A client that writes exact bytes and reads the server's answer as text: for the
//! tests that reproduce what a particular client sends, or what an attacker does.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw read waits for the text it expects.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct Raw {
    pub tcp: TcpStream,
    /// What the server sent and no `until` has returned yet.
    pending: String,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Raw {
        Raw::over(TcpStream::connect(addr).await.unwrap())
    }

    pub fn over(tcp: TcpStream) -> Raw {
        Raw {
            tcp,
            pending: String::new(),
        }
    }

    /// Closes our stream and waits for the server to close the connection: its place
    /// is free once this returns.
    pub async fn close(mut self) {
        self.write(b"</stream:stream>").await;
        self.rest_until_closed().await;
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// Reads until the server's text contains `marker`; returns everything up to and
    /// including it. Panics at the deadline or when the server closes first, showing
    /// what it did send.
    pub async fn until(&mut self, marker: &str) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(at) = self.pending.find(marker) {
                let rest = self.pending.split_off(at + marker.len());
                return std::mem::replace(&mut self.pending, rest);
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut buf)).await {
                Ok(Ok(0)) => panic!(
                    "server closed before {marker:?}; it sent {:?}",
                    self.pending
                ),
                Ok(Ok(n)) => self.pending.push_str(&String::from_utf8_lossy(&buf[..n])),
                Ok(Err(e)) => panic!("read failed before {marker:?}: {e}; got {:?}", self.pending),
                Err(_) => panic!("no {marker:?} within {DEADLINE:?}; got {:?}", self.pending),
            }
        }
    }

    /// Everything until the server closes the connection (bounded by the deadline).
    pub async fn rest_until_closed(&mut self) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, self.tcp.read_to_end(&mut out)).await;
        let mut all = std::mem::take(&mut self.pending);
        all.push_str(&String::from_utf8_lossy(&out));
        all
    }
}
