//! Futex wait and wake on a 32-bit word in memory shared between processes.
//!
//! Unlike Rust std and parking_lot, this never sets `FUTEX_PRIVATE_FLAG`: private futexes are keyed
//! by address space, so a wake from another process would never arrive.
//!
//! Deadlines are absolute `CLOCK_MONOTONIC` nanoseconds ([`crate::sys::clock::now`]), so a wait interrupted by a
//! signal and retried does not stretch its timeout. Callers treat every return as a hint and
//! re-check their condition: wake-ups may be spurious, and a hostile peer can wake us at will.
//!
//! Under `--cfg loom` the same interface is modelled with a loom mutex and condition variable,
//! which keeps the futex's "compare and sleep atomically" contract.

#[cfg(not(loom))]
use crate::sys::atomic::AtomicU32;

/// Sleeps while `*word == expected`, until woken or until `deadline` (absolute, see [`crate::sys::clock::now`]).
///
/// Returns `false` only if the deadline passed; `true` for anything else (woken, value already
/// changed, signal, spurious). The caller re-checks its condition either way.
#[cfg(not(loom))]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<u64>) -> bool {
    let ts;
    let ts_ptr = match deadline {
        Some(d) => {
            ts = libc::timespec {
                tv_sec: (d / 1_000_000_000) as libc::time_t,
                tv_nsec: (d % 1_000_000_000) as libc::c_long,
            };
            &ts as *const libc::timespec
        }
        None => std::ptr::null(),
    };
    // SAFETY: `word` is a live, 4-byte aligned AtomicU32 for the duration of the call; the
    // kernel only reads it. `ts_ptr` is null or points at `ts`, alive until the call returns.
    // FUTEX_WAIT_BITSET without FUTEX_CLOCK_REALTIME takes an absolute CLOCK_MONOTONIC time.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    !(r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// At most this many words can be waited on at once (the kernel's `FUTEX_WAITV_MAX`).
#[cfg(not(loom))]
pub const WAITV_MAX: usize = 128;

/// Sleeps while every `*word == expected` of `words` (at most [`WAITV_MAX`]), until one is woken
/// or changed, or until `deadline` (absolute [`crate::sys::clock::now`] nanoseconds).
///
/// Uses `futex_waitv` (Linux 5.16 and later); where the kernel lacks it, sleeps in 1 ms steps
/// while the values stay the same. Returns `false` only if the deadline passed; the caller
/// re-checks its conditions either way.
#[cfg(not(loom))]
pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<u64>) -> bool {
    let words = &words[..words.len().min(WAITV_MAX)];
    let addrs: Vec<(usize, u32)> = words.iter().map(|(w, v)| (w.as_ptr() as usize, *v)).collect();
    match waitv(&addrs, deadline) {
        Waitv::Woken(_) | Waitv::Returned => true,
        Waitv::TimedOut => false,
        Waitv::Unsupported => {
            let until = deadline.map_or(u64::MAX, |d| d);
            while words.iter().all(|(w, v)| w.load(std::sync::atomic::Ordering::Acquire) == *v) {
                if crate::sys::clock::now() >= until {
                    return false;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            true
        }
    }
}

/// As [`wait_any`], over the addresses of 32-bit futex words that may be unmapped by the time
/// the kernel looks at them (the async waiter thread's bells: it reads them only under its lock,
/// and a segment can be unmapped after it lets go). Only the kernel reads these words, and it
/// reports an unmapped one as a fault, returned here as a wake-up; a word whose address was
/// mapped again at worst keeps this sleep until the deadline or another word's wake. Where the
/// kernel lacks `futex_waitv`, sleeps 1 ms (or until the deadline) instead.
///
/// Returns the index of the word whose wake ended the sleep, when the kernel says so (`None`:
/// timed out, a value differed, a signal, a fault).
#[cfg(all(feature = "async", not(loom)))]
pub fn wait_any_addrs(words: &[(usize, u32)], deadline: Option<u64>) -> Option<usize> {
    match waitv(&words[..words.len().min(WAITV_MAX)], deadline) {
        Waitv::Woken(i) => Some(i),
        Waitv::Returned | Waitv::TimedOut => None,
        Waitv::Unsupported => {
            let now = crate::sys::clock::now();
            let step = deadline.map_or(1_000_000, |d| d.saturating_sub(now).min(1_000_000));
            std::thread::sleep(std::time::Duration::from_nanos(step));
            None
        }
    }
}

/// As [`wake`], by address: wakes up to `n` sleepers on the futex word at `addr`, which this
/// process need not have mapped any more (the kernel then reports a fault, ignored here; an
/// address mapped again to another shared word wakes its sleepers, a hint they re-check).
#[cfg(all(feature = "async", not(loom)))]
pub fn wake_addr(addr: usize, n: i32) {
    // SAFETY: FUTEX_WAKE does not access the memory: the kernel only turns the address into the
    // key of a wait queue, and reports an unmapped address as EFAULT.
    unsafe {
        libc::syscall(libc::SYS_futex, addr as *const u32, libc::FUTEX_WAKE, n);
    }
}

/// How a `futex_waitv` call ended.
#[cfg(not(loom))]
enum Waitv {
    /// Woken by a wake on the word of this index (read by `wait_any_addrs` only).
    Woken(#[cfg_attr(not(feature = "async"), allow(dead_code))] usize),
    /// A value differed, a signal, a fault: the caller re-checks.
    Returned,
    TimedOut,
    /// The kernel has no `futex_waitv` (before 5.16).
    Unsupported,
}

/// One `futex_waitv` call over `(address, expected)` pairs (at most [`WAITV_MAX`]).
#[cfg(not(loom))]
fn waitv(words: &[(usize, u32)], deadline: Option<u64>) -> Waitv {
    #[repr(C)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    const FUTEX2_SIZE_U32: u32 = 0x02;
    let waiters: Vec<FutexWaitv> = words
        .iter()
        .map(|&(addr, v)| FutexWaitv { val: v as u64, uaddr: addr as u64, flags: FUTEX2_SIZE_U32, reserved: 0 })
        .collect();
    let ts;
    let ts_ptr = match deadline {
        Some(d) => {
            ts = libc::timespec {
                tv_sec: (d / 1_000_000_000) as libc::time_t,
                tv_nsec: (d % 1_000_000_000) as libc::c_long,
            };
            &ts as *const libc::timespec
        }
        None => std::ptr::null(),
    };
    // SAFETY: `waiters` holds `words.len()` (<= 128, the callers' bound) entries, alive until the
    // call returns; the kernel reads the words they name itself (copy_from_user: an unmapped
    // address is EFAULT, never a fault in this process) and writes nothing. `ts_ptr` is null or
    // points at `ts`, alive until the call returns. Shared (not FUTEX2_PRIVATE) futexes, an
    // absolute CLOCK_MONOTONIC timeout.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0 as libc::c_uint,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return Waitv::Woken(r as usize);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ETIMEDOUT) => Waitv::TimedOut,
        Some(libc::ENOSYS) => Waitv::Unsupported,
        _ => Waitv::Returned,
    }
}

/// Wakes up to `n` processes sleeping on `word`.
#[cfg(not(loom))]
pub fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live AtomicU32; FUTEX_WAKE does not access the memory itself, it only
    // uses the address as the key of the wait queue.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n);
    }
}

#[cfg(loom)]
mod model {
    use crate::sys::atomic::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        static ref BUCKET: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    /// Deadlines are ignored: a model that would rely on a timeout to make progress deadlocks,
    /// which is exactly what loom should report.
    pub fn wait(word: &AtomicU32, expected: u32, _deadline: Option<u64>) -> bool {
        let guard = BUCKET.0.lock().unwrap();
        if word.load(Ordering::SeqCst) == expected {
            drop(BUCKET.1.wait(guard).unwrap());
        }
        true
    }

    pub fn wake(_word: &AtomicU32, _n: i32) {
        let _guard = BUCKET.0.lock().unwrap();
        BUCKET.1.notify_all();
    }
}

#[cfg(loom)]
pub use model::{wait, wake};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sys::clock::now;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn wait_returns_at_once_when_value_differs() {
        let w = AtomicU32::new(1);
        assert!(wait(&w, 0, Some(now() + 5_000_000_000)));
    }

    #[test]
    fn wait_times_out_at_the_deadline() {
        let w = AtomicU32::new(0);
        let start = now();
        assert!(!wait(&w, 0, Some(start + 20_000_000)));
        assert!(now() - start >= 20_000_000);
    }

    #[test]
    fn wake_releases_a_sleeper() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::SeqCst) == 0 {
                wait(&w2, 0, Some(now() + 10_000_000_000));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        w.store(1, Ordering::SeqCst);
        wake(&w, i32::MAX);
        t.join().unwrap();
    }
}
