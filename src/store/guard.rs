//! Panics inside redb become errors.
//!
//! redb trusts the pages it reads: a damaged page can make it panic (an index out of
//! range, or one of the checks it only asserts in debug builds). The database file is
//! data from outside the program, so what it holds must not be able to stop the server:
//! every call into redb runs inside [`contain`], and the request fails instead.
//!
//! The process-wide panic hook of the binary stops the server on a panic (an actor's
//! panic would otherwise leave it half dead). [`panic_is_contained`] tells it that this
//! panic is caught and handled here, so it only logs it.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is inside [`contain`]: a panic now is turned into an error.
pub fn panic_is_contained() -> bool {
    CONTAINED.with(Cell::get)
}

/// Runs `f`; a panic in it is returned as its message.
///
/// `AssertUnwindSafe` is sound here because what `f` touches after a panic is the redb
/// handle, and every caller drops or reopens that handle when this returns `Err`.
pub(super) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let outer = CONTAINED.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(outer));
    result.map_err(|payload| message(payload.as_ref()))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "internal error".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_error_and_the_flag_is_scoped() {
        assert!(!panic_is_contained());
        let r: Result<(), String> = contain(|| {
            assert!(panic_is_contained());
            panic!("page 7 is damaged")
        });
        assert_eq!(r, Err("page 7 is damaged".to_string()));
        assert!(!panic_is_contained());
        assert_eq!(contain(|| 5), Ok(5));
    }
}
