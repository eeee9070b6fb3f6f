//! glibc's allocator settings, fixed at start (issue 12).
//!
//! glibc raises its mmap and trim thresholds as the heap's peaks grow (the "dynamic"
//! thresholds), and then keeps the freed pages of each peak: with an archive burst the
//! server's Rss rose with the number of messages (17.5 → 25.4 MB anonymous from a tenth
//! of 100,000 to the whole) while its live heap stayed at about 7 MB. Setting either
//! threshold turns the dynamic adjustment off; the values were chosen with the load
//! benchmark's archive phase (README, Performance, "The message archive").
//!
//! Only glibc: musl's allocator (the static builds) returns freed pages itself and has
//! no `mallopt`.

/// Allocations from this size up get their own mapping, returned to the system when
/// freed, instead of a piece of the heap that a long-lived neighbour can pin.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 64 * 1024;

/// Free memory at the top of the heap above this is given back at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 128 * 1024;

/// Fix glibc's thresholds. Call first thing in `main`, before any thread exists.
/// Returns whether glibc took both settings (always true on glibc; false elsewhere).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn apply() -> bool {
    // SAFETY: `mallopt` takes two plain integers and no pointers, so there is nothing
    // for it to read or write on our behalf; glibc takes its arena lock inside it, so it
    // is thread-safe, and it is called here before the runtime or any other thread is
    // started. Both parameters are documented glibc options (mallopt(3)); a value glibc
    // does not accept is refused with a 0 return, not undefined behaviour.
    let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    // SAFETY: as above.
    let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
    mmap == 1 && trim == 1
}

/// Other C libraries have no such settings: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn apply() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_both_settings() {
        assert!(super::apply());
    }
}
