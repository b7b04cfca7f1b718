//! An asymmetric memory barrier between a waker's publish and a sleeper's announcement.
//!
//! A waker needs a StoreLoad barrier between publishing a change and loading the waiter count; a
//! sleeper needs one between announcing itself and re-checking. Wakers are on the fast path and
//! sleepers are about to make a system call anyway, so the cost is moved to the sleeper: a
//! process registered for `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` pays only a compiler fence
//! on the waker side, and the sleeper side issues the membarrier, which orders every registered
//! process's accesses. Where membarrier is unavailable, both sides use a SeqCst fence.
//!
//! Under `--cfg loom` both sides are SeqCst fences.

/// Registers this process for the asymmetric barrier (idempotent, once per process). Every
/// handle calls this when it attaches.
pub fn register() {
    imp::register();
}

pub(crate) use imp::{sleeper_side, waker_side};

#[cfg(not(loom))]
mod imp {
    use std::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};

    const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
    const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;
    const UNKNOWN: u8 = 0;
    const LIGHT: u8 = 1;
    const HEAVY: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    pub fn register() {
        if STATE.load(Ordering::Relaxed) == UNKNOWN {
            // SAFETY: membarrier takes integer arguments only; failure leaves us on the fence.
            let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) };
            STATE.store(if r == 0 { LIGHT } else { HEAVY }, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn waker_side() {
        if STATE.load(Ordering::Relaxed) == LIGHT {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    pub fn sleeper_side() {
        fence(Ordering::SeqCst);
        // SAFETY: as in `register`. An error (no support, or a seccomp filter) means no waker
        // could have registered in this kernel, or, at worst, a wake-up is late by one slice.
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) };
    }
}

#[cfg(loom)]
mod imp {
    use crate::sys::atomic::{fence, Ordering};

    pub fn register() {}

    pub fn waker_side() {
        fence(Ordering::SeqCst);
    }

    pub fn sleeper_side() {
        fence(Ordering::SeqCst);
    }
}
