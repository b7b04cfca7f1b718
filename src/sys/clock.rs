//! The monotonic clock that every deadline is measured on.

use std::time::Duration;

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

/// The [`now`] reading `d` from now: the deadline of a call given a timeout (saturating, so a
/// timeout too long to represent is a deadline that never comes).
pub fn deadline_after(d: Duration) -> u64 {
    now().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64)
}

/// Nanoseconds on `CLOCK_MONOTONIC_COARSE`: the same clock as [`now`] at the resolution of the
/// kernel's tick (a few milliseconds), read without the time counter, so it costs a few
/// nanoseconds where [`now`] costs tens. For spacing out periodic work, never for deadlines.
#[cfg(not(loom))]
pub fn coarse_now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on Linux 2.6.32+.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// 0 under loom, as [`now`].
#[cfg(loom)]
pub fn coarse_now() -> u64 {
    0
}
