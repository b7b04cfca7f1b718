//! The ring layer: lock-free ring algorithms over memory they are handed (a segment's mapping in
//! production, heap arrays in unit tests and loom models), and the doorbells they sleep on.
//!
//! - [`mem`]: a ring's memory view ([`mem::RingMem`]) and the slot accessors the claims use.
//! - [`slot_order`]: the order in which a ring visits its slots.
//! - [`ends`]: producer and consumer counts: end of stream and broken pipe.
//! - [`doorbell`]: sleeping on a futex until a ring changes, with no system call on the fast path.
//! - [`spsc`]: the single-producer single-consumer ring of pipes.
//! - [`mpmc`]: the multi-producer multi-consumer ring of queues (claims, groups, repair).
//!
//! [`SegmentRings`] connects this layer to the segment's crash recovery.

pub(crate) mod doorbell;
pub(crate) mod ends;
pub(crate) mod mem;
pub(crate) mod mpmc;
pub(crate) mod slot_order;
pub(crate) mod spsc;

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(not(loom))]
pub(crate) use segment_rings::SegmentRings;

#[cfg(not(loom))]
mod segment_rings {
    use super::{doorbell, ends, mem::RingMem, mpmc::Mpmc};
    use crate::segment::geometry::Geometry;
    use crate::segment::layout::{Kind, FLAG_JOINABLE, ROLE_CONSUMER, ROLE_PRODUCER};
    use crate::segment::recover::RingRepair;
    use crate::segment::Segment;
    use std::sync::atomic::Ordering;

    /// The rings of one mapped segment, as crash recovery sees them.
    pub(crate) struct SegmentRings<'a> {
        pub seg: &'a Segment,
        pub g: &'a Geometry,
    }

    impl<'a> SegmentRings<'a> {
        /// The rings of `seg`, whose geometry `g` was validated against its mapping.
        pub fn new(seg: &'a Segment, g: &'a Geometry) -> Self {
            SegmentRings { seg, g }
        }

        /// Uncounts every role in `bits` (per ring `r`: producer `1 << 2r`, consumer `2 << 2r`).
        pub fn uncount_bits(&self, bits: u32) {
            for r in 0..self.g.ring_count {
                let (p, c) = (bits & (ROLE_PRODUCER << (2 * r)) != 0, bits & (ROLE_CONSUMER << (2 * r)) != 0);
                if p || c {
                    ends::detach(RingMem::in_segment(self.seg, self.g, r).ctrl(), p, c);
                }
            }
        }
    }

    impl RingRepair for SegmentRings<'_> {
        fn repair_owner(&self, owner: u16) {
            if self.g.kind != Kind::Queue {
                // A pipe's sender publishes by advancing its counter, so a half-written message is
                // never visible; a dead receiver only stops releasing. Nothing to repair.
                return;
            }
            let h = self.seg.header();
            let (dropped, lost) = Mpmc::new(RingMem::in_segment(self.seg, self.g, 0)).repair_owner(owner);
            h.recovery.dropped_writes.fetch_add(dropped, Ordering::Relaxed);
            h.recovery.lost_reads.fetch_add(lost, Ordering::Relaxed);
            if lost > 0 && self.g.flags & FLAG_JOINABLE != 0 {
                // Lost messages will never be marked done: stop `join` from waiting for them.
                let _ = h
                    .join
                    .unfinished
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(lost)));
                doorbell::ring_all(&h.join.bell);
            }
        }

        fn uncount(&self, bit: u32) {
            self.uncount_bits(bit);
        }
    }
}
