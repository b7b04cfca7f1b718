//! Handing a segment to a child process: the descriptor survives `exec` and its number travels in
//! an environment variable, with the identity of the file it names (device and inode), so that a
//! child never takes an unrelated file that happens to have that number for the segment.

use crate::Error;
use std::fs::File;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;

/// The environment variable that carries segment `key` to a child.
pub fn env_var(key: &str) -> String {
    format!("SHMQ_FD_{key}")
}

/// The environment variable that carries the role a parent chose for a queue handed over as
/// `key` (`producer`, `consumer` or `both`).
pub fn role_var(key: &str) -> String {
    format!("SHMQ_ROLE_{key}")
}

/// The environment variable that carries the identity (`device:inode`) of the file shared as
/// `key`.
fn id_var(key: &str) -> String {
    format!("SHMQ_ID_{key}")
}

/// The `device:inode` of the file open as `fd`, if it is open.
fn identity(fd: RawFd) -> Option<String> {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor number with a valid, exclusively borrowed `stat`; it fails
    // cleanly (EBADF) if the number is not open.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then(|| format!("{}:{}", st.st_dev, st.st_ino))
}

/// Arranges for descriptor `fd` to stay open across `cmd`'s exec and tells the child its number
/// and the identity of its file. The caller keeps `fd` open until `cmd` has been spawned (a
/// [`Handover`](crate::Handover) does).
pub(crate) fn share_fd(cmd: &mut Command, fd: RawFd, key: &str) {
    cmd.env(env_var(key), fd.to_string());
    match identity(fd) {
        Some(id) => cmd.env(id_var(key), id),
        None => cmd.env_remove(id_var(key)),
    };
    // SAFETY: the closure runs in the child between fork and exec and only calls fcntl, which is
    // async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The descriptor a parent shared under `key`.
fn inherited_fd(key: &str) -> Result<RawFd, Error> {
    let var = env_var(key);
    let v = std::env::var(&var).map_err(|_| Error::NotInherited(var.clone()))?;
    v.parse::<RawFd>().ok().filter(|fd| *fd >= 0).ok_or(Error::NotInherited(var))
}

/// Refuses descriptor `fd` shared under `key` if it names another file than the parent shared,
/// or if no identity came with it ([`share_fd`] always sends one): a number alone could name any
/// file of this process.
fn check_identity(key: &str, fd: RawFd) -> Result<(), Error> {
    let refuse = |why: &str| Error::NotInherited(format!("{} ({why})", env_var(key)));
    let want = std::env::var(id_var(key)).map_err(|_| refuse("no identity came with it"))?;
    match identity(fd) {
        Some(id) if id == want => Ok(()),
        Some(_) => Err(refuse("it names another file than the one shared")),
        None => Err(refuse("not open")),
    }
}

/// The descriptor a parent shared under `key`, checked to name the file the parent shared, and
/// marked close-on-exec, so that processes started from now on do not inherit it. It stays open
/// (and not this process's to close: a parent that shares a descriptor it still uses, in the same
/// process, keeps it).
pub(crate) fn inherited_cloexec(key: &str) -> Result<RawFd, Error> {
    let fd = inherited_fd(key)?;
    if fd <= 2 {
        return Err(Error::NotInherited(format!("{} (a standard stream)", env_var(key))));
    }
    check_identity(key, fd)?;
    // SAFETY: fcntl F_SETFD with an int argument on a descriptor number; it fails cleanly (EBADF)
    // if the number is not open, and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(Error::NotInherited(format!("{} (not open)", env_var(key))));
    }
    Ok(fd)
}

/// Takes the descriptor a parent shared under `key` as this process's own file, and marks it
/// close-on-exec, so that processes started from now on do not inherit it. A descriptor is taken
/// at most once per process (a second call for it fails), never one of the standard streams, and
/// never one that names another file than the parent shared (its number reused after the parent
/// closed it too early).
pub(crate) fn take_inherited(key: &str) -> Result<File, Error> {
    /// Descriptors already taken: each becomes one `File`, and its number is never taken again
    /// (once that file is closed the number may name something else).
    static TAKEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());
    let fd = inherited_fd(key)?;
    let refuse = |why: &str| Error::NotInherited(format!("{} ({why})", env_var(key)));
    if fd <= 2 {
        return Err(refuse("a standard stream"));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if taken.contains(&fd) {
        return Err(refuse("already taken"));
    }
    check_identity(key, fd)?;
    // SAFETY: fcntl F_SETFD with an int argument on a descriptor number; it fails cleanly (EBADF)
    // if the number is not open, and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(refuse("not open"));
    }
    taken.push(fd);
    // SAFETY: `fd` is open (F_SETFD succeeded); the parent handed it to this process for shmq (its
    // number came in `key`'s variable), and `TAKEN` makes this the only `File` made of it here.
    Ok(unsafe { File::from_raw_fd(fd) })
}
