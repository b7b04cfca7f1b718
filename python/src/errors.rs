//! The library's errors as Python exceptions: opening a segment, queue operations and pipe ends.

use pyo3::exceptions::{
    PyBrokenPipeError, PyEOFError, PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;
use shmq::{JoinError, RecvError, SendError};

pyo3::import_exception!(queue, Full);
pyo3::import_exception!(queue, Empty);

pub(crate) fn os_error(msg: impl Into<String>) -> PyErr {
    PyOSError::new_err(msg.into())
}

/// A library error from creating or opening a segment, as the Python exception closest to it.
pub(crate) fn open_error(e: shmq::Error) -> PyErr {
    let msg = e.to_string();
    match e {
        shmq::Error::Io(io) => PyErr::from(io),
        shmq::Error::NotFound(_) => PyFileNotFoundError::new_err(msg),
        shmq::Error::AlreadyExists(_) => PyFileExistsError::new_err(msg),
        shmq::Error::PermissionDenied(_) => PyPermissionError::new_err(msg),
        shmq::Error::InvalidName(_) | shmq::Error::InvalidArgument(_) => PyValueError::new_err(msg),
        shmq::Error::NoSpace { .. } => PyOSError::new_err((libc::ENOSPC, msg)),
        _ => os_error(msg),
    }
}

// ----- queues -----

pub(crate) fn closed_queue() -> PyErr {
    PyValueError::new_err("Queue is closed")
}

pub(crate) fn queue_send_error(e: SendError) -> PyErr {
    match e {
        SendError::Full | SendError::Timeout => Full::new_err(()),
        SendError::TooLarge { len, max } => PyValueError::new_err(format!(
            "object too large for this queue: {len} bytes pickled, at most {max} (slot_size x maxsize); \
             create the queue with a larger slot_size"
        )),
        SendError::Closed => closed_queue(),
        e => os_error(e.to_string()),
    }
}

pub(crate) fn queue_recv_error(e: RecvError) -> PyErr {
    match e {
        RecvError::Empty | RecvError::Timeout => Empty::new_err(()),
        RecvError::Closed => closed_queue(),
        e => os_error(e.to_string()),
    }
}

pub(crate) fn join_error(e: JoinError) -> PyErr {
    match e {
        JoinError::TooManyTaskDone => PyValueError::new_err("task_done() called too many times"),
        JoinError::NotJoinable => PyValueError::new_err("the queue is not joinable"),
        e => os_error(e.to_string()),
    }
}

// ----- pipes -----

pub(crate) fn closed_conn() -> PyErr {
    os_error("handle is closed")
}

/// A send on an end that only receives.
pub(crate) fn read_only() -> PyErr {
    os_error("connection is read-only")
}

/// A receive on an end that only sends.
pub(crate) fn write_only() -> PyErr {
    os_error("connection is write-only")
}

pub(crate) fn pipe_send_error(e: SendError) -> PyErr {
    match e {
        SendError::Closed => PyBrokenPipeError::new_err((libc::EPIPE, "Broken pipe")),
        SendError::WrongRole => read_only(),
        e => os_error(e.to_string()),
    }
}

pub(crate) fn pipe_recv_error(e: RecvError) -> PyErr {
    match e {
        RecvError::Closed => PyEOFError::new_err(()),
        RecvError::WrongRole => write_only(),
        e => os_error(e.to_string()),
    }
}
