//! The lock-free multi-producer multi-consumer ring (Vyukov's bounded queue, owner-tagged).
//!
//! # Positions
//! A position is `{ lap, index }` packed as `lap * one_lap + index`, where `one_lap` is
//! `capacity.next_power_of_two()`, kept to [`POS_BITS`] bits. Slot `index` serves positions
//! `{ 0, index }, { 1, index }, …` in turn. `tail` and `head` in the control block are *hints*:
//! the next position to write and to read. Anyone may advance them with a CAS after seeing that
//! the position was claimed: by one position, or past a whole lap the slot's stamp proves finished
//! (see `catch_up`); nobody trusts them further than that.
//!
//! # Stamps
//! Each slot's 64-bit stamp is `{ state: 3, owner: 16, pos: 45 }` and is the only source of truth:
//!
//! ```text
//! EMPTY(p)  --producer CAS-->  WRITING(p, me)  --commit, Release-->  FULL(p)
//!   ^                              |  abandon (reservation dropped)
//!   |                              v
//!   |                          SKIPPED(p)  --consumer CAS-->  EMPTY(p + one_lap)
//!   |
//!   +--release, Release--  READING(p, me)  <--consumer CAS--  FULL(p)
//! ```
//!
//! The claim itself names its owner (a participant-table index, 0 = none), so a claim that is
//! never finished can be traced to the process that made it. Claims are CASes on the stamp, not on
//! `tail`/`head`, so exactly one producer owns each position and exactly one consumer reads it.
//!
//! A producer looking at position `t` compares the slot's stamp position `p` with `t`:
//! `p == t` and EMPTY: claim it; `p == t` otherwise, or `p` after `t`: `t` is stale, help advance
//! `tail`; `p` before `t`: the slot still holds the previous lap: the ring is full. A consumer at
//! `h`: FULL(h): claim; SKIPPED(h): retire it and move on; EMPTY(h)/WRITING(h) or an older lap:
//! nothing to read yet (empty); READING(h) or a newer lap: `h` is stale, help advance `head`.
//!
//! Every index read from shared memory is masked and checked against the process-local capacity
//! before it is used; a value outside the encoding is reported as corruption.

use crate::doorbell;
use crate::error::{RecvError, SendError};
use crate::ring::RingMem;
use crate::sync::{AtomicU64, Ordering};

/// Bits of a position.
pub const POS_BITS: u32 = 45;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const OWNER_SHIFT: u32 = POS_BITS;
const STATE_SHIFT: u32 = 61;

/// Stamp states.
pub const EMPTY: u64 = 0;
/// Claimed by a producer that has not committed yet.
pub const WRITING: u64 = 1;
/// Committed, waiting for a consumer.
pub const FULL: u64 = 2;
/// Claimed by a consumer that has not released the slot yet.
pub const READING: u64 = 3;
/// Claimed by a producer that gave up (or died): consumers skip it.
pub const SKIPPED: u64 = 4;

/// Slot header `aux` of the first slot of a message spanning several slots; the low bits hold
/// how many.
pub const AUX_HEAD: u32 = 1 << 31;
/// Slot header `aux` of a continuation slot; the low bits hold its distance from the first slot.
pub const AUX_CONT: u32 = 1 << 30;
/// The count / distance bits of `aux`.
pub const AUX_COUNT: u32 = (1 << 24) - 1;

/// Tries of a claim loop before the ring is declared corrupt. Legitimate contention never comes
/// near this; it only bounds the work a hostile peer can make us do.
const MAX_SPINS: u32 = 1 << 22;

/// Every position a slot's stamp names is one of that slot's (`pos % one_lap == index`); any
/// other was written by a hostile peer. Refused at once: stepping a hint past such a stamp one
/// position at a time would only end at [`MAX_SPINS`].
const FOREIGN_STAMP: &str = "slot stamp names a position of another slot";

/// Positions are modular, so a hint that keeps moving "forward" past hostile stamps can run
/// around the whole position space and start again (found by `open_segment`: an input that took
/// seconds). Legitimately one claim helps a hint past at most the positions claimed meanwhile,
/// nowhere near half the space; a walk that gets that far is reported as corruption.
const RAN_AROUND: &str = "a hint ran around the position space";

/// How far one claim has moved a hint.
#[derive(Default)]
struct Walk(u64);

impl Walk {
    /// Records a move from `from` to `to`; `false` once the total passes half the space.
    #[inline]
    fn advance(&mut self, from: u64, to: u64) -> bool {
        self.0 += to.wrapping_sub(from) & POS_MASK;
        self.0 <= POS_MASK / 2
    }
}

/// Reads a `tail` or `head` hint. A position never exceeds [`POS_MASK`]; a larger value comes
/// from a hostile peer, and is refused rather than masked: a masked copy never equals the word,
/// so every CAS that helps the hint on would fail and the claim loop would run to [`MAX_SPINS`].
#[inline]
fn hint(word: &AtomicU64) -> Option<u64> {
    let v = word.load(Ordering::Relaxed);
    (v <= POS_MASK).then_some(v)
}

/// Packs a stamp.
#[inline]
pub const fn stamp(state: u64, owner: u16, pos: u64) -> u64 {
    (state << STATE_SHIFT) | ((owner as u64) << OWNER_SHIFT) | (pos & POS_MASK)
}

/// Unpacks a stamp into `(state, owner, pos)`.
#[inline]
pub const fn unpack(s: u64) -> (u64, u16, u64) {
    (s >> STATE_SHIFT, (s >> OWNER_SHIFT) as u16, s & POS_MASK)
}

/// `a - b` for positions, as a signed distance (positions wrap at 2^45).
#[inline]
fn dist(a: u64, b: u64) -> i64 {
    ((a.wrapping_sub(b) << (64 - POS_BITS)) as i64) >> (64 - POS_BITS)
}

/// A claimed slot: its index and the position it was claimed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub idx: u64,
    pub pos: u64,
    /// Slots the message spans from here (1, or a group's size: see "Messages larger than a slot").
    pub count: u32,
}

/// The MPMC algorithm over one ring's memory.
#[derive(Clone, Copy)]
pub(crate) struct Mpmc {
    pub mem: RingMem,
    one_lap: u64,
}

impl Mpmc {
    /// Wraps initialised ring memory (see [`Mpmc::init`]).
    pub fn new(mem: RingMem) -> Self {
        Mpmc { mem, one_lap: mem.capacity.next_power_of_two() }
    }

    /// Writes the initial state: every slot `EMPTY({ 0, index })`, `tail = head = 0`.
    /// Only the creator calls this, before the segment is published.
    pub fn init(&self) {
        for i in 0..self.mem.capacity {
            self.mem.slot(i).stamp.store(stamp(EMPTY, 0, i), Ordering::Relaxed);
            self.mem.slot(i).len.store(0, Ordering::Relaxed);
        }
        self.mem.ctrl().tail.store(0, Ordering::Relaxed);
        self.mem.ctrl().head.store(0, Ordering::Relaxed);
    }

    /// The slot index of position `pos`, if it is one this ring has.
    #[inline]
    fn index(&self, pos: u64) -> Option<u64> {
        let idx = pos & (self.one_lap - 1);
        (idx < self.mem.capacity).then_some(idx)
    }

    /// The position after `pos`.
    #[inline]
    fn next(&self, pos: u64, idx: u64) -> u64 {
        if idx + 1 < self.mem.capacity {
            pos + 1
        } else {
            ((pos & !(self.one_lap - 1)) + self.one_lap) & POS_MASK
        }
    }

    /// Where a stale hint at `pos` (slot `idx`, whose stamp says position `p`, `d = p - pos`)
    /// may move: one position on, or, when the slot is at least a lap ahead, straight past the
    /// slot's previous lap `p - one_lap`. A slot reaches lap `p` only after position
    /// `p - one_lap` was written and then read or retired, each claimed while the hint stood
    /// there (or, for a continuation of a larger message, at its first slot), so every position
    /// up to it is already claimed on both sides: neither hint skips a position that still needs
    /// its producer or consumer. Without the jump, a hint left far
    /// behind (by a peer that wrote garbage, or a process that froze for a long time) would make
    /// every claim walk the gap one position at a time, up to [`MAX_SPINS`]. (Callers have
    /// checked that `p` is one of this slot's positions.)
    #[inline]
    fn catch_up(&self, pos: u64, idx: u64, p: u64, d: i64) -> u64 {
        if d as u64 >= self.one_lap {
            self.next(p.wrapping_sub(self.one_lap) & POS_MASK, idx)
        } else {
            self.next(pos, idx)
        }
    }

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
    pub fn try_claim_write(&self, owner: u16, eager: bool) -> Result<Claim, SendError> {
        if eager {
            let ctrl = self.mem.ctrl();
            let t = ctrl.tail.load(Ordering::Relaxed);
            let idx = t & (self.one_lap - 1);
            // A hint above the position range is left to the slow path, which reports it.
            if t <= POS_MASK && idx < self.mem.capacity {
                // ORDERING: Acquire on success, as for the CAS in the slow path (slot-released).
                // On failure nothing is read: the slow path loads the stamp again.
                if self
                    .mem
                    .slot(idx)
                    .stamp
                    .compare_exchange(
                        stamp(EMPTY, 0, t),
                        stamp(WRITING, owner, t),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    // Best effort: if this fails, someone already advanced the hint for us.
                    let _ = ctrl.tail.compare_exchange(t, self.next(t, idx), Ordering::Relaxed, Ordering::Relaxed);
                    return Ok(Claim { idx, pos: t, count: 1 });
                }
            }
        }
        self.claim_write_slow(owner)
    }

    /// The general write claim: loads each stamp before claiming it, helps stale hints on,
    /// reports a full ring and refuses hostile states.
    #[inline(never)]
    fn claim_write_slow(&self, owner: u16) -> Result<Claim, SendError> {
        let ctrl = self.mem.ctrl();
        let tail = || hint(&ctrl.tail).ok_or(SendError::Corrupt("tail hint out of range"));
        let mut t = tail()?;
        let mut walk = Walk::default();
        for _ in 0..MAX_SPINS {
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
                        crate::sync::spin_hint();
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
    fn retire_if_orphan(&self, idx: u64, s: u64, d: i64) -> bool {
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
    fn retire(&self, idx: u64, s: u64, pos: u64) -> bool {
        // ORDERING: Release, as in `release`: the slot goes back to the producers.
        let retired = stamp(EMPTY, 0, pos + self.one_lap);
        self.mem.slot(idx).stamp.compare_exchange(s, retired, Ordering::Release, Ordering::Relaxed).is_ok()
    }

    /// Publishes a claimed slot holding `len` payload bytes and wakes a sleeping consumer.
    #[inline]
    pub fn commit(&self, c: Claim, len: u32) {
        let slot = self.mem.slot(c.idx);
        slot.len.store(len, Ordering::Relaxed);
        // A slot once part of a group must not stay one.
        slot.aux.store(0, Ordering::Relaxed);
        // ORDERING: Release, pairs with the Acquire load in `try_claim_read`. SYNC POINT:
        // slot-published: payload and len are visible to whoever sees FULL.
        slot.stamp.store(stamp(FULL, 0, c.pos), Ordering::Release);
        doorbell::ring(&self.mem.ctrl().not_empty);
    }

    /// Gives a write claim up: consumers will skip the position.
    pub fn abandon(&self, c: Claim) {
        self.mem.slot(c.idx).stamp.store(stamp(SKIPPED, 0, c.pos), Ordering::Release);
        doorbell::ring(&self.mem.ctrl().not_empty);
    }

    /// Claims the oldest committed message for reading, tagged with `owner`.
    ///
    /// The two common cases are small and inlined into the caller: the head names a committed
    /// single-slot message (claim it), or an empty slot with the head unmoved (report `Empty`).
    /// Everything else (a stale hint, a group, a skipped write, a hostile stamp, a lost CAS) goes
    /// to [`Self::claim_read_slow`], which gives the same answer for the same state.
    #[inline]
    pub fn try_claim_read(&self, owner: u16) -> Result<Claim, RecvError> {
        let ctrl = self.mem.ctrl();
        let h = ctrl.head.load(Ordering::Relaxed);
        let idx = h & (self.one_lap - 1);
        // A hint above the position range is left to the slow path, which reports it. (The
        // checks of `hint` and `index`, written out: the same through their `Option`s measured
        // ~6 ns slower per put + get in a single-thread loop.)
        if h <= POS_MASK && idx < self.mem.capacity {
            let slot = self.mem.slot(idx);
            // ORDERING: Acquire, pairs with the Release store in `commit`. SYNC POINT:
            // slot-published.
            let s = slot.stamp.load(Ordering::Acquire);
            // A committed message of one slot at exactly this position (commit writes owner 0
            // and clears `aux`; anything else in `aux` is a group's slot: the slow path's).
            if s == stamp(FULL, 0, h) && slot.aux.load(Ordering::Relaxed) == 0 {
                // ORDERING: Acquire on success, as in the slow path.
                if slot
                    .stamp
                    .compare_exchange(s, stamp(READING, owner, h), Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    let _ = ctrl.head.compare_exchange(h, self.next(h, idx), Ordering::Relaxed, Ordering::Relaxed);
                    return Ok(Claim { idx, pos: h, count: 1 });
                }
            } else if s == stamp(EMPTY, 0, h) && ctrl.head.load(Ordering::Relaxed) == h {
                // Not written yet, and the hint did not move meanwhile: empty (the slow path's
                // last branch, taken without its loop).
                return Err(RecvError::Empty);
            }
        }
        self.claim_read_slow(owner)
    }

    /// The general read claim: helps stale hints on, takes groups, retires skipped writes and
    /// orphaned continuations, refuses hostile states.
    #[inline(never)]
    fn claim_read_slow(&self, owner: u16) -> Result<Claim, RecvError> {
        let ctrl = self.mem.ctrl();
        let head = || hint(&ctrl.head).ok_or(RecvError::Corrupt("head hint out of range"));
        let mut h = head()?;
        let mut walk = Walk::default();
        for _ in 0..MAX_SPINS {
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
                        crate::sync::spin_hint();
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
                // Position h was read already: the hint is stale. Help it on.
                let to = self.catch_up(h, idx, p, d);
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

    /// The claim of the slot after `c`'s (same message, next position).
    #[inline]
    pub fn next_claim(&self, c: Claim) -> Claim {
        let pos = self.next(c.pos, c.idx);
        Claim { idx: pos & (self.one_lap - 1), pos, count: c.count.saturating_sub(1) }
    }

    /// The position `j` (< capacity) positions before `pos`.
    fn back(&self, pos: u64, j: u64) -> u64 {
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
    fn cont_orphaned(&self, h: u64, aux: u32) -> Result<bool, RecvError> {
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
    fn retire_rest(&self, first: Claim) {
        let mut cur = Claim { count: 1, ..first };
        for j in 1..(first.count as u64).min(self.mem.capacity) {
            cur = self.next_claim(cur);
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
    fn claim_rest(&self, c: Claim, owner: u16) -> Result<(), RecvError> {
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
    /// over. `Full` when the last position needed still holds the previous lap.
    pub fn try_claim_group(&self, owner: u16, count: u32) -> Result<Claim, SendError> {
        let ctrl = self.mem.ctrl();
        let tail = || hint(&ctrl.tail).ok_or(SendError::Corrupt("tail hint out of range"));
        for _ in 0..MAX_SPINS / 64 {
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
    pub fn commit_group(&self, first: Claim, len: impl Fn(u32) -> u32) {
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

    /// Length of the message in a read claim, checked against the slot size (read once).
    #[inline]
    pub fn claimed_len(&self, c: Claim) -> Result<usize, RecvError> {
        let len = self.mem.slot(c.idx).len.load(Ordering::Relaxed) as usize;
        if len > self.mem.slot_size {
            return Err(RecvError::Corrupt("message length exceeds the slot size"));
        }
        Ok(len)
    }

    /// Frees a read claim for the producers of the next lap and wakes one that sleeps.
    #[inline]
    pub fn release(&self, c: Claim) {
        let next_lap = (c.pos + self.one_lap) & POS_MASK;
        // ORDERING: Release, pairs with the Acquire load in `try_claim_write`. SYNC POINT:
        // slot-released: our reads of the payload happen before the next write of it.
        self.mem.slot(c.idx).stamp.store(stamp(EMPTY, 0, next_lap), Ordering::Release);
        doorbell::ring(&self.mem.ctrl().not_full);
    }

    /// Frees every slot of a read claim (`c.count` of them, first to last).
    #[inline]
    pub fn release_group(&self, c: Claim) {
        let mut cur = Claim { count: 1, ..c };
        self.release(cur);
        for _ in 1..c.count {
            cur = self.next_claim(cur);
            self.release(cur);
        }
    }

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

    /// Messages in the ring, from the hints: approximate under concurrency, always in
    /// `0..=capacity`.
    pub fn len(&self) -> usize {
        let ctrl = self.mem.ctrl();
        let mut t = ctrl.tail.load(Ordering::SeqCst);
        let mut h = ctrl.head.load(Ordering::SeqCst);
        // Re-read tail so the pair is a snapshot (crossbeam's approach); bounded, because another
        // process may keep the hints moving (or keep writing them) forever.
        for _ in 0..16 {
            let t2 = ctrl.tail.load(Ordering::SeqCst);
            if t2 == t {
                break;
            }
            t = t2;
            h = ctrl.head.load(Ordering::SeqCst);
        }
        len_between(t, h, self.mem.capacity)
    }
}

/// Messages between the hints `head` and `tail` of a ring of `capacity`, clamped to
/// `0..=capacity` whatever the (untrusted) hints say.
pub fn len_between(tail: u64, head: u64, capacity: u64) -> usize {
    let one_lap = capacity.next_power_of_two();
    let (t, h) = (tail & POS_MASK, head & POS_MASK);
    let lap_mask = !(one_lap - 1) & POS_MASK;
    let laps = dist(t & lap_mask, h & lap_mask) / one_lap as i64;
    let cap = capacity as i64;
    let idx_t = (t & (one_lap - 1)) as i64;
    let idx_h = (h & (one_lap - 1)) as i64;
    let n = laps.saturating_mul(cap).saturating_add(idx_t - idx_h);
    n.clamp(0, cap) as usize
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ring::HeapRing;
    use std::sync::atomic::{AtomicUsize, Ordering as O};
    use std::sync::Arc;

    fn ring(cap: u64) -> (HeapRing, Mpmc) {
        let h = HeapRing::new(cap, 8);
        let m = Mpmc::new(h.mem);
        m.init();
        (h, m)
    }

    fn put(m: &Mpmc, v: u64) -> Result<(), SendError> {
        let c = m.try_claim_write(1, true)?;
        // SAFETY: the claim gives us the slot's payload, 8 bytes, 8-aligned on the heap ring.
        unsafe { (m.mem.payload(c.idx) as *mut u64).write(v) };
        m.commit(c, 8);
        Ok(())
    }

    fn get(m: &Mpmc) -> Result<u64, RecvError> {
        let c = m.try_claim_read(2)?;
        assert_eq!(m.claimed_len(c)?, 8);
        // SAFETY: as in `put`: we own the slot until `release`.
        let v = unsafe { (m.mem.payload(c.idx) as *const u64).read() };
        m.release(c);
        Ok(v)
    }

    #[test]
    fn capacity_is_exact_for_non_powers_of_two() {
        for cap in [1u64, 2, 3, 5, 7, 8, 100] {
            let (_h, m) = ring(cap);
            for i in 0..cap {
                put(&m, i).unwrap();
                assert_eq!(m.len(), i as usize + 1);
            }
            assert_eq!(put(&m, 99), Err(SendError::Full));
            for i in 0..cap {
                assert_eq!(get(&m), Ok(i));
            }
            assert_eq!(get(&m), Err(RecvError::Empty));
            assert_eq!(m.len(), 0);
        }
    }

    #[test]
    fn wraps_around_many_laps_in_order() {
        let (_h, m) = ring(3);
        for i in 0..10_000u64 {
            put(&m, i).unwrap();
            if i % 2 == 1 {
                assert_eq!(get(&m), Ok(i - 1));
                assert_eq!(get(&m), Ok(i));
            }
            assert!(m.len() <= 3);
        }
    }

    /// Found by the `open_segment` fuzzer: a hint with bits above the position range was masked
    /// before use, so the CAS that helps it on never matched the word and each claim spun to
    /// `MAX_SPINS` (seconds per operation under the fuzzer) before reporting corruption.
    #[test]
    fn regression_hint_above_the_position_range_is_refused_at_once() {
        let (_h, m) = ring(8);
        put(&m, 1).unwrap();
        m.mem.ctrl().tail.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(put(&m, 2), Err(SendError::Corrupt("tail hint out of range")));
        assert_eq!(m.try_claim_group(1, 2).err(), Some(SendError::Corrupt("tail hint out of range")));
        m.mem.ctrl().head.store(POS_MASK + 1, Ordering::Relaxed);
        assert_eq!(get(&m), Err(RecvError::Corrupt("head hint out of range")));
    }

    /// Found by the `open_segment` fuzzer (an input that took 10 s): stamps naming positions of
    /// another slot made every claim step the hint one position at a time until `MAX_SPINS`.
    #[test]
    fn regression_a_stamp_naming_another_slots_position_is_refused_at_once() {
        let (_h, m) = ring(2);
        put(&m, 1).unwrap();
        m.mem.slot(1).stamp.store(stamp(EMPTY, 0, 16_777_124), Ordering::Relaxed);
        assert_eq!(put(&m, 2), Err(SendError::Corrupt(FOREIGN_STAMP)));
        m.mem.slot(0).stamp.store(stamp(FULL, 0, 11_251_589_784_411), Ordering::Relaxed);
        assert_eq!(get(&m), Err(RecvError::Corrupt(FOREIGN_STAMP)));
    }

    /// Found by the `open_segment` fuzzer (an input that took 2.6 s): stamps far apart in the
    /// position space made the head hint jump forward around the whole space and start again,
    /// until `MAX_SPINS`.
    #[test]
    fn regression_a_hint_running_around_the_position_space_is_refused() {
        let (_h, m) = ring(8);
        // Each slot names a position of its own, spread over the space so that every jump lands
        // on the next slot and the last one wraps around to the first.
        let far = 1u64 << 42;
        for idx in 0..8u64 {
            let pos = ((idx + 1) * far + idx) & POS_MASK;
            m.mem.slot(idx).stamp.store(stamp(READING, 3, pos), Ordering::Relaxed);
        }
        m.mem.ctrl().head.store(0, Ordering::Relaxed);
        m.mem.ctrl().tail.store(0, Ordering::Relaxed);
        assert_eq!(get(&m), Err(RecvError::Corrupt(RAN_AROUND)));
        assert!(matches!(put(&m, 1), Err(SendError::Corrupt(_)) | Err(SendError::Full)));
    }

    /// Hints left many laps behind (by a peer that wrote garbage, or a process frozen since)
    /// jump past every finished lap instead of walking it, and never past a position still
    /// waiting for its producer or consumer.
    #[test]
    fn stale_hints_many_laps_behind_catch_up_without_skipping() {
        for cap in [2u64, 3, 4, 5] {
            let (_h, m) = ring(cap);
            for i in 0..1000 {
                put(&m, i).unwrap();
                assert_eq!(get(&m), Ok(i));
            }
            put(&m, 1000).unwrap();
            let (tail, head) = (m.mem.ctrl().tail.load(Ordering::Relaxed), m.mem.ctrl().head.load(Ordering::Relaxed));
            m.mem.ctrl().tail.store(0, Ordering::Relaxed);
            m.mem.ctrl().head.store(0, Ordering::Relaxed);
            put(&m, 1001).unwrap();
            assert_eq!(get(&m), Ok(1000), "capacity {cap}");
            assert_eq!(get(&m), Ok(1001), "capacity {cap}");
            assert_eq!(get(&m), Err(RecvError::Empty));
            // Both hints are back where they would have been (one message further each).
            assert_eq!(m.mem.ctrl().tail.load(Ordering::Relaxed), m.next(tail, tail & (m.one_lap - 1)));
            let h2 = m.next(head, head & (m.one_lap - 1));
            assert_eq!(m.mem.ctrl().head.load(Ordering::Relaxed), m.next(h2, h2 & (m.one_lap - 1)));
        }
    }

    #[test]
    fn abandoned_claim_is_skipped_and_frees_its_slot() {
        let (_h, m) = ring(2);
        let c = m.try_claim_write(1, true).unwrap();
        put(&m, 7).unwrap();
        assert_eq!(get(&m), Err(RecvError::Empty), "position 0 is still being written");
        m.abandon(c);
        assert_eq!(get(&m), Ok(7));
        put(&m, 8).unwrap();
        put(&m, 9).unwrap();
        assert_eq!(put(&m, 10), Err(SendError::Full));
        assert_eq!(get(&m), Ok(8));
        assert_eq!(get(&m), Ok(9));
    }

    #[test]
    fn corrupt_tail_is_reported_not_followed() {
        let (h, m) = ring(3);
        h.ctrl.tail.store(3, O::Relaxed); // index 3 of a 3-slot ring (one_lap is 4)
        assert_eq!(put(&m, 1), Err(SendError::Corrupt("tail index out of range")));
        h.ctrl.head.store(3, O::Relaxed);
        assert_eq!(get(&m), Err(RecvError::Corrupt("head index out of range")));
    }

    #[test]
    fn len_stays_within_bounds_when_hints_are_garbage() {
        let (h, m) = ring(5);
        for (t, hd) in [(0u64, 1u64 << 40), (1 << 40, 0), (u64::MAX, 0), (7, 3)] {
            h.ctrl.tail.store(t, O::Relaxed);
            h.ctrl.head.store(hd, O::Relaxed);
            assert!(m.len() <= 5);
        }
    }

    fn put_group(m: &Mpmc, owner: u16, count: u32) -> Result<Claim, SendError> {
        let c = m.try_claim_group(owner, count)?;
        m.commit_group(c, |_| 8);
        Ok(c)
    }

    #[test]
    fn group_is_claimed_whole_and_read_by_one_consumer() {
        let (_h, m) = ring(5);
        put(&m, 1).unwrap();
        put_group(&m, 1, 3).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m.try_claim_group(1, 2), Err(SendError::Full), "one slot left, two needed");
        assert_eq!(m.len(), 4, "a refused group leaves nothing behind");
        assert_eq!(get(&m), Ok(1));
        let c = m.try_claim_read(2).unwrap();
        assert_eq!(c.count, 3);
        let mut cur = c;
        for _ in 0..3 {
            m.release(Claim { count: 1, ..cur });
            cur = m.next_claim(cur);
        }
        assert_eq!(get(&m), Err(RecvError::Empty));
        for _ in 0..100 {
            put_group(&m, 1, 5).unwrap(); // the whole ring, wrapping around
            let c = m.try_claim_read(2).unwrap();
            assert_eq!(c.count, 5);
            let mut cur = c;
            for _ in 0..5 {
                m.release(Claim { count: 1, ..cur });
                cur = m.next_claim(cur);
            }
        }
    }

    /// A producer that died after publishing a group's continuation slots but before its first
    /// slot: recovery skips the first slot, and consumers retire the orphaned continuations.
    #[test]
    fn orphaned_continuations_of_a_dead_producer_are_retired() {
        let (_h, m) = ring(4);
        let first = m.try_claim_group(9, 3).unwrap();
        let mut c = first;
        for j in 1..3 {
            c = m.next_claim(c);
            let slot = m.mem.slot(c.idx);
            slot.aux.store(AUX_CONT | j, Ordering::Relaxed);
            slot.stamp.store(stamp(FULL, 0, c.pos), Ordering::Release);
        }
        assert_eq!(get(&m), Err(RecvError::Empty), "the first slot is still being written");
        assert_eq!(m.repair_owner(9), (1, 0));
        assert_eq!(get(&m), Err(RecvError::Empty));
        for v in 0..4 {
            put(&m, v).unwrap();
        }
        assert_eq!(put(&m, 9), Err(SendError::Full));
        for v in 0..4 {
            assert_eq!(get(&m), Ok(v));
        }
    }

    /// A consumer that died holding a group: every slot of it is freed and counted.
    #[test]
    fn dead_reader_of_a_group_frees_every_slot() {
        let (_h, m) = ring(3);
        put_group(&m, 1, 3).unwrap();
        assert_eq!(m.try_claim_read(7).unwrap().count, 3);
        assert_eq!(m.repair_owner(7), (0, 1), "one message lost, however many slots it held");
        for v in 0..3 {
            put(&m, v).unwrap();
        }
        for v in 0..3 {
            assert_eq!(get(&m), Ok(v));
        }
    }

    /// Found by the chaos test with `put_large`: a reader that died between taking a message's
    /// first slot and its continuations left them `FULL` behind a head that other consumers had
    /// moved past; a lap later producers found them full forever, and the queue wedged.
    #[test]
    fn regression_continuations_of_a_dead_readers_message_are_retired() {
        let (_h, m) = ring(3);
        put_group(&m, 1, 3).unwrap();
        // The reader (owner 7) takes the first slot, then dies before `claim_rest`.
        let first = m.mem.slot(0);
        let full = first.stamp.load(Ordering::Relaxed);
        first.stamp.store(stamp(READING, 7, unpack(full).2), Ordering::Relaxed);
        // Another consumer passes the continuations, leaving them to that reader.
        assert_eq!(get(&m), Err(RecvError::Empty));
        assert_eq!(m.repair_owner(7), (0, 1));
        for lap in 0..3 {
            for v in 0..3 {
                put(&m, lap * 10 + v).unwrap_or_else(|e| panic!("lap {lap}: {e:?}: the orphans wedged the ring"));
            }
            for v in 0..3 {
                assert_eq!(get(&m), Ok(lap * 10 + v));
            }
        }
    }

    /// Review finding: a reaper killed after freeing a dead reader's first slot but before
    /// retiring its continuations (or a first slot recycled before recovery read its `aux`) left
    /// them `FULL` behind the head, and only a consumer at the head ever retired orphans.
    /// Producers meeting one a lap later now retire it themselves.
    #[test]
    fn regression_orphans_behind_the_head_are_retired_by_producers() {
        let (_h, m) = ring(3);
        put_group(&m, 1, 3).unwrap();
        // The first slot freed for the next lap, its continuations still FULL, and the head
        // already past them all: what a half-finished repair leaves.
        let first = m.mem.slot(0);
        let (_, _, p) = unpack(first.stamp.load(Ordering::Relaxed));
        first.stamp.store(stamp(EMPTY, 0, p + m.one_lap), Ordering::Relaxed);
        m.mem.ctrl().head.store(m.one_lap, Ordering::Relaxed);
        for v in 0..3 {
            put(&m, v).unwrap_or_else(|e| panic!("put {v}: {e:?}: an orphan kept the ring full"));
        }
        for v in 0..3 {
            assert_eq!(get(&m), Ok(v));
        }
        // And a group put meets the same orphans as its last position.
        put_group(&m, 1, 3).unwrap();
        let c = m.try_claim_read(9).unwrap();
        assert_eq!(c.count, 3);
    }

    /// crossbeam's test: many threads, tiny capacity, every value seen exactly once.
    #[test]
    fn exact_count_stress_through_capacity_3() {
        const THREADS: u64 = 4;
        const PER: u64 = 50_000;
        let h = Arc::new(ring(3));
        let seen: Arc<Vec<AtomicUsize>> = Arc::new((0..THREADS * PER).map(|_| AtomicUsize::new(0)).collect());
        let received = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for p in 0..THREADS {
                let h = h.clone();
                s.spawn(move || {
                    for i in 0..PER {
                        let v = p * PER + i;
                        while put(&h.1, v).is_err() {
                            std::thread::yield_now();
                        }
                    }
                });
            }
            for _ in 0..THREADS {
                let (h, seen, received) = (h.clone(), seen.clone(), received.clone());
                s.spawn(move || {
                    while received.load(O::Relaxed) < (THREADS * PER) as usize {
                        match get(&h.1) {
                            Ok(v) => {
                                seen[v as usize].fetch_add(1, O::Relaxed);
                                received.fetch_add(1, O::Relaxed);
                            }
                            Err(_) => std::thread::yield_now(),
                        }
                    }
                });
            }
        });
        assert!(seen.iter().all(|c| c.load(O::Relaxed) == 1), "every value exactly once");
    }

    /// The inlined fast paths of `try_claim_read` and `try_claim_write` must answer exactly as
    /// the general claims would from the same state (they exist only to skip the general loop).
    /// Differential check over random, mostly hostile states of a 3-slot ring: both claims run
    /// on identical copies, and their results and everything they wrote must agree.
    #[test]
    fn fast_paths_agree_with_the_slow_paths() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let auxes = [0, AUX_HEAD | 1, AUX_HEAD | 2, AUX_HEAD | 3, AUX_CONT | 1, AUX_CONT | 2, 5];
        let (mut fast_claims, mut fast_empties) = (0, 0);
        for case in 0..20_000 {
            let (ha, a) = ring(3);
            let (hb, b) = ring(3);
            // Laps near zero and just below the wrap of the position space.
            let base = if case % 4 == 0 { POS_MASK - 7 } else { 4 * next(4) };
            let mut state = Vec::new();
            for i in 0..3 {
                let pos = if next(10) == 0 { base + next(8) } else { base + 4 * next(3) + i };
                let st = if next(3) == 0 { next(6) } else { [EMPTY, FULL][next(2) as usize] };
                let owner = [0u16, 0, 1, 7][next(4) as usize];
                let aux = if next(2) == 0 { 0 } else { auxes[next(auxes.len() as u64) as usize] };
                state.push((stamp(st, owner, pos), aux));
            }
            let head = [base + next(4), base + 4 + next(4), POS_MASK + 1 + next(4)][next(3) as usize];
            let tail = [base + next(4), base + 4 + next(4), POS_MASK + 1][next(3) as usize];
            for m in [&a, &b] {
                for (i, &(st, aux)) in state.iter().enumerate() {
                    m.mem.slot(i as u64).stamp.store(st, Ordering::Relaxed);
                    m.mem.slot(i as u64).aux.store(aux, Ordering::Relaxed);
                    m.mem.slot(i as u64).len.store(8, Ordering::Relaxed);
                }
                m.mem.ctrl().head.store(head, Ordering::Relaxed);
                m.mem.ctrl().tail.store(tail, Ordering::Relaxed);
            }
            let snapshot = |m: &Mpmc| {
                let slots: Vec<_> = (0..3).map(|i| m.mem.slot(i).stamp.load(Ordering::Relaxed)).collect();
                (slots, m.mem.ctrl().head.load(Ordering::Relaxed), m.mem.ctrl().tail.load(Ordering::Relaxed))
            };
            if case % 2 == 0 {
                let (fast, slow) = (a.try_claim_read(9), b.claim_read_slow(9));
                assert_eq!(fast, slow, "read, case {case}: {state:x?} head {head:#x}");
                fast_claims += usize::from(fast.is_ok());
                fast_empties += usize::from(fast == Err(RecvError::Empty));
            } else {
                // The eager try is the only difference from the general claim, and it may only
                // take what the general claim would take.
                let (fast, slow) = (a.try_claim_write(9, true), b.claim_write_slow(9));
                assert_eq!(fast, slow, "write, case {case}: {state:x?} tail {tail:#x}");
            }
            assert_eq!(snapshot(&a), snapshot(&b), "case {case}: {state:x?} head {head:#x} tail {tail:#x}");
            drop((ha, hb));
        }
        assert!(fast_claims > 500 && fast_empties > 500, "{fast_claims} claims, {fast_empties} empties");
    }
}
