//! OFD byte locks: how a process's liveness is observed.
//!
//! OFD locks belong to the open file description and are released by the kernel when its last
//! descriptor closes, in particular when the owning process dies. (Classic POSIX record locks
//! would be dropped when *any* descriptor of the file is closed, so they are not used.)
//!
//! Only write locks mean "alive". A write lock needs a descriptor open for writing, which only a
//! peer has; anyone who may read the file can take read locks, so read locks must neither look
//! like a live participant nor be mistaken for one: [`byte_is_locked`] asks the kernel about a
//! read lock, which conflicts with write locks only.

use crate::sys::shm::cvt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

fn flock_at(ty: libc::c_int, offset: i64) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value that we then fill in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Takes an OFD write lock on byte `offset` of `file` without waiting. `Ok(false)`: held elsewhere.
pub fn try_lock_byte(file: &File, offset: i64) -> io::Result<bool> {
    let mut fl = flock_at(libc::F_WRLCK, offset);
    // SAFETY: F_OFD_SETLK with a valid, exclusively borrowed flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Whether some other open file description holds a *write* lock on byte `offset` of `file`
/// (read locks, which any reader of the file can take, are not seen). Works on a descriptor
/// opened read-only.
pub fn byte_is_locked(file: &File, offset: i64) -> io::Result<bool> {
    // A read lock conflicts only with write locks, so F_OFD_GETLK reports only those.
    let mut fl = flock_at(libc::F_RDLCK, offset);
    // SAFETY: F_OFD_GETLK with a valid, exclusively borrowed flock; l_pid must be 0 for OFD.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_lock_is_seen_from_another_description() {
        let f = crate::sys::shm::create_sealed_memfd(4096).unwrap();
        let fd = f.as_raw_fd();
        let a = crate::sys::shm::reopen_fd(fd).unwrap();
        let b = crate::sys::shm::reopen_fd(fd).unwrap();
        assert!(!byte_is_locked(&b, 7).unwrap());
        assert!(try_lock_byte(&a, 7).unwrap());
        assert!(byte_is_locked(&b, 7).unwrap());
        assert!(!try_lock_byte(&b, 7).unwrap());
        drop(a);
        assert!(!byte_is_locked(&b, 7).unwrap());
    }

    #[test]
    fn a_read_lock_does_not_look_alive() {
        let f = crate::sys::shm::create_sealed_memfd(4096).unwrap();
        let fd = f.as_raw_fd();
        let reader = crate::sys::shm::reopen_fd(fd).unwrap();
        let probe = crate::sys::shm::reopen_fd(fd).unwrap();
        let mut fl = flock_at(libc::F_RDLCK, 0);
        // Length 0: to the end of any file, so every liveness byte.
        fl.l_len = 0;
        // SAFETY: F_OFD_SETLK with a valid, exclusively borrowed flock.
        assert_eq!(unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) }, 0);
        assert!(!byte_is_locked(&probe, 7).unwrap());
        // ...but it does keep a write lock out.
        assert!(!try_lock_byte(&probe, 7).unwrap());
    }
}
