//! Blocking calls: time limits, the slices a wait is cut into (signals are checked between them),
//! and the tuning of the library's busy-polling and of [`yield_spin`].

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a blocking call waits with the GIL released before it checks for signals.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Busy-poll iterations of the library's blocking calls before they sleep (see [`_set_spin`]).
static SPIN: AtomicU32 = AtomicU32::new(DEFAULT_SPIN);
const DEFAULT_SPIN: u32 = 0;

/// How long a call that would block first retries, yielding the CPU between tries, before it
/// sleeps (see [`yield_spin`]), in microseconds.
static YIELD_US: AtomicU32 = AtomicU32::new(DEFAULT_YIELD_US);
const DEFAULT_YIELD_US: u32 = 20;

/// Sets how long a call that would block retries, yielding the CPU, before it sleeps (tuning).
#[pyfunction]
pub(crate) fn _set_yield_us(us: u32) {
    YIELD_US.store(us, Ordering::Relaxed);
}

/// Retries `attempt` (a non-blocking call: `None` for "nothing yet") for up to `YIELD_US`,
/// yielding the CPU between tries; `None` if it never succeeded. Call it with the GIL released.
///
/// A peer that answers within microseconds is caught without a sleep and a wake-up. Unlike a
/// busy spin, the yield hands the CPU to the peer when it waits for this very CPU (a loaded
/// machine), and returns at once when nobody else wants it.
pub(crate) fn yield_spin<T>(mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let budget = Duration::from_micros(YIELD_US.load(Ordering::Relaxed) as u64);
    if budget.is_zero() {
        return None;
    }
    let start = Instant::now();
    loop {
        std::thread::yield_now();
        if let Some(v) = attempt() {
            return Some(v);
        }
        if start.elapsed() >= budget {
            return None;
        }
    }
}

/// The busy-poll iterations to give a handle opened now (see [`_set_spin`]).
pub(crate) fn spin() -> u32 {
    SPIN.load(Ordering::Relaxed)
}

/// Sets the busy-poll iterations of blocking calls on handles opened from now on (tuning).
#[pyfunction]
pub(crate) fn _set_spin(n: u32) {
    SPIN.store(n, Ordering::Relaxed);
}

/// Time limits as multiprocessing takes them: `None` waits forever, a negative number is 0, and
/// one too far away to represent is as good as forever.
pub(crate) fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else { return Ok(None) };
    if t.is_nan() {
        return Err(PyValueError::new_err("timeout must be a number, not NaN"));
    }
    Ok(Duration::try_from_secs_f64(t.max(0.0)).ok().and_then(|d| Instant::now().checked_add(d)))
}

/// The next slice to wait before `deadline` (`None`: the deadline has passed).
pub(crate) fn next_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(SLICE),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(SLICE))
        }
    }
}

/// Calls `attempt` with the next slice to wait (see [`next_slice`]) until it gives `Some`,
/// checking for signals and calling `check_open` after each attempt that gave `None`: `Some` with
/// what it gave, or `None` once `deadline` has passed. `attempt` releases the GIL for its wait.
pub(crate) fn wait_until<T>(
    py: Python<'_>,
    deadline: Option<Instant>,
    check_open: impl Fn() -> PyResult<()>,
    mut attempt: impl FnMut(Duration) -> Option<T>,
) -> PyResult<Option<T>> {
    loop {
        let Some(slice) = next_slice(deadline) else { return Ok(None) };
        if let Some(v) = attempt(slice) {
            return Ok(Some(v));
        }
        py.check_signals()?;
        check_open()?;
    }
}

/// [`wait_until`] without a deadline: calls `attempt` with [`SLICE`] until it gives `Some`.
pub(crate) fn wait<T>(
    py: Python<'_>,
    check_open: impl Fn() -> PyResult<()>,
    mut attempt: impl FnMut(Duration) -> Option<T>,
) -> PyResult<T> {
    loop {
        if let Some(v) = attempt(SLICE) {
            return Ok(v);
        }
        py.check_signals()?;
        check_open()?;
    }
}
