//! Crash recovery: finding participants whose process died and repairing what they held.
//!
//! Death is observed, not guessed: every attached handle holds an OFD lock on its entry's byte of
//! the segment file, and the kernel releases it when the process dies. An entry that is `ACTIVE`
//! while nobody holds its lock belongs to a dead process (a live handle frees its entry before it
//! drops its lock). PIDs are never used for this, so PID reuse and PID namespaces do not matter.
//!
//! A survivor that finds such an entry wins it with a CAS (`ACTIVE → REAPING`), so exactly one
//! survivor repairs it:
//! 1. every queue slot whose stamp names the dead owner is repaired: `WRITING(p, dead)` becomes
//!    `SKIPPED(p)` — the uncommitted message is dropped whole and consumers skip it — and
//!    `READING(p, dead)` becomes `EMPTY(p + one_lap)` — the message the dead consumer had taken
//!    is lost, and counted in `lost_reads`;
//! 2. the entry's roles are uncounted (end of stream and broken pipe follow as if it had closed);
//! 3. the entry is freed for reuse. Its owner tag can be reused only now, when no stamp names it.
//!
//! Committed messages are never touched: `FULL` stamps carry no owner and are not repaired, so a
//! committed message is delivered exactly once whoever dies. Pipes need no slot repair: a
//! receiver trusts a slot only once its stamp names exactly the next position, and a sender
//! stores that stamp (Release) after the slot's length and payload, so a half-written message is
//! never visible; a dead receiver only stops releasing.
//!
//! A handed-over entry (`HANDOVER`, a pipe end on its way to a child) is no exception: its lock is
//! held through the open file description the parent and the child share, so it too is dead
//! exactly when nobody holds its lock.
//!
//! Survivors run this from any call that is about to report nothing to do or to sleep, when the
//! handle has not looked for `ring::doorbell::CHECK_INTERVAL_NS` (10 ms); when the participant
//! table is full; and on request (`Queue::recover`, `Connection::recover`, `Sender::recover`,
//! `Receiver::recover`).

use crate::segment::geometry::Geometry;
use crate::segment::layout::Participant;
use crate::segment::layout::{
    MAX_PARTICIPANTS, PARTICIPANT_ACTIVE, PARTICIPANT_FREE, PARTICIPANT_HANDOVER, PARTICIPANT_REAPING,
};
use crate::segment::Segment;
use crate::sys::lock::byte_is_locked;
use std::sync::atomic::Ordering;

/// What the ring layer does for a dead participant. The segment layer knows no ring algorithm:
/// the handles pass this in (`ring::SegmentRings`).
pub(crate) trait RingRepair {
    /// Repairs every slot whose claim names `owner` (`index + 1`), and counts what it dropped and
    /// lost in the header's recovery counters. Idempotent: a second run finds nothing.
    fn repair_owner(&self, owner: u16);
    /// Uncounts one role bit (per ring `r`: producer `1 << 2r`, consumer `2 << 2r`).
    fn uncount(&self, bit: u32);
}

/// Marks `detail` of a `REAPING` entry as holding the reaper's table index (low 16 bits).
const REAPER_MARK: u32 = 0x8000_0000;

fn locked(seg: &Segment, index: usize) -> bool {
    // A probe error (no locks on this file system?) counts as alive: never reap on a guess.
    byte_is_locked(seg.file(), Participant::lock_offset(index)).unwrap_or(true)
}

/// Repairs and frees the entries of dead participants. `me` is the caller's own entry (never
/// reaped; recorded in entries it reaps so that, should it die midway, another survivor can take
/// the work over). Returns how many entries were reaped.
pub(crate) fn reap_dead(seg: &Segment, g: &Geometry, me: Option<usize>, rings: &dyn RingRepair) -> usize {
    let h = seg.header();
    let mut reaped = 0;
    for index in 0..MAX_PARTICIPANTS {
        if Some(index) == me {
            continue;
        }
        let p = &h.participants[index];
        let state = p.state.load(Ordering::Acquire);
        let won = match state {
            PARTICIPANT_ACTIVE | PARTICIPANT_HANDOVER => {
                if locked(seg, index)
                    || p.state
                        .compare_exchange(state, PARTICIPANT_REAPING, Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                {
                    continue; // alive, or another survivor won it
                }
                // Between our load of `state` and the CAS, the entry may have been released and
                // claimed again by a live handle (which takes the lock before it publishes
                // ACTIVE): give that one back. A dead entry stays unlocked: handles lock only
                // entries they have claimed, and an adopting child holds its lock already.
                if locked(seg, index) {
                    let _ = p.state.compare_exchange(PARTICIPANT_REAPING, state, Ordering::Release, Ordering::Relaxed);
                    continue;
                }
                true
            }
            PARTICIPANT_REAPING => {
                // Take over from a reaper that died midway (repair is idempotent).
                let r = p.detail.load(Ordering::Relaxed);
                let reaper = (r & 0xffff) as usize;
                r & REAPER_MARK != 0
                    && reaper < MAX_PARTICIPANTS
                    && !locked(seg, reaper)
                    && p.detail
                        .compare_exchange(
                            r,
                            REAPER_MARK | me.unwrap_or(0xffff) as u32,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
            }
            _ => false,
        };
        if !won {
            continue;
        }
        p.detail.store(REAPER_MARK | me.unwrap_or(0xffff) as u32, Ordering::Relaxed);
        rings.repair_owner(index as u16 + 1);
        // Role by role, so that a reaper dying here leaves each role either uncounted or not.
        for bit in (0..2 * g.ring_count).map(|b| 1u32 << b) {
            if p.roles.fetch_and(!bit, Ordering::AcqRel) & bit != 0 {
                rings.uncount(bit);
            }
        }
        h.recovery.reaped.fetch_add(1, Ordering::Relaxed);
        p.state.store(PARTICIPANT_FREE, Ordering::Release);
        reaped += 1;
    }
    reaped
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
}

/// Reads the recovery counters.
pub(crate) fn stats(seg: &Segment) -> RecoveryStats {
    let r = &seg.header().recovery;
    RecoveryStats {
        reaped: r.reaped.load(Ordering::Relaxed),
        dropped_writes: r.dropped_writes.load(Ordering::Relaxed),
        lost_reads: r.lost_reads.load(Ordering::Relaxed),
    }
}
