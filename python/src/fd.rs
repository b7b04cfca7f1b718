//! File descriptors: duplicating and reopening segments' descriptors close-on-exec, taking
//! descriptors handed to this process, and the numbers pipe ends are adopted under.

use crate::locks::gil_lock;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

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
pub(crate) fn reopen_cloexec(fd: RawFd) -> std::io::Result<OwnedFd> {
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
pub(crate) fn take_fd(fd: RawFd) -> PyResult<OwnedFd> {
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
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: fcntl F_GETFD on a descriptor number; fails cleanly if it is not open.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Descriptor numbers this process has given the library to adopt a pipe end with (see
/// [`fresh_fd`]). Locked with the GIL held only.
static ADOPTED_FDS: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// A close-on-exec duplicate of `fd` under a number this process never gave the library to adopt
/// a pipe end with: the library refuses a number it has already taken once in this process
/// (after it is closed the number may stand for anything). The caller hands it to the library.
pub(crate) fn fresh_fd(fd: RawFd) -> std::io::Result<RawFd> {
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
