//! Messages larger than a slot: `count` consecutive positions claimed as one group, published
//! continuation slots first and the first slot last, and taken whole by one reader.

use super::*;

impl Mpmc {
    /// The claim of the slot after `c`'s (same message, next position).
    #[inline]
    pub(in crate::ring) fn next_claim(&self, c: Claim) -> Claim {
        let pos = self.next(c.pos, c.idx);
        Claim { idx: pos & (self.one_lap - 1), pos, count: c.count.saturating_sub(1) }
    }

    /// The position `j` (< capacity) positions before `pos`.
    pub(super) fn back(&self, pos: u64, j: u64) -> u64 {
        let idx = pos & (self.one_lap - 1);
        if idx >= j {
            pos - j
        } else {
            ((pos & !(self.one_lap - 1)).wrapping_sub(self.one_lap) + (self.mem.capacity - (j - idx))) & POS_MASK
        }
    }

    /// Whether the committed continuation slot at `h` (aux `aux`) lost its message: its first
    /// slot is no longer `READING` for this message (the reader died before taking the rest, or
    /// the producer died before publishing the first slot, which recovery then skipped). A
    /// continuation is published before its first slot and taken by the first slot's reader
    /// before that reader releases anything, so it cannot be seen `FULL` while its first slot
    /// is still waiting.
    pub(super) fn cont_orphaned(&self, h: u64, aux: u32) -> Result<bool, RecvError> {
        let j = (aux & AUX_COUNT) as u64;
        if j == 0 || j >= self.mem.capacity {
            return Err(RecvError::Corrupt("continuation slot with an impossible offset"));
        }
        let first = self.back(h, j);
        let idx = self.index(first).ok_or(RecvError::Corrupt("continuation slot with an impossible offset"))?;
        let (state, _, p) = unpack(self.mem.slot(idx).stamp.load(Ordering::Acquire));
        match (state, dist(p, first)) {
            (READING, 0) => Ok(false),
            (FULL | WRITING, 0) => Err(RecvError::Corrupt("continuation slot seen before its first slot")),
            _ => Ok(true),
        }
    }

    /// Retires the continuation slots still `FULL` of a message whose first slot `first` was
    /// taken by a reader that died before taking them (recovery has just freed the first slot).
    /// Consumers that passed them while the first slot was still `READING` left them to that
    /// reader and moved the head on; nobody else comes back for them, and a lap later producers
    /// would find them still full. A slot the dead reader did take is `READING` and is freed by
    /// the repair scan itself.
    ///
    /// `budget`: slots the caller's whole repair pass may still look at. The messages of a pass
    /// occupy distinct slots, so legitimately it never runs out; forged counts on many slots
    /// would otherwise make one pass look at capacity² of them.
    pub(super) fn retire_rest(&self, first: Claim, budget: &mut u64) {
        if first.idx >= self.mem.capacity || first.pos & (self.one_lap - 1) != first.idx {
            return;
        }
        let mut cur = Claim { count: 1, ..first };
        for j in 1..(first.count as u64).min(self.mem.capacity) {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            cur = self.next_claim(cur);
            if cur.idx >= self.mem.capacity {
                return;
            }
            let slot = self.mem.slot(cur.idx);
            let s = slot.stamp.load(Ordering::Acquire);
            if s == stamp(FULL, 0, cur.pos) && slot.aux.load(Ordering::Relaxed) == AUX_CONT | j as u32 {
                // A consumer retiring the same orphan (`cont_orphaned`) CASes from the same
                // value: one of us wins.
                self.retire(cur.idx, s, cur.pos);
            }
        }
    }

    /// Takes the continuation slots of a message whose first slot `c` we just claimed.
    pub(super) fn claim_rest(&self, c: Claim, owner: u16) -> Result<(), RecvError> {
        let mut cur = c;
        for j in 1..c.count {
            cur = self.next_claim(cur);
            let slot = self.mem.slot(cur.idx);
            let s = slot.stamp.load(Ordering::Acquire);
            let ok = s == stamp(FULL, 0, cur.pos)
                && slot.aux.load(Ordering::Relaxed) == AUX_CONT | j
                && slot
                    .stamp
                    .compare_exchange(s, stamp(READING, owner, cur.pos), Ordering::Acquire, Ordering::Relaxed)
                    .is_ok();
            if !ok {
                // Not what a producer writes: give back what we took and report it.
                let mut back = c;
                for _ in 0..j {
                    self.release(Claim { count: 1, ..back });
                    back = self.next_claim(back);
                }
                return Err(RecvError::Corrupt("a message's continuation slots are missing"));
            }
        }
        Ok(())
    }

    /// Claims `count` consecutive positions for one message (`1 < count <= capacity`), or none.
    ///
    /// Positions are claimed in order with the same CAS as single claims; if another producer
    /// takes one first, the claimed prefix is given up (consumers skip it) and the claim starts
    /// over. `Full` when the last position needed still holds the previous lap, or when the
    /// attempts have walked [`MAX_SPINS`] slots in all without placing the group (a ring that does
    /// not settle for a group this large now; a blocking put waits and tries again).
    pub(in crate::ring) fn try_claim_group(&self, owner: u16, count: u32) -> Result<Claim, SendError> {
        let ctrl = self.mem.ctrl();
        let tail = || hint(&ctrl.tail).ok_or(SendError::Corrupt("tail hint out of range"));
        let mut steps = 0u64;
        for _ in 0..MAX_SPINS / 64 {
            // Each attempt walks the group's slots up to three times.
            steps += 3 * count as u64;
            if steps > MAX_SPINS as u64 + 3 * count as u64 {
                return Err(SendError::Full);
            }
            // Before claiming anything: is the last position a group starting at the tail would
            // need still holding the previous lap? Then there is no room, and nothing to undo.
            let t = tail()?;
            let idx = self.index(t).ok_or(SendError::Corrupt("tail index out of range"))?;
            let mut last = Claim { idx, pos: t, count };
            for _ in 1..count {
                last = self.next_claim(last);
            }
            let s = self.mem.slot(last.idx).stamp.load(Ordering::Acquire);
            let (_, _, p) = unpack(s);
            if dist(p, last.pos) < 0 {
                if !self.retire_if_orphan(last.idx, s, dist(p, last.pos)) && tail()? == t {
                    return Err(SendError::Full);
                }
                continue;
            }
            let first = self.try_claim_write(owner, false)?;
            let first = Claim { count, ..first };
            // Look at the last position first: no room means no partial claim to undo.
            let mut last = first;
            for _ in 1..count {
                last = self.next_claim(last);
            }
            let (state, _, p) = unpack(self.mem.slot(last.idx).stamp.load(Ordering::Acquire));
            let room = state == EMPTY && p == last.pos;
            let mut cur = first;
            let mut taken = 1;
            while room && taken < count {
                cur = self.next_claim(cur);
                let slot = self.mem.slot(cur.idx);
                let s = stamp(EMPTY, 0, cur.pos);
                if slot
                    .stamp
                    .compare_exchange(s, stamp(WRITING, owner, cur.pos), Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    break;
                }
                let _ = ctrl.tail.compare_exchange(
                    cur.pos,
                    self.next(cur.pos, cur.idx),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                taken += 1;
            }
            if taken == count {
                return Ok(first);
            }
            // Give the prefix up; consumers retire it like any abandoned claim.
            let mut c = first;
            for _ in 0..taken {
                self.abandon(Claim { count: 1, ..c });
                c = self.next_claim(c);
            }
            if !room && dist(p, last.pos) < 0 {
                return Err(SendError::Full);
            }
        }
        Err(SendError::Corrupt("tail never settles"))
    }

    /// Publishes a group claimed by `try_claim_group`: continuation slots first (each marked with
    /// its distance from the first), then the first slot (marked with the count), so a consumer
    /// that sees the first slot committed sees the whole message. `len(j)` is fragment j's length.
    pub(in crate::ring) fn commit_group(&self, first: Claim, len: impl Fn(u32) -> u32) {
        let mut claims = Vec::with_capacity(first.count as usize);
        let mut c = first;
        claims.push(c);
        for _ in 1..first.count {
            c = self.next_claim(c);
            claims.push(c);
        }
        for (j, c) in claims.iter().enumerate().rev() {
            let slot = self.mem.slot(c.idx);
            slot.len.store(len(j as u32), Ordering::Relaxed);
            let aux = if j == 0 { AUX_HEAD | first.count } else { AUX_CONT | j as u32 };
            slot.aux.store(aux, Ordering::Relaxed);
            // ORDERING: Release, as in `commit` (SYNC POINT: slot-published); the first slot last.
            slot.stamp.store(stamp(FULL, 0, c.pos), Ordering::Release);
        }
        doorbell::ring(&self.mem.ctrl().not_empty);
    }

    /// Frees every slot of a read claim (`c.count` of them, first to last).
    #[inline]
    pub(in crate::ring) fn release_group(&self, c: Claim) {
        let mut cur = Claim { count: 1, ..c };
        self.release(cur);
        for _ in 1..c.count {
            cur = self.next_claim(cur);
            self.release(cur);
        }
    }
}
