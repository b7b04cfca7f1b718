//! Single-slot claims: a producer's write claim (`EMPTY → WRITING(p, me) → FULL`) and a
//! consumer's read claim (`FULL → READING(p, me) → EMPTY(p + one_lap)`), with the inlined fast
//! paths and the general loops that help stale hints, retire skipped writes and refuse hostile
//! stamps.

use super::*;
use crate::ring::mem::{copy_from_shared, copy_to};

impl Mpmc {
    /// Claims the next free slot for writing, tagged with `owner`.
    ///
    /// `eager`: first try to claim the slot the tail names with a CAS alone, expecting it empty.
    /// Loading the stamp first, then CASing it, costs two cache-line transactions when the line
    /// sits in the consumer's cache (a load that shares it, an upgrade that takes it over); the
    /// CAS alone takes it over in one, which is most of the difference between the queue's round
    /// trip and a bare cache-line ping-pong. A CAS that fails still took the line over, so
    /// callers that retry on a full queue pass `eager` only on their first try: polling with CASes
    /// would pull the line away from the consumer that is about to free it.
    ///
    /// The eager try is small and inlined into the caller; everything else (a stale hint, a full
    /// ring, a hostile stamp) is in [`Self::claim_write_slow`], which gives the same answer for
    /// the same state.
    #[inline]
    pub(in crate::ring) fn try_claim_write(&self, owner: u16, eager: bool) -> Result<Claim, SendError> {
        if eager {
            if let Some(c) = self.claim_write_eager(owner) {
                return Ok(c);
            }
        }
        self.claim_write_slow(owner)
    }

    /// The eager try of [`Self::try_claim_write`]: one CAS on the stamp of the slot the tail
    /// names, expecting it empty; `None` (nothing changed) if it is not.
    #[inline]
    pub(super) fn claim_write_eager(&self, owner: u16) -> Option<Claim> {
        let ctrl = self.mem.ctrl();
        let t = ctrl.tail.load(Ordering::Relaxed);
        let idx = t & (self.one_lap - 1);
        // A hint above the position range is left to the slow path, which reports it.
        if t > POS_MASK || idx >= self.mem.capacity {
            return None;
        }
        // ORDERING: Acquire on success, as for the CAS in the slow path (slot-released). On
        // failure nothing is read: the slow path loads the stamp again.
        self.mem
            .slot(idx)
            .stamp
            .compare_exchange(stamp(EMPTY, 0, t), stamp(WRITING, owner, t), Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        pass(&ctrl.tail, t, self.next(t, idx));
        Some(Claim { idx, pos: t, count: 1 })
    }

    /// The general write claim: loads each stamp before claiming it, helps stale hints on,
    /// reports a full ring and refuses hostile states.
    #[inline(never)]
    pub(super) fn claim_write_slow(&self, owner: u16) -> Result<Claim, SendError> {
        let ctrl = self.mem.ctrl();
        let tail = || hint(&ctrl.tail).ok_or(SendError::Corrupt("tail hint out of range"));
        let mut t = tail()?;
        let mut walk = Walk::default();
        for _ in 0..self.spin_budget() {
            let idx = self.index(t).ok_or(SendError::Corrupt("tail index out of range"))?;
            let slot = self.mem.slot(idx);
            // ORDERING: Acquire, pairs with the Release store in `release` (SYNC POINT:
            // slot-released): the previous reader is done with the payload before we write it.
            let s = slot.stamp.load(Ordering::Acquire);
            let (state, _, p) = unpack(s);
            if p & (self.one_lap - 1) != idx {
                return Err(SendError::Corrupt(FOREIGN_STAMP));
            }
            let d = dist(p, t);
            if d == 0 && state == EMPTY {
                let mine = stamp(WRITING, owner, t);
                // ORDERING: Acquire on success for the same reason as the load above.
                match slot.stamp.compare_exchange_weak(s, mine, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => {
                        // Best effort: if this fails, someone already advanced the hint for us.
                        let _ = ctrl.tail.compare_exchange(t, self.next(t, idx), Ordering::Relaxed, Ordering::Relaxed);
                        return Ok(Claim { idx, pos: t, count: 1 });
                    }
                    Err(_) => {
                        crate::sys::atomic::spin_hint();
                        t = tail()?;
                    }
                }
            } else if d >= 0 {
                // Position t is taken (or the slot is a lap ahead): the hint is stale. Help it on.
                let to = self.catch_up(t, idx, p, d);
                if !walk.advance(t, to) {
                    return Err(SendError::Corrupt(RAN_AROUND));
                }
                let _ = ctrl.tail.compare_exchange(t, to, Ordering::Relaxed, Ordering::Relaxed);
                t = tail()?;
            } else {
                // The slot still holds the previous lap: full, unless the hint moved meanwhile,
                // or unless that lap's message is an orphaned continuation (retired: look again).
                if self.retire_if_orphan(idx, s, d) {
                    continue;
                }
                let t2 = tail()?;
                if t2 == t {
                    return Err(SendError::Full);
                }
                t = t2;
            }
        }
        Err(SendError::Corrupt("tail never settles"))
    }

    /// A producer finding slot `idx` still `FULL` from the previous lap (`s`, `d = -one_lap`)
    /// retires it if it is a continuation whose message is gone (`cont_orphaned`), and says
    /// whether it did. Consumers retire orphans they meet at the head, and recovery retires those
    /// of a reader it repairs; this covers the rest (a reaper killed between the two steps of a
    /// repair, a head that had already passed), so an orphan can never keep the ring full.
    pub(super) fn retire_if_orphan(&self, idx: u64, s: u64, d: i64) -> bool {
        let (state, _, p) = unpack(s);
        if state != FULL || d != -(self.one_lap as i64) {
            return false;
        }
        let slot = self.mem.slot(idx);
        // Read after the Acquire load of the stamp: written before that lap was published.
        let aux = slot.aux.load(Ordering::Relaxed);
        if aux & AUX_CONT == 0 || !matches!(self.cont_orphaned(p, aux), Ok(true)) {
            return false;
        }
        // Whoever else retires the same orphan CASes from the same value: one of us wins, and
        // either way the slot is free now.
        self.retire(idx, s, p);
        true
    }

    /// Frees slot `idx`, whose stamp was `s` for position `pos`, for the next lap without a
    /// reader (a skipped write or an orphaned continuation). `false` if the stamp had changed.
    #[inline]
    pub(super) fn retire(&self, idx: u64, s: u64, pos: u64) -> bool {
        // ORDERING: Release, as in `release`: the slot goes back to the producers.
        let retired = stamp(EMPTY, 0, pos + self.one_lap);
        self.mem.slot(idx).stamp.compare_exchange(s, retired, Ordering::Release, Ordering::Relaxed).is_ok()
    }

    /// Publishes a claimed slot holding `len` payload bytes and wakes a sleeping consumer.
    #[inline]
    pub(in crate::ring) fn commit(&self, c: Claim, len: u32) {
        let slot = self.mem.slot(c.idx);
        slot.len.store(len, Ordering::Relaxed);
        // A slot once part of a group must not stay one.
        slot.aux.store(0, Ordering::Relaxed);
        // ORDERING: Release, pairs with the Acquire load in `try_claim_read`. SYNC POINT:
        // slot-published: payload and len are visible to whoever sees FULL.
        slot.stamp.store(stamp(FULL, 0, c.pos), Ordering::Release);
        doorbell::ring(&self.mem.ctrl().not_empty);
    }

    /// Gives a write claim up: the slot goes straight to the next lap (`EMPTY(p + one_lap)`), as
    /// if a consumer had read and released it, so an abandoned claim never counts as a message
    /// nor keeps the ring full. Then the read hint is helped on (see [`Self::help_head_on`]).
    pub(in crate::ring) fn abandon(&self, c: Claim) {
        let next_lap = (c.pos + self.one_lap) & POS_MASK;
        // ORDERING: Release, pairs with the Acquire load of the stamp in `try_claim_write` (the
        // next lap's producer) and in `try_claim_read` (a consumer that then moves the hint on).
        // SYNC POINT: slot-released.
        self.mem.slot(c.idx).stamp.store(stamp(EMPTY, 0, next_lap), Ordering::Release);
        self.help_head_on();
        doorbell::ring(&self.mem.ctrl().not_full);
        doorbell::ring(&self.mem.ctrl().not_empty);
    }

    /// Moves the read hint past the positions at it that are already read or retired, as
    /// `claim_read_slow` steps, one position at a time and at most `2 * capacity + 2` of them. An
    /// abandoned write frees its slot while the hint may still stand before it, and the slot can
    /// then lap again; walking the hint on at every abandon keeps it near the claims still in
    /// flight, so no reader finds it lagging by more than a lap and the abandons in flight. `len`
    /// calls it too, for a hint a delayed claimer set back (less than a lap: see "Positions").
    pub(super) fn help_head_on(&self) {
        self.help_on(&self.mem.ctrl().head, |h, idx, state, _, d| {
            (d > 0 || (d == 0 && state == READING)).then(|| self.next(h, idx))
        });
    }

    /// Moves the write hint past the positions at it that are already claimed, as
    /// `claim_write_slow` does, at most `2 * capacity + 2` moves (a delayed producer's store sets
    /// it back by less than a lap; a hint further behind lands within a lap of the front with its
    /// first jump): for `len`, so that a quiet ring counts exactly.
    pub(super) fn help_tail_on(&self) {
        self.help_on(&self.mem.ctrl().tail, |t, idx, state, p, d| {
            (d > 0 || (d == 0 && state != EMPTY)).then(|| self.catch_up(t, idx, p, d))
        });
    }

    /// The walk of [`Self::help_head_on`] and [`Self::help_tail_on`]: from the hint in `word`, at
    /// most `2 * capacity + 2` moves, each to where `step(pos, idx, state, p, d)` says the slot
    /// at `pos` (its stamp's state and position `p`, `d = p - pos`) lets the hint go; `None`
    /// ends the walk. It also ends at a hint or stamp out of range (the next claim reports it)
    /// and when someone else moves the hint.
    fn help_on(&self, word: &AtomicU64, step: impl Fn(u64, u64, u64, u64, i64) -> Option<u64>) {
        let Some(mut pos) = hint(word) else { return };
        for _ in 0..2 * self.mem.capacity + 2 {
            let Some(idx) = self.index(pos) else { return };
            // ORDERING: Acquire, as the loads in the claim loops; pairs with the Release stores
            // of stamps (`commit`, `release`, `retire`, `abandon`).
            let (state, _, p) = unpack(self.mem.slot(idx).stamp.load(Ordering::Acquire));
            if p & (self.one_lap - 1) != idx {
                return;
            }
            let Some(to) = step(pos, idx, state, p, dist(p, pos)) else { return };
            // ORDERING: Relaxed, as every move of a hint: it is only a hint.
            if word.compare_exchange(pos, to, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                return;
            }
            pos = to;
        }
    }

    /// Claims the oldest committed message for reading, tagged with `owner`.
    ///
    /// The two common cases are small and inlined into the caller: the head names a committed
    /// single-slot message (claim it), or an empty slot with the head unmoved (report `Empty`).
    /// Everything else (a stale hint, a group, a skipped write, a hostile stamp, a lost CAS) goes
    /// to [`Self::claim_read_slow`], which gives the same answer for the same state.
    #[inline]
    pub(in crate::ring) fn try_claim_read(&self, owner: u16) -> Result<Claim, RecvError> {
        match self.claim_read_fast(owner) {
            Fast::Claimed(c) => Ok(c),
            Fast::Empty => Err(RecvError::Empty),
            Fast::Other => self.claim_read_slow(owner),
        }
    }

    /// The two common cases of [`Self::try_claim_read`], without its loop.
    #[inline(always)]
    pub(super) fn claim_read_fast(&self, owner: u16) -> Fast {
        let ctrl = self.mem.ctrl();
        let h = ctrl.head.load(Ordering::Relaxed);
        let idx = h & (self.one_lap - 1);
        // A hint above the position range is left to the slow path, which reports it. (The
        // checks of `hint` and `index` are written out here: their `Option`s cost more in this
        // inlined path.)
        if h > POS_MASK || idx >= self.mem.capacity {
            return Fast::Other;
        }
        let slot = self.mem.slot(idx);
        // ORDERING: Acquire, pairs with the Release store in `commit`. SYNC POINT:
        // slot-published.
        let s = slot.stamp.load(Ordering::Acquire);
        // A committed message of one slot at exactly this position (commit writes owner 0
        // and clears `aux`; anything else in `aux` is a group's slot: the slow path's).
        if s == stamp(FULL, 0, h) && slot.aux.load(Ordering::Relaxed) == 0 {
            // ORDERING: Acquire on success, as in the slow path.
            if slot.stamp.compare_exchange(s, stamp(READING, owner, h), Ordering::Acquire, Ordering::Relaxed).is_ok() {
                pass(&ctrl.head, h, self.next(h, idx));
                return Fast::Claimed(Claim { idx, pos: h, count: 1 });
            }
        } else if s == stamp(EMPTY, 0, h) && ctrl.head.load(Ordering::Relaxed) == h {
            // Not written yet, and the hint did not move meanwhile: empty (the slow path's
            // last branch, taken without its loop).
            return Fast::Empty;
        }
        Fast::Other
    }

    /// The general read claim: helps stale hints on, takes groups, retires skipped writes and
    /// orphaned continuations, refuses hostile states.
    #[inline(never)]
    pub(super) fn claim_read_slow(&self, owner: u16) -> Result<Claim, RecvError> {
        let ctrl = self.mem.ctrl();
        let head = || hint(&ctrl.head).ok_or(RecvError::Corrupt("head hint out of range"));
        let mut h = head()?;
        let mut walk = Walk::default();
        for _ in 0..self.spin_budget() {
            let idx = self.index(h).ok_or(RecvError::Corrupt("head index out of range"))?;
            let slot = self.mem.slot(idx);
            // ORDERING: Acquire, pairs with the Release store in `commit`. SYNC POINT:
            // slot-published.
            let s = slot.stamp.load(Ordering::Acquire);
            let (state, _, p) = unpack(s);
            if p & (self.one_lap - 1) != idx {
                return Err(RecvError::Corrupt(FOREIGN_STAMP));
            }
            let d = dist(p, h);
            if d == 0 && state == FULL {
                // Read after the Acquire load of the stamp: written before it was published.
                let aux = slot.aux.load(Ordering::Relaxed);
                if aux & AUX_CONT != 0 {
                    // The middle of a larger message: never ours to take here (see `cont_orphaned`).
                    if self.cont_orphaned(h, aux)? && self.retire(idx, s, h) {
                        doorbell::ring(&ctrl.not_full);
                    }
                    let _ = ctrl.head.compare_exchange(h, self.next(h, idx), Ordering::Relaxed, Ordering::Relaxed);
                    h = head()?;
                    continue;
                }
                let count = if aux & AUX_HEAD != 0 { aux & AUX_COUNT } else { 1 };
                if count == 0 || count as u64 > self.mem.capacity {
                    return Err(RecvError::Corrupt("slot claims a message of impossible size"));
                }
                let mine = stamp(READING, owner, h);
                match slot.stamp.compare_exchange_weak(s, mine, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => {
                        let _ = ctrl.head.compare_exchange(h, self.next(h, idx), Ordering::Relaxed, Ordering::Relaxed);
                        let c = Claim { idx, pos: h, count };
                        if count > 1 {
                            self.claim_rest(c, owner)?;
                            // Move the hint past the whole message (best effort, as above).
                            let mut cur = Claim { count: 1, ..c };
                            for _ in 1..count {
                                cur = self.next_claim(cur);
                                let next = self.next(cur.pos, cur.idx);
                                let _ = ctrl.head.compare_exchange(cur.pos, next, Ordering::Relaxed, Ordering::Relaxed);
                            }
                        }
                        return Ok(c);
                    }
                    Err(_) => {
                        crate::sys::atomic::spin_hint();
                        h = head()?;
                    }
                }
            } else if d == 0 && state == SKIPPED {
                // An abandoned write: retire it for everyone, then look at the next position.
                if self.retire(idx, s, h) {
                    doorbell::ring(&ctrl.not_full);
                }
                let _ = ctrl.head.compare_exchange(h, self.next(h, idx), Ordering::Relaxed, Ordering::Relaxed);
                h = head()?;
            } else if d > 0 || (d == 0 && state == READING) {
                // Position h was read or retired already: the hint is stale. Help it on by one
                // position, never by laps: an abandoned write frees its slot for the next lap
                // while the read hint may still stand before it, so a slot laps ahead of the hint
                // does not prove the positions in between were read.
                if d as u64 / self.one_lap > MAX_HEAD_LAG_LAPS {
                    return Err(RecvError::Corrupt(HEAD_FAR_BEHIND));
                }
                let to = self.next(h, idx);
                if !walk.advance(h, to) {
                    return Err(RecvError::Corrupt(RAN_AROUND));
                }
                let _ = ctrl.head.compare_exchange(h, to, Ordering::Relaxed, Ordering::Relaxed);
                h = head()?;
            } else if d == 0 && state > SKIPPED {
                return Err(RecvError::Corrupt("slot stamp has an unknown state"));
            } else {
                // EMPTY(h) or WRITING(h): not published yet. An older lap: not even written.
                let h2 = head()?;
                if h2 == h {
                    return Err(RecvError::Empty);
                }
                h = h2;
            }
        }
        Err(RecvError::Corrupt("head never settles"))
    }

    /// Length of the message in a read claim, checked against the slot size (read once).
    #[inline]
    pub(in crate::ring) fn claimed_len(&self, c: Claim) -> Result<usize, RecvError> {
        let len = self.mem.slot(c.idx).len.load(Ordering::Relaxed) as usize;
        if len > self.mem.slot_size {
            return Err(RecvError::Corrupt("message length exceeds the slot size"));
        }
        Ok(len)
    }

    /// Frees a read claim for the producers of the next lap and wakes one that sleeps.
    #[inline]
    pub(in crate::ring) fn release(&self, c: Claim) {
        let next_lap = (c.pos + self.one_lap) & POS_MASK;
        // ORDERING: Release, pairs with the Acquire load in `try_claim_write`. SYNC POINT:
        // slot-released: our reads of the payload happen before the next write of it.
        self.mem.slot(c.idx).stamp.store(stamp(EMPTY, 0, next_lap), Ordering::Release);
        doorbell::ring(&self.mem.ctrl().not_full);
    }
}

/// What the inlined fast case of a read claim found.
pub(super) enum Fast {
    /// A single-slot message, now claimed.
    Claimed(Claim),
    /// Nothing published at the head, and the head did not move.
    Empty,
    /// Anything else: the general path decides.
    Other,
}

/// A write claim that owns its slot (or the `count` consecutive slots of a group) until it is
/// committed. Dropping it uncommitted gives the slots up: consumers skip them.
///
/// Made only by [`Mpmc::claim_write`] and [`Mpmc::claim_group`], so holding one proves that
/// this process owns the slots: the payload accessors below are the only way the handles reach
/// slot memory.
pub(crate) struct WriteClaim<'r> {
    ring: &'r Mpmc,
    claim: Claim,
}

impl<'r> WriteClaim<'r> {
    /// The position of the claim's (first) slot.
    pub fn position(&self) -> u64 {
        self.claim.pos
    }

    /// Copies `msg` (at most a slot; longer panics) into the first slot's payload.
    #[inline]
    pub fn write(&mut self, msg: &[u8]) {
        assert!(msg.len() <= self.ring.mem.slot_size, "a message longer than the slot");
        // SAFETY: the claim's index is below the capacity (checked when it was claimed), its
        // payload holds `slot_size >= msg.len()` bytes, and the slot is ours until commit: no
        // producer writes it and no consumer reads it. `msg` is the caller's memory.
        unsafe { copy_to(msg, self.ring.mem.payload(self.claim.idx)) }
    }

    /// Copies `msg` into the group's slots, `slot_size` bytes to a slot, in order (`msg` spans
    /// exactly as many slots as the group holds; otherwise this panics).
    pub fn write_fragments(&mut self, msg: &[u8]) {
        let slot = self.ring.mem.slot_size;
        assert_eq!(msg.len().div_ceil(slot), self.claim.count as usize, "fragments do not fit the group");
        let mut c = self.claim;
        for (j, chunk) in msg.chunks(slot).enumerate() {
            if j > 0 {
                c = self.ring.next_claim(c);
            }
            assert!(c.idx < self.ring.mem.capacity);
            // SAFETY: slot `c.idx` is in bounds (asserted) and one of the group's, all ours until
            // commit; each chunk is at most `slot_size` bytes, the payload's size.
            unsafe { copy_to(chunk, self.ring.mem.payload(c.idx)) }
        }
    }

    /// The first slot's whole payload (`slot_size` bytes, contents unspecified), to write a
    /// message in place.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `write`; `&mut self` keeps this the only reference to the slot's bytes
        // in this process while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.ring.mem.payload(self.claim.idx), self.ring.mem.slot_size) }
    }

    /// Publishes a single-slot claim holding `len` payload bytes (at most a slot).
    #[inline]
    pub fn commit(self, len: u32) {
        let (ring, claim) = (self.ring, self.claim);
        std::mem::forget(self);
        ring.commit(claim, len);
    }

    /// Publishes a group; `len(j)` is fragment `j`'s length.
    pub fn commit_group(self, len: impl Fn(u32) -> u32) {
        let (ring, claim) = (self.ring, self.claim);
        std::mem::forget(self);
        ring.commit_group(claim, len);
    }
}

impl Drop for WriteClaim<'_> {
    fn drop(&mut self) {
        let mut c = self.claim;
        self.ring.abandon(c);
        for _ in 1..self.claim.count {
            c = self.ring.next_claim(c);
            self.ring.abandon(c);
        }
    }
}

/// A read claim that owns its slot (or a group's slots) until dropped, which frees them for
/// the producers of the next lap. Made only by [`Mpmc::claim_read`].
pub(crate) struct ReadClaim<'r> {
    ring: &'r Mpmc,
    claim: Claim,
    /// A joinable queue's `takes` word of the claiming entry: the release moves the message's
    /// task into it, journaled (see `segment::tasks`).
    takes: Option<&'r AtomicU64>,
}

impl<'r> ReadClaim<'r> {
    /// Makes the release of this claim count its task in `takes` (joinable queues).
    #[inline]
    pub fn counted_in(mut self, takes: &'r AtomicU64) -> Self {
        self.takes = Some(takes);
        self
    }

    /// Slots the message spans.
    #[inline]
    pub fn count(&self) -> u32 {
        self.claim.count
    }

    /// Length of a single-slot message, read once from the slot and checked against the slot
    /// size.
    #[inline]
    pub fn len(&self) -> Result<usize, RecvError> {
        self.ring.claimed_len(self.claim)
    }

    /// The first `len` bytes of the first slot's payload (`len` clamped to the slot size), read
    /// in place. A peer that breaks the protocol can change them while they are read.
    #[inline]
    pub fn bytes(&self, len: usize) -> &[u8] {
        let len = len.min(self.ring.mem.slot_size);
        // SAFETY: the claim's index is below the capacity (checked when it was claimed) and
        // `len <= slot_size`; the slot is ours until this claim drops, so no producer writes it.
        unsafe { std::slice::from_raw_parts(self.ring.mem.payload(self.claim.idx), len) }
    }

    /// Copies the first `dst.len()` bytes (at most the slot size; more panics) of a single-slot
    /// message into `dst`, with a copy that is no data race even if a peer writes the slot
    /// meanwhile (see [`copy_from_shared`]).
    #[inline]
    pub fn copy_out(&self, dst: &mut [u8]) {
        assert!(dst.len() <= self.ring.mem.slot_size, "a read outside the slot");
        // SAFETY: the claim's index is below the capacity (checked when it was claimed) and
        // `dst.len() <= slot_size`: the source lies inside the slot's payload, only read here.
        unsafe { copy_from_shared(self.ring.mem.payload(self.claim.idx), dst) }
    }

    /// Appends every fragment of the message, in order, to `out` (copied as by
    /// [`ReadClaim::copy_out`]). Each fragment's length is read once and checked against the slot
    /// size; `out` grows a fragment at a time, so a corrupt group costs no more than it holds.
    pub fn copy_fragments(&self, out: &mut Vec<u8>) -> Result<(), RecvError> {
        let mut c = Claim { count: 1, ..self.claim };
        for j in 0..self.claim.count {
            if j > 0 {
                c = Claim { count: 1, ..self.ring.next_claim(c) };
            }
            let len = self.ring.claimed_len(c)?;
            if c.idx >= self.ring.mem.capacity {
                return Err(RecvError::Corrupt("a group runs outside the ring"));
            }
            let start = out.len();
            out.resize(start + len, 0);
            // SAFETY: `c.idx < capacity` (checked), `len <= slot_size` (checked); the slot is one
            // of the group's, ours until this claim drops, and only read here.
            unsafe { copy_from_shared(self.ring.mem.payload(c.idx), &mut out[start..]) };
        }
        Ok(())
    }
}

impl Drop for ReadClaim<'_> {
    #[inline]
    fn drop(&mut self) {
        match self.takes {
            None => self.ring.release_group(self.claim),
            Some(takes) => self.release_counted(takes),
        }
    }
}

impl ReadClaim<'_> {
    /// Releases the claim and moves its task into `takes`, in one journaled step.
    #[cold]
    fn release_counted(&self, takes: &AtomicU64) {
        use crate::segment::tasks::Ledger;
        let _ = Ledger::begin_release(takes, self.claim.idx);
        self.ring.release_group(self.claim);
        let _ = Ledger::end_release(takes);
    }
}

impl Mpmc {
    /// [`Mpmc::try_claim_write`], as a claim that owns its slot.
    #[inline]
    pub fn claim_write(&self, owner: u16, eager: bool) -> Result<WriteClaim<'_>, SendError> {
        self.try_claim_write(owner, eager).map(|claim| WriteClaim { ring: self, claim })
    }

    /// [`Mpmc::try_claim_group`], as a claim that owns its slots.
    pub fn claim_group(&self, owner: u16, count: u32) -> Result<WriteClaim<'_>, SendError> {
        self.try_claim_group(owner, count).map(|claim| WriteClaim { ring: self, claim })
    }

    /// [`Mpmc::try_claim_read`], as a claim that owns its slot(s).
    #[inline]
    pub fn claim_read(&self, owner: u16) -> Result<ReadClaim<'_>, RecvError> {
        self.try_claim_read(owner).map(|claim| ReadClaim { ring: self, claim, takes: None })
    }
}
