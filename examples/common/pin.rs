//! Core pinning for benchmarks: shared by the examples (`#[path]`-included) and `shmq bench`.
#![allow(dead_code)] // each includer uses part of it

use std::io;

/// Pins the calling thread (and threads and processes it starts later) to one core.
pub fn pin_to(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `core` is below CPU_SETSIZE (checked above); `set` is a valid, owned cpu_set_t.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 means the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The cores this process may run on.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Vec::new();
    }
    (0..8 * std::mem::size_of::<libc::cpu_set_t>())
        // SAFETY: `c` is below CPU_SETSIZE; `set` was filled in by the kernel.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Online CPUs (not `available_parallelism`, which counts only the CPUs this process may use: a
/// child spawned after its parent pinned itself would see one).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system value.
    (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).max(1) as usize
}

/// Pins to `core` modulo the online CPUs, ignoring failure (examples run anywhere).
pub fn pin(core: usize) {
    let _ = pin_to(core % online_cpus());
}
