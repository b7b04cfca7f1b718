//! `QueueBase`, the class under `shmq.Queue`, `shmq.JoinableQueue` and `shmq.SimpleQueue`, and
//! `unlink` for named queues.

use crate::errors::{closed_queue, join_error, open_error, queue_recv_error, queue_send_error, Empty, Full};
use crate::fd::take_fd;
use crate::handover::Inherit;
use crate::locks::gil_lock;
use crate::pickle::{dumps, loads, Payload, RETAIN};
use crate::queue_core::{open_inherited, queue_geometry, QueueCore};
use crate::wait::{deadline_of, next_slice, spin, wait_until, yield_spin};
use pyo3::exceptions::PyAssertionError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmq::{JoinError, Queue, RecvError, SendError};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A queue in shared memory: the base of `shmq.Queue`, `shmq.JoinableQueue` and
/// `shmq.SimpleQueue` (see those for the documentation).
#[pyclass(name = "QueueBase", module = "shmq._shmq", subclass, frozen)]
pub(crate) struct PyQueue {
    core: Arc<QueueCore>,
}

#[pymethods]
impl PyQueue {
    #[new]
    #[pyo3(signature = (maxsize=0, *, slot_size=None, name=None, ctx=None, _joinable=false, _inherit=None))]
    fn new(
        py: Python<'_>,
        maxsize: i64,
        slot_size: Option<usize>,
        name: Option<String>,
        ctx: Option<Bound<'_, PyAny>>,
        _joinable: bool,
        _inherit: Option<Bound<'_, PyTuple>>,
    ) -> PyResult<PyQueue> {
        let _ = (py, ctx); // `ctx` (multiprocessing's context) has no use here
        if let Some(t) = _inherit {
            return Self::inherit(&t);
        }
        let (capacity, slot) = queue_geometry(maxsize, slot_size)?;
        let b = Queue::builder().spin(spin()).capacity(capacity).slot_size(slot).joinable(_joinable).persistent(true);
        let q = match &name {
            Some(n) => b.open_or_create(n),
            None => b.create_anonymous(),
        }
        .map_err(open_error)?;
        Ok(PyQueue { core: QueueCore::new(q, _joinable, None)? })
    }

    /// Puts `obj` (pickled) into the queue. With `block` true and `timeout` None, waits while the
    /// queue is full; with a timeout, raises `queue.Full` after that many seconds; with `block`
    /// false, raises `queue.Full` at once if there is no room.
    #[pyo3(signature = (obj, block=true, timeout=None))]
    fn put(&self, py: Python<'_>, obj: &Bound<'_, PyAny>, block: bool, timeout: Option<f64>) -> PyResult<()> {
        self.core.check_open()?;
        let data = dumps(py, obj)?;
        self.put_payload(py, &data, block, timeout)
    }

    /// `put(obj, False)`.
    fn put_nowait(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, obj, false, None)
    }

    /// Puts the bytes of `data` (any bytes-like object) without pickling; `get_bytes` takes them.
    #[pyo3(signature = (data, block=true, timeout=None))]
    fn put_bytes(&self, py: Python<'_>, data: &Bound<'_, PyAny>, block: bool, timeout: Option<f64>) -> PyResult<()> {
        self.core.check_open()?;
        let data = Payload::new(data, false)?;
        self.put_payload(py, &data, block, timeout)
    }

    /// Removes and returns an object (unpickled). With `block` true and `timeout` None, waits
    /// while the queue is empty; with a timeout, raises `queue.Empty` after that many seconds;
    /// with `block` false, raises `queue.Empty` at once if there is nothing.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(&self, py: Python<'py>, block: bool, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let msg = self.get_message(py, block, timeout)?;
        let (obj, buf) = loads(py, msg);
        self.give_back(buf);
        obj
    }

    /// `get(False)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None)
    }

    /// Removes and returns a message's bytes, unpickled (see `put_bytes`).
    #[pyo3(signature = (block=true, timeout=None))]
    fn get_bytes<'py>(&self, py: Python<'py>, block: bool, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let msg = self.get_message(py, block, timeout)?;
        let bytes = PyBytes::new(py, &msg);
        self.give_back(Some(msg));
        Ok(bytes)
    }

    /// The number of slots in use: the number of items, when every item fits a slot (a larger
    /// one takes several). Approximate while other processes use the queue.
    fn qsize(&self) -> PyResult<usize> {
        self.core.check_open()?;
        Ok(self.core.queue()?.len())
    }

    /// Whether the queue is empty (approximate while other processes use it).
    fn empty(&self) -> PyResult<bool> {
        self.core.check_open()?;
        Ok(self.core.queue()?.is_empty())
    }

    /// Whether the queue is full (approximate while other processes use it).
    fn full(&self) -> PyResult<bool> {
        self.core.check_open()?;
        Ok(self.core.queue()?.is_full())
    }

    /// Closes this process's handle: it puts and gets no more (`ValueError`), and the queue can
    /// no longer be handed to other processes through it. Other handles, in this process or
    /// others, are not affected. Idempotent.
    fn close(&self) {
        self.core.closed.store(true, Ordering::Relaxed);
        let mut m = gil_lock(&self.core.meta);
        m.queue = None;
        m.anchor = None;
    }

    /// Waits for the feeder thread in multiprocessing; shmq has none (`put` writes into shared
    /// memory itself), so this only checks that `close()` was called.
    fn join_thread(&self) -> PyResult<()> {
        if !self.core.closed.load(Ordering::Relaxed) {
            return Err(PyAssertionError::new_err("Queue not closed"));
        }
        Ok(())
    }

    /// Does nothing: shmq has no feeder thread to wait for.
    fn cancel_join_thread(&self) {}

    /// The capacity in slots (`maxsize`, or the default bound for `maxsize <= 0`).
    #[getter]
    fn maxsize(&self) -> usize {
        self.core.capacity
    }

    /// The largest message in one slot, in bytes; larger ones take several slots.
    #[getter]
    fn slot_size(&self) -> usize {
        self.core.slot_size
    }

    /// The queue's name (`None`: anonymous).
    #[getter]
    fn name(&self) -> Option<String> {
        self.core.name.clone()
    }

    /// Whether `close()` was called.
    #[getter]
    fn _closed(&self) -> bool {
        self.core.closed.load(Ordering::Relaxed)
    }

    /// Marks an item taken from the queue as done (`JoinableQueue.task_done`).
    fn _task_done(&self) -> PyResult<()> {
        self.core.check_open()?;
        self.core.queue()?.task_done().map_err(join_error)
    }

    /// Waits until every item put has been marked done, at most `timeout` seconds (`None`: no
    /// limit); returns whether that happened (`JoinableQueue.join`).
    #[pyo3(signature = (timeout=None))]
    fn _join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.core.check_open()?;
        let q = self.core.queue()?;
        let deadline = deadline_of(timeout)?;
        let joined = wait_until(
            py,
            deadline,
            || self.core.check_open(),
            |slice| match py.detach(|| q.join_timeout(slice)) {
                Err(JoinError::Timeout) => None,
                r => Some(r),
            },
        )?;
        match joined {
            Some(r) => r.map(|()| true).map_err(join_error),
            None => Ok(q.join_timeout(Duration::ZERO).is_ok()),
        }
    }

    /// Items put and not yet marked done (joinable queues).
    fn _unfinished_tasks(&self) -> PyResult<u64> {
        self.core.check_open()?;
        Ok(self.core.queue()?.unfinished_tasks())
    }

    /// What a pickle of this queue holds: `("name", name, joinable)` for a named queue, else
    /// `("fd", fd, inherit, capacity, slot_size, joinable)` where `fd` is a descriptor of the
    /// segment for `multiprocessing.reduction.DupFd`.
    fn _reduce_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.core.check_open()?;
        let c = &self.core;
        if let Some(name) = &c.name {
            return ("name", name.clone(), c.joinable).into_pyobject(py);
        }
        let m = gil_lock(&c.meta);
        let fd = m.anchor.as_ref().ok_or_else(closed_queue)?.as_raw_fd();
        ("fd", fd, c.inherit.to_py(py)?, c.capacity, c.slot_size, c.joinable).into_pyobject(py)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let c = &slf.get().core;
        let ty = slf.get_type().qualname()?;
        let name = c.name.as_deref().map(|n| format!(" name={n:?}")).unwrap_or_default();
        let closed = if c.closed.load(Ordering::Relaxed) { " closed" } else { "" };
        Ok(format!("<shmq.{ty} maxsize={} slot_size={}{name}{closed}>", c.capacity, c.slot_size))
    }
}

impl PyQueue {
    /// Opens the queue a pickle describes (see `_reduce_state`); `fd` was handed to this process.
    fn inherit(t: &Bound<'_, PyTuple>) -> PyResult<PyQueue> {
        let kind: String = t.get_item(0)?.extract()?;
        if kind == "name" {
            let (_, name, joinable): (String, String, bool) = t.extract()?;
            let q = Queue::builder().spin(spin()).open(&name).map_err(open_error)?;
            return Ok(PyQueue { core: QueueCore::new(q, joinable, None)? });
        }
        let (_, fd, inherit, _capacity, _slot, joinable): (String, RawFd, Bound<'_, PyAny>, usize, usize, bool) =
            t.extract()?;
        let inherit = Inherit::from_py(&inherit)?;
        let anchor = take_fd(fd)?;
        let q = open_inherited(&inherit, anchor.as_raw_fd())?;
        Ok(PyQueue { core: QueueCore::new(q, joinable, Some(anchor))? })
    }

    fn put_payload(&self, py: Python<'_>, data: &Payload<'_>, block: bool, timeout: Option<f64>) -> PyResult<()> {
        let q = self.core.queue()?;
        let bytes = data.bytes();
        let large = bytes.len() > q.slot_size();
        let put_now = |m: &[u8]| if large { q.try_put_large(m) } else { q.try_put(m) };
        match put_now(bytes) {
            Ok(()) => return Ok(()),
            Err(SendError::Full) if block => {}
            Err(e) => return Err(queue_send_error(e)),
        }
        let deadline = deadline_of(timeout)?;
        let stable = data.stable(0..bytes.len());
        let m: &[u8] = &stable;
        if next_slice(deadline).is_some() {
            let put = py.detach(|| {
                yield_spin(|| match put_now(m) {
                    Err(SendError::Full) => None,
                    r => Some(r),
                })
            });
            if let Some(r) = put {
                return r.map_err(queue_send_error);
            }
        }
        let put = wait_until(
            py,
            deadline,
            || self.core.check_open(),
            |slice| match py.detach(|| if large { q.put_large_timeout(m, slice) } else { q.put_timeout(m, slice) }) {
                Err(SendError::Timeout) => None,
                r => Some(r),
            },
        )?;
        match put {
            Some(r) => r.map_err(queue_send_error),
            None => Err(Full::new_err(())),
        }
    }

    /// Takes a message into a buffer (the queue's spare one, when no other thread has it).
    fn get_message(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Vec<u8>> {
        self.core.check_open()?;
        let q = self.core.queue()?;
        let mut buf = self.core.spare.try_lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default();
        let take = |buf: &mut Vec<u8>| match q.try_get_into(buf) {
            Err(RecvError::Empty) => None,
            r => Some(r),
        };
        if let Some(r) = take(&mut buf) {
            return r.map(|_| buf).map_err(queue_recv_error);
        }
        if !block {
            return Err(Empty::new_err(()));
        }
        let deadline = deadline_of(timeout)?;
        if next_slice(deadline).is_some() {
            if let Some(r) = py.detach(|| yield_spin(|| take(&mut buf))) {
                return r.map(|_| buf).map_err(queue_recv_error);
            }
        }
        let got = wait_until(
            py,
            deadline,
            || self.core.check_open(),
            |slice| match py.detach(|| q.get_timeout(slice)) {
                Err(RecvError::Timeout) => None,
                r => Some(r),
            },
        )?;
        match got {
            Some(Ok(m)) => {
                buf.clear();
                buf.extend_from_slice(&m);
                Ok(buf)
            }
            Some(Err(e)) => Err(queue_recv_error(e)),
            None => Err(Empty::new_err(())),
        }
    }

    /// Gives a buffer back as the queue's spare one.
    fn give_back(&self, buf: Option<Vec<u8>>) {
        if let (Some(mut buf), Ok(mut spare)) = (buf, self.core.spare.try_lock()) {
            if buf.capacity() <= RETAIN && buf.capacity() > spare.capacity() {
                buf.clear();
                *spare = buf;
            }
        }
    }
}

/// Removes a named queue (`shmq.unlink("/name")`); named queues persist until removed.
#[pyfunction]
pub(crate) fn unlink(name: &str) -> PyResult<()> {
    shmq::unlink(name).map_err(open_error)
}
