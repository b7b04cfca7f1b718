//! Sleeping until a ring changes, without a system call on the fast path.
//!
//! A [`DoorbellWords`] pair sits in the shared segment: a futex word `seq` and a `waiters` count.
//!
//! Sleeper ([`block_on`]): announce (`waiters += 1`), re-check the condition, then sleep on the
//! value of `seq` read *before* the re-check. Waker ([`ring`]): publish the change, then — only if
//! `waiters != 0` — bump `seq` and `FUTEX_WAKE`. With SeqCst fences between "write mine" and
//! "read theirs" on both sides, either the waker sees the announcement or the sleeper's re-check
//! sees the change; and if the waker bumps `seq` after the sleeper read it, the futex compare fails
//! and the sleeper does not sleep. So no wake-up is lost, and a producer whose consumers are all
//! awake pays one fence and one load, no system call.
//!
//! Every sleep is a bounded slice ([`SLICE_NS`]) after which the condition is re-checked: a wake
//! is a hint, and a peer that dies holding the wake-up must not strand us.
//!
//! # Noticing a dead peer
//! A peer that dies rings no bell. Each handle keeps an [`IdleCheck`]: the monotonic time of its
//! last look for dead peers. Only calls that are about to report "nothing to do" (empty, full,
//! timed out, a batch of 0) and sleepers before each slice consult it, and when the last look is
//! [`CHECK_INTERVAL_NS`] old or more they look again (crash recovery) and re-check their
//! condition once, so that the same call already reports what the death changed. The clock
//! belongs to the handle, not to one call: a program that polls with non-blocking calls or short
//! timeouts sees a death as soon as a blocked one does. Calls that succeed never read it.
//!
//! # The asymmetric barrier
//! A full fence on the waker's side would stall every publish until its store reaches the other
//! core: one cross-core trip added to every message. Where the kernel offers it, shmq moves that
//! cost to the sleeper instead (the slow path, about to make a system call anyway): each process
//! registers for `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`; a registered waker needs only a
//! compiler fence between its publish and its load of `waiters`, and a sleeper calls `membarrier`
//! after announcing itself and before re-checking, which runs a full barrier on every CPU that is
//! executing a registered process. Whichever side of that barrier the waker's instructions fall,
//! either its load of `waiters` sees the announcement or its publish is visible to the re-check
//! (the argument of liburcu and of folly's asymmetric fences). A process that cannot register
//! keeps the full fence. Loom models the fence protocol (it cannot model `membarrier`).

use crate::segment::layout::DoorbellWords;
use crate::sys::atomic::{fence, Ordering};
use crate::sys::{clock, futex, membarrier};

/// Polls of a spin phase per `sched_yield`. With more runnable processes than cores, the peer a
/// spinner waits for (a consumer to free a slot, a producer to fill one, a collector to drain a
/// second queue) may be waiting for this very core; spinning through the rest of the time slice
/// would only delay it. A yield lets it run, and returns at once when nothing else is runnable
/// here, so on dedicated cores it costs one system call per this many polls of an idle wait.
/// Yielding much more often breaks up pairs that stream across cores while their partners on the
/// same cores wait (docs/EXPERIMENTS.md, "Spinning waiters that yield").
pub const YIELD_EVERY: u32 = 128;

/// A spinner with a deadline nearer than this does not yield: the process it would let run may
/// keep the core for a whole time slice (a few milliseconds), which would overrun a short
/// timeout by as much.
pub const YIELD_MIN_LEFT_NS: u64 = 4_000_000;

/// Longest single futex sleep before the condition is re-checked regardless.
pub const SLICE_NS: u64 = 25_000_000;

/// Shortest time between two looks for dead peers by one handle ([`IdleCheck`]).
pub const CHECK_INTERVAL_NS: u64 = 10_000_000;

/// When a handle last looked for dead peers: the clock behind the detection bound (see the
/// module docs). Process-local, never in shared memory; `Sync`, so threads that share a queue
/// handle share its clock, and one of them starts each look.
pub(crate) struct IdleCheck {
    /// [`clock::coarse_now`] at the start of the last look (0: never looked). The coarse clock
    /// (a few milliseconds of resolution, a few nanoseconds to read) is enough to space looks
    /// [`CHECK_INTERVAL_NS`] apart, and keeps the idle polls of a busy loop cheap.
    last: std::sync::atomic::AtomicU64,
}

impl IdleCheck {
    /// A clock that has never looked: the first idle call looks at once.
    pub fn new() -> IdleCheck {
        IdleCheck { last: std::sync::atomic::AtomicU64::new(0) }
    }

    /// Whether a look is due (the last one started [`CHECK_INTERVAL_NS`] ago or more). If so,
    /// records now as the start of the next one: the caller then looks.
    pub fn due(&self) -> bool {
        self.is_due() && self.claim_look()
    }

    /// Whether a look is due, without recording anything (a poll's cheap first question).
    #[inline]
    pub fn is_due(&self) -> bool {
        // ORDERING: Relaxed, as in `claim_look`.
        clock::coarse_now().saturating_sub(self.last.load(std::sync::atomic::Ordering::Relaxed)) >= CHECK_INTERVAL_NS
    }

    /// Records now as the start of a look if one is still due (another thread of the handle may
    /// have started it meanwhile); `true` if this caller is to look.
    fn claim_look(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = clock::coarse_now();
        let last = self.last.load(Relaxed);
        // ORDERING: Relaxed: the clock only spaces out the looks; what a look finds is ordered by
        // the participant table's own atomics. The CAS lets one thread of a shared handle look.
        now.saturating_sub(last) >= CHECK_INTERVAL_NS && self.last.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    }
}

/// Tells sleepers on `bell` that the condition they wait for may have changed.
///
/// Call after the change was published (any ordering: the barrier here orders it).
#[inline]
pub fn ring(bell: &DoorbellWords) {
    // ORDERING: a StoreLoad barrier between our publish (a Release store by the caller) and our
    // load of `waiters`; pairs with the barrier in `block_on` after `waiters += 1`. SYNC POINT:
    // doorbell. Light (compiler-only) when this process is registered for the sleeper's
    // membarrier, a SeqCst fence otherwise; see the module docs.
    membarrier::waker_side();
    if bell.waiters.load(Ordering::Relaxed) != 0 {
        wake(bell, 1);
    }
}

/// As [`ring`], but wakes every sleeper (close, end of stream, join finished).
pub fn ring_all(bell: &DoorbellWords) {
    fence(Ordering::SeqCst);
    if bell.waiters.load(Ordering::Relaxed) != 0 {
        wake(bell, i32::MAX);
    }
}

#[inline(never)]
fn wake(bell: &DoorbellWords, n: i32) {
    // ORDERING: Release, pairs with the Acquire load of `seq` in `block_on`: a sleeper that reads
    // the bumped value also sees the change published before it.
    bell.seq.fetch_add(1, Ordering::Release);
    futex::wake(&bell.seq, n);
}

/// Runs `attempt` until it returns `Some`, sleeping on `bell` in between; gives up at `deadline`
/// (absolute [`clock::now`] nanoseconds) and returns `None`.
///
/// `spin` bounds the busy-polling before the first sleep (0: sleep at once); every
/// [`YIELD_EVERY`]th poll looks at the clock (a deadline passed ends the wait) and gives up the
/// core instead of pausing, unless the deadline is nearer than [`YIELD_MIN_LEFT_NS`]. `attempt` is the whole
/// operation (it claims the message itself), so a re-check that succeeds is never wasted.
/// `on_idle` runs before each sleep and before the last attempt at the deadline, each time
/// followed by an attempt: crash recovery hooks in here, and decides by the handle's
/// [`IdleCheck`] whether to look (a peer that died holding what we wait for is repaired by whoever
/// waits for it, within one slice of its death).
pub fn block_on<T>(
    bell: &DoorbellWords,
    deadline: Option<u64>,
    spin: u32,
    mut attempt: impl FnMut() -> Option<T>,
    mut on_idle: impl FnMut(),
) -> Option<T> {
    if let Some(v) = attempt() {
        return Some(v);
    }
    #[cfg(not(loom))]
    for i in 0..spin {
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            // Every YIELD_EVERY polls: past the deadline, the last attempt; else give the core
            // up, unless the deadline is too near for another process's time slice to fit.
            let left = deadline.map(|d| d.saturating_sub(clock::now()));
            if left == Some(0) {
                on_idle();
                return attempt();
            }
            if left.is_none_or(|l| l > YIELD_MIN_LEFT_NS) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        } else {
            std::hint::spin_loop();
        }
        if let Some(v) = attempt() {
            return Some(v);
        }
    }
    #[cfg(loom)]
    let _ = spin;
    loop {
        on_idle();
        bell.waiters.fetch_add(1, Ordering::SeqCst);
        // ORDERING: a full barrier (and, for light wakers, a barrier on every CPU running one)
        // between the announcement and the re-check; pairs with `ring`. SYNC POINT: doorbell.
        membarrier::sleeper_side();
        // ORDERING: Acquire, pairs with the Release bump in `wake`.
        let seq = bell.seq.load(Ordering::Acquire);
        if let Some(v) = attempt() {
            bell.waiters.fetch_sub(1, Ordering::Relaxed);
            return Some(v);
        }
        let now = clock::now();
        if deadline.is_some_and(|d| now >= d) {
            bell.waiters.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let slice_end = now.saturating_add(SLICE_NS);
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        futex::wait(&bell.seq, seq, Some(until));
        bell.waiters.fetch_sub(1, Ordering::Relaxed);
        if let Some(v) = attempt() {
            return Some(v);
        }
    }
}

/// How long a handle's call may wait for its condition.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all: a non-blocking call.
    Never,
    /// Until this [`clock::now`] reading.
    Until(u64),
    /// Until the condition holds.
    Forever,
}

impl Wait {
    /// Until `d` from now.
    pub fn after(d: std::time::Duration) -> Wait {
        Wait::Until(clock::deadline_after(d))
    }
}

/// A handle's call on `bell`'s condition: `attempt` (the whole operation, as in [`block_on`])
/// until it returns `Some`. `look_if_due` looks for dead peers when the handle's [`IdleCheck`]
/// says a look is due, and says whether it looked (see the module docs).
///
/// [`Wait::Never`]: one attempt, and if it finds nothing and a look is due, the look and one more
/// attempt; `nothing_now` if that finds nothing either. Otherwise [`block_on`] until the deadline,
/// with `look_if_due` as its `on_idle`; `timed_out` at the deadline.
#[inline]
pub(crate) fn attempt_or_block<T, E>(
    bell: &DoorbellWords,
    wait: Wait,
    spin: u32,
    mut attempt: impl FnMut() -> Option<Result<T, E>>,
    mut look_if_due: impl FnMut() -> bool,
    nothing_now: E,
    timed_out: E,
) -> Result<T, E> {
    let deadline = match wait {
        Wait::Never => {
            return attempt().or_else(|| look_if_due().then(&mut attempt).flatten()).unwrap_or(Err(nothing_now))
        }
        Wait::Until(d) => Some(d),
        Wait::Forever => None,
    };
    block_on(bell, deadline, spin, attempt, || {
        look_if_due();
    })
    .unwrap_or(Err(timed_out))
}

/// As [`block_on`] over several doorbells at once (at most `futex::WAITV_MAX`): `attempt` checks
/// every condition; between tries the caller sleeps on all the bells with one `futex_waitv`.
/// No spinning: waiting on several things is a slow path.
#[cfg(not(loom))]
pub fn block_on_any<T>(
    bells: &[&DoorbellWords],
    deadline: Option<u64>,
    mut attempt: impl FnMut() -> Option<T>,
    mut on_stall: impl FnMut(),
) -> Option<T> {
    if let Some(v) = attempt() {
        return Some(v);
    }
    let bells = &bells[..bells.len().min(futex::WAITV_MAX)];
    let mut stall_check = clock::now();
    loop {
        for b in bells {
            b.waiters.fetch_add(1, Ordering::SeqCst);
        }
        // ORDERING: as in `block_on`: a full barrier between the announcements and the re-check,
        // pairs with `ring`. SYNC POINT: doorbell.
        membarrier::sleeper_side();
        // ORDERING: Acquire, pairs with the Release bump in `wake`.
        let words: Vec<_> = bells.iter().map(|b| (&b.seq, b.seq.load(Ordering::Acquire))).collect();
        let leave = || {
            for b in bells {
                b.waiters.fetch_sub(1, Ordering::Relaxed);
            }
        };
        if let Some(v) = attempt() {
            leave();
            return Some(v);
        }
        let now = clock::now();
        if deadline.is_some_and(|d| now >= d) {
            leave();
            return None;
        }
        let until = deadline.map_or(now.saturating_add(SLICE_NS), |d| d.min(now.saturating_add(SLICE_NS)));
        if words.is_empty() {
            // Nothing that a ring could wake (no objects, or none that receives): sleep out the
            // slice rather than return from an empty wait at once and spin.
            std::thread::sleep(std::time::Duration::from_nanos(until.saturating_sub(now)));
        } else {
            futex::wait_any(&words, Some(until));
        }
        leave();
        if let Some(v) = attempt() {
            return Some(v);
        }
        let now = clock::now();
        if now.saturating_sub(stall_check) >= SLICE_NS {
            stall_check = now;
            on_stall();
        }
    }
}
