//! Raw views of a ring's memory, shared by the MPMC and SPSC algorithms.
//!
//! A [`RingMem`] is a pair of base pointers (slot headers, payloads) and strides. Over a segment
//! both point into the mapping (payload = header + 16); in unit and loom tests they point at heap
//! arrays. The algorithms index it only with `idx < capacity`, which they check before calling.

use crate::ring::slot_order::SlotOrder;
use crate::segment::layout::{RingCtrl, SlotHeader};

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
    /// Which slot each position goes to (the SPSC ring's; the MPMC ring ignores it).
    pub order: SlotOrder,
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

#[cfg(not(loom))]
impl RingMem {
    /// The memory of ring `r` of a segment whose geometry `g` was validated against its mapping.
    pub fn in_segment(seg: &crate::segment::Segment, g: &crate::segment::geometry::Geometry, r: u32) -> RingMem {
        use crate::segment::layout::PAYLOAD_OFFSET;
        assert!(r < g.ring_count && g.total_size == seg.len());
        let start = g.ring_start(r) as usize;
        let stride = g.slot_stride as usize;
        // SAFETY: `g` was computed by Geometry::new/validate and matches the mapping's length, so
        // the ring's control block and `capacity * stride` bytes of slots lie inside the mapping.
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
}

/// Copies `src` to `dst`, inline for messages up to 32 bytes (two overlapping word moves: the
/// small-message paths measure a `memcpy` call, its size dispatch included, in every round trip).
///
/// # Safety
/// `dst` is valid for `src.len()` bytes of writes and does not overlap `src`.
#[inline]
pub(crate) unsafe fn copy_to(src: &[u8], dst: *mut u8) {
    let (n, s) = (src.len(), src.as_ptr());
    if (8..=16).contains(&n) {
        // SAFETY: two 8-byte moves at 0 and n - 8 (overlapping when n < 16) stay inside
        // `src[..n]` and `dst[..n]`; the accesses are unaligned ones.
        unsafe {
            let (a, b) = ((s as *const u64).read_unaligned(), (s.add(n - 8) as *const u64).read_unaligned());
            (dst as *mut u64).write_unaligned(a);
            (dst.add(n - 8) as *mut u64).write_unaligned(b);
        }
    } else if (17..=32).contains(&n) {
        // SAFETY: as above, with 16-byte moves at 0 and n - 16.
        unsafe {
            let (a, b) = ((s as *const u128).read_unaligned(), (s.add(n - 16) as *const u128).read_unaligned());
            (dst as *mut u128).write_unaligned(a);
            (dst.add(n - 16) as *mut u128).write_unaligned(b);
        }
    } else {
        // SAFETY: the caller's contract: `dst` holds n bytes and does not overlap `src`.
        unsafe { std::ptr::copy_nonoverlapping(s, dst, n) }
    }
}

/// Reads the 8 bytes at `src` with one relaxed atomic load: the word [`copy_from_shared`] would
/// read, for the common 8-byte message, without its loops.
///
/// # Safety
/// `src` is 8-byte aligned and valid for 8 bytes of reads for the duration of the call, and this
/// process makes no non-atomic write to them meanwhile.
#[inline(always)]
pub(crate) unsafe fn load_word_shared(src: *const u8) -> u64 {
    // SAFETY: the caller's contract: aligned, readable, no non-atomic access from this process.
    unsafe { std::sync::atomic::AtomicU64::from_ptr(src as *mut u64) }.load(std::sync::atomic::Ordering::Relaxed)
}

/// From this many bytes on, [`copy_from_shared`] copies 64-byte blocks with 16-byte moves (on
/// x86-64) before its word loop.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(loom), not(miri)))]
const BLOCK_COPY_MIN: usize = 64;

/// Copies `dst.len()` bytes from `src` into `dst`, where `src` is memory another process may be
/// writing at the same moment (a slot a hostile peer rewrites while we read it).
///
/// Every byte is read once, by a relaxed atomic load (a word at a time where `src` is 8-byte
/// aligned, single bytes at the ends) or, on x86-64 from `BLOCK_COPY_MIN` bytes on, by the
/// 16-byte loads of an inline-assembly block copy first (each byte read once, as those atomic
/// loads would), so the copy is no data race whatever the peer does: the bytes may be torn
/// across loads, but once in `dst` they are ours and stay as read. Whatever the caller validates
/// or decodes, it validates on `dst`.
///
/// # Safety
/// `src` is valid for `dst.len()` bytes of reads for the duration of the call, and this process
/// makes no non-atomic write to those bytes meanwhile.
#[inline]
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
    let (n, out) = (dst.len(), dst.as_mut_ptr());
    let mut i = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(loom), not(miri)))]
    if n >= BLOCK_COPY_MIN {
        let blocks = n / 64;
        // SAFETY: the loop reads `src[..64 * blocks]` (readable: the caller's contract) and
        // writes `dst[..64 * blocks]` (ours: `64 * blocks <= n`), with unaligned 16-byte moves
        // through xmm0-xmm3 (declared clobbered). A 16-byte load reads each of its bytes once,
        // as the relaxed `AtomicU8` loads of the loops below would (a single-byte load on
        // x86-64), in an order the CPU chooses: the copy is no more a data race than those
        // loops, and the compiler assumes nothing about the bytes it reads.
        unsafe {
            std::arch::asm!(
                "2:",
                "movdqu xmm0, xmmword ptr [{s}]",
                "movdqu xmm1, xmmword ptr [{s} + 16]",
                "movdqu xmm2, xmmword ptr [{s} + 32]",
                "movdqu xmm3, xmmword ptr [{s} + 48]",
                "movdqu xmmword ptr [{d}], xmm0",
                "movdqu xmmword ptr [{d} + 16], xmm1",
                "movdqu xmmword ptr [{d} + 32], xmm2",
                "movdqu xmmword ptr [{d} + 48], xmm3",
                "add {s}, 64",
                "add {d}, 64",
                "dec {k}",
                "jnz 2b",
                s = inout(reg) src => _,
                d = inout(reg) out => _,
                k = inout(reg) blocks => _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                options(nostack),
            );
        }
        i = blocks * 64;
        if i == n {
            return;
        }
    }
    // SAFETY: `i < n` (the loops' bounds), so `src + i` lies inside the caller's `n` readable
    // bytes; an `AtomicU8` needs no alignment, and the caller's contract rules out a non-atomic
    // access from this process.
    let byte = |i: usize| unsafe { AtomicU8::from_ptr(src.add(i) as *mut u8) }.load(Ordering::Relaxed);
    // SAFETY: `i < n`, so `out + i` lies inside `dst` (every write goes through `out`).
    let put = |i: usize, b: u8| unsafe { out.add(i).write(b) };
    while i < n && (src as usize + i) % 8 != 0 {
        put(i, byte(i));
        i += 1;
    }
    while i + 8 <= n {
        // SAFETY: `src + i` is 8-byte aligned (the loop above) with 8 readable bytes after it
        // (`i + 8 <= n`), and `out + i` has 8 writable bytes of `dst` (an unaligned write); no
        // non-atomic access to `src` from this process (the caller's contract).
        unsafe {
            let word = AtomicU64::from_ptr(src.add(i) as *mut u64).load(Ordering::Relaxed);
            (out.add(i) as *mut u64).write_unaligned(word);
        }
        i += 8;
    }
    while i < n {
        put(i, byte(i));
        i += 1;
    }
}

/// Heap memory shaped like a ring, for unit tests and loom models. The allocations are held as
/// raw pointers and freed on drop, so that moving the `HeapRing` (into an `Arc`, say) never
/// re-asserts unique ownership of memory that `mem`'s pointers still reach.
#[cfg(test)]
pub(crate) struct HeapRing {
    ctrl: *mut RingCtrl,
    hdrs: *mut [SlotHeader],
    /// The payload words `mem` points at.
    data: *mut [u64],
    pub mem: RingMem,
}

#[cfg(test)]
impl HeapRing {
    pub fn new(capacity: u64, slot_size: usize) -> Self {
        let ctrl = Box::into_raw(Box::<RingCtrl>::default());
        let hdrs = Box::into_raw((0..capacity).map(|_| SlotHeader::default()).collect::<Box<[SlotHeader]>>());
        let words = slot_size.div_ceil(8);
        let data = Box::into_raw(vec![0u64; words * capacity as usize].into_boxed_slice());
        let mem = RingMem {
            ctrl,
            hdr: hdrs as *const u8,
            hdr_stride: std::mem::size_of::<SlotHeader>(),
            pay: data as *mut u8,
            pay_stride: words * 8,
            capacity,
            slot_size,
            // As a pipe's ring of 16-byte slots would be (bit-reversed for powers of two).
            order: SlotOrder::new(capacity, std::mem::size_of::<SlotHeader>()),
        };
        HeapRing { ctrl, hdrs, data, mem }
    }

    /// The control block.
    pub fn ctrl(&self) -> &RingCtrl {
        // SAFETY: allocated by `new`, freed only when `self` drops.
        unsafe { &*self.ctrl }
    }

    /// The slot headers.
    pub fn hdrs(&self) -> &[SlotHeader] {
        // SAFETY: as in `ctrl`.
        unsafe { &*self.hdrs }
    }
}

// SAFETY: `data` is the payload allocation `mem` points at; it is reached only through `mem`,
// under the same rules as a segment's payloads (see `RingMem`'s Send and Sync), and freed on drop.
#[cfg(test)]
unsafe impl Send for HeapRing {}
// SAFETY: as for Send.
#[cfg(test)]
unsafe impl Sync for HeapRing {}

#[cfg(test)]
impl Drop for HeapRing {
    fn drop(&mut self) {
        // SAFETY: the three allocations were leaked by `new` and are freed once, here; the
        // `RingMem` made from them (and every copy of it) is the test's and is not used after
        // the `HeapRing` that owns the memory is dropped.
        unsafe {
            drop(Box::from_raw(self.ctrl));
            drop(Box::from_raw(self.hdrs));
            drop(Box::from_raw(self.data));
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn copy_from_shared_copies_exactly_the_bytes_at_every_alignment_and_length() {
        let mut src: Vec<u8> = (0..400).map(|i| (i % 251) as u8 + 1).collect();
        // Derived from a mutable borrow, as a mapping's pointer is: the atomic loads need a
        // pointer that allows shared mutation.
        let base = src.as_mut_ptr();
        for start in 0..9 {
            // Across the word loop's lengths and the block copy's (from 64: 64-byte blocks,
            // then the word loop for the rest).
            for n in (0..=80).chain(120..=330) {
                let mut dst = vec![0u8; n];
                // SAFETY: `src[start..start + n]` is readable and only read.
                unsafe { super::copy_from_shared(base.add(start), &mut dst) };
                assert_eq!(dst, &src[start..start + n], "start {start} length {n}");
            }
        }
    }

    #[test]
    fn copy_to_copies_exactly_the_bytes_of_every_small_length() {
        let src: Vec<u8> = (1..=80).collect();
        for n in 0..=80 {
            let mut dst = [0u8; 96];
            // SAFETY: dst has room for n <= 80 bytes at offset 3 and does not overlap src.
            unsafe { super::copy_to(&src[..n], dst.as_mut_ptr().add(3)) };
            assert_eq!(&dst[3..3 + n], &src[..n], "length {n}");
            assert!(dst[..3].iter().chain(&dst[3 + n..]).all(|&b| b == 0), "length {n}: wrote outside");
        }
    }
}
