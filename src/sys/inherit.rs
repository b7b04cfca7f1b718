//! Handing an anonymous segment to a child process: the descriptor survives `exec` and its number
//! travels in an environment variable.

use crate::Error;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

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
