//! Returning memory to the system on glibc, so the exporter's RSS follows what it shows.
//!
//! A full listing briefly holds a datastore's whole history; glibc keeps such freed memory in its
//! arenas (one per thread that allocated) instead of giving it back, so RSS would stay at the
//! high-water mark of the biggest listing. Two glibc knobs fix that: fewer arenas, and a trim
//! after listings (at most every few seconds). Elsewhere (musl, macOS) this does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Trims at most this often, however many full listings end meanwhile (a thousand datastores'
/// first polls end within seconds of each other).
const MIN_SECONDS_BETWEEN_TRIMS: u64 = 10;

static LAST_TRIM: AtomicU64 = AtomicU64::new(0);

/// Call once at start, before other threads allocate: caps glibc at two malloc arenas.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX with a positive value is valid.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives freed heap memory back to the system, unless that was done in the last few seconds.
pub fn release_freed() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_TRIM.load(Ordering::Relaxed);
    if now < last + MIN_SECONDS_BETWEEN_TRIMS
        || LAST_TRIM
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a padding size and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
