//! The shared-memory layout: a `repr(C)` header, a participant table, and one or two rings.
//!
//! ```text
//! offset 0            Header            magic, version, kind, geometry, ready word  (line 0)
//!                                       join counters and doorbell                   (line 1)
//!                                       crash-recovery counters                      (line 2)
//!                                       participant table, MAX_PARTICIPANTS × 16 B
//! header.ring_offset  ring 0            RingCtrl (tail, head, two doorbells, ends; 128 B lines)
//!                                       capacity × slot_stride bytes of slots
//! + ring_bytes        ring 1            (duplex pipes only)
//! ```
//!
//! Every slot starts with a [`SlotHeader`] (stamp, length) followed by `slot_size` payload bytes.
//! The payload starts [`PAYLOAD_OFFSET`] bytes into the slot and every stride is a multiple of
//! [`PAYLOAD_ALIGN`], so payloads are aligned to that many bytes.
//!
//! Nothing here is trusted when a segment is opened: [`Geometry::validate`] recomputes every
//! derived field from the two free parameters (capacity, slot size) with checked arithmetic and
//! compares it with the header and the real file size.

use crate::sync::{AtomicU32, AtomicU64};

/// `"SHMQSEG\0"`, little-endian: the first eight bytes of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQSEG\0");
/// Bumped on any change to this file's layout or to the stamp encoding.
pub const LAYOUT_VERSION: u32 = 3;
/// Value of [`Header::ready`] once the creator has finished initialising the segment.
pub const READY: u32 = 0x5244_5921;
/// Lines are padded to 128 bytes: x86 prefetches cache lines in adjacent pairs.
pub const LINE: usize = 128;
/// Entries in the participant table (attached handles at once).
pub const MAX_PARTICIPANTS: usize = 256;
/// Largest capacity of one ring (the stamp encoding reserves 24 bits for the index).
pub const MAX_CAPACITY: u64 = 1 << 24;
/// Largest slot payload.
pub const MAX_SLOT_SIZE: u64 = 1 << 30;
/// Largest segment this build creates or accepts.
pub const MAX_TOTAL_SIZE: u64 = 1 << 40;
/// Bytes of [`SlotHeader`] before each payload.
pub const PAYLOAD_OFFSET: usize = 16;
/// Alignment of every payload (a `bytemuck::Pod` view of a slot needs at most this).
pub const PAYLOAD_ALIGN: usize = 16;

/// What a segment holds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One MPMC ring.
    Queue = 1,
    /// One (one-way) or two (duplex) SPSC rings.
    Pipe = 2,
}

impl Kind {
    /// Decodes the header's kind word.
    pub fn from_u32(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Queue),
            2 => Some(Kind::Pipe),
            _ => None,
        }
    }

    /// A lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Pipe => "pipe",
        }
    }
}

/// A value on a line of its own.
#[repr(C, align(128))]
#[derive(Default)]
pub struct Line<T>(pub T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A futex word and the number of processes that announced they may sleep on it.
#[repr(C)]
#[derive(Default)]
pub struct DoorbellWords {
    /// Bumped by a waker before `FUTEX_WAKE`; sleepers wait on the value they read.
    pub seq: AtomicU32,
    /// Sleepers announce themselves here before re-checking their condition.
    pub waiters: AtomicU32,
}

/// Who is attached to one ring, and whether either side has finished.
#[repr(C)]
#[derive(Default)]
pub struct Ends {
    /// Attached handles that may send (queue: any number; pipe: 0 or 1).
    pub producers: AtomicU32,
    /// Attached handles that may receive (queue: any number; pipe: 0 or 1).
    pub consumers: AtomicU32,
    /// [`ENDS_PRODUCER_SEEN`] | [`ENDS_CONSUMER_SEEN`] | [`ENDS_PERSISTENT`].
    pub flags: AtomicU32,
}

/// Set once any producer has attached: from then on, zero producers means end of stream.
pub const ENDS_PRODUCER_SEEN: u32 = 1;
/// Set once any consumer has attached: from then on, zero consumers means a broken pipe.
pub const ENDS_CONSUMER_SEEN: u32 = 2;
/// Set at creation for queues without end of stream (see `QueueBuilder::persistent`).
pub const ENDS_PERSISTENT: u32 = 4;

/// The control block at the start of every ring.
#[repr(C)]
#[derive(Default)]
pub struct RingCtrl {
    /// Queue: hint of the next position to claim for writing (`{ lap, index }`, see `mpmc`).
    /// Pipe: number of messages ever published.
    pub tail: Line<AtomicU64>,
    /// Queue: hint of the next position to claim for reading. Pipe: messages ever consumed.
    pub head: Line<AtomicU64>,
    /// Consumers sleep here while the ring is empty.
    pub not_empty: Line<DoorbellWords>,
    /// Producers sleep here while the ring is full.
    pub not_full: Line<DoorbellWords>,
    /// Attachment counts and end-of-stream flags.
    pub ends: Line<Ends>,
}

/// The first bytes of every slot.
#[repr(C)]
#[derive(Default)]
pub struct SlotHeader {
    /// Queue: `{ state, owner, position }` (see `mpmc`). Pipe: the number of messages published
    /// up to and including this slot's (see `spsc`).
    pub stamp: AtomicU64,
    /// Length of the message in the slot, written before the slot is published.
    pub len: AtomicU32,
    /// Queue: the group bits of a message spanning several slots (`mpmc::AUX_*`). Pipe: "more
    /// fragments follow" (`spsc::AUX_MORE`).
    pub aux: AtomicU32,
}

#[cfg(not(loom))]
pub use header::*;

#[cfg(not(loom))]
mod header {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    /// An entry of the participant table: one attached handle.
    ///
    /// `state` goes `FREE → CLAIMED → ACTIVE → FREE`. While `ACTIVE`, the handle's process holds an
    /// OFD lock on byte [`Participant::lock_offset`] of the segment file, which the kernel drops
    /// when the process dies: that is how death is confirmed without guessing from timeouts or PIDs.
    #[repr(C)]
    pub struct Participant {
        /// [`PARTICIPANT_FREE`], [`PARTICIPANT_CLAIMED`] or [`PARTICIPANT_ACTIVE`].
        pub state: AtomicU32,
        /// Process id of the owner, for display only (never trusted for liveness).
        pub pid: AtomicU32,
        /// [`ROLE_PRODUCER`] | [`ROLE_CONSUMER`], per ring: bits `2*ring`, `2*ring + 1`.
        pub roles: AtomicU32,
        /// Incremented each time the entry is claimed.
        pub generation: AtomicU32,
    }

    impl Participant {
        /// The byte of the segment file whose OFD lock marks entry `index` as alive. Locks may lie
        /// beyond the end of the file; these never overlap the mapping's meaning.
        pub fn lock_offset(index: usize) -> i64 {
            (1i64 << 40) + index as i64
        }
    }

    /// Header flag: puts count unfinished tasks (`task_done` / `join`).
    pub const FLAG_JOINABLE: u32 = 1;
    /// Header flag (pipes): the rings visit their slots in sequence, not in [`SlotOrder`]'s
    /// bit-reversed order (`PipeBuilder::sequential`).
    pub const FLAG_SEQUENTIAL: u32 = 2;
    /// Every header flag this build knows.
    pub const KNOWN_FLAGS: u32 = FLAG_JOINABLE | FLAG_SEQUENTIAL;

    /// Entry unused.
    pub const PARTICIPANT_FREE: u32 = 0;
    /// Entry being filled in by its new owner.
    pub const PARTICIPANT_CLAIMED: u32 = 1;
    /// Entry in use by a live (or not yet reaped) handle.
    pub const PARTICIPANT_ACTIVE: u32 = 2;
    /// Entry left attached by a parent for a child to adopt; `pid` holds the `CLOCK_MONOTONIC`
    /// second of the handover (an entry never adopted is reaped after a grace period).
    pub const PARTICIPANT_HANDOVER: u32 = 3;
    /// Entry of a dead process being repaired by a survivor.
    pub const PARTICIPANT_REAPING: u32 = 4;
    /// Role bit: may send on ring `r` (shifted by `2 * r`).
    pub const ROLE_PRODUCER: u32 = 1;
    /// Role bit: may receive on ring `r` (shifted by `2 * r`).
    pub const ROLE_CONSUMER: u32 = 2;

    /// The segment header. Fields above `join` never change once `ready` is published.
    #[repr(C)]
    pub struct Header {
        /// [`MAGIC`].
        pub magic: u64,
        /// [`LAYOUT_VERSION`].
        pub version: u32,
        /// [`Kind`] as `u32`.
        pub kind: u32,
        /// 0 while the creator initialises, [`READY`] after (published last, Release).
        pub ready: AtomicU32,
        /// 1 for queues and one-way pipes, 2 for duplex pipes.
        pub ring_count: u32,
        /// Slots per ring.
        pub capacity: u64,
        /// Largest payload in bytes.
        pub slot_size: u64,
        /// Bytes from one slot to the next.
        pub slot_stride: u64,
        /// Offset of ring 0 from the start of the segment.
        pub ring_offset: u64,
        /// Bytes per ring (control block and slots).
        pub ring_bytes: u64,
        /// Size of the whole segment.
        pub total_size: u64,
        /// Process id of the creator (display only).
        pub creator_pid: u32,
        /// [`FLAG_JOINABLE`]; other bits zero.
        pub flags: u32,
        /// Items put but not yet marked done (joinable queues), and `join`'s doorbell.
        pub join: Line<JoinState>,
        /// What crash recovery has done to this segment.
        pub recovery: Line<RecoveryCounters>,
        /// Attached handles.
        pub participants: [Participant; MAX_PARTICIPANTS],
    }

    /// Counts kept by crash recovery (see `recover`).
    #[repr(C)]
    pub struct RecoveryCounters {
        /// Dead participants whose entries were repaired and freed.
        pub reaped: AtomicU64,
        /// Messages a dead producer had claimed but not committed: dropped whole.
        pub dropped_writes: AtomicU64,
        /// Messages a dead consumer had claimed but not released: counted as lost.
        pub lost_reads: AtomicU64,
    }

    /// Counters behind `task_done` / `join`.
    #[repr(C)]
    pub struct JoinState {
        /// Items put and not yet marked done.
        pub unfinished: AtomicU64,
        /// `join` sleeps here.
        pub bell: DoorbellWords,
    }

    const _: () = {
        assert!(std::mem::size_of::<SlotHeader>() == PAYLOAD_OFFSET);
        assert!(std::mem::size_of::<RingCtrl>() == 5 * LINE);
        assert!(std::mem::size_of::<Participant>() == 16);
        assert!(std::mem::offset_of!(Header, join) == LINE);
        assert!(std::mem::offset_of!(Header, recovery) == 2 * LINE);
        assert!(std::mem::offset_of!(Header, participants) == 3 * LINE);
        assert!(std::mem::size_of::<Header>() == 3 * LINE + 16 * MAX_PARTICIPANTS);
        assert!(std::mem::align_of::<Header>() <= LINE);
    };
}

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
        // every slot shared lines with both neighbours: the pipe's round trip measured ~10 ns
        // slower and its 64-byte throughput ~25% lower; see docs/BENCHMARKS.md.)
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

/// The order in which a pipe's ring visits its slots: position `p` (the `p`th message ever sent)
/// goes to slot `order.slot(p % capacity)`.
///
/// Messages in consecutive lines are the pattern hardware prefetchers follow, and in a pipe
/// that works against the hand-over: each side's prefetcher pulls the lines the other side is
/// about to write into its own cache, and every hand-over then pays extra coherence traffic. With
/// a power-of-two capacity, slots are visited in bit-reversed order, which never steps by a
/// constant distance and puts consecutive messages at least a quarter of the ring apart. On the
/// development machine (2-core AMD EPYC VM) a round trip over 64 slots of 128 bytes measured
/// ~0.1× the raw atomic ping-pong faster in this order than in sequence (as fast as over 4
/// slots), and 64-byte streaming throughput rose too; see docs/BENCHMARKS.md. Slots smaller than
/// a line (16 or 32 bytes) keep sharing lines in sequence: only the line index is reversed.
/// Other capacities are visited in sequence, and so are pipes created with
/// [`FLAG_SEQUENTIAL`]: streaming batches through a ring larger than the cache wants the
/// prefetchers (8-byte `send_batch` measured ~30% slower in bit-reversed order).
///
/// Part of the layout: both ends of a ring must agree on it (since [`LAYOUT_VERSION`] 3).
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
