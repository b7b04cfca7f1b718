//! Forks: every live queue and pipe end of this process is registered, so that a child forked
//! from it can set aside the handles it copied from its parent.

use crate::locks::gil_lock;
use crate::pipe::{EndCore, EndState};
use crate::queue_core::QueueCore;
use pyo3::prelude::*;
use std::sync::{Mutex, Weak};

/// Every live queue and pipe end of this process, for [`_after_fork_child`]. Locked with the GIL
/// held only.
static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

pub(crate) enum Registered {
    Queue(Weak<QueueCore>),
    End(Weak<EndCore>),
}

impl Registered {
    fn alive(&self) -> bool {
        match self {
            Registered::Queue(w) => w.strong_count() > 0,
            Registered::End(w) => w.strong_count() > 0,
        }
    }
}

pub(crate) fn register(r: Registered) {
    let mut reg = gil_lock(&REGISTRY);
    if reg.len() >= 64 && reg.len().is_power_of_two() {
        reg.retain(Registered::alive);
    }
    reg.push(r);
}

/// Runs in a child after `os.fork()` (registered with `os.register_at_fork` by the package): the
/// handles copied from the parent belong to the parent. A queue's copy is dropped (the child opens
/// its own handle on first use); a pipe end the parent had taken stays the parent's. Dropping the
/// copies closes this process's descriptors of the parent's liveness locks, so that the parent's
/// death is seen even while this child lives.
#[pyfunction]
pub(crate) fn _after_fork_child() {
    let reg = gil_lock(&REGISTRY);
    for r in reg.iter() {
        match r {
            Registered::Queue(w) => {
                if let Some(core) = w.upgrade() {
                    gil_lock(&core.meta).queue = None;
                }
            }
            Registered::End(w) => {
                if let Some(core) = w.upgrade() {
                    let mut st = gil_lock(&core.state);
                    if matches!(*st, EndState::Owned(_)) {
                        *st = EndState::Gone(
                            "this pipe end was used by the process this one was forked from, and stays with it \
                             (an end belongs to the first process that uses it)",
                        );
                    }
                }
            }
        }
    }
}
