//! Repairing the claims of dead owners (crash recovery of a queue's ring).

use super::*;
use crate::segment::tasks::Ledger;
use crate::sys::crash::{self, Died};

impl Mpmc {
    /// Repairs every claim made by an owner that `dead` names, whose processes are dead, in one scan of
    /// the ring: `WRITING(p, owner)` becomes `SKIPPED(p)` and `READING(p, owner)` becomes
    /// `EMPTY(p + one_lap)`. Returns how many write claims (slots) were dropped and how many
    /// messages were lost.
    ///
    /// `takes`, for a joinable queue: each dead owner's `takes` word. A freed `READING` slot that
    /// starts a message carries a task, which moves into its owner's `takes`, journaled as a live
    /// release is (`tasks`), so that a reaper that dies here leaves a state the next one resolves.
    ///
    /// Only the survivors that won the dead owners' table entries call this (one per entry, who
    /// holds its lock), and the dead make no new claims, so no claim of theirs can appear behind
    /// the scan. Idempotent: a second run finds nothing.
    pub fn repair_owners<'t>(
        &self,
        dead: &dyn Fn(u16) -> bool,
        takes: Option<&dyn Fn(u16) -> &'t AtomicU64>,
    ) -> Result<(u64, u64), Died> {
        let (mut dropped, mut lost) = (0, 0);
        let mut retire_budget = self.mem.capacity;
        for idx in 0..self.mem.capacity {
            let slot = self.mem.slot(idx);
            let s = slot.stamp.load(Ordering::Acquire);
            let (state, o, p) = unpack(s);
            // A stamp naming another slot's position was written by a hostile peer: not a claim
            // of anyone's, and left alone (the claims that meet it report it).
            if o == 0 || !dead(o) || p & (self.one_lap - 1) != idx {
                continue;
            }
            // A message counts once: a continuation slot of a larger message is not counted (its
            // `aux`, written before the message was committed, is stable while it is READING).
            // WRITING slots count one each: `aux` is not written yet, so a group cannot be told
            // from single claims.
            // Read before the CAS below hands the slot back to producers, who may rewrite it.
            let aux = slot.aux.load(Ordering::Relaxed);
            let head = aux & AUX_CONT == 0;
            let new = match state {
                WRITING => stamp(SKIPPED, 0, p),
                READING => stamp(EMPTY, 0, (p + self.one_lap) & POS_MASK),
                _ => continue,
            };
            let tally = match (state, takes) {
                (READING, Some(takes)) if head => Some(takes(o)),
                _ => None,
            };
            if let Some(t) = tally {
                Ledger::begin_release(t, idx)?;
            }
            crash::point("repair.slot")?;
            if slot.stamp.compare_exchange(s, new, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                if state == WRITING {
                    dropped += 1;
                } else {
                    lost += head as u64;
                    if aux & AUX_HEAD != 0 {
                        self.retire_rest(Claim { idx, pos: p, count: aux & AUX_COUNT }, &mut retire_budget);
                    }
                }
            }
            if let Some(t) = tally {
                Ledger::end_release(t)?;
            }
        }
        doorbell::ring_all(&self.mem.ctrl().not_empty);
        doorbell::ring_all(&self.mem.ctrl().not_full);
        Ok((dropped, lost))
    }

    /// [`Mpmc::repair_owners`] for one owner of a queue that is not joinable.
    #[cfg(test)]
    pub fn repair_owner(&self, owner: u16) -> (u64, u64) {
        self.repair_owners(&|o| o == owner, None).unwrap_or_default()
    }

    /// Whether the slot of position `pos` is still `WRITING(pos, owner)`.
    pub fn unpublished(&self, owner: u16, pos: u64) -> bool {
        let idx = pos & (self.one_lap - 1);
        idx < self.mem.capacity
            && self.mem.slot(idx).stamp.load(Ordering::Acquire) == stamp(WRITING, owner, pos & POS_MASK)
    }

    /// Whether slot `idx` is `READING` by `owner`.
    pub fn held_by(&self, owner: u16, idx: u64) -> bool {
        if idx >= self.mem.capacity {
            return false;
        }
        let (state, o, _) = unpack(self.mem.slot(idx).stamp.load(Ordering::Acquire));
        state == READING && o == owner
    }
}
