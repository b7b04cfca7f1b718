//! Repairing the claims of a dead owner (crash recovery of a queue's ring).

use super::*;

impl Mpmc {
    /// Repairs every claim made by `owner`, whose process is dead: `WRITING(p, owner)` becomes
    /// `SKIPPED(p)` and `READING(p, owner)` becomes `EMPTY(p + one_lap)`. Returns how many
    /// write claims (slots) were dropped and how many messages were lost. Only the survivor that won the dead owner's table entry calls this, and the dead make
    /// no new claims, so no claim of `owner` can appear behind the scan.
    pub fn repair_owner(&self, owner: u16) -> (u64, u64) {
        let (mut dropped, mut lost) = (0, 0);
        for idx in 0..self.mem.capacity {
            let slot = self.mem.slot(idx);
            let s = slot.stamp.load(Ordering::Acquire);
            let (state, o, p) = unpack(s);
            if o != owner {
                continue;
            }
            // A message counts once: a continuation slot of a larger message is not counted (its
            // `aux`, written before the message was committed, is stable while it is READING).
            // WRITING slots count one each: `aux` is not written yet, so a group cannot be told
            // from single claims.
            // Read before the CAS below hands the slot back to producers, who may rewrite it.
            let aux = slot.aux.load(Ordering::Relaxed);
            let (new, counter, counts): (_, &mut u64, bool) = match state {
                WRITING => (stamp(SKIPPED, 0, p), &mut dropped, true),
                READING => (stamp(EMPTY, 0, (p + self.one_lap) & POS_MASK), &mut lost, aux & AUX_CONT == 0),
                _ => continue,
            };
            if slot.stamp.compare_exchange(s, new, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                *counter += counts as u64;
                if state == READING && aux & AUX_HEAD != 0 {
                    self.retire_rest(Claim { idx, pos: p, count: aux & AUX_COUNT });
                }
            }
        }
        doorbell::ring_all(&self.mem.ctrl().not_empty);
        doorbell::ring_all(&self.mem.ctrl().not_full);
        (dropped, lost)
    }
}
