//! A segment's sizes and offsets, computed from its kind, ring count, capacity and slot size with
//! checked arithmetic; and the validation of a header another process wrote.

#[cfg(loom)]
use crate::segment::layout::MAX_PARTICIPANTS;
#[cfg(not(loom))]
use crate::segment::layout::{Header, KNOWN_FLAGS, LAYOUT_VERSION, MAGIC};
use crate::segment::layout::{Kind, RingCtrl, LINE, MAX_CAPACITY, MAX_SLOT_SIZE, MAX_TOTAL_SIZE};
use crate::segment::layout::{PAYLOAD_ALIGN, PAYLOAD_OFFSET};

/// The sizes and offsets of a segment, derived from kind, ring count, capacity and slot size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// What the segment holds.
    pub kind: Kind,
    /// Rings in the segment.
    pub ring_count: u32,
    /// Slots per ring.
    pub capacity: u64,
    /// Largest payload.
    pub slot_size: u64,
    /// Bytes from one slot to the next.
    pub slot_stride: u64,
    /// Offset of ring 0.
    pub ring_offset: u64,
    /// Bytes per ring.
    pub ring_bytes: u64,
    /// Bytes of the whole segment.
    pub total_size: u64,
    /// Header flags (`FLAG_JOINABLE`), as validated when the segment was opened.
    pub flags: u32,
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    debug_assert!(to.is_power_of_two());
    v.checked_add(to - 1).map(|x| x & !(to - 1))
}

impl Geometry {
    /// Computes the layout for new parameters, or says which one is out of range.
    pub fn new(kind: Kind, ring_count: u32, capacity: u64, slot_size: u64) -> Result<Self, &'static str> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err("capacity must be between 1 and 2^24");
        }
        if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
            return Err("slot size must be between 1 and 2^30 bytes");
        }
        let rings_ok = match kind {
            Kind::Queue => ring_count == 1,
            Kind::Pipe => ring_count == 1 || ring_count == 2,
        };
        if !rings_ok {
            return Err("ring count does not fit the kind");
        }
        // Queue slots are written by many producers at once: a stride of whole 64-byte lines keeps
        // neighbours from sharing one. A pipe has one writer, so slots of up to 64 bytes (header
        // included) share lines, 2 or 4 to a line, but no slot straddles two lines: a stride of
        // 16, 32 or 64 bytes divides the line, a larger one is whole lines. (Packed at 16-byte
        // steps, one message in four of a 64-byte slot had its payload in the next line, and
        // every slot shared lines with both neighbours.)
        let too_big = "segment would exceed 2^40 bytes";
        let raw = PAYLOAD_OFFSET as u64 + slot_size;
        let slot_stride = match kind {
            Kind::Pipe if raw <= 64 => raw.next_power_of_two().max(PAYLOAD_ALIGN as u64),
            _ => round_up(raw, 64).ok_or(too_big)?,
        };
        let ring_offset = round_up(header_size() as u64, LINE as u64).ok_or(too_big)?;
        let slots = capacity.checked_mul(slot_stride).ok_or(too_big)?;
        let ring_bytes = (std::mem::size_of::<RingCtrl>() as u64)
            .checked_add(slots)
            .and_then(|b| round_up(b, LINE as u64))
            .ok_or(too_big)?;
        let total_size = ring_bytes
            .checked_mul(ring_count as u64)
            .and_then(|b| b.checked_add(ring_offset))
            .and_then(|b| round_up(b, 4096))
            .ok_or(too_big)?;
        if total_size > MAX_TOTAL_SIZE {
            return Err(too_big);
        }
        Ok(Geometry {
            kind,
            ring_count,
            capacity,
            slot_size,
            slot_stride,
            ring_offset,
            ring_bytes,
            total_size,
            flags: 0,
        })
    }

    /// Offset of ring `r`'s control block.
    pub fn ring_start(&self, r: u32) -> u64 {
        debug_assert!(r < self.ring_count);
        self.ring_offset + self.ring_bytes * r as u64
    }
}

/// Size of the fixed header (participant table included).
pub fn header_size() -> usize {
    #[cfg(not(loom))]
    {
        std::mem::size_of::<Header>()
    }
    #[cfg(loom)]
    {
        3 * LINE + 16 * MAX_PARTICIPANTS
    }
}

#[cfg(not(loom))]
impl Geometry {
    /// Checks a header read from another process against the real size of its file.
    ///
    /// Reads each header field once. Returns the layout only if every derived field equals what
    /// [`Geometry::new`] computes from the header's capacity and slot size.
    pub fn validate(h: &Header, file_len: u64, expect: Kind) -> Result<Self, crate::Error> {
        use crate::Error;
        // Another process can write these fields at any time: read each exactly once, with
        // volatile reads (no tearing assumptions, no re-reads), and work on the copies.
        // SAFETY: each pointer comes from a reference to a plain integer field of the header.
        let (magic, version, kind, flags, ring_count, capacity, slot_size, slot_stride, ring_offset, ring_bytes, total) = unsafe {
            use std::ptr::read_volatile as rd;
            (
                rd(&h.magic),
                rd(&h.version),
                rd(&h.kind),
                rd(&h.flags),
                rd(&h.ring_count),
                rd(&h.capacity),
                rd(&h.slot_size),
                rd(&h.slot_stride),
                rd(&h.ring_offset),
                rd(&h.ring_bytes),
                rd(&h.total_size),
            )
        };
        if magic != MAGIC {
            return Err(Error::BadMagic);
        }
        if version != LAYOUT_VERSION {
            return Err(Error::VersionMismatch { found: version, expected: LAYOUT_VERSION });
        }
        let kind = Kind::from_u32(kind).ok_or(Error::Corrupt("unknown segment kind"))?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(Error::Corrupt("unknown header flags"));
        }
        if kind != expect {
            return Err(Error::WrongKind { found: kind.name(), expected: expect.name() });
        }
        let mut g = Geometry::new(kind, ring_count, capacity, slot_size).map_err(Error::Corrupt)?;
        g.flags = flags;
        let found = (slot_stride, ring_offset, ring_bytes, total);
        if found != (g.slot_stride, g.ring_offset, g.ring_bytes, g.total_size) {
            return Err(Error::SizeMismatch("derived sizes in the header are inconsistent".into()));
        }
        if g.total_size != file_len {
            return Err(Error::SizeMismatch(format!("header says {} bytes, file has {}", g.total_size, file_len)));
        }
        Ok(g)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn queue_stride_is_whole_lines_and_payload_aligned() {
        for size in [1, 8, 48, 49, 64, 1000, 65536] {
            let g = Geometry::new(Kind::Queue, 1, 3, size).unwrap();
            assert_eq!(g.slot_stride % 64, 0);
            assert!(g.slot_stride >= PAYLOAD_OFFSET as u64 + size);
            assert_eq!(g.ring_offset % LINE as u64, 0);
            assert_eq!(g.total_size % 4096, 0);
        }
    }

    #[test]
    fn pipe_slots_share_lines_but_never_straddle_one() {
        for (size, stride) in [(1, 32), (8, 32), (16, 32), (17, 64), (48, 64), (49, 128), (64, 128), (1000, 1024)] {
            let g = Geometry::new(Kind::Pipe, 2, 1024, size).unwrap();
            assert_eq!(g.slot_stride, stride, "slot size {size}");
            assert!(64 % g.slot_stride == 0 || g.slot_stride % 64 == 0);
            assert_eq!(g.ring_start(1) - g.ring_start(0), g.ring_bytes);
        }
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        assert!(Geometry::new(Kind::Queue, 1, 0, 8).is_err());
        assert!(Geometry::new(Kind::Queue, 1, MAX_CAPACITY + 1, 8).is_err());
        assert!(Geometry::new(Kind::Queue, 1, 8, 0).is_err());
        assert!(Geometry::new(Kind::Queue, 2, 8, 8).is_err());
        assert!(Geometry::new(Kind::Pipe, 3, 8, 8).is_err());
        assert!(Geometry::new(Kind::Queue, 1, MAX_CAPACITY, MAX_SLOT_SIZE).is_err());
    }
}
