//! Surviving a peer that truncates a named segment: one process-wide `SIGBUS` handler.
//!
//! A named segment is a file in `/dev/shm` that every peer opens for writing, so every peer can
//! `ftruncate` it, and an access to a page of a mapping beyond the file's new end raises `SIGBUS`,
//! which by default kills the process. (Anonymous segments are memfds sealed against shrinking
//! and growing; they need none of this.)
//!
//! As Wayland compositors do for their clients' buffers, the library installs one `SIGBUS`
//! handler for the process ([`register`] installs it on first use). When the faulting address lies
//! in a registered mapping, the handler maps private anonymous zero pages over the whole mapping
//! (`mmap(MAP_FIXED)`), marks the mapping poisoned and returns; the faulting instruction is retried
//! and reads zeros. From then on this process no longer shares that memory with anyone, and the
//! segment layer reports the segment as broken on the paths that check ([`Guard::poisoned`]).
//! Every other `SIGBUS` — a fault outside our mappings, or one sent with `kill` — goes to the
//! disposition that was in place before ours: the previous handler (Rust's own stack-overflow
//! handler, say), or the default action, which kills the process.
//!
//! The handler is async-signal-safe: it reads a fixed table of atomics, calls `mmap` (on Linux a
//! plain system call, as the Wayland compositors rely on), and allocates and locks nothing. It
//! saves and restores `errno`. An entry's address and length are written under a sequence count
//! (a seqlock), so the handler never pairs one mapping's address with another's length.
//!
//! Limits: at most [`SLOTS`] guarded mappings at a time in one process; a program that replaces
//! the `SIGBUS` disposition afterwards without chaining to ours loses the protection; a fault
//! handled while another thread of this process is inside a multi-step operation on the same
//! segment leaves that operation working on zeros (the segment is reported broken either way).

use std::ffi::{c_int, c_void};
use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Mappings that can be guarded at once in one process.
pub const SLOTS: usize = 1024;

/// One registered mapping.
struct Slot {
    /// Taken by [`register`] (CAS `false → true`), given back when its [`Guard`] drops.
    taken: AtomicBool,
    /// Sequence count of `base` and `len`: odd while they are being written.
    seq: AtomicUsize,
    /// Start of the mapping.
    base: AtomicUsize,
    /// Length of the mapping; 0: no mapping.
    len: AtomicUsize,
    /// Set by the handler once it has replaced the mapping with zero pages.
    poisoned: AtomicBool,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            taken: AtomicBool::new(false),
            seq: AtomicUsize::new(0),
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Writes `base` and `len` (the slot is taken, so this is the only writer).
    fn write(&self, base: usize, len: usize) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // ORDERING: Release fence after making the count odd: a reader that sees either new field
        // also sees the odd count on its second look (pairs with the Acquire fence in `read`).
        fence(Ordering::Release);
        self.base.store(base, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        // ORDERING: Release, pairs with the Acquire load of `seq` in `read`: a reader that sees
        // this even count sees both fields written before it.
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The mapping, if the slot holds one and was not being rewritten while we read it.
    fn read(&self) -> Option<(usize, usize)> {
        for _ in 0..4 {
            // ORDERING: Acquire, pairs with the Release store of the even count in `write`.
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 % 2 == 1 {
                continue;
            }
            let base = self.base.load(Ordering::Relaxed);
            let len = self.len.load(Ordering::Relaxed);
            // ORDERING: Acquire fence, pairs with the Release fence in `write`: if either field
            // came from a write in progress, the second load of `seq` sees its odd count.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return (len != 0).then_some((base, len));
            }
        }
        // Rewritten under us: a mapping being registered or dropped right now is not being
        // accessed, so it cannot be the one that faulted.
        None
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// Set once the handler has poisoned any mapping: the check in [`Guard::poisoned`] is one relaxed
/// load until then.
static ANY_POISONED: AtomicBool = AtomicBool::new(false);

/// The disposition of `SIGBUS` before ours, saved before ours is installed.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// The outcome of installing the handler (the OS error number if it failed).
static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();

/// The mapping `[base, base + len)` could not be guarded.
#[derive(Debug)]
pub enum RegisterError {
    /// Every slot of the table is in use.
    Full,
    /// The handler could not be installed.
    Io(io::Error),
}

/// A registered mapping: the handler repairs faults in it while this lives.
///
/// Drop it before the mapping is unmapped.
pub struct Guard {
    slot: &'static Slot,
}

impl Guard {
    /// Whether the handler has replaced this mapping with zero pages (its file was truncated, or
    /// a page could not be allocated). Two relaxed loads.
    #[inline]
    pub fn poisoned(&self) -> bool {
        // ORDERING: Relaxed: the flags publish no data. The thread that faulted set them before
        // its faulting access completed (program order); other threads see them eventually,
        // and until then read the same zeros.
        ANY_POISONED.load(Ordering::Relaxed) && self.slot.poisoned.load(Ordering::Relaxed)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.slot.write(0, 0);
        // ORDERING: Relaxed: published to the slot's next owner by the Release store below.
        self.slot.poisoned.store(false, Ordering::Relaxed);
        // ORDERING: Release, pairs with the Acquire CAS in `register`: the next owner of the slot
        // starts after our writes.
        self.slot.taken.store(false, Ordering::Release);
    }
}

/// Guards the mapping `[base, base + len)` (`len > 0`), installing the handler on first use.
pub fn register(base: usize, len: usize) -> Result<Guard, RegisterError> {
    debug_assert!(len > 0);
    install().map_err(RegisterError::Io)?;
    for slot in TABLE.iter() {
        if slot.taken.load(Ordering::Relaxed) {
            continue;
        }
        // ORDERING: Acquire, pairs with the Release store in `Guard::drop`.
        if slot.taken.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            // ORDERING: Relaxed: written before `write` publishes the mapping (Release), which
            // is what makes the slot visible to the handler.
            slot.poisoned.store(false, Ordering::Relaxed);
            slot.write(base, len);
            return Ok(Guard { slot });
        }
    }
    Err(RegisterError::Full)
}

fn install() -> io::Result<()> {
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: all-zero is a valid `sigaction` (no handler, empty mask, no flags).
        let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: sigaction with a null new action only reads the current one into `prev`.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut prev) } != 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
        }
        // Saved before ours is installed, so the handler always finds it.
        let _ = PREVIOUS.set(prev);
        // SAFETY: as above.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_sigbus as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `act.sa_mask` is a valid sigset_t to initialise; `act` is a complete action
        // whose handler has the three-argument signature SA_SIGINFO calls.
        let r = unsafe {
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
        }
        Ok(())
    });
    r.map_err(io::Error::from_raw_os_error)
}

/// The handler. Async-signal-safe: atomics, `mmap`, `sigaction`, `raise` and the previous
/// handler, nothing else.
extern "C" fn on_sigbus(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: __errno_location returns this thread's errno, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo_t (or null, checked there).
    if !unsafe { repair(info) } {
        // SAFETY: delegated: the arguments are the ones the kernel passed us.
        unsafe { chain(sig, info, ctx) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Whether `info` is a fault (not a signal sent by a process).
///
/// # Safety
/// `info` is null or points to a valid siginfo_t.
unsafe fn is_fault(info: *const libc::siginfo_t) -> bool {
    // SAFETY: delegated to the caller; si_code is set for every signal.
    !info.is_null() && unsafe { (*info).si_code } > 0
}

/// Replaces the registered mapping that holds the faulting address with zero pages. `false`: the
/// fault is not in a registered mapping (or the replacement failed).
///
/// # Safety
/// `info` is null or the valid siginfo_t of a `SIGBUS`.
unsafe fn repair(info: *const libc::siginfo_t) -> bool {
    // SAFETY: delegated to the caller.
    if !unsafe { is_fault(info) } {
        return false;
    }
    // SAFETY: for a fault, si_addr is the union member the kernel filled in.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in TABLE.iter() {
        let Some((base, len)) = slot.read() else { continue };
        if addr.wrapping_sub(base) >= len {
            continue;
        }
        // SAFETY: `[base, base + len)` is a mapping this library made and still owns (its Guard
        // lives: the slot holds it); replacing it with a private anonymous mapping of the same
        // size keeps every pointer into it valid. MAP_NORESERVE: zero pages cost nothing until
        // written.
        let p = unsafe {
            libc::mmap(
                base as *mut c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        // ORDERING: Relaxed, as read in `Guard::poisoned`.
        slot.poisoned.store(true, Ordering::Relaxed);
        ANY_POISONED.store(true, Ordering::Relaxed);
        return true;
    }
    false
}

/// Hands a `SIGBUS` that is not ours to the disposition that was in place before ours.
///
/// # Safety
/// The arguments are those the kernel passed to our handler.
unsafe fn chain(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: delegated to the caller.
    let fault = unsafe { is_fault(info) };
    let prev = PREVIOUS.get();
    let handler = prev.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler == libc::SIG_IGN && !fault {
        return; // ignored, as it would have been without us
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // The default action: restore it. A fault happens again when the instruction is retried
        // on return; a signal sent by a process is raised again, and delivered on return (it is
        // blocked while we run).
        // SAFETY: all-zero is a valid `sigaction`; SIG_DFL is 0. sigaction and raise are
        // async-signal-safe.
        unsafe {
            let dfl: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            if !fault {
                libc::raise(libc::SIGBUS);
            }
        }
        return;
    }
    let flags = prev.map_or(0, |p| p.sa_flags);
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous disposition is a three-argument handler (SA_SIGINFO), called with
        // the arguments the kernel gave us.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) = unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the previous disposition is a one-argument handler.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_fault_in_a_registered_mapping_reads_zeros_and_poisons_it() {
        // SAFETY: a valid C string label and a known flag.
        let fd = unsafe { libc::memfd_create(c"shmq-sigbus-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` was just returned and is owned by nobody else.
        let f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        f.set_len(8192).unwrap();
        let map = memmap2::MmapOptions::new().len(8192).map_raw(&f).unwrap();
        let base = map.as_mut_ptr();
        // SAFETY: the mapping is 8192 bytes long and not shared with anyone else yet.
        unsafe { base.add(4096).write_volatile(7) };
        let guard = register(base as usize, 8192).unwrap();
        assert!(!guard.poisoned());
        // SAFETY: ftruncate on a memfd we own.
        assert_eq!(unsafe { libc::ftruncate(f.as_raw_fd(), 0) }, 0);
        // SAFETY: in bounds of the mapping; the page is gone from the file, so this faults and the
        // handler maps zeros over it.
        let v = unsafe { base.add(4096).read_volatile() };
        assert_eq!(v, 0);
        assert!(guard.poisoned());
        // The replacement is private, writable memory.
        // SAFETY: in bounds of the (replaced) mapping.
        unsafe { base.write_volatile(1) };
        drop(guard);
        drop(map);
    }
}
