//! The waiter thread: one per process, serving every awaited doorbell, and a future's hold on it
//! ([`Registration`]).
//!
//! # Protocol
//! A future that would block registers on its doorbell ([`Registration::new`]): it announces
//! itself there (`waiters += 1`, then the sleeper side of the membarrier, exactly as
//! [`block_on`](crate::ring::doorbell::block_on) does), so that wakers make the `FUTEX_WAKE`,
//! and it takes an entry in the waiter's table. Each time it finds nothing to do it reads the
//! bell's `seq`, tries its operation once more, and if that fails too, parks: it leaves its
//! `Waker` and the `seq` it read in its entry ([`Registration::park`]). The announcement stays in
//! place from registration to drop, so one barrier covers every later re-check (a waker whose
//! publish the re-check misses sees the announcement, which is still there).
//!
//! The thread sleeps in one `futex_waitv` on a control word of its own, `ctl`, and on the bells of
//! the parked entries, each at the value it read under the table's lock. It wakes the `Waker` of
//! every parked entry whose bell's `seq` differs from the one the future read, and of every entry
//! parked for a slice ([`SLICE_NS`]): a woken future re-polls, and its non-blocking call looks
//! for dead peers when due (the handle's `IdleCheck`), so a death reaches an awaiting task within
//! the bound of a blocking call. Like a blocking sleeper, the thread sleeps on a bell only for a
//! parked future, which re-checks when woken; and it sleeps at most until the earliest slice end
//! of the parked entries.
//!
//! The table changes under its lock. A change the sleeping thread must see (a future parked on
//! a bell, or a value, that the thread does not sleep on; a parked future gone) bumps `ctl` under
//! the lock and wakes it: either the thread has not reached the kernel yet and the compare on
//! `ctl` fails, or it is woken. A future that parks on a bell and value the thread already sleeps
//! on (another task of the process waits there) costs no system call.
//!
//! # Memory
//! An entry's bell lies in a mapped segment that the registering future's handle keeps mapped
//! until the [`Registration`] drops ([`Registration::new`]'s contract). The thread reads a bell
//! only under the lock while its entry is in the table, and a registration removes its entry
//! under the lock when it drops, before its handle can let the segment go. The kernel may still
//! look at the address of a bell whose entry is gone (the thread's last `futex_waitv`): it reads
//! the word itself and reports an unmapped address as a fault, never touching this process's
//! memory otherwise ([`futex::wait_any_addrs`]).
//!
//! # Waking
//! A bell rung with `ring` wakes one sleeper, which may be this thread, standing for every task
//! of this process on that bell: the thread wakes all of them, and one takes the message. A
//! wake-up meant for one sleeper is never swallowed (NOTES: "re-wake on abandonment"):
//! - a registration dropped after its task was woken and before the task polled again (a
//!   cancelled future) passes the wake-up on with one more `ring`;
//! - a wake the thread takes on a bell where it wakes no task (the parked future was dropped
//!   meanwhile, or its re-check already came after the change) is passed on with one
//!   `FUTEX_WAKE` to the bell's next sleeper, unless the bell's word has not changed since the
//!   thread slept on it (a wake passed on by another process's waiter: handing it back could
//!   circle for ever).

use crate::ring::doorbell::{self, SLICE_NS};
use crate::segment::layout::DoorbellWords;
use crate::sys::atomic::Ordering;
use crate::sys::{clock, fork, futex, membarrier};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

/// How often the thread compares the bells it cannot sleep on: those beyond the first
/// `futex::WAITV_MAX - 1` distinct ones (one word is `ctl`).
const OVERFLOW_POLL_NS: u64 = 1_000_000;

/// The waiter of this process: its control word, its table, and the process it runs in.
pub(crate) struct Waiter {
    /// `{ generation }`: bumped under `table`'s lock when the sleeping thread must look at the
    /// table again, then woken. The thread sleeps on it beside the bells.
    ctl: AtomicU32,
    table: Mutex<Table>,
    /// The process whose thread serves this waiter: a forked child starts a waiter of its own.
    pid: u32,
}

#[derive(Default)]
struct Table {
    /// Registrations by index; `None`: free, its index in `free`.
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Whether the thread sleeps, or is about to, on `sleeping_on` (set under the lock just
    /// before it sleeps, cleared when it looks at the table again).
    parked: bool,
    /// `(address of a futex word, value)`: what the thread sleeps on, `ctl` first.
    sleeping_on: Vec<(usize, u32)>,
}

/// One registration's entry.
struct Entry {
    /// The address of the bell's futex word (`DoorbellWords::seq`); mapped while the entry is in
    /// the table (see the module docs).
    seq: usize,
    /// The task to wake; `None` while the future is not parked (registered and not parked yet,
    /// or woken by the thread and not polled since).
    waker: Option<Waker>,
    /// The `seq` the future read before its last attempt: a different value means the bell rang.
    seen: u32,
    /// [`clock::now`] when the future parked: it is woken a slice later whatever happens.
    since: u64,
    /// The thread woke the task because the bell rang, and the future has not parked since.
    woken: bool,
}

impl Table {
    fn entry(&mut self, index: usize) -> &mut Entry {
        self.entries[index].as_mut().expect("a live registration has its entry")
    }
}

/// The waiter of this process (`null`: none started yet). Waiters are never freed: a forked
/// child starts its own and leaves its parent's copy alone.
static CURRENT: AtomicPtr<Waiter> = AtomicPtr::new(std::ptr::null_mut());

/// This process's waiter, started on first use.
fn waiter() -> &'static Waiter {
    // ORDERING: Acquire, pairs with the AcqRel publication in `start`: the waiter is initialised.
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: `CURRENT` holds null or a waiter leaked by `start`, which is never freed.
    match unsafe { p.as_ref() } {
        Some(w) if !fork::maybe_forked(w.pid) => w,
        _ => start(p),
    }
}

/// Starts a waiter and its thread in place of `old` (none yet, or a forked parent's).
#[cold]
#[inline(never)]
fn start(old: *mut Waiter) -> &'static Waiter {
    let w = Box::into_raw(Box::new(Waiter { ctl: AtomicU32::new(0), table: Mutex::default(), pid: fork::pid() }));
    // ORDERING: AcqRel: Release publishes the initialised waiter (pairs with the Acquire load in
    // `waiter`); Acquire on failure sees the one another thread published.
    match CURRENT.compare_exchange(old, w, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: `w` came from `Box::into_raw` above and is never freed from now on.
            let w: &'static Waiter = unsafe { &*w };
            std::thread::Builder::new()
                .name("shmq-aio".into())
                .spawn(move || w.run())
                .expect("shmq: cannot start the async waiter thread");
            w
        }
        Err(_) => {
            // SAFETY: `w` came from `Box::into_raw` above and was never published: nobody else
            // has it.
            drop(unsafe { Box::from_raw(w) });
            waiter()
        }
    }
}

/// Registrations in this process's waiter table now (0 if no waiter was started).
pub(crate) fn registrations() -> usize {
    // ORDERING: Acquire, as in `waiter`.
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: as in `waiter`.
    match unsafe { p.as_ref() } {
        Some(w) if !fork::maybe_forked(w.pid) => w.lock().entries.iter().flatten().count(),
        _ => 0,
    }
}

impl Waiter {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic under the lock leaves the table consistent (every change is one assignment).
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread: look at the table, wake the tasks whose bell rang or whose slice is up, and
    /// sleep on `ctl` and the bells of the parked futures until one changes or the next slice
    /// ends.
    fn run(&self) {
        let mut words: Vec<(usize, u32)> = Vec::new();
        let mut wake: Vec<Waker> = Vec::new();
        // The bell word whose wake ended the last sleep, and the value slept on.
        let mut woken_by: Option<(usize, u32)> = None;
        loop {
            let (deadline, pass_on) = {
                let mut t = self.lock();
                let t = &mut *t;
                let now = clock::now();
                t.sleeping_on.clear();
                // ORDERING: Relaxed: `ctl` changes only under the lock we hold.
                t.sleeping_on.push((self.ctl.as_ptr() as usize, self.ctl.load(Ordering::Relaxed)));
                let mut next: Option<u64> = None;
                let (mut overflow, mut used, mut rang) = (false, false, None);
                for e in t.entries.iter_mut().flatten() {
                    let by_this = woken_by.filter(|&(a, _)| a == e.seq);
                    if e.waker.is_none() && by_this.is_none() {
                        continue;
                    }
                    // SAFETY: the entry is in the table, so its registration lives and its
                    // handle keeps the bell mapped (module docs, "Memory"); we hold the lock.
                    let seq = unsafe { &*(e.seq as *const AtomicU32) };
                    // ORDERING: Acquire, pairs with the Release bump in `doorbell::wake`. SYNC
                    // POINT: doorbell: a task woken for this change sees what was published first.
                    let cur = seq.load(Ordering::Acquire);
                    if let Some((_, slept)) = by_this {
                        rang = Some(cur != slept);
                    }
                    if e.waker.is_none() {
                        continue;
                    }
                    let slice_end = e.since.saturating_add(SLICE_NS);
                    if cur != e.seen || now >= slice_end {
                        wake.extend(e.waker.take());
                        // Only a rung bell is a wake-up to pass on if the future is dropped
                        // unpolled; the end of a slice is this process's own business.
                        e.woken = cur != e.seen;
                        used |= by_this.is_some() && e.woken;
                        continue;
                    }
                    next = Some(next.map_or(slice_end, |n| n.min(slice_end)));
                    if !t.sleeping_on.iter().any(|&(a, _)| a == e.seq) {
                        if t.sleeping_on.len() < futex::WAITV_MAX {
                            t.sleeping_on.push((e.seq, cur));
                        } else {
                            overflow = true;
                        }
                    }
                }
                if overflow {
                    let poll = now.saturating_add(OVERFLOW_POLL_NS);
                    next = Some(next.map_or(poll, |n| n.min(poll)));
                }
                t.parked = true;
                words.clone_from(&t.sleeping_on);
                // A bell's wake wakes one sleeper, and this thread took it. If it woke no task
                // here (the one it slept for was dropped, or had seen the change already), it
                // was another sleeper's: pass it on. Not when the word is unchanged: that was
                // itself a passed-on wake, and passing it back could go round for ever.
                let pass_on = woken_by.filter(|_| !used && rang != Some(false)).map(|(a, _)| a);
                (next, pass_on)
            };
            // Outside the lock: a waker may run code of the executor's. One that panics must not
            // stop the thread that every awaiting task of the process depends on.
            for w in wake.drain(..) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
            }
            if let Some(addr) = pass_on {
                futex::wake_addr(addr, 1);
            }
            woken_by = futex::wait_any_addrs(&words, deadline).filter(|&i| i > 0).and_then(|i| words.get(i).copied());
            self.lock().parked = false;
        }
    }
}

/// A future's hold on the waiter for one doorbell: announced on the bell (`waiters += 1`) and
/// entered in the waiter's table from [`Registration::new`] until it drops, which undoes both
/// (so the `waiters` counts stay balanced however the future ends).
pub(crate) struct Registration {
    waiter: &'static Waiter,
    bell: NonNull<DoorbellWords>,
    index: usize,
    /// The future completed: a wake-up it was given has been used.
    used: bool,
}

// SAFETY: `bell` points into a shared mapping and is only used through its atomics; the waiter is
// `Sync` (a mutex and an atomic). A registration can move to another thread with its future.
unsafe impl Send for Registration {}
// SAFETY: as for `Send`: `&Registration` only reads `bell`'s atomics and takes the waiter's lock.
unsafe impl Sync for Registration {}

impl Registration {
    /// Announces a future on `bell` and enters it in this process's waiter table (starting the
    /// waiter on first use).
    ///
    /// # Safety
    /// `bell` must stay mapped until the registration drops: the caller borrows or owns the
    /// handle whose segment holds it for that long, and drops the registration first.
    pub(crate) unsafe fn new(bell: NonNull<DoorbellWords>) -> Registration {
        let waiter = waiter();
        // SAFETY: mapped, by the caller's contract.
        let b = unsafe { bell.as_ref() };
        let index = {
            let mut t = waiter.lock();
            let e = Entry { seq: b.seq.as_ptr() as usize, waker: None, seen: 0, since: 0, woken: false };
            match t.free.pop() {
                Some(i) => {
                    t.entries[i] = Some(e);
                    i
                }
                None => {
                    t.entries.push(Some(e));
                    t.entries.len() - 1
                }
            }
        };
        b.waiters.fetch_add(1, Ordering::SeqCst);
        // ORDERING: a full barrier (and, for light wakers, one on every CPU running one) between
        // the announcement and every later re-check; pairs with `doorbell::ring`. SYNC POINT:
        // doorbell.
        membarrier::sleeper_side();
        Registration { waiter, bell, index, used: false }
    }

    fn bell(&self) -> &DoorbellWords {
        // SAFETY: mapped until this registration drops (the contract of `new`).
        unsafe { self.bell.as_ref() }
    }

    /// The bell's `seq`, to read before each re-check and to park with.
    pub(crate) fn seq(&self) -> u32 {
        // ORDERING: Acquire, pairs with the Release bump in `doorbell::wake`: a re-check after a
        // bump we read sees what was published before it.
        self.bell().seq.load(Ordering::Acquire)
    }

    /// Leaves `waker` to be woken when the bell's `seq` is no longer `seen` (or a slice from now).
    pub(crate) fn park(&self, waker: &Waker, seen: u32) {
        let w = self.waiter;
        let mut t = w.lock();
        let e = t.entry(self.index);
        match &mut e.waker {
            Some(old) => old.clone_from(waker),
            None => e.waker = Some(waker.clone()),
        }
        e.seen = seen;
        e.since = clock::now();
        e.woken = false;
        let seq = e.seq;
        // The thread sleeps on this bell at this value already (for another parked entry), and
        // wakes by that entry's slice end, before this one's: nothing to tell it.
        let kick = t.parked && !t.sleeping_on.contains(&(seq, seen));
        if kick {
            t.parked = false;
            // ORDERING: Relaxed: read by the thread under the lock, or compared by the kernel,
            // whose futex bucket lock orders the compare with our wake below.
            w.ctl.fetch_add(1, Ordering::Relaxed);
        }
        drop(t);
        if kick {
            futex::wake(&w.ctl, 1);
        }
    }

    /// The future completed: drop without passing a wake-up on.
    pub(crate) fn done(mut self) {
        self.used = true;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if fork::maybe_forked(self.waiter.pid) {
            // A copy made by fork(): the announcement and the entry are the parent's.
            return;
        }
        let (woken, kick) = {
            let mut t = self.waiter.lock();
            let e = t.entry(self.index);
            let (woken, waiting, seq) = (e.woken, e.waker.is_some(), e.seq);
            t.entries[self.index] = None;
            t.free.push(self.index);
            // The thread may sleep on this bell for this entry alone: have it look again, so
            // that it does not take a wake-up meant for another sleeper with nobody to give it to.
            let kick = waiting && t.parked && t.sleeping_on.iter().any(|&(a, _)| a == seq);
            if kick {
                t.parked = false;
                // ORDERING: Relaxed, as in `park`.
                self.waiter.ctl.fetch_add(1, Ordering::Relaxed);
            }
            (woken, kick)
        };
        if kick {
            futex::wake(&self.waiter.ctl, 1);
        }
        let bell = self.bell();
        // ORDERING: Relaxed, as in `block_on`: a waker that still sees us makes one needless wake.
        bell.waiters.fetch_sub(1, Ordering::Relaxed);
        if woken && !self.used {
            // Woken and cancelled before it looked: the wake-up may have been the only one for
            // a message another sleeper now waits for. Pass it on.
            doorbell::ring(bell);
        }
    }
}
