//! A queue's state shared by its Python object and the fork registry: this process's handle on
//! the segment, opened again after a fork, and the descriptor it is opened and handed on from.

use crate::errors::{closed_queue, open_error};
use crate::fd::reopen_cloexec;
use crate::fork::{register, Registered};
use crate::handover::{Inherit, KEY};
use crate::locks::gil_lock;
use crate::wait::spin;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmq::Queue;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// `Queue(maxsize)` with `maxsize <= 0`: a shared ring cannot grow, so "unbounded" is this many.
pub(crate) const DEFAULT_MAXSIZE: usize = 16384;
/// Bytes a queue's ring is given when `slot_size` is not chosen: the slot size is this divided by
/// the capacity, within [`MIN_SLOT`]..=[`QUEUE_BYTES`]. It is also the largest object a queue
/// with the default slot size takes (larger ones need a larger `slot_size`).
pub(crate) const QUEUE_BYTES: usize = 4 << 20;
/// The smallest default slot size of a queue.
pub(crate) const MIN_SLOT: usize = 256;

pub(crate) struct QueueCore {
    /// Locked with the GIL held only (see [`gil_lock`]).
    pub(crate) meta: Mutex<QueueMeta>,
    /// Set by `close()`; waits in progress see it within a slice.
    pub(crate) closed: AtomicBool,
    pub(crate) name: Option<String>,
    pub(crate) joinable: bool,
    pub(crate) capacity: usize,
    pub(crate) slot_size: usize,
    pub(crate) inherit: Inherit,
    /// A buffer to receive into, kept from one get to the next (see `PyQueue::give_back`).
    pub(crate) spare: Mutex<Vec<u8>>,
}

pub(crate) struct QueueMeta {
    /// This process's handle; `None` once closed, or until first use after a fork.
    pub(crate) queue: Option<Arc<Queue>>,
    /// A descriptor of the segment, to open handles from (after a fork) and to hand to children.
    pub(crate) anchor: Option<OwnedFd>,
}

impl QueueCore {
    pub(crate) fn new(queue: Queue, joinable: bool, anchor_from: Option<OwnedFd>) -> PyResult<Arc<QueueCore>> {
        let mut cmd = Command::new("shmq-handover");
        let handover = queue.share_with(&mut cmd, KEY, shmq::Role::Both);
        let (mut inherit, fd) = Inherit::capture(&cmd)?;
        // The entry `share_with` made for a child is not used: children attach from a plain
        // description of the segment, so the entry's variable is dropped and the anchor is a new
        // description (a dup would share, and keep alive, the entry's liveness lock).
        inherit.extras.retain(|(name, _)| !name.ends_with("_ENTRY"));
        let anchor = match anchor_from {
            Some(a) => a,
            None => reopen_cloexec(fd)?,
        };
        // The entry leaves here; this process's own handle keeps its roles counted.
        drop(handover);
        let core = Arc::new(QueueCore {
            closed: AtomicBool::new(false),
            name: queue.name().map(str::to_owned),
            joinable,
            capacity: queue.capacity(),
            slot_size: queue.slot_size(),
            inherit,
            spare: Mutex::new(Vec::new()),
            meta: Mutex::new(QueueMeta { queue: Some(Arc::new(queue)), anchor: Some(anchor) }),
        });
        register(Registered::Queue(Arc::downgrade(&core)));
        Ok(core)
    }

    /// This process's handle, opened again from the anchor after a fork.
    pub(crate) fn queue(&self) -> PyResult<Arc<Queue>> {
        let mut m = gil_lock(&self.meta);
        if let Some(q) = &m.queue {
            return Ok(q.clone());
        }
        let fd = match &m.anchor {
            Some(a) if !self.closed.load(Ordering::Relaxed) => a.as_raw_fd(),
            _ => return Err(closed_queue()),
        };
        let q = Arc::new(open_inherited(&self.inherit, fd)?);
        m.queue = Some(q.clone());
        Ok(q)
    }

    pub(crate) fn check_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(closed_queue());
        }
        Ok(())
    }
}

/// The sizes of a new queue: `(capacity, slot_size)`.
pub(crate) fn queue_geometry(maxsize: i64, slot_size: Option<usize>) -> PyResult<(usize, usize)> {
    let capacity = if maxsize <= 0 { DEFAULT_MAXSIZE } else { maxsize as usize };
    if capacity > 1 << 24 {
        return Err(PyValueError::new_err("maxsize must be at most 2**24"));
    }
    let slot = match slot_size {
        Some(0) => return Err(PyValueError::new_err("slot_size must be positive")),
        Some(s) => s,
        None => (QUEUE_BYTES / capacity).clamp(MIN_SLOT, QUEUE_BYTES).next_multiple_of(64),
    };
    Ok((capacity, slot))
}

/// Opens a handle on a queue from descriptor `fd` of this process, with the variables `inherit`
/// describes (see [`Inherit::with_env`]).
pub(crate) fn open_inherited(inherit: &Inherit, fd: RawFd) -> PyResult<Queue> {
    inherit.with_env(fd, |key| Queue::builder().spin(spin()).from_env(key)).map_err(open_error)
}
