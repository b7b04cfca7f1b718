//! The lowest layer: operating-system calls, and nothing that knows a segment's format.
//!
//! The operating-system calls of the handles and rings go through this layer; above it, only the
//! segment's mapping view, `inspect`, `fuzzing` and the worker's signal numbers name `libc`.

pub(crate) mod atomic;
pub(crate) mod clock;
pub(crate) mod crash;
#[cfg(not(loom))]
pub(crate) mod fork;
pub(crate) mod futex;
#[cfg(not(loom))]
pub(crate) mod inherit;
#[cfg(not(loom))]
pub(crate) mod lock;
pub(crate) mod membarrier;
#[cfg(not(loom))]
pub(crate) mod process;
#[cfg(not(loom))]
pub(crate) mod shm;
#[cfg(not(loom))]
pub(crate) mod sigbus;
