//! `shmq._shmq`: the Rust half of the Python package `shmq` (the other half is
//! `python/shmq/__init__.py`), drop-ins for `multiprocessing`'s `Queue`, `JoinableQueue`,
//! `SimpleQueue` and `Pipe` on shmq's shared-memory rings.
//!
//! Only the library's public API is used. Two of its calls carry more than their names say:
//!
//! - A handle's descriptor is learnt from `share_with` (`hand_over` for pipe ends) on a `Command` that is never spawned: the
//!   library writes the descriptor's number (and, for a pipe end, which end it is) into the
//!   command's environment, and `Inherit` reads them back.
//! - A handle is opened from a descriptor with `from_env`, after setting those same variables in
//!   this process's environment (and removing them again). Queues open a new handle this way
//!   after a `fork()` and in processes that were handed the queue; pipe ends are adopted this way.
//!
//! A call that would block releases the GIL, retries for 20 µs yielding the CPU between tries
//! (`yield_spin`), then sleeps in slices of `SLICE`, checking for signals between them, so
//! that Ctrl-C interrupts it within about that long.
//!
//! Received messages are copied into a buffer that each pipe end and queue keeps from one receive
//! to the next, and unpickled from it through a memoryview (`loads`).

mod connection;
mod errors;
mod fd;
mod fork;
mod handover;
mod locks;
mod pickle;
mod pipe;
mod queue;
mod queue_core;
mod wait;

use pyo3::prelude::*;

#[pymodule]
fn _shmq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<queue::PyQueue>()?;
    m.add_class::<connection::PyConnection>()?;
    m.add_class::<pipe::PendingEnd>()?;
    m.add_function(wrap_pyfunction!(pipe::_pipe, m)?)?;
    m.add_function(wrap_pyfunction!(pipe::_end_from_fd, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_after_fork_child, m)?)?;
    m.add_function(wrap_pyfunction!(queue::unlink, m)?)?;
    m.add_function(wrap_pyfunction!(wait::_set_spin, m)?)?;
    m.add_function(wrap_pyfunction!(wait::_set_yield_us, m)?)?;
    m.add("DEFAULT_MAXSIZE", queue_core::DEFAULT_MAXSIZE)?;
    m.add("QUEUE_BYTES", queue_core::QUEUE_BYTES)?;
    m.add("MIN_SLOT", queue_core::MIN_SLOT)?;
    m.add("PIPE_CAPACITY", pipe::PIPE_CAPACITY)?;
    m.add("PIPE_SLOT", pipe::PIPE_SLOT)?;
    m.add("SLICE_SECONDS", wait::SLICE.as_secs_f64())?;
    m.add("LAYOUT_VERSION", shmq::LAYOUT_VERSION)?;
    Ok(())
}
