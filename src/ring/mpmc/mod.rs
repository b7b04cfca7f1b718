//! The lock-free multi-producer multi-consumer ring (Vyukov's bounded queue, owner-tagged).
//!
//! # Positions
//! A position is `{ lap, index }` packed as `lap * one_lap + index`, where `one_lap` is
//! `capacity.next_power_of_two()`, kept to [`POS_BITS`] bits. Slot `index` serves positions
//! `{ 0, index }, { 1, index }, …` in turn. `tail` and `head` in the control block are *hints*:
//! the next position to write and to read. A claimer moves the hint past the position it took
//! with a plain store, if the hint still names that position (`pass`); anyone else who finds the
//! position claimed may advance the hint with a CAS: by one position, or (the tail only) past a
//! whole lap the slot's stamp proves claimed (see `catch_up`). Nobody trusts them further than
//! that.
//!
//! The claimer's move is a store, not a CAS, because a locked read-modify-write on every put and
//! every get was the largest single cost of a message (docs/EXPERIMENTS.md, "The claimer's hint
//! move"). So a hint can move back: a claimer delayed between its load and its store writes a
//! position others have already passed. Two facts make that harmless. Every position before any
//! value a hint ever held was claimed (each stored value is the one after a claimed position, and
//! each claim was made at the hint or past it), so no message is skipped or read twice: the next
//! claim finds the slot at the hint taken and helps the hint on. And the claimer still holds its
//! slot while it stores (`WRITING` or `READING`), so nobody can claim that slot's next lap
//! meanwhile: a hint moves back by less than one lap, and the walk back to the others is at most
//! `capacity` steps (the claim loops' budget, [`Mpmc::spin_budget`], allows for it). `len` helps
//! both hints on before it counts, so a quiet ring reports its exact length.
//!
//! # Stamps
//! Each slot's 64-bit stamp is `{ state: 3, owner: 16, pos: 45 }` and is the only source of truth:
//!
//! ```text
//! EMPTY(p)  --producer CAS-->  WRITING(p, me)  --commit, Release-->  FULL(p)
//!   ^                           |         |
//!   |      abandon (dropped), Release     |  recovery (the writer died)
//!   |             EMPTY(p + one_lap)      v
//!   |                                 SKIPPED(p)  --consumer CAS-->  EMPTY(p + one_lap)
//!   |
//!   +--release, Release--  READING(p, me)  <--consumer CAS--  FULL(p)
//! ```
//!
//! A live producer that gives a claim up frees the slot for the next lap itself; only recovery,
//! which cannot know whether consumers are already past the position, leaves `SKIPPED` for them.
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

mod claim;
mod group;
mod now;
mod repair;

#[cfg_attr(loom, allow(unused_imports))]
pub(crate) use claim::{ReadClaim, WriteClaim};

use crate::error::{RecvError, SendError};
use crate::ring::doorbell;
use crate::ring::mem::RingMem;
use crate::sys::atomic::{AtomicU64, Ordering};

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

/// The most slots one message may span: the count must fit [`AUX_COUNT`], one less than the
/// largest capacity.
pub const MAX_GROUP: u64 = AUX_COUNT as u64;

/// The largest message `put_large` takes on a ring of `capacity` slots of `slot_size` bytes.
pub fn max_group_bytes(capacity: u64, slot_size: usize) -> usize {
    slot_size.saturating_mul(capacity.min(MAX_GROUP) as usize)
}

/// Tries of a claim loop before the ring is declared corrupt, beyond the walk a hint set back by
/// a delayed claimer may need (see [`Mpmc::spin_budget`]). Legitimate contention never comes
/// near this; it only bounds the work a hostile peer can make us do. Fuzz builds (`cfg(fuzzing)`,
/// set by cargo-fuzz), where a single thread runs the operations and every long walk is hostile,
/// take a smaller bound so that an input that walks to it costs microseconds, not a large part
/// of a second: the same paths, explored more often (docs/FUZZING.md). The crate's unit tests
/// take the same small bound, so that a ring of a few thousand slots can show that a legitimate
/// walk longer than it still ends.
const MAX_SPINS: u32 = if cfg!(any(fuzzing, test)) { 1 << 12 } else { 1 << 22 };

/// Every position a slot's stamp names is one of that slot's (`pos % one_lap == index`); any
/// other was written by a hostile peer. Refused at once: stepping a hint past such a stamp one
/// position at a time would only end at [`MAX_SPINS`].
const FOREIGN_STAMP: &str = "slot stamp names a position of another slot";

/// Positions are modular, so a hint that keeps moving "forward" past hostile stamps can run
/// around the whole position space and start again. Legitimately one claim helps a hint past at most the positions claimed meanwhile,
/// nowhere near half the space; a walk that gets that far is reported as corruption.
const RAN_AROUND: &str = "a hint ran around the position space";

/// The most laps a slot can legitimately stand ahead of the head hint. The head lags a slot only
/// while abandons that lapped it have not yet walked the hint on (each abandon walks it before
/// returning), so the lag is bounded by the abandons in flight at once, one per thread: fewer
/// than Linux's largest `pid_max` (2^22). (A claimer's late store sets the hint back by less than
/// one lap: see "Positions".) A slot further ahead was written by a hostile peer and is refused
/// at once rather than stepped past one position at a time.
const MAX_HEAD_LAG_LAPS: u64 = 1 << 23;

/// What a read claim reports for a slot more than [`MAX_HEAD_LAG_LAPS`] ahead of the head.
const HEAD_FAR_BEHIND: &str = "a slot stands more laps ahead of the head than any peer can leave";

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

/// Moves a hint from `from`, the position this claim just took, to `to`, the one after it: a
/// plain store, if the hint still names `from` (see "Positions" for why a store, and why a hint
/// that moves back is harmless). If it names anything else, someone has helped it on already.
#[inline(always)]
fn pass(word: &AtomicU64, from: u64, to: u64) {
    // ORDERING: Relaxed, as every move of a hint: stamps carry the synchronisation, hints only
    // say where to look.
    if word.load(Ordering::Relaxed) == from {
        word.store(to, Ordering::Relaxed);
    }
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
pub(in crate::ring) struct Claim {
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

    /// Tries of a single claim loop: [`MAX_SPINS`], plus the walk a hint set back by a delayed
    /// claimer can need (less than one lap of steps; the tail may step a lap more after a jump).
    #[inline]
    fn spin_budget(&self) -> u64 {
        MAX_SPINS as u64 + 2 * self.mem.capacity + 2
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

    /// Where a stale tail hint at `pos` (slot `idx`, whose stamp says position `p`,
    /// `d = p - pos`) may move: one position on, or, when the slot is at least a lap ahead,
    /// straight past the slot's previous lap `p - one_lap`. A slot reaches lap `p` only after a
    /// producer claimed position `p - one_lap`, which it did while the tail hint stood there (or,
    /// for a continuation of a larger message, at its first slot), so every position up to it
    /// has had its producer: the tail hint skips no position still free to write. Without the
    /// jump, a tail hint left far behind (by a peer that wrote garbage, or a process that froze
    /// for a long time) would make every claim walk the gap one position at a time, up to
    /// [`MAX_SPINS`]. The head hint never jumps: an abandoned write frees its slot for the next
    /// lap before the head passes it, so a slot laps ahead of the head proves nothing about
    /// the positions between. (Callers have checked that `p` is one of this slot's positions.)
    #[inline]
    fn catch_up(&self, pos: u64, idx: u64, p: u64, d: i64) -> u64 {
        if d as u64 >= self.one_lap {
            self.next(p.wrapping_sub(self.one_lap) & POS_MASK, idx)
        } else {
            self.next(pos, idx)
        }
    }

    /// Whether a receive could find something now: anything at the head but a slot not yet
    /// published for the head's position (`EMPTY(h)`, `WRITING(h)`) or still holding an earlier
    /// lap (a message of that lap still being read, so `h` is not even written): the cases where
    /// the receive answers `Empty`. A stale or hostile head is "something": the receive that
    /// follows helps the hint on or reports it. Read from the stamp, not from the hints, so a
    /// hostile hint cannot make a waiter spin.
    pub fn maybe_ready(&self) -> bool {
        let h = self.mem.ctrl().head.load(Ordering::Relaxed);
        let idx = h & (self.one_lap - 1);
        if h > POS_MASK || idx >= self.mem.capacity {
            return true;
        }
        // ORDERING: Acquire, pairs with the Release store in `commit` (SYNC POINT:
        // slot-published), as the receive's own load does.
        let (state, _, p) = unpack(self.mem.slot(idx).stamp.load(Ordering::Acquire));
        let d = dist(p, h);
        let older_lap = d < 0 && p & (self.one_lap - 1) == idx;
        !(older_lap || (d == 0 && (state == EMPTY || state == WRITING)))
    }

    /// Messages in the ring, from the hints: approximate under concurrency, always in
    /// `0..=capacity`.
    pub fn len(&self) -> usize {
        // A hint set back by a delayed claimer (see "Positions") would count messages that were
        // read, or miss ones that were written; help both on first.
        self.help_tail_on();
        self.help_head_on();
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
    #[test]
    fn a_group_never_spans_more_slots_than_its_count_can_say() {
        use super::{max_group_bytes, AUX_COUNT};
        use crate::segment::layout::MAX_CAPACITY;
        // At the largest capacity, one slot fewer than the ring: the count must fit 24 bits.
        assert_eq!(max_group_bytes(MAX_CAPACITY, 1), AUX_COUNT as usize);
        assert_eq!(max_group_bytes(MAX_CAPACITY, 8).div_ceil(8), AUX_COUNT as usize);
        assert_eq!(max_group_bytes(4, 16), 64, "smaller rings: every slot");
    }

    use super::*;
    use crate::ring::mem::HeapRing;
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

    /// A hint with bits above the position range is refused at once: masked before use, the CAS
    /// that helps it on would never match the word and each claim would spin to `MAX_SPINS`.
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
    /// position space made a hint jump forward around the whole space and start again, until
    /// `MAX_SPINS`. Both claims now end at once.
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
        // The head steps position by position (it never jumps laps) and stops where a stamp
        // names an older lap; the tail's jumps are what run around.
        assert!(matches!(get(&m), Err(RecvError::Corrupt(_)) | Err(RecvError::Empty)));
        assert!(matches!(put(&m, 1), Err(SendError::Corrupt(_)) | Err(SendError::Full)));
    }

    /// Hints left many laps behind (by a peer that wrote garbage, or a process frozen since)
    /// catch up (the tail by laps, the head position by position) and never pass a position
    /// still waiting for its producer or consumer.
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

    /// A write abandoned behind the read hint frees its slot for the next lap; that lap's
    /// claim abandoned too puts the slot two laps ahead of the hint, which must still read the
    /// messages in between.
    #[test]
    fn slot_lapped_by_abandoned_writes_keeps_the_messages_before_it() {
        let (_h, m) = ring(4);
        put(&m, 0).unwrap();
        let c1 = m.try_claim_write(1, true).unwrap();
        put(&m, 2).unwrap();
        put(&m, 3).unwrap();
        m.abandon(c1);
        assert_eq!(get(&m), Ok(0));
        let c4 = m.try_claim_write(1, true).unwrap();
        let c5 = m.try_claim_write(1, true).unwrap();
        m.abandon(c5);
        assert_eq!(get(&m), Ok(2));
        assert_eq!(get(&m), Ok(3));
        assert_eq!(get(&m), Err(RecvError::Empty), "position 4 is still being written");
        m.abandon(c4);
        assert_eq!(get(&m), Err(RecvError::Empty));
        put(&m, 9).unwrap();
        assert_eq!(get(&m), Ok(9));
    }

    /// A slot stamped far more laps ahead of the head than abandons in flight could leave is
    /// refused at once, not stepped past one position at a time until `MAX_SPINS`.
    #[test]
    fn a_slot_impossibly_far_ahead_of_the_head_is_refused_at_once() {
        let (_h, m) = ring(4);
        for idx in 0..4u64 {
            m.mem.slot(idx).stamp.store(stamp(EMPTY, 0, (1 << 40) + idx), Ordering::Relaxed);
        }
        assert_eq!(get(&m), Err(RecvError::Corrupt(HEAD_FAR_BEHIND)));
    }

    /// A producer delayed between its claim's load of the tail and its store writes a position
    /// the others have passed, by up to a lap less one: on a ring larger than the claim loop's
    /// own budget (`MAX_SPINS`, small in unit tests), the next put still walks back to the free
    /// slots, `len` counts exactly, and nothing is lost.
    #[test]
    fn a_tail_set_back_by_almost_a_lap_still_finds_the_free_slots() {
        let cap = 2 * MAX_SPINS as u64;
        let (_h, m) = ring(cap);
        let late = m.try_claim_write(7, true).unwrap(); // position 0, its hint store delayed
        let n = cap - 2;
        for i in 1..=n {
            put(&m, i).unwrap();
        }
        m.mem.ctrl().tail.store(1, Ordering::Relaxed); // the late store
        put(&m, 99).unwrap();
        assert_eq!(put(&m, 100), Err(SendError::Full));
        m.mem.ctrl().tail.store(1, Ordering::Relaxed);
        assert_eq!(m.len(), cap as usize);
        m.commit(late, 8);
        assert_eq!(get(&m), Ok(0), "the delayed producer's message comes first");
        for i in 1..=n {
            assert_eq!(get(&m), Ok(i));
        }
        assert_eq!(get(&m), Ok(99));
        assert_eq!(get(&m), Err(RecvError::Empty));
    }

    /// The same for a consumer: the head set back by almost a lap on a ring larger than the
    /// claim loop's budget; the next get finds the ring empty (not corrupt), `len` says 0, and
    /// the next message is read.
    #[test]
    fn a_head_set_back_by_almost_a_lap_still_finds_the_next_message() {
        let cap = 2 * MAX_SPINS as u64;
        let (_h, m) = ring(cap);
        let n = cap - 2;
        for i in 0..=n {
            put(&m, i).unwrap();
        }
        let late = m.try_claim_read(7).unwrap(); // position 0, its hint store delayed
        for i in 1..=n {
            assert_eq!(get(&m), Ok(i));
        }
        m.mem.ctrl().head.store(1, Ordering::Relaxed); // the late store
        assert_eq!(get(&m), Err(RecvError::Empty));
        m.mem.ctrl().head.store(1, Ordering::Relaxed);
        assert_eq!(m.len(), 0);
        m.release(late);
        put(&m, 5).unwrap();
        m.mem.ctrl().head.store(1, Ordering::Relaxed);
        assert_eq!(m.len(), 1);
        assert_eq!(get(&m), Ok(5));
    }

    /// Small rings, both hints set back to where delayed claimers of the first positions would
    /// leave them: every message is read once, in order, and `len` counts what is there.
    #[test]
    fn hints_set_back_on_small_rings_lose_nothing() {
        for cap in [1u64, 2, 3, 4, 5] {
            let (_h, m) = ring(cap);
            for round in 0..3u64 {
                let base = round * 100;
                for i in 0..cap {
                    put(&m, base + i).unwrap();
                }
                let (t, h) = (m.mem.ctrl().tail.load(Ordering::Relaxed), m.mem.ctrl().head.load(Ordering::Relaxed));
                assert_eq!(get(&m), Ok(base));
                // A late store of the position after the head's first claim, and of the tail's.
                m.mem.ctrl().head.store(m.next(h, h & (m.one_lap - 1)), Ordering::Relaxed);
                let t_back = if cap > 1 { m.next(h, h & (m.one_lap - 1)) } else { t };
                m.mem.ctrl().tail.store(t_back, Ordering::Relaxed);
                assert_eq!(m.len(), cap as usize - 1, "capacity {cap}");
                put(&m, base + cap).unwrap();
                for i in 1..=cap {
                    assert_eq!(get(&m), Ok(base + i), "capacity {cap}");
                }
                assert_eq!(get(&m), Err(RecvError::Empty));
                assert_eq!(m.len(), 0);
            }
        }
    }

    /// Claims abandoned out of order must not leave the read hint behind a free slot: with no
    /// consumer, every later reserve-and-drop would lap the ring past it, and the next reader
    /// would walk the whole gap (past `MAX_SPINS`: a false `Corrupt`). Abandons walk the hint
    /// on, so it never lags.
    #[test]
    fn abandons_out_of_order_leave_no_lagging_read_hint() {
        let (_h, m) = ring(4);
        let c0 = m.try_claim_write(1, true).unwrap();
        let c1 = m.try_claim_write(1, true).unwrap();
        m.abandon(c1);
        m.abandon(c0);
        for _ in 0..1000 {
            let c = m.try_claim_write(1, true).unwrap();
            m.abandon(c);
        }
        assert_eq!(m.len(), 0);
        let (t, h) = (m.mem.ctrl().tail.load(Ordering::Relaxed), m.mem.ctrl().head.load(Ordering::Relaxed));
        assert_eq!(h, t, "the read hint stands at the write hint");
        put(&m, 5).unwrap();
        assert_eq!(get(&m), Ok(5));
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
        h.ctrl().tail.store(3, O::Relaxed); // index 3 of a 3-slot ring (one_lap is 4)
        assert_eq!(put(&m, 1), Err(SendError::Corrupt("tail index out of range")));
        h.ctrl().head.store(3, O::Relaxed);
        assert_eq!(get(&m), Err(RecvError::Corrupt("head index out of range")));
    }

    #[test]
    fn len_stays_within_bounds_when_hints_are_garbage() {
        let (h, m) = ring(5);
        for (t, hd) in [(0u64, 1u64 << 40), (1 << 40, 0), (u64::MAX, 0), (7, 3)] {
            h.ctrl().tail.store(t, O::Relaxed);
            h.ctrl().head.store(hd, O::Relaxed);
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

    /// Regression (adversarial review): repair took a dead owner's stamp naming another slot's
    /// position for a claim of that slot, and retiring the "rest" of its message stepped past
    /// the ring's last slot (a read outside the mapping). Such a stamp is left alone.
    #[test]
    fn regression_repair_ignores_a_stamp_naming_another_slot() {
        let (_h, m) = ring(3);
        let slot = m.mem.slot(0);
        slot.stamp.store(stamp(READING, 6, 2), Ordering::Relaxed); // position 2 is slot 2's
        slot.aux.store(AUX_HEAD | 3, Ordering::Relaxed);
        assert_eq!(m.repair_owner(6), (0, 0));
        assert_eq!(slot.stamp.load(Ordering::Relaxed), stamp(READING, 6, 2), "left as it was");
    }

    /// Regression (adversarial review): forged group counts on every slot of a dead reader made
    /// one repair pass retire `capacity` slots for each of them (capacity² steps). A pass looks
    /// at `capacity` continuation slots at most, and still frees every slot the reader held.
    #[test]
    fn regression_forged_group_counts_cost_one_pass_not_capacity_squared() {
        let cap = 1 << 12;
        let (_h, m) = ring(cap);
        for i in 0..cap {
            let slot = m.mem.slot(i);
            slot.stamp.store(stamp(READING, 6, i), Ordering::Relaxed);
            slot.aux.store(AUX_HEAD | cap as u32, Ordering::Relaxed);
        }
        assert_eq!(m.repair_owner(6), (0, cap));
        for i in 0..cap {
            assert_eq!(m.mem.slot(i).stamp.load(Ordering::Relaxed), stamp(EMPTY, 0, i + m.one_lap));
        }
    }

    /// Regression (adversarial review): a group claim whose last slot a forged stamp kept busy
    /// (`WRITING` of that very position) retried one position further on, pass after pass, each
    /// pass walking the whole group: quadratic in its size. The attempts share one budget of
    /// slots, then report `Full`.
    #[test]
    fn regression_a_large_group_claim_gives_up_within_its_budget() {
        let cap = 1 << 14;
        let (_h, m) = ring(cap);
        let count = (cap / 2 + 1) as u32;
        for i in (count as u64 - 1)..cap {
            m.mem.slot(i).stamp.store(stamp(WRITING, 0, i), Ordering::Relaxed);
        }
        assert_eq!(m.try_claim_group(1, count).unwrap_err(), SendError::Full);
        let claimed = (0..cap).filter(|&i| unpack(m.mem.slot(i).stamp.load(Ordering::Relaxed)).1 == 1).count();
        assert_eq!(claimed, 0, "every slot the attempts claimed was given up");
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

    /// A reaper killed after freeing a dead reader's first slot but before retiring its
    /// continuations (or a first slot recycled before recovery read its `aux`) leaves them `FULL`
    /// behind the head: producers meeting one a lap later retire it themselves.
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
