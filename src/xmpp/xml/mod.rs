//! XML streams (RFC 6120 §4): our own reader and writer over rxml, so that the limits a
//! hostile peer meets are checked on tokenizer events before any tree is built, and so
//! that what we send (headers, features) is exactly what we build.

pub mod reader;
pub mod stream;
pub mod writer;

pub use reader::{Header, Limits, ReadError, STREAM_NS};
pub use stream::{Read, XmlStream, stream_error};
pub use writer::{DIALBACK_NS, OurHeader, SERVER_NS};
