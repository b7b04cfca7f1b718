//! Locking the mutexes of queues, pipe ends and the module's tables with respect to the GIL.

use pyo3::prelude::*;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Locks a mutex that is only ever locked by a thread holding the GIL, and never across a release
/// of the GIL: it is never contended, and never held when this process forks (the forking thread
/// holds the GIL). A poisoned lock is used as it is: every state it guards is valid.
pub(crate) fn gil_lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks a mutex that other threads may hold while the GIL is released (a pipe end's half),
/// releasing the GIL while waiting for it.
pub(crate) fn lock_releasing<'a, T: Send>(py: Python<'_>, m: &'a Mutex<T>) -> MutexGuard<'a, T> {
    loop {
        match m.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| drop(m.lock())),
        }
    }
}
