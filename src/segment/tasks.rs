//! The task accounting of joinable queues, made to survive a kill at any instruction.
//!
//! `unfinished` (the header's join line) counts the tasks put and not yet marked done; `join`
//! waits for it to be zero. A task is counted when it is put, just before it is published, and
//! uncounted when it is marked done. What a process has to do with the count at the moment it
//! dies is kept in its participant entry, where recovery finds it:
//!
//! - `putpos`: `{ counted: 1, pos: 45 }`, a put whose task is counted and which may not be
//!   published yet (at position `pos`). Recovery looks at the slot: still `WRITING(pos, owner)`,
//!   the message will be dropped, so its task is uncounted; anything else, it was published.
//! - `takes`: `{ journal: 25, count: 39 }`, the tasks this entry took out of the ring (`count`), and
//!   the slot of a release in progress (`journal`, index + 1). A task is in the ring while its slot
//!   is `FULL` or `READING`; releasing the slot moves it into `count`, in one step with the
//!   journal: `{ 0, c } → { i + 1, c + 1 }`, release slot `i`, `journal → 0`. Recovery resolves a
//!   journal by looking at the slot: still `READING` by the dead owner, the release did not happen
//!   and `count` gives its task back to the slot.
//! - `dones`: the tasks marked done through this entry.
//!
//! So a dead consumer held `count + (its READING message slots) - dones` tasks. Recovery moves its
//! `READING` slots into `count` as it frees them (journaled the same way, one slot at a time) and
//! then marks the rest done: `unfinished -= count - dones`, `dones = count`, and counts them in
//! `RecoveryStats::lost_tasks`. A `task_done` made while still holding the message in place thus
//! counts once: the message stays a task until it is released, and `dones` already covers it.
//!
//! # One step on two words
//! Each change of `unfinished` goes with a change in the entry of the process that makes it (a
//! put's `putpos`, a `task_done`'s `dones`), and recovery must know whether the count changed. So
//! the two are made one step, with the count word as a lock: `unfinished` is
//! `{ tag: 24, count: 40 }`, and an operation
//! 1. writes what it is about to do in its entry's `op` word: `{ seq, kind, arg }`;
//! 2. CASes `unfinished` from `{ tag: 0, count }` to `{ tag: (entry, seq), count ± n }` — the count
//!    changes here, and the tag says whose change it is;
//! 3. applies its effect in the entry (`putpos = pos`, or `dones = arg`);
//! 4. clears the tag.
//!
//! Everyone else who wants to change the count waits while a tag is set (a few instructions). If
//! the tag's entry is dead, its reaper (who holds the entry's lock, see `table`) finishes the
//! operation from the `op` word: applies the effect (idempotent: a store, or a `fetch_max`) and
//! clears the tag. A tag never outlives its process for longer than recovery takes. An operation
//! that died before step 2 changed nothing, and its `op` word is ignored: a reaper reads `op` only
//! for the tag it finds in `unfinished`.
//!
//! Recovery's own changes of the count (uncounting a dead producer's unpublished put, marking a
//! dead consumer's tasks done) are operations of the same kind, in the dead entry's name, so a
//! reaper that dies midway leaves them to the next one in the same way.

use crate::segment::layout::{JoinState, Participant, UNFINISHED_COUNT};
use crate::sys::atomic::{AtomicU64, Ordering};
use crate::sys::crash::{self, Died};

/// Bits of the op word's sequence number (and of the tag's).
const SEQ_BITS: u32 = 15;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const POS_MASK: u64 = (1 << 45) - 1;

/// Op kinds (`op` bits 45..47).
const KIND_SHIFT: u32 = 45;
const SEQ_SHIFT: u32 = 48;
/// No operation.
const KIND_NONE: u64 = 0;
/// A put: `arg` = the position; effect `putpos = counted | arg`; count + 1.
const KIND_PUT: u64 = 1;
/// `task_done`: `arg` = the new `dones`; effect `dones = max(dones, arg)`; count - 1.
const KIND_DONE: u64 = 2;
/// Recovery of a dead consumer's tasks: `arg` = the new `dones`, as `KIND_DONE`.
const KIND_RECLAIM: u64 = 3;
/// Recovery of a dead producer's unpublished put: effect `putpos = 0`; count - 1.
const KIND_UNPUT: u64 = 4;

/// `putpos`: the put at this position is counted.
const COUNTED: u64 = 1 << 63;

/// The tag bits of `unfinished`.
const TAG_SHIFT: u32 = 40;
const TAG_MASK: u64 = !UNFINISHED_COUNT;

/// `takes`: the journal (slot index + 1) above the count.
const JOURNAL_SHIFT: u32 = 39;
const TAKEN_MASK: u64 = (1 << JOURNAL_SHIFT) - 1;

/// Polls [`Ledger::begin_release`] gives another thread's journal before writing over it: with a
/// yield every 64, far longer than a release takes even for a thread preempted in it, and short
/// enough that a hostile journal costs a release milliseconds, not for ever.
const JOURNAL_WAIT: u32 = 1 << 16;

#[inline]
fn op_word(seq: u64, kind: u64, arg: u64) -> u64 {
    ((seq & SEQ_MASK) << SEQ_SHIFT) | (kind << KIND_SHIFT) | (arg & POS_MASK)
}

#[inline]
fn op_parts(w: u64) -> (u64, u64, u64) {
    ((w >> SEQ_SHIFT) & SEQ_MASK, (w >> KIND_SHIFT) & 7, w & POS_MASK)
}

/// The op word of a newly claimed entry: no operation, the sequence number kept (so that a tag
/// of an earlier generation can never match an op of this one by chance).
pub(crate) fn op_cleared(w: u64) -> u64 {
    let (seq, _, _) = op_parts(w);
    op_word(seq, KIND_NONE, 0)
}

#[inline]
fn tag(index: usize, seq: u64) -> u64 {
    (((index as u64 + 1) << SEQ_BITS) | (seq & SEQ_MASK)) << TAG_SHIFT
}

/// The entry index and sequence number a tag names; `None` for no tag.
#[inline]
fn untag(u: u64) -> Option<(usize, u64)> {
    let t = (u & TAG_MASK) >> TAG_SHIFT;
    // An index field of 0 with sequence bits set is no tag shmq writes: reported as an index no
    // entry has (`usize::MAX`), which waiters refuse.
    (t != 0).then(|| (((t >> SEQ_BITS) as usize).wrapping_sub(1), t & SEQ_MASK))
}

/// Why an operation on the count did not happen (it changed nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotDone {
    /// `task_done` was called more times than tasks were put.
    TooMany,
    /// Another entry's tag stayed in the count word for longer than any live operation takes, or
    /// named an entry that cannot hold it (the caller's own): a hostile or corrupt segment.
    Stuck,
}

/// What recovery needs from the ring about a dead participant.
pub(crate) trait Slots {
    /// Whether the slot of position `pos` is still `WRITING(pos, owner)`: a claim never published.
    fn unpublished(&self, owner: u16, pos: u64) -> bool;
    /// Whether slot `idx` is still `READING` by `owner` (a message's first slot): not released.
    fn held(&self, owner: u16, idx: u64) -> bool;
}

/// A joinable queue's count and participant table.
pub(crate) struct Ledger<'a> {
    pub join: &'a JoinState,
    pub table: &'a [Participant],
}

impl Ledger<'_> {
    /// Runs one operation on the count for entry `e` (see the module docs). `delta`: how much
    /// the count changes; a decrease larger than the count is refused with `TooMany` (after step
    /// 1, which is then undone) if `refuse` says so, else clamped. `stall(holder)` is called while
    /// entry `holder` has an operation in flight: it waits a little, or, if `holder` is dead,
    /// recovers it, and says whether to keep waiting; if not, step 1 is undone and the operation
    /// is `Stuck`. Returns the count after the operation.
    fn run(
        &self,
        e: usize,
        kind: u64,
        arg: u64,
        delta: i64,
        refuse: bool,
        stall: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Result<u64, NotDone>, Died> {
        let p = &self.table[e];
        let (prev, _, _) = op_parts(p.op.load(Ordering::Relaxed));
        let seq = (prev + 1) & SEQ_MASK;
        crash::point("tasks.op")?;
        // ORDERING: Release, pairs with the Acquire load in `finish_op` (a reaper that finds our
        // tag reads the op it names; the tag's CAS below is Release too).
        p.op.store(op_word(seq, kind, arg), Ordering::Release);
        let word = &self.join.unfinished.0;
        let (count, new) = loop {
            // ORDERING: Acquire, pairs with the Release clearing of a tag in `unlock`: the entry
            // that held it has finished its effect.
            let u = word.load(Ordering::Acquire);
            if let Some((holder, _)) = untag(u) {
                if !stall(holder) {
                    crash::point("tasks.refused")?;
                    p.op.store(op_word(seq, KIND_NONE, 0), Ordering::Relaxed);
                    return Ok(Err(NotDone::Stuck));
                }
                continue;
            }
            let count = u & UNFINISHED_COUNT;
            let new = if delta >= 0 {
                (count + delta as u64).min(UNFINISHED_COUNT)
            } else if count >= delta.unsigned_abs() {
                count - delta.unsigned_abs()
            } else if refuse {
                crash::point("tasks.refused")?;
                p.op.store(op_word(seq, KIND_NONE, 0), Ordering::Relaxed);
                return Ok(Err(NotDone::TooMany));
            } else {
                0
            };
            crash::point("tasks.lock")?;
            // ORDERING: AcqRel: Release publishes the op word (written before) to whoever sees
            // the tag; Acquire as for the load above.
            if word.compare_exchange(u, new | tag(e, seq), Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                break (count, new);
            }
        };
        let _ = count;
        crash::point("tasks.effect")?;
        apply(p, kind, arg);
        crash::point("tasks.unlock")?;
        self.unlock();
        Ok(Ok(new))
    }

    /// Clears the tag (only its holder, or the reaper of a dead holder, does).
    fn unlock(&self) {
        // ORDERING: Release, pairs with the Acquire loads in `run`: the effect applied before is
        // visible to the next operation's entry and its reaper. The count bits are left as they
        // are (nobody else changes the word while the tag is set).
        self.join.unfinished.0.fetch_and(!TAG_MASK, Ordering::Release);
    }

    /// Counts a put by entry `e` (alive), at position `pos`, before it is published. The caller
    /// then publishes and calls [`Ledger::published`]; one put at a time per entry.
    pub fn count_put(
        &self,
        e: usize,
        pos: u64,
        stall: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Result<(), NotDone>, Died> {
        self.run(e, KIND_PUT, pos, 1, false, stall).map(|r| r.map(|_| ()))
    }

    /// The put counted by [`Ledger::count_put`] is published.
    pub fn published(&self, e: usize) -> Result<(), Died> {
        crash::point("tasks.published")?;
        // ORDERING: Relaxed: read only by this entry's reaper, after the kernel confirmed the
        // death; either value is right then (the slot says whether the put was published).
        self.table[e].putpos.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// `task_done` by entry `e` (alive): uncounts one task and marks it done in `e`. Returns the
    /// count left (the caller rings `join`'s bell at 0), or `TooMany` if it was 0. One at a time
    /// per entry.
    pub fn done(&self, e: usize, stall: &mut dyn FnMut(usize) -> bool) -> Result<Result<u64, NotDone>, Died> {
        // Wrapping: the word is shared memory, and a peer may have written `u64::MAX` there.
        let target = self.table[e].dones.load(Ordering::Relaxed).wrapping_add(1);
        self.run(e, KIND_DONE, target, -1, true, stall)
    }

    /// Journals the release of read claim slot `idx` of entry `e` (alive or being reaped):
    /// `takes: { 0, c } → { idx + 1, c + 1 }`. The caller releases the slot, then calls
    /// [`Ledger::end_release`].
    ///
    /// A journal already there is another thread of this handle releasing (a few instructions),
    /// waited for; one that stays for [`JOURNAL_WAIT`] polls was left by a hostile peer, and is
    /// written over rather than waited on for ever.
    pub fn begin_release(takes: &AtomicU64, idx: u64) -> Result<(), Died> {
        let mut polls = 0u32;
        loop {
            let t = takes.load(Ordering::Relaxed);
            if t >> JOURNAL_SHIFT != 0 && polls < JOURNAL_WAIT {
                polls += 1;
                crate::sys::atomic::spin_hint();
                #[cfg(not(loom))]
                if polls % 64 == 0 {
                    std::thread::yield_now();
                }
                continue;
            }
            // Wrapping: `t` is shared memory, possibly `u64::MAX`; the count is masked anyway.
            let next = ((idx + 1) << JOURNAL_SHIFT) | (t.wrapping_add(1) & TAKEN_MASK);
            crash::point("tasks.journal")?;
            // ORDERING: Relaxed: the journal is read only by this entry's reaper, after the kernel
            // confirmed the death (and took the lock) — no other process reads it meanwhile.
            if takes.compare_exchange(t, next, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                return Ok(());
            }
        }
    }

    /// Ends the release journaled by [`Ledger::begin_release`].
    pub fn end_release(takes: &AtomicU64) -> Result<(), Died> {
        crash::point("tasks.unjournal")?;
        takes.fetch_and(TAKEN_MASK, Ordering::Relaxed);
        Ok(())
    }

    /// Recovery of dead entry `e` (the caller holds its lock, and has run [`Ledger::finish_op`]
    /// for every dead entry it holds), before its slots are repaired: uncounts its unpublished
    /// put and resolves its release journal. `owner` is its tag in slot stamps.
    pub fn settle_before_repair(
        &self,
        e: usize,
        owner: u16,
        slots: &dyn Slots,
        stall: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(), Died> {
        let p = &self.table[e];
        let put = p.putpos.load(Ordering::Relaxed);
        if put & COUNTED != 0 {
            let pos = put & POS_MASK;
            if slots.unpublished(owner, pos) {
                self.run(e, KIND_UNPUT, pos, -1, false, stall)?.ok();
            } else {
                crash::point("tasks.published")?;
                p.putpos.store(0, Ordering::Relaxed);
            }
        }
        let t = p.takes.load(Ordering::Relaxed);
        if t >> JOURNAL_SHIFT != 0 {
            let idx = (t >> JOURNAL_SHIFT) - 1;
            // Still held: the release did not happen, so the slot (which repair frees and counts
            // next) still carries its task; give back the count the journal had added.
            let count = if slots.held(owner, idx) { (t & TAKEN_MASK).saturating_sub(1) } else { t & TAKEN_MASK };
            crash::point("tasks.resolve")?;
            p.takes.store(count, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Recovery of dead entry `e`, after its slots were repaired (its `READING` slots moved into
    /// `takes`): marks the tasks it took and did not mark done as done. Returns how many.
    pub fn settle_after_repair(&self, e: usize, stall: &mut dyn FnMut(usize) -> bool) -> Result<u64, Died> {
        let p = &self.table[e];
        let taken = p.takes.load(Ordering::Relaxed) & TAKEN_MASK;
        let done = p.dones.load(Ordering::Relaxed);
        if taken <= done {
            return Ok(0);
        }
        let n = taken - done;
        self.run(e, KIND_RECLAIM, taken, -(n as i64), false, stall)?.ok();
        Ok(n)
    }

    /// Finishes the operation of dead entry `e` if its tag is in `unfinished` (the caller holds
    /// `e`'s lock, so nobody else acts for `e`).
    pub fn finish_op(&self, e: usize) -> Result<(), Died> {
        let u = self.join.unfinished.0.load(Ordering::Acquire);
        let Some((holder, seq)) = untag(u) else { return Ok(()) };
        if holder != e {
            return Ok(());
        }
        let p = &self.table[e];
        // ORDERING: Acquire, pairs with the Release store of the op word in `run`.
        let (op_seq, kind, arg) = op_parts(p.op.load(Ordering::Acquire));
        crash::point("tasks.effect")?;
        if op_seq == seq {
            apply(p, kind, arg);
        }
        crash::point("tasks.unlock")?;
        self.unlock();
        Ok(())
    }
}

/// Applies an operation's effect to its entry. Idempotent: a reaper may apply it again.
///
/// ORDERING: Relaxed stores: the tag's clearing after them is Release, and whoever acts on this
/// entry next (its owner's next operation, or its reaper, whose load of `unfinished` is Acquire)
/// sees them.
fn apply(p: &Participant, kind: u64, arg: u64) {
    match kind {
        KIND_PUT => p.putpos.store(COUNTED | arg, Ordering::Relaxed),
        KIND_DONE | KIND_RECLAIM => {
            p.dones.fetch_max(arg, Ordering::Relaxed);
        }
        KIND_UNPUT => p.putpos.store(0, Ordering::Relaxed),
        _ => {}
    }
}
