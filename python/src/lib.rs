//! `shmq._shmq`: the Rust half of the Python package `shmq` (the other half is
//! `python/shmq/__init__.py`), drop-ins for `multiprocessing`'s `Queue`, `JoinableQueue`,
//! `SimpleQueue` and `Pipe` on shmq's shared-memory rings.
//!
//! Only the library's public API is used. Two of its calls carry more than their names say:
//!
//! - A handle's descriptor is learnt from `share_with` on a `Command` that is never spawned: the
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

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{
    PyAssertionError, PyBrokenPipeError, PyEOFError, PyFileExistsError, PyFileNotFoundError, PyOSError,
    PyPermissionError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};
use shmq::{Connection, JoinError, PipeBuilder, Queue, Receiver, RecvError, SendError, Sender};
use std::borrow::Cow;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::time::{Duration, Instant};

pyo3::import_exception!(queue, Full);
pyo3::import_exception!(queue, Empty);

/// How long a blocking call waits with the GIL released before it checks for signals.
const SLICE: Duration = Duration::from_millis(50);

/// `Queue(maxsize)` with `maxsize <= 0`: a shared ring cannot grow, so "unbounded" is this many.
const DEFAULT_MAXSIZE: usize = 16384;
/// Bytes a queue's ring is given when `slot_size` is not chosen: the slot size is this divided by
/// the capacity, within [`MIN_SLOT`]..=[`QUEUE_BYTES`]. It is also the largest object a queue
/// with the default slot size takes (larger ones need a larger `slot_size`).
const QUEUE_BYTES: usize = 4 << 20;
/// The smallest default slot size of a queue.
const MIN_SLOT: usize = 256;
/// Default slots of each direction of a `Pipe()`.
const PIPE_CAPACITY: usize = 1024;
/// Default slot size of a `Pipe()`.
const PIPE_SLOT: usize = 1024;

/// Busy-poll iterations of the library's blocking calls before they sleep (see [`_set_spin`]).
static SPIN: AtomicU32 = AtomicU32::new(DEFAULT_SPIN);
const DEFAULT_SPIN: u32 = 0;

/// How long a call that would block first retries, yielding the CPU between tries, before it
/// sleeps (see [`yield_spin`]), in microseconds.
static YIELD_US: AtomicU32 = AtomicU32::new(DEFAULT_YIELD_US);
const DEFAULT_YIELD_US: u32 = 20;

/// Sets how long a call that would block retries, yielding the CPU, before it sleeps (tuning).
#[pyfunction]
fn _set_yield_us(us: u32) {
    YIELD_US.store(us, Ordering::Relaxed);
}

/// Retries `attempt` (a non-blocking call: `None` for "nothing yet") for up to `YIELD_US`,
/// yielding the CPU between tries; `None` if it never succeeded. Call it with the GIL released.
///
/// A peer that answers within microseconds is caught without a sleep and a wake-up. Unlike a
/// busy spin, the yield hands the CPU to the peer when it waits for this very CPU (a loaded
/// machine), and returns at once when nobody else wants it.
fn yield_spin<T>(mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
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

fn spin() -> u32 {
    SPIN.load(Ordering::Relaxed)
}

/// Sets the busy-poll iterations of blocking calls on handles opened from now on (tuning).
#[pyfunction]
fn _set_spin(n: u32) {
    SPIN.store(n, Ordering::Relaxed);
}

/// The key under which handles travel through the environment (see [`Inherit`]).
const KEY: &str = "PYSHMQ";

// ----- small helpers -----

/// Locks a mutex that is only ever locked by a thread holding the GIL, and never across a release
/// of the GIL: it is never contended, and never held when this process forks (the forking thread
/// holds the GIL). A poisoned lock is used as it is: every state it guards is valid.
fn gil_lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks a mutex that other threads may hold while the GIL is released (a pipe end's half),
/// releasing the GIL while waiting for it.
fn lock_releasing<'a, T: Send>(py: Python<'_>, m: &'a Mutex<T>) -> MutexGuard<'a, T> {
    loop {
        match m.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| drop(m.lock())),
        }
    }
}

fn os_error(msg: impl Into<String>) -> PyErr {
    PyOSError::new_err(msg.into())
}

/// A library error from creating or opening a segment, as the Python exception closest to it.
fn open_error(e: shmq::Error) -> PyErr {
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

fn last_os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// A new close-on-exec descriptor of `fd`'s open file description, numbered `floor` or above.
fn dup_cloexec(fd: RawFd, floor: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl F_DUPFD_CLOEXEC with an int argument on a descriptor number; it fails cleanly
    // (EBADF) if the number is not open, and touches no memory.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
    if r < 0 {
        return Err(last_os_error());
    }
    // SAFETY: `r` is a descriptor fcntl just made, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Opens a new description of the file behind descriptor `fd` (through `/proc/self/fd`), read
/// and write, close-on-exec, numbered 3 or above.
fn reopen_cloexec(fd: RawFd) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{fd}"))?;
    dup_cloexec(file.as_raw_fd(), 3)
}

/// Takes descriptor `fd`, handed to this process (by `multiprocessing`), as its own, and marks it
/// close-on-exec so that programs this process starts do not inherit it.
fn take_fd(fd: RawFd) -> PyResult<OwnedFd> {
    if fd < 0 {
        return Err(PyValueError::new_err("invalid file descriptor"));
    }
    // SAFETY: fcntl F_SETFD with an int argument on a descriptor number; fails cleanly if closed.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(last_os_error().into());
    }
    // SAFETY: the descriptor is open (F_SETFD succeeded), and multiprocessing's `detach()` gave it
    // to the caller alone, who hands it to us: nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` is an open descriptor.
fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: fcntl F_GETFD on a descriptor number; fails cleanly if it is not open.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Descriptor numbers this process has given the library to adopt a pipe end with (see
/// [`fresh_fd`]). Locked with the GIL held only.
static ADOPTED_FDS: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// A close-on-exec duplicate of `fd` under a number this process never gave the library to adopt
/// a pipe end with: the library refuses a number it has already taken once in this process
/// (after it is closed the number may stand for anything). The caller hands it to the library.
fn fresh_fd(fd: RawFd) -> std::io::Result<RawFd> {
    let mut taken = gil_lock(&ADOPTED_FDS);
    let mut floor = 3;
    loop {
        let dup = dup_cloexec(fd, floor)?;
        let n = dup.as_raw_fd();
        if !taken.contains(&n) {
            taken.push(n);
            return Ok(dup.into_raw_fd());
        }
        floor = n + 1; // `dup` closes here; look above it
    }
}

/// Serialises the calls that set shmq's variables in this process's environment.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// How a handle travels: the variables `share_with` sets for a child (their names and values, one
/// of them the descriptor's number), and the key `from_env` finds them under.
#[derive(Clone, Debug)]
struct Inherit {
    key: String,
    /// The variable that holds the descriptor's number.
    fd_var: String,
    /// The other variables (a pipe end's identity), passed on verbatim.
    extras: Vec<(String, String)>,
}

impl Inherit {
    /// Reads what `share_with` wrote into `cmd` (never spawned): the descriptor and the rest.
    fn capture(cmd: &Command) -> PyResult<(Inherit, RawFd)> {
        let mut fd = None;
        let mut extras = Vec::new();
        for (name, value) in cmd.get_envs() {
            let (Some(name), Some(value)) = (name.to_str(), value.and_then(|v| v.to_str())) else { continue };
            match value.parse::<RawFd>() {
                Ok(n) if fd.is_none() && fd_is_open(n) => fd = Some((name.to_owned(), n)),
                _ => extras.push((name.to_owned(), value.to_owned())),
            }
        }
        let (fd_var, n) = fd.ok_or_else(|| os_error("shmq did not name the segment's descriptor"))?;
        Ok((Inherit { key: KEY.to_owned(), fd_var, extras }, n))
    }

    /// Runs `open` with the variables set as `share_with` set them for a child, but naming
    /// descriptor `fd` of this process; restores the environment afterwards.
    fn with_env<T>(&self, fd: RawFd, open: impl FnOnce(&str) -> T) -> T {
        let _g = gil_lock(&ENV_LOCK);
        let mut vars = vec![(self.fd_var.clone(), fd.to_string())];
        vars.extend(self.extras.iter().cloned());
        let saved: Vec<_> = vars.iter().map(|(k, _)| (k.clone(), std::env::var_os(k))).collect();
        for (k, v) in &vars {
            std::env::set_var(k, v);
        }
        let r = open(&self.key);
        for (k, old) in saved {
            match old {
                Some(v) => std::env::set_var(&k, v),
                None => std::env::remove_var(&k),
            }
        }
        r
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (self.key.clone(), self.fd_var.clone(), self.extras.clone()).into_pyobject(py)
    }

    fn from_py(t: &Bound<'_, PyAny>) -> PyResult<Inherit> {
        let (key, fd_var, extras): (String, String, Vec<(String, String)>) = t.extract()?;
        Ok(Inherit { key, fd_var, extras })
    }
}

/// Time limits as multiprocessing takes them: `None` waits forever, a negative number is 0, and
/// one too far away to represent is as good as forever.
fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else { return Ok(None) };
    if t.is_nan() {
        return Err(PyValueError::new_err("timeout must be a number, not NaN"));
    }
    Ok(Duration::try_from_secs_f64(t.max(0.0)).ok().and_then(|d| Instant::now().checked_add(d)))
}

/// The next slice to wait before `deadline` (`None`: the deadline has passed).
fn next_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(SLICE),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(SLICE))
        }
    }
}

// ----- pickling, and the bytes of a message -----

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Pickles `obj` as multiprocessing does (`shmq._dumps`: `ForkingPickler.dumps`' output, the
/// default protocol and the reducers multiprocessing registers).
fn dumps<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Payload<'py>> {
    let f = DUMPS.get_or_try_init(py, || -> PyResult<_> { Ok(py.import("shmq")?.getattr("_dumps")?.unbind()) })?;
    Payload::new(&f.bind(py).call1((obj,))?, true)
}

/// Unpickles a received message, and gives `data` back (`None` if it must be kept for good).
/// `pickle.loads` reads it through a memoryview (no copy into a `bytes` object: for a large
/// message that copy is an allocation, and with glibc's heap trimming often page faults); the view
/// is released before `data` is given back.
fn loads<'py, T: std::ops::Deref<Target = [u8]>>(py: Python<'py>, data: T) -> (PyResult<Bound<'py, PyAny>>, Option<T>) {
    let f = match LOADS.get_or_try_init(py, || -> PyResult<_> { Ok(py.import("pickle")?.getattr("loads")?.unbind()) }) {
        Ok(f) => f,
        Err(e) => return (Err(e), Some(data)),
    };
    let bytes: &[u8] = &data;
    // SAFETY: a read-only (PyBUF_READ) view of `bytes`, which stay alive and unchanged until the
    // view is released below, or forever if it cannot be.
    let view = unsafe {
        pyo3::ffi::PyMemoryView_FromMemory(
            bytes.as_ptr() as *mut std::ffi::c_char,
            bytes.len() as pyo3::ffi::Py_ssize_t,
            pyo3::ffi::PyBUF_READ,
        )
    };
    // SAFETY: PyMemoryView_FromMemory returns a new reference, or NULL with an exception set.
    let view = match unsafe { Bound::from_owned_ptr_or_err(py, view) } {
        Ok(v) => v,
        Err(e) => return (Err(e), Some(data)),
    };
    let r = f.bind(py).call1((&view,));
    // After release() nothing reads `bytes` through the view, whoever kept a reference to it. It
    // fails only while a buffer taken from the view is still held: then the bytes must outlive it.
    if view.call_method0("release").is_err() {
        std::mem::forget(data);
        return (r, None);
    }
    (r, Some(data))
}

/// The bytes of a message to send: a `bytes` object, or any C-contiguous buffer.
enum Payload<'py> {
    Bytes(Bound<'py, PyBytes>),
    /// `private`: nothing else can change it (the pickler's buffer).
    Buffer {
        buf: PyBuffer<u8>,
        private: bool,
    },
}

impl<'py> Payload<'py> {
    fn new(obj: &Bound<'py, PyAny>, private: bool) -> PyResult<Payload<'py>> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Payload::Bytes(b.clone()));
        }
        let buf = match PyBuffer::<u8>::get(obj) {
            Ok(b) => b,
            // A buffer of wider items (array('i'), ...): its bytes, as multiprocessing sends them.
            Err(_) => {
                let mv = obj.py().import("builtins")?.getattr("memoryview")?.call1((obj,))?;
                PyBuffer::<u8>::get(&mv.call_method1("cast", ("B",))?)?
            }
        };
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err("the buffer is not contiguous"));
        }
        Ok(Payload::Buffer { buf, private })
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Bytes(b) => b.as_bytes(),
            Payload::Buffer { buf, .. } => {
                if buf.len_bytes() == 0 {
                    return &[];
                }
                // SAFETY: the buffer is C-contiguous (checked in `new`), `len_bytes` long from
                // `buf_ptr`, and stays exported (so neither freed nor resized) while `self` lives.
                unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const u8, buf.len_bytes()) }
            }
        }
    }

    /// Bytes `range` of the message, for use while the GIL is released: a copy, unless nothing
    /// else can change them (a `bytes` object, or the pickler's buffer). A read-only view of a
    /// buffer can still change under it.
    fn stable(&self, range: std::ops::Range<usize>) -> Cow<'_, [u8]> {
        match self {
            Payload::Buffer { private: false, .. } => Cow::Owned(self.bytes()[range].to_vec()),
            _ => Cow::Borrowed(&self.bytes()[range]),
        }
    }
}

// ----- fork -----

/// Every live queue and pipe end of this process, for [`_after_fork_child`]. Locked with the GIL
/// held only.
static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

enum Registered {
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

fn register(r: Registered) {
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
fn _after_fork_child() {
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

// ----- queues -----

struct QueueCore {
    /// Locked with the GIL held only (see [`gil_lock`]).
    meta: Mutex<QueueMeta>,
    /// Set by `close()`; waits in progress see it within a slice.
    closed: AtomicBool,
    name: Option<String>,
    joinable: bool,
    capacity: usize,
    slot_size: usize,
    inherit: Inherit,
    /// A buffer to receive into, kept from one get to the next (see `PyQueue::give_back`).
    spare: Mutex<Vec<u8>>,
}

struct QueueMeta {
    /// This process's handle; `None` once closed, or until first use after a fork.
    queue: Option<Arc<Queue>>,
    /// A descriptor of the segment, to open handles from (after a fork) and to hand to children.
    anchor: Option<OwnedFd>,
}

impl QueueCore {
    fn new(queue: Queue, joinable: bool, anchor_from: Option<OwnedFd>) -> PyResult<Arc<QueueCore>> {
        let mut cmd = Command::new("shmq-handover");
        let handover = queue.share_with(&mut cmd, KEY);
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
    fn queue(&self) -> PyResult<Arc<Queue>> {
        let mut m = gil_lock(&self.meta);
        if let Some(q) = &m.queue {
            return Ok(q.clone());
        }
        let fd = match &m.anchor {
            Some(a) if !self.closed.load(Ordering::Relaxed) => a.as_raw_fd(),
            _ => return Err(closed_queue()),
        };
        let q =
            Arc::new(self.inherit.with_env(fd, |key| Queue::builder().spin(spin()).from_env(key)).map_err(open_error)?);
        m.queue = Some(q.clone());
        Ok(q)
    }

    fn check_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(closed_queue());
        }
        Ok(())
    }
}

fn closed_queue() -> PyErr {
    PyValueError::new_err("Queue is closed")
}

fn queue_send_error(e: SendError) -> PyErr {
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

fn queue_recv_error(e: RecvError) -> PyErr {
    match e {
        RecvError::Empty | RecvError::Timeout => Empty::new_err(()),
        RecvError::Closed => closed_queue(),
        e => os_error(e.to_string()),
    }
}

/// The sizes of a new queue: `(capacity, slot_size)`.
fn queue_geometry(maxsize: i64, slot_size: Option<usize>) -> PyResult<(usize, usize)> {
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

/// A queue in shared memory: the base of `shmq.Queue`, `shmq.JoinableQueue` and
/// `shmq.SimpleQueue` (see those for the documentation).
#[pyclass(name = "QueueBase", module = "shmq._shmq", subclass, frozen)]
struct PyQueue {
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
        loop {
            let Some(slice) = next_slice(deadline) else { return Ok(q.join_timeout(Duration::ZERO).is_ok()) };
            match py.detach(|| q.join_timeout(slice)) {
                Ok(()) => return Ok(true),
                Err(JoinError::Timeout) => {}
                Err(e) => return Err(join_error(e)),
            }
            py.check_signals()?;
            self.core.check_open()?;
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

fn join_error(e: JoinError) -> PyErr {
    match e {
        JoinError::TooManyTaskDone => PyValueError::new_err("task_done() called too many times"),
        JoinError::NotJoinable => PyValueError::new_err("the queue is not joinable"),
        e => os_error(e.to_string()),
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
        let q = inherit
            .with_env(anchor.as_raw_fd(), |key| Queue::builder().spin(spin()).from_env(key))
            .map_err(open_error)?;
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
        loop {
            let Some(slice) = next_slice(deadline) else { return Err(Full::new_err(())) };
            let r = py.detach(|| if large { q.put_large_timeout(m, slice) } else { q.put_timeout(m, slice) });
            match r {
                Ok(()) => return Ok(()),
                Err(SendError::Timeout) => {}
                Err(e) => return Err(queue_send_error(e)),
            }
            py.check_signals()?;
            self.core.check_open()?;
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
        loop {
            let Some(slice) = next_slice(deadline) else { return Err(Empty::new_err(())) };
            match py.detach(|| q.get_timeout(slice)) {
                Ok(m) => {
                    buf.clear();
                    buf.extend_from_slice(&m);
                    return Ok(buf);
                }
                Err(RecvError::Timeout) => {}
                Err(e) => return Err(queue_recv_error(e)),
            }
            py.check_signals()?;
            self.core.check_open()?;
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

// ----- pipes -----

/// One end of a pipe, shared by the Python objects for it (one) and the registry.
struct EndCore {
    /// Locked with the GIL held only (see [`gil_lock`]).
    state: Mutex<EndState>,
    /// Set by `close()`; waits in progress see it within a slice.
    closed: AtomicBool,
    readable: bool,
    writable: bool,
    /// Messages of this many bytes (the slot size) or more go in parts of exactly this many, and a
    /// shorter part (possibly empty) ends them: so any size crosses, whatever the ring's size, and
    /// the receiver puts them together in a buffer it keeps.
    chunk: usize,
    inherit: Inherit,
}

enum EndState {
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

enum FdHolder {
    /// The creator's hold on the end (it keeps the end alive until dropped).
    Handover(#[allow(dead_code)] shmq::Handover),
    /// A descriptor handed to this process.
    Fd(#[allow(dead_code)] OwnedFd),
}

/// The halves of an end this process has taken, each used by one thread at a time.
struct Halves {
    tx: Option<Mutex<TxHalf>>,
    rx: Option<Mutex<RxHalf>>,
}

struct TxHalf {
    s: Sender,
    /// A send was interrupted between the parts of a long message: the stream is unusable.
    broken: bool,
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
    fn look_for_dead_receiver(&mut self) {
        let now = Instant::now();
        if self.looked.is_none_or(|t| now.duration_since(t) >= LOOK_INTERVAL) {
            self.looked = Some(now);
            self.s.recover();
        }
    }
}

struct RxHalf {
    r: Receiver,
    /// The message being received (kept between calls: the parts of a long message whose
    /// receive was interrupted; and, empty, the buffer for the next message).
    partial: Vec<u8>,
}

/// The largest receive buffer a pipe end or a queue keeps for the next message.
const RETAIN: usize = 1 << 20;

fn closed_conn() -> PyErr {
    os_error("handle is closed")
}

fn pipe_send_error(e: SendError) -> PyErr {
    match e {
        SendError::Closed => PyBrokenPipeError::new_err((libc::EPIPE, "Broken pipe")),
        SendError::WrongRole => os_error("connection is read-only"),
        e => os_error(e.to_string()),
    }
}

fn pipe_recv_error(e: RecvError) -> PyErr {
    match e {
        RecvError::Closed => PyEOFError::new_err(()),
        RecvError::WrongRole => os_error("connection is write-only"),
        e => os_error(e.to_string()),
    }
}

impl EndCore {
    fn new(state: EndState, readable: bool, writable: bool, chunk: usize, inherit: Inherit) -> Arc<EndCore> {
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
    fn halves(&self) -> PyResult<Arc<Halves>> {
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

    fn check_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(closed_conn());
        }
        Ok(())
    }
}

/// Makes an end of a new pipe adoptable by whichever process first uses it.
fn unowned_end(conn: Connection, readable: bool, writable: bool, chunk: usize) -> PyResult<Arc<EndCore>> {
    let mut cmd = Command::new("shmq-handover");
    let handover = conn.share_with(&mut cmd, KEY);
    let (inherit, fd) = Inherit::capture(&cmd)?;
    let state = EndState::Unowned { fd, _holder: FdHolder::Handover(handover) };
    Ok(EndCore::new(state, readable, writable, chunk, inherit))
}

/// An end not yet wrapped in a Python `Connection` (from `_pipe` or `_end_from_fd`).
#[pyclass(name = "PendingEnd", module = "shmq._shmq", frozen)]
struct PendingEnd {
    core: Mutex<Option<Arc<EndCore>>>,
}

impl PendingEnd {
    fn wrap(core: Arc<EndCore>) -> PendingEnd {
        PendingEnd { core: Mutex::new(Some(core)) }
    }
}

/// Creates a pipe: `(end0, end1)` as `PendingEnd`s; one-way pipes give `(receiving, sending)`.
#[pyfunction]
#[pyo3(signature = (duplex=true, capacity=PIPE_CAPACITY, slot_size=PIPE_SLOT))]
fn _pipe(duplex: bool, capacity: usize, slot_size: usize) -> PyResult<(PendingEnd, PendingEnd)> {
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
fn _end_from_fd(fd: RawFd, state: &Bound<'_, PyTuple>) -> PyResult<PendingEnd> {
    let (inherit, readable, writable, chunk): (Bound<'_, PyAny>, bool, bool, usize) = state.extract()?;
    let inherit = Inherit::from_py(&inherit)?;
    let fd = take_fd(fd)?;
    let raw = fd.as_raw_fd();
    let state = EndState::Unowned { fd: raw, _holder: FdHolder::Fd(fd) };
    Ok(PendingEnd::wrap(EndCore::new(state, readable, writable, chunk.max(1), inherit)))
}

/// One end of a pipe: the base of `shmq.Connection` (see it for the documentation).
#[pyclass(name = "ConnectionBase", module = "shmq._shmq", subclass, frozen)]
struct PyConnection {
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
        let half = rx_half(&halves)?;
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
        let mut g = lock_releasing(py, rx_half(&halves)?);
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
        let half = halves.rx.as_ref().ok_or_else(|| os_error("connection is write-only"))?;
        let mut g = lock_releasing(py, half);
        let rx: &mut RxHalf = &mut g;
        if rx.r.poll(Some(Duration::ZERO)) {
            return Ok(true);
        }
        let deadline = deadline_of(timeout)?;
        loop {
            let Some(slice) = next_slice(deadline) else { return Ok(false) };
            if py.detach(|| rx.r.poll(Some(slice))) {
                return Ok(true);
            }
            py.check_signals()?;
            self.core.check_open()?;
        }
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
            return Err(os_error("connection is read-only"));
        }
        Ok(())
    }

    fn check_readable(&self) -> PyResult<()> {
        self.core.check_open()?;
        if !self.core.readable {
            return Err(os_error("connection is write-only"));
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
        let half = halves.tx.as_ref().ok_or_else(|| os_error("connection is read-only"))?;
        let mut g = lock_releasing(py, half);
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
        loop {
            match py.detach(|| s.send_timeout(m, SLICE)) {
                Ok(()) => return Ok(()),
                Err(SendError::Timeout) => {}
                Err(e) => return Err(pipe_send_error(e)),
            }
            py.check_signals()?;
            self.core.check_open()?;
        }
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
        loop {
            py.detach(|| r.poll(Some(SLICE)));
            if let Some(res) = take(r, partial) {
                return res.map_err(pipe_recv_error);
            }
            py.check_signals()?;
            self.core.check_open()?;
        }
    }
}

fn rx_half(h: &Halves) -> PyResult<&Mutex<RxHalf>> {
    h.rx.as_ref().ok_or_else(|| os_error("connection is write-only"))
}

/// Removes a named queue (`shmq.unlink("/name")`); named queues persist until removed.
#[pyfunction]
fn unlink(name: &str) -> PyResult<()> {
    shmq::unlink(name).map_err(open_error)
}

#[pymodule]
fn _shmq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyQueue>()?;
    m.add_class::<PyConnection>()?;
    m.add_class::<PendingEnd>()?;
    m.add_function(wrap_pyfunction!(_pipe, m)?)?;
    m.add_function(wrap_pyfunction!(_end_from_fd, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_child, m)?)?;
    m.add_function(wrap_pyfunction!(unlink, m)?)?;
    m.add_function(wrap_pyfunction!(_set_spin, m)?)?;
    m.add_function(wrap_pyfunction!(_set_yield_us, m)?)?;
    m.add("DEFAULT_MAXSIZE", DEFAULT_MAXSIZE)?;
    m.add("QUEUE_BYTES", QUEUE_BYTES)?;
    m.add("MIN_SLOT", MIN_SLOT)?;
    m.add("PIPE_CAPACITY", PIPE_CAPACITY)?;
    m.add("PIPE_SLOT", PIPE_SLOT)?;
    m.add("SLICE_SECONDS", SLICE.as_secs_f64())?;
    m.add("LAYOUT_VERSION", shmq::LAYOUT_VERSION)?;
    Ok(())
}
