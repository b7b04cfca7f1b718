//! Raw views of a ring's memory, shared by the MPMC and SPSC algorithms.
//!
//! A [`RingMem`] is a pair of base pointers (slot headers, payloads) and strides. Over a segment
//! both point into the mapping (payload = header + 16); in unit and loom tests they point at heap
//! arrays. The algorithms index it only with `idx < capacity`, which they check before calling.

use crate::layout::{RingCtrl, SlotHeader};

/// Where one ring's control block and slots are.
#[derive(Clone, Copy)]
pub(crate) struct RingMem {
    pub ctrl: *const RingCtrl,
    pub hdr: *const u8,
    pub hdr_stride: usize,
    pub pay: *mut u8,
    pub pay_stride: usize,
    pub capacity: u64,
    pub slot_size: usize,
}

// SAFETY: RingMem is a set of pointers into memory that is only accessed through atomics (control
// block, slot headers) or under the ring protocol's exclusive slot ownership (payloads). The owner
// of the memory (a segment or a test's heap arrays) outlives every RingMem made from it.
unsafe impl Send for RingMem {}
// SAFETY: as for Send: all shared access goes through atomics or protocol-owned slots.
unsafe impl Sync for RingMem {}

impl RingMem {
    /// The control block.
    #[inline]
    pub fn ctrl(&self) -> &RingCtrl {
        // SAFETY: `ctrl` points at an initialised RingCtrl that outlives `self` (constructor's
        // contract: `Segment` keeps the mapping, tests keep the Box).
        unsafe { &*self.ctrl }
    }

    /// Slot `idx`'s header. The caller has checked `idx < capacity`.
    #[inline]
    pub fn slot(&self, idx: u64) -> &SlotHeader {
        debug_assert!(idx < self.capacity);
        // SAFETY: idx < capacity (checked by every caller against the process-local capacity),
        // and capacity slot headers of `hdr_stride` bytes lie at `hdr`, 8-byte aligned.
        unsafe { &*(self.hdr.add(idx as usize * self.hdr_stride) as *const SlotHeader) }
    }

    /// Pointer to slot `idx`'s `slot_size` payload bytes. The caller has checked `idx < capacity`.
    #[inline]
    pub fn payload(&self, idx: u64) -> *mut u8 {
        debug_assert!(idx < self.capacity);
        // SAFETY: idx < capacity, and `capacity * pay_stride` payload bytes lie at `pay`: the
        // result stays inside that allocation.
        unsafe { self.pay.add(idx as usize * self.pay_stride) }
    }
}

/// Heap memory shaped like a ring, for unit tests, loom models and in-process benchmarks.
#[cfg(test)]
pub(crate) struct HeapRing {
    pub ctrl: Box<RingCtrl>,
    pub hdrs: Box<[SlotHeader]>,
    /// Owns the payload bytes `mem` points at.
    pub _data: Box<[u64]>,
    pub mem: RingMem,
}

#[cfg(test)]
impl HeapRing {
    pub fn new(capacity: u64, slot_size: usize) -> Self {
        let ctrl = Box::<RingCtrl>::default();
        let hdrs: Box<[SlotHeader]> = (0..capacity).map(|_| SlotHeader::default()).collect();
        let words = slot_size.div_ceil(8);
        let mut data = vec![0u64; words * capacity as usize].into_boxed_slice();
        let mem = RingMem {
            ctrl: &*ctrl,
            hdr: hdrs.as_ptr() as *const u8,
            hdr_stride: std::mem::size_of::<SlotHeader>(),
            pay: data.as_mut_ptr() as *mut u8,
            pay_stride: words * 8,
            capacity,
            slot_size,
        };
        HeapRing { ctrl, hdrs, _data: data, mem }
    }
}
