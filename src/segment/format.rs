//! A segment's header format: writing a new header, and validating an opened one.

use crate::segment::geometry::Geometry;
use crate::segment::layout::{Header, Kind, LAYOUT_VERSION, MAGIC};
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
