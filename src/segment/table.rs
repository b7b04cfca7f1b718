//! The participant table's entries as a state machine: claiming one, handing it to a child,
//! adopting it, freeing it, and winning a dead one to reap it.
//!
//! An entry in use always has a live holder of its liveness lock (an OFD write lock on the entry's
//! byte, see `Participant::lock_offset`): its owner takes the lock *before* it claims the entry and
//! gives it back only after it has freed it, so an entry that is not free while nobody holds its
//! lock belongs to a dead process. Only that holder changes the entry while it lives.
//!
//! A dead entry is repaired by one reaper at a time, which names itself in the entry's `detail`
//! (`REAPER_MARK | its own entry's generation and index`) with a CAS from the value it found: of
//! the survivors that found the entry dead, the CAS picks one. A reaper without an entry of its own (a
//! registration that found the table full) first takes the dead entry's lock, and names itself
//! [`NO_ENTRY`]. Either way a reaper's liveness is a lock the kernel drops when it dies: its own
//! entry's, or the dead entry's. So a reaper killed midway leaves a mark naming a dead reaper,
//! and the next survivor takes the entry over with the same CAS, whoever had started.
//!
//! Every state change is a CAS from `{ generation, state }` (see `StateWord`), and a reaper CASes
//! from the generation it found when it looked: if the entry was freed and claimed again
//! meanwhile (by a newcomer, after another reaper finished it), the newcomer's generation is
//! different and the CAS fails, so a reaper never "repairs" a live entry; it gives back the mark
//! it had put on it.
//!
//! The functions here touch memory only; taking the locks and probing them is the caller's
//! (`participants` and `recover` in production, the loom models on the heap).

use crate::segment::layout::{entry_parts, entry_word, Participant};
use crate::segment::layout::{
    PARTICIPANT_ACTIVE, PARTICIPANT_CLAIMED, PARTICIPANT_FREE, PARTICIPANT_HANDOVER, PARTICIPANT_REAPING,
    PARTICIPANT_REAPING_CLAIM,
};
use crate::sys::atomic::Ordering;
use crate::sys::crash::{self, Died};

/// The entry's `{ generation, state }`.
#[inline]
pub(crate) fn load(p: &Participant) -> (u32, u32) {
    // ORDERING: Acquire, pairs with the Release CASes below: a reader that sees a state sees the
    // fields its writer filled in before it.
    entry_parts(p.state.0.load(Ordering::Acquire))
}

/// CAS `{ generation, from } → { generation, to }`.
fn step(p: &Participant, generation: u32, from: u32, to: u32) -> bool {
    // ORDERING: AcqRel: Release publishes what the caller wrote into the entry before the step;
    // Acquire sees what the previous holder wrote before its step.
    p.state
        .0
        .compare_exchange(entry_word(generation, from), entry_word(generation, to), Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Claims a `FREE` entry whose lock the caller holds: `{ g, FREE } → { g + 1, CLAIMED }`, and
/// clears what the previous owner left (roles, task counters). Returns the new generation, or
/// `None` if the entry is not free (a dead claimer's, or a reaper's that has not freed it).
pub(crate) fn claim(p: &Participant, pid: u32) -> Result<Option<u32>, Died> {
    let (generation, state) = load(p);
    if state != PARTICIPANT_FREE {
        return Ok(None);
    }
    let next = generation.wrapping_add(1);
    // Before the claim, while the entry is free (nobody reads a free entry's detail): a reaper's
    // mark left from the previous generation must not outlive it.
    // ORDERING: Relaxed, published by the Release of the claim's CAS below.
    p.detail.store(pid, Ordering::Relaxed);
    crash::point("table.claim")?;
    // ORDERING: AcqRel, as in `step`.
    if p.state
        .0
        .compare_exchange(
            entry_word(generation, PARTICIPANT_FREE),
            entry_word(next, PARTICIPANT_CLAIMED),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        return Ok(None);
    }
    // Nothing below counts for anything until the entry is ACTIVE: a reaper frees a CLAIMED
    // entry without reading it. The op word keeps its sequence number (see `tasks`).
    p.roles.store(0, Ordering::Relaxed);
    p.takes.store(0, Ordering::Relaxed);
    p.dones.store(0, Ordering::Relaxed);
    p.putpos.store(0, Ordering::Relaxed);
    let op = p.op.load(Ordering::Relaxed);
    p.op.store(crate::segment::tasks::op_cleared(op), Ordering::Relaxed);
    Ok(Some(next))
}

/// Publishes a claimed entry as attached: `{ g, CLAIMED } → { g, ACTIVE }`, showing `pid`.
pub(crate) fn activate(p: &Participant, generation: u32, pid: u32) -> Result<bool, Died> {
    p.detail.store(pid, Ordering::Relaxed);
    crash::point("table.activate")?;
    Ok(step(p, generation, PARTICIPANT_CLAIMED, PARTICIPANT_ACTIVE))
}

/// Whether the entry is attached in `generation` (the caller's, while it holds the lock).
#[inline]
pub(crate) fn is_active(p: &Participant, generation: u32) -> bool {
    load(p) == (generation, PARTICIPANT_ACTIVE)
}

/// Marks an attached entry as handed to a child: `{ g, ACTIVE } → { g, HANDOVER }`, showing the
/// `CLOCK_MONOTONIC` second `second`.
pub(crate) fn hand_over(p: &Participant, generation: u32, second: u32) -> Result<bool, Died> {
    p.detail.store(second, Ordering::Relaxed);
    crash::point("table.hand_over")?;
    Ok(step(p, generation, PARTICIPANT_ACTIVE, PARTICIPANT_HANDOVER))
}

/// Adopts an entry handed over in `generation`: `{ g, HANDOVER } → { g, ACTIVE }`. One adopter
/// wins.
pub(crate) fn adopt(p: &Participant, generation: u32, pid: u32) -> Result<bool, Died> {
    crash::point("table.adopt")?;
    if !step(p, generation, PARTICIPANT_HANDOVER, PARTICIPANT_ACTIVE) {
        return Ok(false);
    }
    p.detail.store(pid, Ordering::Relaxed);
    Ok(true)
}

/// Frees the caller's entry: `{ g, from } → { g, FREE }`. `false`: the entry is no longer in that
/// state and generation (it was reaped from under a handle that had lost its lock): the caller
/// leaves it alone.
pub(crate) fn free(p: &Participant, generation: u32, from: u32) -> Result<bool, Died> {
    crash::point("table.free")?;
    Ok(step(p, generation, from, PARTICIPANT_FREE))
}

/// `detail` of an entry being reaped: `REAPER_MARK | reaper`, see [`reaper_mark`].
pub(crate) const REAPER_MARK: u32 = 1 << 31;
/// The mark of a reaper without an entry of its own: it holds the dead entry's lock while it reaps.
pub(crate) const NO_ENTRY: u32 = REAPER_MARK | 0xffff;

/// The mark naming the reaper whose own entry is `index`, in `generation`:
/// `REAPER_MARK | generation: 15 | index: 16`. The generation tells that reaper from a newcomer
/// that registered into its entry after it died.
pub(crate) fn reaper_mark(index: usize, generation: u32) -> u32 {
    REAPER_MARK | ((generation & 0x7fff) << 16) | (index as u32 & 0xffff)
}

/// A dead entry a reaper has won.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Won {
    /// Its generation.
    pub generation: u32,
    /// Whether it was attached (`ACTIVE` or `HANDOVER`) when its owner died, so that it may hold
    /// roles, claims and tasks; else it died while being claimed and holds nothing.
    pub attached: bool,
}

/// Whether the reaper named in `detail` is at work: its own entry is attached in the generation
/// the mark names and its lock is held (`locked(index)`). A [`NO_ENTRY`] reaper held the dead
/// entry's own lock, which the caller has found free: dead.
pub(crate) fn reaper_alive(detail: u32, table: &[Participant], locked: &dyn Fn(usize) -> bool) -> bool {
    if detail & REAPER_MARK == 0 || detail == NO_ENTRY {
        return false;
    }
    let r = (detail & 0xffff) as usize;
    let Some(entry) = table.get(r) else { return false };
    let (generation, state) = load(entry);
    state == PARTICIPANT_ACTIVE && generation & 0x7fff == (detail >> 16) & 0x7fff && locked(r)
}

/// Wins an entry for the reaper whose mark is `mark` ([`reaper_mark`], or [`NO_ENTRY`] for a
/// reaper that holds the entry's lock), given `seen`, the entry's `{ generation, state }` loaded (with [`load`])
/// *before* its lock was found free: the owner of that generation held the lock then, so it is
/// dead now, unless it freed the entry meanwhile (then the state has moved on, and a newcomer has
/// a new generation). Names `me` in `detail` with a CAS, then `ACTIVE | HANDOVER → REAPING` or
/// `CLAIMED → REAPING_CLAIM` from `seen`; a `REAPING*` entry whose reaper is dead is taken over as
/// it is. `None`: free, reaped by a live reaper, moved on since `seen`, or won by another survivor
/// first. `table` is the whole table (to look at reapers' entries); `locked(index)`: whether entry
/// `index`'s lock is held.
pub(crate) fn win(
    p: &Participant,
    seen: (u32, u32),
    mark: u32,
    table: &[Participant],
    locked: &dyn Fn(usize) -> bool,
) -> Result<Option<Won>, Died> {
    let (generation, state) = seen;
    let (to, attached) = match state {
        PARTICIPANT_ACTIVE | PARTICIPANT_HANDOVER | PARTICIPANT_REAPING => (PARTICIPANT_REAPING, true),
        PARTICIPANT_CLAIMED | PARTICIPANT_REAPING_CLAIM => (PARTICIPANT_REAPING_CLAIM, false),
        _ => return Ok(None),
    };
    // ORDERING: Acquire, pairs with the Release CAS below (a previous reaper's mark).
    let detail = p.detail.load(Ordering::Acquire);
    if reaper_alive(detail, table, locked) {
        return Ok(None);
    }
    crash::point("table.mark")?;
    // ORDERING: AcqRel: the survivors that found the entry dead race here; one wins.
    if p.detail.compare_exchange(detail, mark, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return Ok(None);
    }
    // Taken over as it is (`state == to`): a CAS from and to what we saw, which, being a
    // read-modify-write, reads the latest state, not one we saw before the mark.
    if state != to {
        crash::point("table.win")?;
    }
    let ours = step(p, generation, state, to);
    if !ours {
        // Freed and claimed again since we looked (the newcomer wrote its pid over the previous
        // mark, and has a new generation): not ours. Give the detail back if we changed it.
        let _ = p.detail.compare_exchange(mark, detail, Ordering::AcqRel, Ordering::Relaxed);
        return Ok(None);
    }
    Ok(Some(Won { generation, attached }))
}
/// Frees a reaped entry: `{ g, REAPING* } → { g, FREE }`. Its owner tag may be reused from now.
pub(crate) fn finish(p: &Participant, won: Won) -> Result<bool, Died> {
    let from = if won.attached { PARTICIPANT_REAPING } else { PARTICIPANT_REAPING_CLAIM };
    free(p, won.generation, from)
}
