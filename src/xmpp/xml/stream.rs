//! One XML stream over a transport: items read with the reader's limits, elements and
//! already-serialized text (publishes) written in order. Reading is cancel-safe (it is
//! raced against the session's other inputs): bytes leave the transport's buffer only
//! after the reader has taken them, with no await in between.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use xmpp_parsers::minidom::Element;

use super::reader::{Header, Item, Limits, ReadError, Reader, STREAM_NS};
use super::writer::{OurHeader, Writer};
use crate::xmpp::io::Io;

const STREAMS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// A peer silent this long is poked (or dropped) by its session.
const IDLE: Duration = Duration::from_secs(300);

/// What the write buffer keeps allocated between bursts.
const OUT_KEEP: usize = 4096;

/// What reading the stream gave.
#[derive(Debug)]
pub enum Read {
    Header(Header),
    Element(Element),
    /// The peer closed its stream (`</stream:stream>`).
    Footer,
    /// Nothing arrived for the idle time.
    Idle,
    /// The connection ended without a stream close.
    Eof,
    /// The peer's XML broke a rule; the stream must end with `ReadError::condition`.
    Invalid(ReadError),
    Io(io::Error),
}

pub struct XmlStream {
    io: Io,
    reader: Reader,
    writer: Writer,
    out: Vec<u8>,
    /// How much of `out` is already written (a cancelled flush resumes there).
    written: usize,
}

impl XmlStream {
    /// A stream whose elements are in `default_ns` (`jabber:client`,
    /// `jabber:component:accept`).
    pub fn new(io: Io, default_ns: &'static str, limits: Limits) -> Self {
        XmlStream {
            io,
            reader: Reader::new(limits),
            writer: Writer::new(default_ns),
            out: Vec::new(),
            written: 0,
        }
    }

    pub fn io(&self) -> &Io {
        &self.io
    }

    pub async fn next(&mut self) -> Read {
        loop {
            let buf = match tokio::time::timeout(IDLE, self.io.fill_buf()).await {
                Err(_) => return Read::Idle,
                Ok(Err(e)) => return Read::Io(e),
                Ok(Ok(buf)) => buf,
            };
            // The connection ended: whatever was half-read is lost with it, and the
            // parser would only call the document truncated.
            if buf.is_empty() {
                return Read::Eof;
            }
            let mut input = buf;
            let res = self.reader.next(&mut input, false);
            let used = buf.len() - input.len();
            self.io.consume(used);
            match res {
                Ok(Some(Item::Header(h))) => return Read::Header(h),
                Ok(Some(Item::Element(el))) => return Read::Element(el),
                Ok(Some(Item::Footer)) => return Read::Footer,
                Ok(None) => continue,
                Err(e) => return Read::Invalid(e),
            }
        }
    }

    /// Reads the peer's stream header, or says why there is none (`Err` with what was
    /// read instead).
    pub async fn read_header(&mut self) -> Result<Header, Read> {
        match self.next().await {
            Read::Header(h) => Ok(h),
            other => Err(other),
        }
    }

    /// After a stream restart (STARTTLS on the same stream object is not one: that takes
    /// a new transport): the next read is a new header, our next write a new header.
    pub fn restart(&mut self) {
        self.reader.restart();
    }

    pub fn feed_header(&mut self, h: OurHeader<'_>) -> io::Result<()> {
        self.writer.header(h, &mut self.out)
    }

    pub fn feed(&mut self, el: &Element) -> io::Result<()> {
        self.writer.element(el, &mut self.out)
    }

    /// Text that is already one or more whole, serialized stanzas.
    pub fn feed_text(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            let n = self.io.write(&self.out[self.written..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.written += n;
        }
        self.out.clear();
        self.out.shrink_to(OUT_KEEP);
        self.written = 0;
        self.io.flush().await
    }

    pub async fn send(&mut self, el: &Element) -> io::Result<()> {
        self.feed(el)?;
        self.flush().await
    }

    /// Closes our side: the footer, then the transport's shutdown.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.writer.footer(&mut self.out)?;
        self.flush().await?;
        self.io.shutdown().await
    }

    /// Ends the stream with a stream error (RFC 6120 §4.9). Errors writing it are moot:
    /// the connection ends either way.
    pub async fn close_with(&mut self, condition: &str) {
        let _ = self.feed(&stream_error(condition));
        let _ = self.shutdown().await;
    }

    pub fn into_inner(self) -> Io {
        self.io
    }
}

pub fn stream_error(condition: &str) -> Element {
    Element::builder("error", STREAM_NS)
        .append(Element::builder(condition, STREAMS_NS))
        .build()
}
