//! Crash recovery: finding participants whose process died and repairing what they held.
//!
//! Death is observed, not guessed: every attached handle holds an OFD lock on its entry's byte of
//! the segment file, and the kernel releases it when the process dies. An entry that is not `FREE`
//! while nobody holds its lock belongs to a dead process (a live handle frees its entry before it
//! drops its lock, and takes the lock before it claims one). PIDs are never used for this, so PID
//! reuse and PID namespaces do not matter.
//!
//! A survivor that finds such an entry wins it (see `table`): it names itself in the entry (a CAS
//! on `detail`, so one survivor wins), then moves it to `REAPING` with a CAS from the
//! `{ generation, state }` it saw *before* it found the lock free, so that an entry freed and
//! claimed again meanwhile (by a newcomer, whose generation is new) is never taken for the dead
//! one. A reaper's own liveness is a lock too: its own entry's, or, for a reaper without an entry
//! (a registration that found the table full), the dead entry's, which it takes first. If it dies
//! midway, its mark names a dead reaper, and the next survivor takes the entry over the same way,
//! whoever had started. Every step below is idempotent or journaled, so a takeover redoes what was
//! not done and nothing twice:
//! 1. a joinable queue's task accounting (`tasks`): the dead entry's operation on `unfinished` is
//!    finished, its unpublished put is uncounted, its release journal resolved;
//! 2. every queue slot whose stamp names a dead owner is repaired, in one scan of the ring for all
//!    the entries won in this call: `WRITING(p, dead)` becomes `SKIPPED(p)` — the uncommitted
//!    message is dropped whole and consumers skip it — and `READING(p, dead)` becomes
//!    `EMPTY(p + one_lap)` — the message the dead consumer had taken is lost, and counted in
//!    `lost_reads` (and, in a joinable queue, moved into its `takes`);
//! 3. a dead consumer's tasks taken and not marked done are marked done (`lost_tasks`);
//! 4. the entries' role bits are cleared and every ring's count words brought in line with the
//!    table (`ring::ends`): end of stream and broken pipe follow as if the dead had closed;
//! 5. the entries are freed for reuse. An owner tag can be reused only now, when no stamp names it.
//!
//! Committed messages are never touched: `FULL` stamps carry no owner and are not repaired, so a
//! committed message is delivered exactly once whoever dies. Pipes need no slot repair: a
//! receiver trusts a slot only once its stamp names exactly the next position, and a sender
//! stores that stamp (Release) after the slot's length and payload, so a half-written message is
//! never visible; a dead receiver only stops releasing.
//!
//! A handed-over entry (`HANDOVER`, on its way to a child) is no exception: its lock is held
//! through the open file description the parent and the child share, so it too is dead exactly
//! when nobody holds its lock.
//!
//! Survivors run this from any call that is about to report nothing to do or to sleep, when the
//! handle has not looked for `ring::doorbell::CHECK_INTERVAL_NS` (10 ms); when the participant
//! table is full; while waiting for a dead entry's operation on `unfinished`; and on request
//! (`Queue::recover`, `Connection::recover`, `Sender::recover`, `Receiver::recover`).

use crate::segment::geometry::Geometry;
use crate::segment::layout::{Participant, MAX_PARTICIPANTS, PARTICIPANT_FREE};
use crate::segment::table;
use crate::segment::Segment;
use crate::sys::clock;
use crate::sys::crash::{self, alive, Died};
use crate::sys::lock::{byte_is_locked, try_lock_byte};
use std::sync::atomic::Ordering;

/// What the ring layer does for dead participants. The segment layer knows no ring algorithm:
/// the handles pass this in (`ring::SegmentRings`). Every method is idempotent: a reaper that
/// takes over from a dead one calls them again.
pub(crate) trait RingRepair {
    /// Finishes entry `index`'s operation on `unfinished` if one is in flight (joinable queues).
    fn finish_op(&self, index: usize) -> Result<(), Died>;
    /// Before the slots are repaired (joinable queues): uncounts entry `index`'s unpublished put
    /// and resolves its release journal. `stall` as for [`Stall::wait`].
    fn settle_before(&self, index: usize, stall: &mut dyn FnMut(usize) -> bool) -> Result<(), Died>;
    /// Repairs every slot whose claim names one of the entries `dead` (owner tag `index + 1`), in
    /// one scan, and counts what it dropped and lost in the header's recovery counters.
    fn repair(&self, dead: &[usize]) -> Result<(), Died>;
    /// After the slots are repaired (joinable queues): marks entry `index`'s tasks taken and not
    /// done as done. `stall` as for [`Stall::wait`].
    fn settle_after(&self, index: usize, stall: &mut dyn FnMut(usize) -> bool) -> Result<(), Died>;
    /// Brings every ring's count words in line with the table's role bits.
    fn resync(&self) -> Result<(), Died>;
}

/// Whether entry `index`'s liveness lock is held by some process.
pub(crate) fn is_locked(seg: &Segment, index: usize) -> bool {
    // A probe error (no locks on this file system?) counts as alive: never reap on a guess.
    byte_is_locked(seg.file(), Participant::lock_offset(index)).unwrap_or(true)
}

/// Repairs and frees the entries of dead participants (and of reapers that died repairing
/// them). `me` is the caller's own entry, skipped (it is alive); `None` for a caller without
/// one. Returns how many entries were freed.
pub(crate) fn reap_dead(seg: &Segment, g: &Geometry, me: Option<usize>, rings: &dyn RingRepair) -> usize {
    let _ = g;
    alive(reap(seg, me, rings))
}

fn reap(seg: &Segment, me: Option<usize>, rings: &dyn RingRepair) -> Result<usize, Died> {
    let h = seg.header();
    let locked = |i: usize| is_locked(seg, i);
    // A reaper without an entry holds each dead entry's lock while it reaps it (that is its
    // liveness, see `table`), through this description of its own: closing it at the end gives
    // them all back.
    let mut holder = None;
    let mut won = Vec::new();
    for index in 0..MAX_PARTICIPANTS {
        let p = &h.participants[index];
        // The state before the probe: if its lock is free after, that generation's owner is dead
        // (see `table::win`).
        let seen = table::load(p);
        if Some(index) == me || seen.1 == PARTICIPANT_FREE || locked(index) {
            continue; // free, or alive (its owner, or a reaper without an entry, holds its lock)
        }
        // A mark naming this handle's own entry stands for a pass of ours. A pass takes the entry
        // in this process's set first: if another pass has it (an outer pass of a nested reap,
        // or another thread of the handle), it is left to that pass; if not, a mark of ours on
        // it is stale (written by a hostile peer) and is taken over like a dead reaper's.
        let own_mark = me.map(|me| table::reaper_mark(me, table::load(&h.participants[me]).0));
        if own_mark.is_some() && !seg.reaping().take(index) {
            continue;
        }
        let taken = Taken { seg, index: own_mark.map(|_| index) };
        // ORDERING: Relaxed: which lock to ask about below; `win` loads the mark again (Acquire)
        // and CASes from what it loaded.
        let stale_own = own_mark.is_some_and(|m| p.detail.load(Ordering::Relaxed) == m);
        let mark = match own_mark {
            Some(m) => m,
            None => {
                if holder.is_none() {
                    match seg.reopen() {
                        Ok(f) => holder = Some(f),
                        Err(_) => return Ok(0),
                    }
                }
                let lock = holder.as_ref().expect("opened above");
                if !try_lock_byte(lock, Participant::lock_offset(index)).unwrap_or(false) {
                    // Taken meanwhile, or (read locks) not to be had: leave it to a reaper that
                    // has an entry of its own.
                    continue;
                }
                table::NO_ENTRY
            }
        };
        let reaper_locked = |i: usize| !(stale_own && Some(i) == me) && locked(i);
        if let Some(w) = table::win(p, seen, mark, &h.participants, &reaper_locked)? {
            won.push((index, w, taken));
        }
    }
    if won.is_empty() {
        return Ok(0);
    }
    let attached: Vec<usize> = won.iter().filter(|(_, w, _)| w.attached).map(|&(i, _, _)| i).collect();
    // Every won entry's operation first: none of the steps below then waits for one of ours.
    for &i in &attached {
        rings.finish_op(i)?;
    }
    // One bound for every wait of this pass: a hostile count cannot make each dead entry wait
    // its own [`STUCK_NS`].
    let mut stall = Stall { seg, me, one_at_a_time: false, rings, tries: 0, since: 0 };
    for &i in &attached {
        rings.settle_before(i, &mut |holder| stall.wait(holder))?;
    }
    if !attached.is_empty() {
        rings.repair(&attached)?;
    }
    for &i in &attached {
        rings.settle_after(i, &mut |holder| stall.wait(holder))?;
    }
    for &(i, _, _) in &won {
        crash::point("reap.roles")?;
        // ORDERING: Release, pairs with the Acquire of the count words' sync below (and with
        // every later sync's): the bit is gone before the counts are recomputed.
        h.participants[i].roles.store(0, Ordering::Release);
    }
    rings.resync()?;
    let mut freed = 0;
    for &(i, w, _) in &won {
        if table::finish(&h.participants[i], w)? {
            h.recovery.reaped.fetch_add(1, Ordering::Relaxed);
            freed += 1;
        }
    }
    drop(holder);
    Ok(freed)
}

/// An entry a recovery pass took in its process's set ([`Segment::reaping`]), given back when
/// the pass is done with it (`index`: `None` for a pass that took nothing).
struct Taken<'a> {
    seg: &'a Segment,
    index: Option<usize>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.index {
            self.seg.reaping().give_back(i);
        }
    }
}

/// How long an operation waits for another entry's operation on `unfinished` before calling the
/// count stuck. A live operation holds the count for a few instructions; only a process stopped
/// (or starved) for this long in the middle of one, or a hostile tag, lasts longer. Fuzz builds
/// (`cfg(fuzzing)`), where every long wait is a hostile input, wait less.
const STUCK_NS: u64 = if cfg!(fuzzing) { 10_000_000 } else { 2_000_000_000 };

/// Waiting for another entry's operation on `unfinished` to finish (`tasks`): a few instructions
/// of a live process, so spin, then yield; now and then check whether the holder is dead, and if
/// so reap it, which finishes its operation. Gives up (the operation is `Stuck`) on a tag that
/// cannot be legitimate, one naming no entry, or this handle's own entry while the waiter holds
/// the handle's task lock (its operations are one at a time, and this is one), and on a live
/// holder's tag that stays for [`STUCK_NS`] in all (one `Stall` serves a whole recovery pass).
pub(crate) struct Stall<'a> {
    pub seg: &'a Segment,
    /// The waiter's own entry (a handle's, or a reaper's), skipped by the reaps it runs.
    pub me: Option<usize>,
    /// The waiter holds its handle's task lock: no other thread of the handle can hold the tag.
    pub one_at_a_time: bool,
    pub rings: &'a dyn RingRepair,
    pub tries: u32,
    /// [`clock::now`] at the first yield: the wait's start, as far as the bound is concerned.
    pub since: u64,
}

impl Stall<'_> {
    /// One wait for entry `holder`; `false`: stop waiting, the count is stuck.
    pub fn wait(&mut self, holder: usize) -> bool {
        if holder >= MAX_PARTICIPANTS || (self.one_at_a_time && Some(holder) == self.me) {
            return false;
        }
        self.tries = self.tries.wrapping_add(1);
        if self.tries < 64 {
            std::hint::spin_loop();
            return true;
        }
        std::thread::yield_now();
        if self.tries % 256 == 0 {
            if !is_locked(self.seg, holder) {
                alive(reap(self.seg, self.me, self.rings));
            }
            let now = clock::now();
            if self.since == 0 {
                self.since = now;
            } else if now.saturating_sub(self.since) > STUCK_NS {
                return false;
            }
        }
        true
    }
}

/// What recovery has done to a segment so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Dead participants repaired and freed.
    pub reaped: u64,
    /// Uncommitted write claims of dead producers, dropped whole. Counted in slots: a message
    /// larger than a slot that was being written counts each of its slots.
    pub dropped_writes: u64,
    /// Messages dead consumers had taken but not finished with: lost, and counted here.
    pub lost_reads: u64,
    /// Tasks of a joinable queue that dead consumers had taken and not marked done: recovery
    /// marked them done, so that `join` does not wait for them, and counted them here.
    pub lost_tasks: u64,
}

/// Reads the recovery counters.
pub(crate) fn stats(seg: &Segment) -> RecoveryStats {
    let r = &seg.header().recovery;
    RecoveryStats {
        reaped: r.reaped.load(Ordering::Relaxed),
        dropped_writes: r.dropped_writes.load(Ordering::Relaxed),
        lost_reads: r.lost_reads.load(Ordering::Relaxed),
        lost_tasks: r.lost_tasks.load(Ordering::Relaxed),
    }
}
