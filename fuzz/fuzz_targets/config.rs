//! The configuration loader (src/config.rs `Config::parse`) on arbitrary text.
//!
//! Asserts, besides no panic: an accepted configuration keeps every value in the range
//! the loader promises, and what `cloud-notify check` prints for it (`Display`) parses
//! back to the same configuration (component secrets are printed as "(hidden)"); a
//! refused one has an error message that names something.
#![no_main]

use cloud_notify::config::{Config, MAX_DEVICES_CAP};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match Config::parse(text) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!((1..=MAX_DEVICES_CAP).contains(&cfg.push_max_devices));
    assert!((8..=256).contains(&cfg.xml_max_depth));
    assert!((8..=4096).contains(&cfg.xml_max_attributes));
    assert!((1024..=1 << 20).contains(&cfg.xml_max_attribute_size));
    assert!(!cfg.push_batch_window.is_zero());
    assert_eq!(cfg.tls_certificate.is_some(), cfg.tls_key.is_some());
    let shown = cfg.to_string();
    let back = Config::parse(&shown)
        .unwrap_or_else(|e| panic!("`check` output does not load: {e}\n{shown}"));
    let mut hidden = cfg.clone();
    for c in &mut hidden.components {
        c.secret = "(hidden)".into();
    }
    assert_eq!(back, hidden, "`check` output loads differently:\n{shown}");
});
