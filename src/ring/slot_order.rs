//! The order in which a ring visits its slots.

#[cfg(not(loom))]
use crate::segment::geometry::Geometry;
#[cfg(not(loom))]
use crate::segment::layout::{Kind, FLAG_SEQUENTIAL};

/// The order in which a pipe's ring visits its slots: position `p` (the `p`th message ever sent)
/// goes to slot `order.slot(p % capacity)`.
///
/// Messages in consecutive lines are the pattern hardware prefetchers follow, and in a pipe
/// that works against the hand-over: each side's prefetcher pulls the lines the other side is
/// about to write into its own cache, and every hand-over then pays extra coherence traffic. With
/// a power-of-two capacity, slots are visited in bit-reversed order, which never steps by a
/// constant distance and puts consecutive messages at least a quarter of the ring apart
/// (docs/EXPERIMENTS.md, "The pipe's slot order", measures the effect). Slots smaller than a line
/// (16 or 32 bytes) keep sharing lines in sequence: only the line index is reversed. Other
/// capacities are visited in sequence, and so are pipes created with `FLAG_SEQUENTIAL`:
/// streaming batches through a ring larger than the cache wants the prefetchers.
///
/// Part of the layout: both ends of a ring must agree on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotOrder {
    /// Bits of a slot index that choose a slot within one line (kept).
    low: u32,
    /// Bits above them that are reversed (0: sequential order).
    bits: u32,
}

impl SlotOrder {
    /// The order of a segment's rings: bit-reversed for pipes unless created sequential, in
    /// sequence for queues.
    #[cfg(not(loom))]
    pub fn of(g: &Geometry) -> SlotOrder {
        if g.kind == Kind::Pipe && g.flags & FLAG_SEQUENTIAL == 0 {
            SlotOrder::new(g.capacity, g.slot_stride as usize)
        } else {
            SlotOrder::SEQUENTIAL
        }
    }

    /// Every slot in sequence.
    pub const SEQUENTIAL: SlotOrder = SlotOrder { low: 0, bits: 0 };

    /// The bit-reversed order of a ring of `capacity` slots, `stride` bytes apart (in sequence
    /// where the capacity is not a power of two).
    pub fn new(capacity: u64, stride: usize) -> SlotOrder {
        let low = (64 / stride.clamp(1, 64)).trailing_zeros();
        let bits = if capacity.is_power_of_two() { capacity.trailing_zeros().saturating_sub(low) } else { 0 };
        SlotOrder { low, bits: bits.min(32) }
    }

    /// The slot for position index `idx` (`< capacity`; the result is too).
    #[inline]
    pub fn slot(self, idx: u64) -> u64 {
        if self.bits == 0 {
            return idx;
        }
        let line = (idx >> self.low) as u32;
        let reversed = line.reverse_bits() >> (32 - self.bits);
        ((reversed as u64) << self.low) | (idx & ((1 << self.low) - 1))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn slot_order_is_a_permutation_that_never_steps_to_a_neighbour() {
        for cap in 1..=1100u64 {
            for stride in [16usize, 32, 64, 128, 4096] {
                let o = SlotOrder::new(cap, stride);
                let mut seen = vec![false; cap as usize];
                for i in 0..cap {
                    let s = o.slot(i);
                    assert!(s < cap && !seen[s as usize], "cap {cap} stride {stride}: {i} -> {s}");
                    seen[s as usize] = true;
                }
                assert_eq!(o.slot(0), 0, "position 0 is slot 0 in every order");
                let per_line = (64 / stride).max(1) as u64;
                if cap.is_power_of_two() && cap >= 8 * per_line {
                    for i in 0..cap {
                        let (a, b) = (o.slot(i) / per_line, o.slot((i + 1) % cap) / per_line);
                        assert!(a == b || a.abs_diff(b) >= 2, "cap {cap} stride {stride}: lines {a}, {b}");
                    }
                } else if !cap.is_power_of_two() {
                    assert!((0..cap).all(|i| o.slot(i) == i), "other capacities: in sequence");
                }
            }
        }
        // Slots of 32 bytes: two to a line, kept together; the lines in bit-reversed order.
        let o = SlotOrder::new(16, 32);
        assert_eq!((0..8).map(|i| o.slot(i)).collect::<Vec<_>>(), [0, 1, 8, 9, 4, 5, 12, 13]);
    }
}
