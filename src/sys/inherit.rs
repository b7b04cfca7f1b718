//! Handing a segment to a child process: the descriptor survives `exec` and its number travels in
//! an environment variable.

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

/// Arranges for descriptor `fd` to stay open across `cmd`'s exec and tells the child its number.
/// The caller keeps `fd` open until `cmd` has been spawned.
pub(crate) fn share_fd(cmd: &mut Command, fd: RawFd, key: &str) {
    cmd.env(env_var(key), fd.to_string());
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
pub(crate) fn inherited_fd(key: &str) -> Result<RawFd, Error> {
    let var = env_var(key);
    let v = std::env::var(&var).map_err(|_| Error::NotInherited(var.clone()))?;
    v.parse::<RawFd>().ok().filter(|fd| *fd >= 0).ok_or(Error::NotInherited(var))
}

/// Takes the descriptor a parent shared under `key` as this process's own file, and marks it
/// close-on-exec, so that processes started from now on do not inherit it. A descriptor is taken
/// at most once per process (a second call for it fails), and never one of the standard streams.
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
