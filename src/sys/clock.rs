//! The monotonic clock that every deadline is measured on.

/// Nanoseconds on `CLOCK_MONOTONIC` (0 under loom, whose models never time out).
#[cfg(not(loom))]
pub fn now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Nanoseconds on `CLOCK_MONOTONIC` (0 under loom, whose models never time out).
#[cfg(loom)]
pub fn now() -> u64 {
    0
}
