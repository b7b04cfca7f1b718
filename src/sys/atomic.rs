//! Atomics used by the ring algorithms, switched to loom's under `--cfg loom`.
//!
//! The algorithms in [`crate::ring::mpmc`], [`crate::ring::spsc`] and [`crate::ring::doorbell`] only ever touch
//! memory through these types, so the same code runs over a shared segment in production and over
//! heap memory inside loom's model checker.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A spin hint that loom understands as a yield point.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
