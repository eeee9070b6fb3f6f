//! The stream reader (src/xmpp/xml/reader.rs) on arbitrary bytes in arbitrary chunkings.
//!
//! Input: byte 0 picks the limits (within the ranges the config allows, low end, so they
//! are reached), byte 1 the chunking (0: all at once; n: random chunks of 1..=n bytes),
//! byte 2 bit 0 restarts the reader after each SASL element as c2s does; the rest is
//! what the peer sends.
//!
//! Asserts: no panic; the reader never asks for more bytes while leaving some unconsumed
//! (XmlStream::next would spin); a header comes only first in a (re)started stream; no
//! returned element nests deeper than `max_depth`, has more than `max_attributes`
//! attributes or a name or attribute value longer than `max_attribute_size`; what it
//! returns is linear in the input (items, elements, and text plus attribute bytes each at
//! most the input's length); and the items and the final error do not depend on how the
//! bytes were chunked.
#![no_main]

use cloud_notify::xmpp::xml::reader::{Item, Limits, Reader};
use cloud_notify_fuzz::{feed, same_item, walk, weight};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [l, c, flags, input @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_depth: 8 + usize::from(l & 0x1f),
        max_attributes: 8 + usize::from(l >> 5),
        max_attribute_size: 1024,
    };
    let restart = flags & 1 == 1;

    let mut state = u32::from(*c).wrapping_mul(0x9e37_79b9) | 1;
    let mut next_chunk = || {
        if *c == 0 {
            return usize::MAX;
        }
        // xorshift32: a chunking the input's byte 1 reproduces.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state as usize) % usize::from(*c)
    };
    let mut reader = Reader::new(limits);
    let got = feed(&mut reader, input, &mut next_chunk, restart);

    assert!(
        got.items.len() <= input.len(),
        "more items than input bytes"
    );
    let (mut bytes, mut count) = (0, 0);
    let mut header_allowed = true;
    for item in &got.items {
        match item {
            Item::Header(h) => {
                assert!(header_allowed, "a second header in one stream: {h:?}");
                header_allowed = false;
                for v in [&h.to, &h.from, &h.id, &h.version, &h.lang]
                    .into_iter()
                    .flatten()
                {
                    assert!(v.len() <= limits.max_attribute_size);
                    bytes += v.len();
                }
            }
            Item::Element(el) => {
                header_allowed = restart
                    && el.has_ns("urn:ietf:params:xml:ns:xmpp-sasl")
                    && matches!(el.name(), "auth" | "response");
                walk(el, |e, level| {
                    assert!(
                        level <= limits.max_depth,
                        "level {level} returned with max_depth {}",
                        limits.max_depth
                    );
                    let attrs = e.attrs().iter().count();
                    assert!(
                        attrs <= limits.max_attributes,
                        "{attrs} attributes returned"
                    );
                    assert!(e.name().len() <= limits.max_attribute_size, "long name");
                    for ((_, name), value) in e.attrs().iter() {
                        assert!(name.len() <= limits.max_attribute_size, "long attr name");
                        assert!(
                            value.len() <= limits.max_attribute_size,
                            "attribute value of {} bytes returned with max_attribute_size {}",
                            value.len(),
                            limits.max_attribute_size
                        );
                    }
                });
                let (b, n) = weight(el);
                bytes += b;
                count += n;
            }
            // A new document may follow a closed one; nothing the server relies on.
            Item::Footer => header_allowed = true,
        }
    }
    assert!(
        count <= input.len(),
        "{count} elements from {} bytes",
        input.len()
    );
    assert!(
        bytes <= input.len(),
        "{bytes} bytes of text and attributes from {} bytes",
        input.len()
    );

    // The same bytes in one piece give the same items and end the same way.
    if *c != 0 {
        let mut whole = Reader::new(limits);
        let once = feed(&mut whole, input, || usize::MAX, restart);
        assert_eq!(
            once.items.len(),
            got.items.len(),
            "chunked: {:?}\nwhole: {:?}",
            got.items,
            once.items
        );
        for (a, b) in once.items.iter().zip(&got.items) {
            assert!(same_item(a, b), "chunked: {b:?}\nwhole: {a:?}");
        }
        assert_eq!(
            once.error.as_ref().map(|e| e.to_string()),
            got.error.as_ref().map(|e| e.to_string()),
            "the error depends on the chunking"
        );
    }
});
