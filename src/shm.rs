//! Glue between a mapped [`Segment`] and the rings in it: writing a new header, validating an
//! opened one, and locating each ring.

use crate::layout::{Geometry, Header, Kind, RingCtrl, SlotOrder, LAYOUT_VERSION, MAGIC, PAYLOAD_OFFSET};
use crate::ring::RingMem;
use crate::segment::Segment;
use crate::Error;
use std::ptr::addr_of_mut;

/// Where a new segment goes.
#[derive(Clone, Debug)]
pub(crate) enum Place<'a> {
    Named { name: &'a str, mode: u32, unlink_on_drop: bool },
    Anonymous,
}

/// Creates a segment for `g` and writes its header. The caller initialises the rings, then calls
/// [`Segment::publish`].
pub(crate) fn create(place: Place<'_>, g: &Geometry) -> Result<Segment, Error> {
    let seg = match place {
        Place::Named { name, mode, unlink_on_drop } => Segment::create_named(name, g.total_size, mode, unlink_on_drop)?,
        Place::Anonymous => Segment::create_anonymous(g.total_size)?,
    };
    let h = seg.base() as *mut Header;
    // SAFETY: the mapping is `g.total_size` bytes, larger than a Header, page-aligned, and not yet
    // published: openers read these fields only after seeing READY (Release in `publish`).
    unsafe {
        addr_of_mut!((*h).version).write(LAYOUT_VERSION);
        addr_of_mut!((*h).kind).write(g.kind as u32);
        addr_of_mut!((*h).ring_count).write(g.ring_count);
        addr_of_mut!((*h).capacity).write(g.capacity);
        addr_of_mut!((*h).slot_size).write(g.slot_size);
        addr_of_mut!((*h).slot_stride).write(g.slot_stride);
        addr_of_mut!((*h).ring_offset).write(g.ring_offset);
        addr_of_mut!((*h).ring_bytes).write(g.ring_bytes);
        addr_of_mut!((*h).total_size).write(g.total_size);
        addr_of_mut!((*h).creator_pid).write(std::process::id());
        addr_of_mut!((*h).flags).write(g.flags);
        addr_of_mut!((*h).magic).write(MAGIC);
    }
    Ok(seg)
}

/// Validates an opened segment's header as a segment of kind `expect`.
pub(crate) fn validate(seg: &Segment, expect: Kind) -> Result<Geometry, Error> {
    Geometry::validate(seg.header(), seg.len(), expect)
}

/// The memory of ring `r` of a segment whose geometry `g` was validated against its mapping.
pub(crate) fn ring_mem(seg: &Segment, g: &Geometry, r: u32) -> RingMem {
    assert!(r < g.ring_count && g.total_size == seg.len());
    let start = g.ring_start(r) as usize;
    let stride = g.slot_stride as usize;
    // SAFETY: `g` was computed by Geometry::new/validate and matches the mapping's length, so the
    // ring's control block and `capacity * stride` bytes of slots lie inside the mapping.
    unsafe {
        let ctrl = seg.base().add(start) as *const RingCtrl;
        let slots = seg.base().add(start + std::mem::size_of::<RingCtrl>());
        RingMem {
            ctrl,
            hdr: slots,
            hdr_stride: stride,
            pay: slots.add(PAYLOAD_OFFSET),
            pay_stride: stride,
            capacity: g.capacity,
            slot_size: g.slot_size as usize,
            order: SlotOrder::of(g),
        }
    }
}
