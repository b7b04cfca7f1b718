//! The ring layer: lock-free ring algorithms over memory they are handed (a segment's mapping in
//! production, heap arrays in unit tests and loom models), and the doorbells they sleep on.
//!
//! - [`mem`]: a ring's memory view ([`mem::RingMem`]) and the slot accessors the claims use.
//! - [`slot_order`]: the order in which a ring visits its slots.
//! - [`ends`]: producer and consumer counts: end of stream and broken pipe.
//! - [`doorbell`]: sleeping on a futex until a ring changes, with no system call on the fast path.
//! - [`spsc`]: the single-producer single-consumer ring of pipes.
//! - [`mpmc`]: the multi-producer multi-consumer ring of queues (claims, groups, repair).
//! - [`took`]: what a one-pass receive found (the common receive of both rings).
//!
//! [`SegmentRings`] connects this layer to the segment's participant table and crash recovery.

pub(crate) mod doorbell;
pub(crate) mod ends;
pub(crate) mod mem;
pub(crate) mod mpmc;
pub(crate) mod slot_order;
pub(crate) mod spsc;
pub(crate) mod took;

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(not(loom))]
pub(crate) use segment_rings::SegmentRings;

/// The participant table's role bits, as a count word's sync counts them (see [`ends`]).
pub(crate) struct TableMembers<'a>(pub &'a [crate::segment::layout::Participant]);

impl ends::Members for TableMembers<'_> {
    fn holding(&self, bit: u32) -> u32 {
        // ORDERING: Relaxed: a sync reads these after an Acquire load of the count word, which
        // orders them after the role changes whose syncs landed before (see `ends`).
        self.0.iter().filter(|p| p.roles.load(crate::sys::atomic::Ordering::Relaxed) & bit != 0).count() as u32
    }
}

#[cfg(not(loom))]
mod segment_rings {
    use super::ends::{self, Refused, Sync};
    use super::mpmc::Mpmc;
    use super::{doorbell, mem::RingMem, TableMembers};
    use crate::segment::geometry::Geometry;
    use crate::segment::layout::{Kind, RingCtrl, FLAG_JOINABLE};
    use crate::segment::participants::Registration;
    use crate::segment::recover::{RingRepair, Stall};
    use crate::segment::tasks::{Ledger, Slots};
    use crate::segment::Segment;
    use crate::sys::crash::{alive, Died};
    use std::sync::atomic::Ordering;

    /// The rings of one mapped segment, with its participant table: roles and their counts, task
    /// accounting, and crash recovery.
    pub(crate) struct SegmentRings<'a> {
        pub seg: &'a Segment,
        pub g: &'a Geometry,
    }

    impl<'a> SegmentRings<'a> {
        /// The rings of `seg`, whose geometry `g` was validated against its mapping.
        pub fn new(seg: &'a Segment, g: &'a Geometry) -> Self {
            SegmentRings { seg, g }
        }

        fn ring(&self, r: u32) -> RingMem {
            RingMem::in_segment(self.seg, self.g, r)
        }

        /// Runs `f` with the control blocks of every ring and the table's role bits.
        fn with_ends<T>(&self, f: impl FnOnce(&[&RingCtrl], &TableMembers<'_>) -> T) -> T {
            let mems: Vec<RingMem> = (0..self.g.ring_count).map(|r| self.ring(r)).collect();
            let ctrls: Vec<&RingCtrl> = mems.iter().map(RingMem::ctrl).collect();
            f(&ctrls, &TableMembers(&self.seg.header().participants))
        }

        /// Gives `reg` role `bits` (per ring `r`: producer `1 << 2r`, consumer `2 << 2r`): sets them
        /// in its entry, then counts them on each side (`how`: see `ends::Sync`). Refused if a side
        /// has ended (or, exclusively, is held by another handle): then none of `bits` is held or
        /// counted.
        pub fn join(&self, reg: &Registration, bits: u32, how: Sync) -> Result<(), Refused> {
            let h = self.seg.header();
            if !reg.owns(h) {
                return Err(Refused::Taken);
            }
            let roles = &reg.entry(h).roles;
            self.with_ends(|rings, members| alive(ends::join(rings, roles, bits, members, how)))
        }

        /// Marks role `bits`, held for a child since its handover, as attached for real (see
        /// `ends::confirm`).
        pub fn confirm(&self, bits: u32) {
            self.with_ends(|rings, _| ends::confirm(rings, bits))
        }

        /// Takes role `bits` from `reg`: clears them in its entry, then recounts each side (which
        /// may end it). Nothing happens for bits it does not hold, or if its entry is not its own
        /// any more (reaped from under it: its reaper did this) or a forked child's copy.
        pub fn leave(&self, reg: &Registration, bits: u32) {
            let h = self.seg.header();
            if bits == 0 || !reg.owns(h) {
                return;
            }
            let roles = &reg.entry(h).roles;
            self.with_ends(|rings, members| alive(ends::leave(rings, roles, bits, members)))
        }

        /// The task accounting of a joinable queue.
        pub fn ledger(&self) -> Option<Ledger<'a>> {
            let h = self.seg.header();
            (self.g.kind == Kind::Queue && self.g.flags & FLAG_JOINABLE != 0)
                .then(|| Ledger { join: &h.join, table: &h.participants })
        }

        /// How an operation on `unfinished` by entry `me`, whose handle's task lock the caller
        /// holds, waits for another entry's (see `recover::Stall`).
        pub fn stall(&self, me: usize) -> Stall<'_> {
            Stall { seg: self.seg, me: Some(me), one_at_a_time: true, rings: self, tries: 0, since: 0 }
        }

        fn queue(&self) -> Option<Mpmc> {
            (self.g.kind == Kind::Queue).then(|| Mpmc::new(self.ring(0)))
        }
    }

    impl Slots for Mpmc {
        fn unpublished(&self, owner: u16, pos: u64) -> bool {
            Mpmc::unpublished(self, owner, pos)
        }

        fn held(&self, owner: u16, idx: u64) -> bool {
            self.held_by(owner, idx)
        }
    }

    impl RingRepair for SegmentRings<'_> {
        fn finish_op(&self, index: usize) -> Result<(), Died> {
            match self.ledger() {
                Some(l) => l.finish_op(index),
                None => Ok(()),
            }
        }

        fn settle_before(&self, index: usize, stall: &mut dyn FnMut(usize) -> bool) -> Result<(), Died> {
            let (Some(l), Some(q)) = (self.ledger(), self.queue()) else { return Ok(()) };
            l.settle_before_repair(index, index as u16 + 1, &q, stall)?;
            // An unpublished put uncounted may have taken the count to zero: `join` looks again.
            doorbell::ring_all(&self.seg.header().join.bell);
            Ok(())
        }

        fn repair(&self, dead: &[usize]) -> Result<(), Died> {
            // A pipe's sender publishes by advancing its counter, so a half-written message is
            // never visible; a dead receiver only stops releasing. Nothing to repair.
            let Some(q) = self.queue() else { return Ok(()) };
            let h = self.seg.header();
            // Owner tags 1..=256 (index + 1), as a bit set.
            let mut owners = [0u64; 5];
            for &i in dead {
                owners[(i + 1) / 64] |= 1 << ((i + 1) % 64);
            }
            let is_dead = |o: u16| owners.get(o as usize / 64).is_some_and(|w| w & (1 << (o % 64)) != 0);
            let takes = |owner: u16| &h.participants[owner as usize - 1].takes;
            let joinable = self.ledger().is_some();
            let (dropped, lost) = q.repair_owners(&is_dead, joinable.then_some(&takes as &dyn Fn(u16) -> _))?;
            h.recovery.dropped_writes.fetch_add(dropped, Ordering::Relaxed);
            h.recovery.lost_reads.fetch_add(lost, Ordering::Relaxed);
            Ok(())
        }

        fn settle_after(&self, index: usize, stall: &mut dyn FnMut(usize) -> bool) -> Result<(), Died> {
            let Some(l) = self.ledger() else { return Ok(()) };
            let n = l.settle_after_repair(index, stall)?;
            if n > 0 {
                self.seg.header().recovery.lost_tasks.fetch_add(n, Ordering::Relaxed);
                // The count may have reached zero: `join` looks again.
                doorbell::ring_all(&self.seg.header().join.bell);
            }
            Ok(())
        }

        fn resync(&self) -> Result<(), Died> {
            self.with_ends(|rings, members| ends::resync(rings, members))
        }
    }
}
