//! Telling a forked child from the process that attached a handle.
//!
//! After `fork()` the child shares the parent's mappings and open file descriptions (OFD locks
//! included), so a handle copied into the child would act on the parent's participant entry as if
//! it were the parent: uncount the parent's roles, free its entry, unlink its name. Handles record
//! the process id that attached them and compare it with `getpid()`.
//!
//! `getpid()` is a system call. Drops call [`forked`], which asks it every time. The paths that
//! report errors call [`maybe_forked`], which asks it only once a `pthread_atfork` child handler
//! has run in this process (or its ancestors since they attached), so a process that never
//! forked pays one relaxed load there. A child made with a raw `clone`/`clone3` system call skips
//! the atfork handlers: [`maybe_forked`] misses it, [`forked`] does not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Set in a child by the atfork handler (and inherited by its own children).
static FORK_SEEN: AtomicBool = AtomicBool::new(false);
static WATCH: Once = Once::new();

extern "C" fn on_fork_child() {
    // ORDERING: Relaxed: the child runs one thread, the one that reads this flag.
    FORK_SEEN.store(true, Ordering::Relaxed);
}

/// This process's id, arranging (once per process) for forks to be noticed by [`maybe_forked`].
pub fn pid() -> u32 {
    WATCH.call_once(|| {
        // SAFETY: pthread_atfork with a valid `extern "C"` child handler that only stores to an
        // atomic (async-signal-safe); no prepare or parent handler.
        let r = unsafe { libc::pthread_atfork(None, None, Some(on_fork_child)) };
        if r != 0 {
            // No handler: make `maybe_forked` ask `getpid()` every time instead.
            // ORDERING: Relaxed: read by this process's threads after they see this `Once` done.
            FORK_SEEN.store(true, Ordering::Relaxed);
        }
    });
    std::process::id()
}

/// Whether this process is not `pid` (a forked child of it). A system call: for drops and other
/// rare paths.
pub fn forked(pid: u32) -> bool {
    std::process::id() != pid
}

/// As [`forked`], but without a system call in a process that has not forked since `pid()` was
/// first called (see the module docs for the case it misses).
#[inline]
pub fn maybe_forked(pid: u32) -> bool {
    // ORDERING: Relaxed, as in `on_fork_child`.
    FORK_SEEN.load(Ordering::Relaxed) && forked(pid)
}
