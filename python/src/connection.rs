//! `ConnectionBase`, the class under `shmq.Connection`: sending and receiving on a pipe end, long
//! messages in parts of a slot each.

use crate::errors::{closed_conn, os_error, pipe_recv_error, pipe_send_error, read_only, write_only};
use crate::locks::{gil_lock, lock_releasing};
use crate::pickle::{dumps, loads, Payload, RETAIN};
use crate::pipe::{EndCore, EndState, PendingEnd, RxHalf, TxHalf};
use crate::wait::{deadline_of, wait, wait_until, yield_spin};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmq::{Receiver, RecvError, SendError};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One end of a pipe: the base of `shmq.Connection` (see it for the documentation).
#[pyclass(name = "ConnectionBase", module = "shmq._shmq", subclass, frozen)]
pub(crate) struct PyConnection {
    core: Arc<EndCore>,
}

#[pymethods]
impl PyConnection {
    #[new]
    fn new(pending: &Bound<'_, PendingEnd>) -> PyResult<PyConnection> {
        let core = gil_lock(&pending.get().core).take().ok_or_else(|| PyValueError::new_err("end already used"))?;
        Ok(PyConnection { core })
    }

    /// Sends `obj` (pickled) to the other end. Raises `BrokenPipeError` once the other end is
    /// closed or its process has died.
    fn send(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_writable()?;
        let data = dumps(py, obj)?;
        self.send_payload(py, &data, 0, None)
    }

    /// Sends bytes from a bytes-like object: `size` bytes from `offset` (default: all of it).
    #[pyo3(signature = (buf, offset=0, size=None))]
    fn send_bytes(&self, py: Python<'_>, buf: &Bound<'_, PyAny>, offset: isize, size: Option<isize>) -> PyResult<()> {
        self.check_writable()?;
        let data = Payload::new(buf, false)?;
        self.send_payload(py, &data, offset, size)
    }

    /// Receives an object sent with `send`. Blocks until there is one; raises `EOFError` once
    /// the other end is closed (or its process died) and everything it sent has been received.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check_readable()?;
        let halves = self.core.halves()?;
        let half = halves.rx()?;
        // The message is unpickled with the half unlocked (unpickling runs Python code, which may
        // use this end), from the half's buffer, which goes back for the next message.
        let buf = {
            let mut g = lock_releasing(py, half);
            self.recv_whole(py, &mut g)?;
            std::mem::take(&mut g.partial)
        };
        let (obj, buf) = loads(py, buf);
        if let (Some(mut buf), Ok(mut g)) = (buf, half.try_lock()) {
            if g.partial.is_empty() && buf.capacity() <= RETAIN {
                buf.clear();
                g.partial = buf;
            }
        }
        obj
    }

    /// Receives a message's bytes. Raises `OSError` if `maxlength` is given and the message is
    /// longer (and the connection can no longer receive), `EOFError` as `recv`.
    #[pyo3(signature = (maxlength=None))]
    fn recv_bytes<'py>(&self, py: Python<'py>, maxlength: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        if maxlength.is_some_and(|m| m < 0) {
            return Err(PyValueError::new_err("negative maxlength"));
        }
        self.check_readable()?;
        let halves = self.core.halves()?;
        let mut g = lock_releasing(py, halves.rx()?);
        self.recv_whole(py, &mut g)?;
        let rx: &mut RxHalf = &mut g;
        let too_long = maxlength.is_some_and(|max| rx.partial.len() > max as usize);
        let bytes = (!too_long).then(|| PyBytes::new(py, &rx.partial));
        rx.partial.clear();
        if rx.partial.capacity() > RETAIN {
            rx.partial = Vec::new();
        }
        drop(g);
        bytes.ok_or_else(|| {
            self.close();
            os_error("bad message length")
        })
    }

    /// Whether there is anything to receive (a message, or end of file): at once with `timeout`
    /// 0, waiting up to `timeout` seconds, or with `None` until there is.
    #[pyo3(signature = (timeout=0.0))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.check_readable()?;
        let halves = self.core.halves()?;
        let mut g = lock_releasing(py, halves.rx()?);
        let rx: &mut RxHalf = &mut g;
        if rx.r.poll(Some(Duration::ZERO)) {
            return Ok(true);
        }
        let deadline = deadline_of(timeout)?;
        let ready = wait_until(
            py,
            deadline,
            || self.core.check_open(),
            |slice| py.detach(|| rx.r.poll(Some(slice))).then_some(()),
        )?;
        Ok(ready.is_some())
    }

    /// Closes this end (idempotent). The other end then sees end of file once it has received
    /// everything, and `BrokenPipeError` when it sends.
    fn close(&self) {
        self.core.closed.store(true, Ordering::Relaxed);
        *gil_lock(&self.core.state) = EndState::Closed;
    }

    /// Whether the end is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.core.closed.load(Ordering::Relaxed)
    }

    /// Whether the end receives.
    #[getter]
    fn readable(&self) -> bool {
        self.core.readable
    }

    /// Whether the end sends.
    #[getter]
    fn writable(&self) -> bool {
        self.core.writable
    }

    /// What a pickle of this end holds: `(fd, state)`, where `fd` holds the end's liveness lock
    /// (for `multiprocessing.reduction.DupFd`). Only an end that this process has not used can
    /// be handed on.
    fn _handover<'py>(&self, py: Python<'py>) -> PyResult<(RawFd, Bound<'py, PyTuple>)> {
        let c = &self.core;
        let fd = match &*gil_lock(&c.state) {
            EndState::Unowned { fd, .. } => *fd,
            EndState::Closed => return Err(closed_conn()),
            EndState::Gone(why) => return Err(os_error(*why)),
            EndState::Owned(_) => {
                return Err(os_error(
                    "this pipe end has been used by this process, and stays with it: hand an end to another \
                     process before using it",
                ))
            }
        };
        Ok((fd, (c.inherit.to_py(py)?, c.readable, c.writable, c.chunk).into_pyobject(py)?))
    }
}

impl PyConnection {
    fn check_writable(&self) -> PyResult<()> {
        self.core.check_open()?;
        if !self.core.writable {
            return Err(read_only());
        }
        Ok(())
    }

    fn check_readable(&self) -> PyResult<()> {
        self.core.check_open()?;
        if !self.core.readable {
            return Err(write_only());
        }
        Ok(())
    }

    fn send_payload(&self, py: Python<'_>, data: &Payload<'_>, offset: isize, size: Option<isize>) -> PyResult<()> {
        let all = data.bytes();
        let n = all.len();
        if offset < 0 {
            return Err(PyValueError::new_err("offset is negative"));
        }
        let offset = offset as usize;
        if n < offset {
            return Err(PyValueError::new_err("buffer length < offset"));
        }
        let size = match size {
            None => n - offset,
            Some(s) if s < 0 => return Err(PyValueError::new_err("size is negative")),
            Some(s) if offset + s as usize > n => return Err(PyValueError::new_err("buffer length < offset + size")),
            Some(s) => s as usize,
        };
        let halves = self.core.halves()?;
        let mut g = lock_releasing(py, halves.tx()?);
        let tx: &mut TxHalf = &mut g;
        if tx.broken {
            return Err(os_error("a send on this connection was interrupted in the middle of a message"));
        }
        tx.look_for_dead_receiver();
        let chunk = self.core.chunk;
        if size < chunk {
            return self.send_part(py, tx, data, offset..offset + size);
        }
        // A long message: parts of exactly `chunk` bytes (a slot each), then a shorter one
        // (possibly empty), sent as many at a time as there is room for.
        let r = self.send_parts(py, tx, data, offset..offset + size);
        if r.is_err() {
            tx.broken = true;
        }
        r
    }

    /// Sends `data[whole]` as `whole.len() / chunk + 1` parts: part `i` is the `i`-th `chunk`
    /// bytes, and the last one the rest (shorter than `chunk`, possibly empty).
    fn send_parts(
        &self,
        py: Python<'_>,
        tx: &mut TxHalf,
        data: &Payload<'_>,
        whole: std::ops::Range<usize>,
    ) -> PyResult<()> {
        let chunk = self.core.chunk;
        let count = whole.len() / chunk + 1;
        let part = |i: usize| {
            let start = whole.start + i * chunk;
            start..(start + chunk).min(whole.end)
        };
        let bytes = data.bytes();
        let mut i = 0;
        while i < count {
            let sent = tx.s.send_batch((i..count).map(|j| &bytes[part(j)])).map_err(pipe_send_error)?;
            if sent > 0 {
                i += sent;
            } else {
                // Full: wait for room for one, then go on in batches.
                self.send_part(py, tx, data, part(i))?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Sends `data[range]` as one message of the ring.
    fn send_part(
        &self,
        py: Python<'_>,
        tx: &mut TxHalf,
        data: &Payload<'_>,
        range: std::ops::Range<usize>,
    ) -> PyResult<()> {
        match tx.s.try_send(&data.bytes()[range.clone()]) {
            Ok(()) => return Ok(()),
            Err(SendError::Full) => {}
            Err(e) => return Err(pipe_send_error(e)),
        }
        let stable = data.stable(range);
        let m: &[u8] = &stable;
        let s = &mut tx.s;
        let sent = py.detach(|| {
            yield_spin(|| match s.try_send(m) {
                Err(SendError::Full) => None,
                res => Some(res),
            })
        });
        if let Some(res) = sent {
            return res.map_err(pipe_send_error);
        }
        let res = wait(
            py,
            || self.core.check_open(),
            |slice| match py.detach(|| s.send_timeout(m, slice)) {
                Err(SendError::Timeout) => None,
                res => Some(res),
            },
        )?;
        res.map_err(pipe_send_error)
    }

    /// Receives a whole message (every part of a long one) into `rx.partial`, after what an
    /// interrupted receive left there.
    fn recv_whole(&self, py: Python<'_>, rx: &mut RxHalf) -> PyResult<()> {
        while self.recv_part(py, rx)? >= self.core.chunk {}
        Ok(())
    }

    /// Appends the next message of the ring to `rx.partial`; returns its length.
    fn recv_part(&self, py: Python<'_>, rx: &mut RxHalf) -> PyResult<usize> {
        /// Takes a message if there is one now (`None`: the ring is empty).
        fn take(r: &mut Receiver, into: &mut Vec<u8>) -> Option<Result<usize, RecvError>> {
            match r.try_recv_in_place() {
                Ok(m) => {
                    into.extend_from_slice(&m);
                    Some(Ok(m.len()))
                }
                Err(RecvError::Empty) => None,
                Err(e) => Some(Err(e)),
            }
        }
        let RxHalf { r, partial } = rx;
        if let Some(res) = take(r, partial) {
            return res.map_err(pipe_recv_error);
        }
        if let Some(res) = py.detach(|| yield_spin(|| take(r, partial))) {
            return res.map_err(pipe_recv_error);
        }
        let res = wait(
            py,
            || self.core.check_open(),
            |slice| {
                py.detach(|| r.poll(Some(slice)));
                take(r, partial)
            },
        )?;
        res.map_err(pipe_recv_error)
    }
}
