//! Child processes tied to their parent's life.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child that `cmd` starts receive SIGKILL when the thread that spawned it exits
/// (`PR_SET_PDEATHSIG`), and exit at once if its parent is already gone by the time it starts.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: prctl, getppid and _exit are system calls, and it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect: then nobody would signal us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    };
}

/// Sends `signal` to process `pid` (a child of ours that has not been reaped, so the pid is not
/// reused meanwhile).
pub fn signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill takes integers only.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
