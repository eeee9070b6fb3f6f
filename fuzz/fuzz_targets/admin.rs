//! The admin socket protocol (src/xmpp/admin.rs): request lines as `serve` frames them
//! (one per line, at most 16 KiB, UTF-8 or the connection ends, trailing white space
//! trimmed), parsed by `parse_request`.
//!
//! Asserts, besides no panic: a request names a non-empty user without spaces (but
//! `list`); `add`/`set` carry credentials that the store's encoding round-trips and that
//! the command line tool would have sent in the same form; errors are one line.
#![no_main]

use cloud_notify::store::Account;
use cloud_notify::xmpp::admin::client::AdminClient;
use cloud_notify::xmpp::admin::{Request, parse_request};
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    for raw in data.split_inclusive(|b| *b == b'\n') {
        if raw.len() > MAX_LINE {
            return; // `err request too long`, and the connection ends.
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            return; // read_line fails on invalid UTF-8: the connection ends.
        };
        let line = line.trim_end();
        match parse_request(line) {
            Err(e) => assert!(!e.is_empty() && !e.contains('\n'), "{e:?}"),
            Ok(Request::List) => assert!(line.starts_with("list")),
            Ok(Request::Exists { user } | Request::Del { user }) => {
                assert!(!user.is_empty() && !user.contains(' '));
            }
            Ok(Request::Put { user, account, .. }) => {
                assert!(!user.is_empty() && !user.contains(' '));
                let bytes = account.encode().expect("an account encodes");
                assert_eq!(Account::decode(&bytes).as_ref(), Ok(&account));
                let cred = AdminClient::credentials(&account).expect("credentials");
                assert_eq!(
                    parse_request(&format!("set {user} {cred}")),
                    Ok(Request::Put {
                        user,
                        account,
                        replace: true
                    })
                );
            }
        }
    }
});
