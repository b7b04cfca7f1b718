//! Pickling, and the bytes of a message: [`dumps`] and [`loads`] as multiprocessing pickles,
//! and [`Payload`], the bytes a send takes from Python.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;
use std::borrow::Cow;

/// The largest receive buffer a pipe end or a queue keeps for the next message.
pub(crate) const RETAIN: usize = 1 << 20;

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Pickles `obj` as multiprocessing does (`shmq._dumps`: `ForkingPickler.dumps`' output, the
/// default protocol and the reducers multiprocessing registers).
pub(crate) fn dumps<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Payload<'py>> {
    let f = DUMPS.get_or_try_init(py, || -> PyResult<_> { Ok(py.import("shmq")?.getattr("_dumps")?.unbind()) })?;
    Payload::new(&f.bind(py).call1((obj,))?, true)
}

/// Unpickles a received message, and gives `data` back (`None` if it must be kept for good).
/// `pickle.loads` reads it through a memoryview (no copy into a `bytes` object: for a large
/// message that copy is an allocation, and with glibc's heap trimming often page faults); the view
/// is released before `data` is given back.
pub(crate) fn loads<'py, T: std::ops::Deref<Target = [u8]>>(
    py: Python<'py>,
    data: T,
) -> (PyResult<Bound<'py, PyAny>>, Option<T>) {
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
pub(crate) enum Payload<'py> {
    Bytes(Bound<'py, PyBytes>),
    /// `private`: nothing else can change it (the pickler's buffer).
    Buffer {
        buf: PyBuffer<u8>,
        private: bool,
    },
}

impl<'py> Payload<'py> {
    pub(crate) fn new(obj: &Bound<'py, PyAny>, private: bool) -> PyResult<Payload<'py>> {
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

    pub(crate) fn bytes(&self) -> &[u8] {
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
    pub(crate) fn stable(&self, range: std::ops::Range<usize>) -> Cow<'_, [u8]> {
        match self {
            Payload::Buffer { private: false, .. } => Cow::Owned(self.bytes()[range].to_vec()),
            _ => Cow::Borrowed(&self.bytes()[range]),
        }
    }
}
