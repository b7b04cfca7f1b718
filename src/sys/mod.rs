//! The lowest layer: operating-system calls, and nothing that knows a segment's format.
//!
//! Only this layer (and the mapping views above it) names `libc`.

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
