//! The rows shmq is compared with: the hardware and kernel limits (raw atomics, raw futex), the
//! classic kernel channels (pipe, socketpair, eventfd, POSIX message queues), Python's
//! multiprocessing, in-process SPSC/MPMC rings (crossbeam `ArrayQueue`, `rtrb`) between
//! threads, and tokio's `mpsc` channel between two current-thread runtimes.
//!
//! Each latency row has a parent side (side A: send, wait for the reply, time it) and a child
//! side (side B: wait, reply), in the same place so the protocol reads as one.

use super::harness::{self, spin_until, time_rounds, ChildSpec, Deadline, Peer, Victim, Watchdog};
use super::{ChildArgs, Ctx, Measured, RowError};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: only called on descriptors just returned by the kernel and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

// ----- a page of shared memory with words on separate 128-byte lines -----

/// One page of `MAP_SHARED` memory from a memfd, seen as words 128 bytes apart.
pub struct SharedPage {
    map: MmapRaw,
    _file: File,
}

impl SharedPage {
    pub fn create() -> Result<SharedPage, String> {
        // SAFETY: a valid C string label and known flags.
        let fd = unsafe { libc::memfd_create(c"shmq-bench".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_err("memfd_create"));
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(4096).map_err(|e| format!("sizing memfd: {e}"))?;
        Self::map(file)
    }

    /// Maps the page a parent passed as descriptor `fd`.
    pub fn inherit(fd: RawFd) -> Result<SharedPage, String> {
        // SAFETY: the parent passed this descriptor for us to own; nothing else in this process
        // uses it.
        let file = unsafe { File::from_raw_fd(fd) };
        Self::map(file)
    }

    fn map(file: File) -> Result<SharedPage, String> {
        let map = MmapOptions::new().len(4096).map_raw(&file).map_err(|e| format!("mmap: {e}"))?;
        Ok(SharedPage { map, _file: file })
    }

    pub fn fd(&self) -> RawFd {
        self._file.as_raw_fd()
    }

    pub fn u64_at(&self, line: usize) -> &AtomicU64 {
        assert!(line < 4096 / 128);
        // SAFETY: the mapping is one page, page-aligned, alive as long as `self`; line * 128 is
        // inside it and 8-byte aligned. Every access to it is atomic, in both processes.
        unsafe { &*(self.map.as_ptr().add(line * 128) as *const AtomicU64) }
    }

    pub fn u32_at(&self, line: usize) -> &AtomicU32 {
        assert!(line < 4096 / 128);
        // SAFETY: as for `u64_at`, with 4-byte alignment.
        unsafe { &*(self.map.as_ptr().add(line * 128) as *const AtomicU32) }
    }
}

// ----- raw futex, without FUTEX_PRIVATE_FLAG (the word is shared between processes) -----

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts =
        libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: `word` is a live, aligned AtomicU32 in a shared mapping; `ts` outlives the call.
    // FUTEX_WAIT takes a relative timeout. Any return is re-checked by the caller.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, &ts as *const libc::timespec);
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: the address is only a key for the kernel's wait queue; no memory is accessed.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

/// Sleeps on `word` until it holds `want`: never spins, so every round trip sleeps on each side.
fn futex_wait_for(word: &AtomicU32, want: u32, give_up: impl Fn() -> bool) -> Result<(), String> {
    loop {
        let v = word.load(Ordering::Acquire);
        if v == want {
            return Ok(());
        }
        if give_up() {
            return Err(harness::ABORTED.into());
        }
        futex_wait(word, v, Duration::from_millis(100));
    }
}

// ----- fd rows: read and write exactly 8 bytes -----

fn write8(fd: RawFd, v: u64) -> Result<(), String> {
    let b = v.to_ne_bytes();
    // SAFETY: `b` is 8 readable bytes that outlive the call.
    let n = unsafe { libc::write(fd, b.as_ptr().cast(), 8) };
    if n == 8 {
        Ok(())
    } else {
        Err(os_err("write"))
    }
}

/// Reads 8 bytes (a stream may deliver them in pieces). EOF: the peer is gone.
fn read8(fd: RawFd) -> Result<u64, String> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        // SAFETY: the destination is the unfilled tail of `b`, 8 - got writable bytes.
        let n = unsafe { libc::read(fd, b[got..].as_mut_ptr().cast(), 8 - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 {
            return Err("peer closed its end".into());
        } else if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(os_err("read"));
        }
    }
    Ok(u64::from_ne_bytes(b))
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut p = [0; 2];
    // SAFETY: `p` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_err("pipe2"));
    }
    Ok((owned(p[0]), owned(p[1])))
}

fn eventfd() -> Result<OwnedFd, String> {
    // SAFETY: no pointers; known flags.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(os_err("eventfd"));
    }
    Ok(owned(fd))
}

/// Runs a ping-pong row: spawns side B with `spec`, arms the watchdog, times the rounds.
fn run_pingpong(
    ctx: &Ctx,
    spec: ChildSpec,
    share: impl FnOnce(&mut Command),
    after_spawn: impl FnOnce(),
    unblock: Option<Box<dyn FnOnce() + Send>>,
    mut round: impl FnMut(&AtomicBool, u64) -> Result<(), String>,
) -> Result<Measured, RowError> {
    let peer = Peer::spawn(&spec, share).map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
    after_spawn();
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Pid(peer.pid())], unblock);
    let timed = time_rounds(ctx.warmup, ctx.rounds, |i| round(dog.flag(), i));
    let fired = dog.disarm();
    let finished = peer.finish(Duration::from_secs(5));
    match (timed, fired) {
        (Ok(h), _) => {
            finished.map_err(RowError::Failed)?;
            Ok(Measured::Latency(h))
        }
        (Err(_), true) => Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout))),
        (Err(e), false) => Err(RowError::Failed(match finished {
            Err(c) => format!("{e} ({c})"),
            Ok(()) => e,
        })),
    }
}

mod inproc;
mod kernel;
mod limits;
mod peers;
mod python;
mod tokio_mpsc;

pub use inproc::*;
pub use kernel::*;
pub use limits::*;
#[allow(unused_imports)]
pub use peers::*;
pub use python::*;
pub use tokio_mpsc::*;

// ----- child dispatch for the rows in these files -----

/// Runs side B of a baseline row; `None` if the row is not one of these.
pub fn child(a: &ChildArgs, dl: Deadline) -> Option<Result<(), String>> {
    Some(match a.row.as_str() {
        "atomic-limit" => atomic_child(a, dl),
        "futex-limit" => futex_child(a, dl),
        "pipe(2)" => (|| echo_fds(a.fd(0)?, a.fd(1)?, a.rounds))(),
        "socketpair" => a.fd(0).and_then(|fd| echo_fds(fd, fd, a.rounds)),
        "posix-mq" => posix_mq_child(a),
        #[cfg(feature = "ipc-channel")]
        "ipc-channel" => ipc_channel_child(a),
        #[cfg(feature = "iceoryx2")]
        "iceoryx2" => iceoryx2_child(a, dl),
        "eventfd" => (|| {
            let (r, w) = (a.fd(0)?, a.fd(1)?);
            for _ in 0..a.rounds {
                read8(r)?;
                write8(w, 1)?;
            }
            Ok(())
        })(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_samples_are_parsed() {
        assert_eq!(parse_samples("{\"samples\": [1, 22,333]}"), Some(vec![1, 22, 333]));
        assert_eq!(parse_samples("{\"samples\": []}"), None);
        assert_eq!(parse_samples("garbage"), None);
    }
}
