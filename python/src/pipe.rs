//! Pipe ends: the state an end has in this process (not taken yet, taken, closed, or another
//! process's), shared by its Python object and the fork registry, and `_pipe` and `_end_from_fd`,
//! which make the `PendingEnd`s that `shmq.Connection`s are built from.

use crate::errors::{closed_conn, open_error, os_error, read_only, write_only};
use crate::fd::{fresh_fd, take_fd};
use crate::fork::{register, Registered};
use crate::handover::{Inherit, KEY};
use crate::locks::gil_lock;
use crate::wait::spin;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmq::{Connection, PipeBuilder, Receiver, Sender};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default slots of each direction of a `Pipe()`.
pub(crate) const PIPE_CAPACITY: usize = 1024;
/// Default slot size of a `Pipe()`.
pub(crate) const PIPE_SLOT: usize = 1024;

/// One end of a pipe, shared by the Python objects for it (one) and the registry.
pub(crate) struct EndCore {
    /// Locked with the GIL held only (see [`gil_lock`]).
    pub(crate) state: Mutex<EndState>,
    /// Set by `close()`; waits in progress see it within a slice.
    pub(crate) closed: AtomicBool,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Messages of this many bytes (the slot size) or more go in parts of exactly this many, and a
    /// shorter part (possibly empty) ends them: so any size crosses, whatever the ring's size, and
    /// the receiver puts them together in a buffer it keeps.
    pub(crate) chunk: usize,
    pub(crate) inherit: Inherit,
}

pub(crate) enum EndState {
    /// Nobody has taken the end yet: the first process that uses it adopts it. `fd` is the
    /// descriptor that holds the end's liveness lock, owned by `holder`.
    Unowned {
        fd: RawFd,
        _holder: FdHolder,
    },
    /// This process has taken the end.
    Owned(Arc<Halves>),
    Closed,
    /// Another process has the end; the message says which.
    Gone(&'static str),
}

pub(crate) enum FdHolder {
    /// The creator's hold on the end (it keeps the end alive until dropped).
    Handover(#[allow(dead_code)] shmq::Handover),
    /// A descriptor handed to this process.
    Fd(#[allow(dead_code)] OwnedFd),
}

/// The halves of an end this process has taken, each used by one thread at a time.
pub(crate) struct Halves {
    tx: Option<Mutex<TxHalf>>,
    rx: Option<Mutex<RxHalf>>,
}

impl Halves {
    /// The sending half (an error if the end only receives).
    pub(crate) fn tx(&self) -> PyResult<&Mutex<TxHalf>> {
        self.tx.as_ref().ok_or_else(read_only)
    }

    /// The receiving half (an error if the end only sends).
    pub(crate) fn rx(&self) -> PyResult<&Mutex<RxHalf>> {
        self.rx.as_ref().ok_or_else(write_only)
    }
}

pub(crate) struct TxHalf {
    pub(crate) s: Sender,
    /// A send was interrupted between the parts of a long message: the stream is unusable.
    pub(crate) broken: bool,
    /// When this half last looked for a dead receiver (see [`TxHalf::look_for_dead_receiver`]).
    looked: Option<Instant>,
}

/// How often a sender that keeps finding room looks for a dead receiver.
const LOOK_INTERVAL: Duration = Duration::from_millis(10);

impl TxHalf {
    /// The library notices a dead receiver when a send finds the ring full; multiprocessing's
    /// pipes raise `BrokenPipeError` on the next send. Looking every [`LOOK_INTERVAL`] (a few
    /// `fcntl` calls) reports a receiver that died, or an end closed before anybody took it,
    /// within that long, however much room the ring has.
    pub(crate) fn look_for_dead_receiver(&mut self) {
        let now = Instant::now();
        if self.looked.is_none_or(|t| now.duration_since(t) >= LOOK_INTERVAL) {
            self.looked = Some(now);
            self.s.recover();
        }
    }
}

pub(crate) struct RxHalf {
    pub(crate) r: Receiver,
    /// The message being received (kept between calls: the parts of a long message whose
    /// receive was interrupted; and, empty, the buffer for the next message).
    pub(crate) partial: Vec<u8>,
}

impl EndCore {
    pub(crate) fn new(state: EndState, readable: bool, writable: bool, chunk: usize, inherit: Inherit) -> Arc<EndCore> {
        let core = Arc::new(EndCore {
            state: Mutex::new(state),
            closed: AtomicBool::new(false),
            readable,
            writable,
            chunk,
            inherit,
        });
        register(Registered::End(Arc::downgrade(&core)));
        core
    }

    /// The end as this process holds it, adopting it first if nobody has.
    pub(crate) fn halves(&self) -> PyResult<Arc<Halves>> {
        let mut st = gil_lock(&self.state);
        let fd = match &*st {
            EndState::Owned(h) => return Ok(h.clone()),
            EndState::Closed => return Err(closed_conn()),
            EndState::Gone(why) => return Err(os_error(*why)),
            EndState::Unowned { fd, .. } => *fd,
        };
        let conn = fresh_fd(fd)
            .map_err(shmq::Error::from)
            .and_then(|fd| self.inherit.with_env(fd, |key| PipeBuilder::new().spin(spin()).from_env(key)));
        let conn = match conn {
            Ok(c) => c,
            Err(shmq::Error::NotInherited(_)) => {
                const TAKEN: &str = "this pipe end was taken by another process (an end belongs to the first process \
                                     that uses it)";
                *st = EndState::Gone(TAKEN);
                return Err(os_error(TAKEN));
            }
            Err(e) => return Err(open_error(e)),
        };
        let (tx, rx) = conn.split();
        let h = Arc::new(Halves {
            tx: tx.map(|s| Mutex::new(TxHalf { s, broken: false, looked: None })),
            rx: rx.map(|r| Mutex::new(RxHalf { r, partial: Vec::new() })),
        });
        // Drops the hold on the descriptor we were given (the adopted end has its own copy).
        *st = EndState::Owned(h.clone());
        Ok(h)
    }

    pub(crate) fn check_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(closed_conn());
        }
        Ok(())
    }
}

/// Makes an end of a new pipe adoptable by whichever process first uses it.
fn unowned_end(conn: Connection, readable: bool, writable: bool, chunk: usize) -> PyResult<Arc<EndCore>> {
    let mut cmd = Command::new("shmq-handover");
    let handover = conn.hand_over(&mut cmd, KEY);
    let (inherit, fd) = Inherit::capture(&cmd)?;
    let state = EndState::Unowned { fd, _holder: FdHolder::Handover(handover) };
    Ok(EndCore::new(state, readable, writable, chunk, inherit))
}

/// An end not yet wrapped in a Python `Connection` (from `_pipe` or `_end_from_fd`).
#[pyclass(name = "PendingEnd", module = "shmq._shmq", frozen)]
pub(crate) struct PendingEnd {
    pub(crate) core: Mutex<Option<Arc<EndCore>>>,
}

impl PendingEnd {
    fn wrap(core: Arc<EndCore>) -> PendingEnd {
        PendingEnd { core: Mutex::new(Some(core)) }
    }
}

/// Creates a pipe: `(end0, end1)` as `PendingEnd`s; one-way pipes give `(receiving, sending)`.
#[pyfunction]
#[pyo3(signature = (duplex=true, capacity=PIPE_CAPACITY, slot_size=PIPE_SLOT))]
pub(crate) fn _pipe(duplex: bool, capacity: usize, slot_size: usize) -> PyResult<(PendingEnd, PendingEnd)> {
    let (a, b) = PipeBuilder::new()
        .duplex(duplex)
        .capacity(capacity)
        .slot_size(slot_size)
        .create_anonymous()
        .map_err(open_error)?;
    let chunk = slot_size;
    let (first, second) = if duplex {
        (unowned_end(a, true, true, chunk)?, unowned_end(b, true, true, chunk)?)
    } else {
        // A one-way pipe's ends come as (sending, receiving); Python's Pipe(False) is (reader, writer).
        (unowned_end(b, true, false, chunk)?, unowned_end(a, false, true, chunk)?)
    };
    Ok((PendingEnd::wrap(first), PendingEnd::wrap(second)))
}

/// The end a pickle describes (see `ConnectionBase._handover`); `fd` was handed to this process.
#[pyfunction]
pub(crate) fn _end_from_fd(fd: RawFd, state: &Bound<'_, PyTuple>) -> PyResult<PendingEnd> {
    let (inherit, readable, writable, chunk): (Bound<'_, PyAny>, bool, bool, usize) = state.extract()?;
    let inherit = Inherit::from_py(&inherit)?;
    let fd = take_fd(fd)?;
    let raw = fd.as_raw_fd();
    let state = EndState::Unowned { fd: raw, _holder: FdHolder::Fd(fd) };
    Ok(PendingEnd::wrap(EndCore::new(state, readable, writable, chunk.max(1), inherit)))
}
