//! The log's format: every field value and every message is written through an escaper,
//! so a newline or control character a peer put into a JID, a node or an error text
//! cannot forge a log line (for fail2ban, for the admin reading the journal).

use std::fmt::{self, Write};

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Writes through to `inner`, with control characters escaped the way Rust escapes
/// them in string literals (`\n`, `\u{1b}`).
pub struct Escaping<'a, W: Write + ?Sized>(pub &'a mut W);

impl<W: Write + ?Sized> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for part in s.split_inclusive(|c: char| c.is_control()) {
            let mut chars = part.chars();
            match chars.next_back() {
                Some(c) if c.is_control() => {
                    self.0.write_str(chars.as_str())?;
                    for e in c.escape_default() {
                        self.0.write_char(e)?;
                    }
                }
                _ => self.0.write_str(part)?,
            }
        }
        Ok(())
    }
}

/// The field formatter: tracing's default layout (`message key=value …`), with every
/// value escaped.
pub fn fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w: &mut Writer<'_>, field, value| {
        if field.name() == "message" {
            write!(Escaping(w), "{value:?}")
        } else {
            write!(w, "{}=", field.name())?;
            write!(Escaping(w), "{value:?}")
        }
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        let mut out = String::new();
        let tail = "end";
        write!(
            Escaping(&mut out),
            "node=a\nINFO forged line\r\u{1b}[31m ünïcode\t{tail}"
        )
        .unwrap();
        assert_eq!(out, "node=a\\nINFO forged line\\r\\u{1b}[31m ünïcode\\tend");
        assert!(!out.contains('\n'));
    }

    /// A whole event as the server's log writes it: one line, whatever the values.
    #[test]
    fn a_peer_value_cannot_forge_a_log_line() {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(fields())
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let node = "n1\n2026-11-30T00:00:00Z  WARN forged: admin logged in";
            tracing::warn!(node = %node, jid = ?"a@b\r", "publish for {}", "x\ny");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with('\n'));
        assert!(text.contains("node=n1\\n2026"), "{text}");
        assert!(text.contains("publish for x\\ny"), "{text}");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
