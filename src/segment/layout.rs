//! The shared-memory layout: a `repr(C)` header, a participant table, and one or two rings.
//!
//! ```text
//! offset 0            Header            magic, version, kind, geometry, ready word  (line 0)
//!                                       join counters and doorbell                   (line 1)
//!                                       crash-recovery counters                      (line 2)
//!                                       participant table, MAX_PARTICIPANTS × 48 B
//! header.ring_offset  ring 0            RingCtrl (tail, head, two doorbells, ends; 128 B lines)
//!                                       capacity × slot_stride bytes of slots
//! + ring_bytes        ring 1            (duplex pipes only)
//! ```
//!
//! Every slot starts with a [`SlotHeader`] (stamp, length) followed by `slot_size` payload bytes.
//! The payload starts [`PAYLOAD_OFFSET`] bytes into the slot and every stride is a multiple of
//! [`PAYLOAD_ALIGN`], so payloads are aligned to that many bytes.
//!
//! Nothing here is trusted when a segment is opened: `Geometry::validate` recomputes every
//! derived field from the two free parameters (capacity, slot size) with checked arithmetic and
//! compares it with the header and the real file size.

use crate::sys::atomic::{AtomicU32, AtomicU64, Ordering};

/// `"SHMQSEG\0"`, little-endian: the first eight bytes of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQSEG\0");
/// Bumped on any change to this file's layout or to the stamp encoding.
///
/// 5: participant entries of 48 bytes (state and generation in one word, the task accounting of
/// joinable queues), count words of 64 bits (a version beside `{ ended, count }`), `unfinished`
/// with the tag of the operation in flight, and the `lost_tasks` recovery counter.
pub const LAYOUT_VERSION: u32 = 5;
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
    /// Attached handles that may send (queue: any number; pipe: 0 or 1), as
    /// `{ version: 32, ended: 1 (bit 31), count: 31 }`: a cache of how many entries of the
    /// participant table hold the producer role of this ring, which `ended` closes for good (see
    /// `ring::ends`).
    pub producers: CountWord,
    /// Attached handles that may receive, encoded as `producers`.
    pub consumers: CountWord,
    /// [`ENDS_PRODUCER_SEEN`] | [`ENDS_CONSUMER_SEEN`] | [`ENDS_PERSISTENT`] | [`ENDS_NEED_WITNESS`].
    pub flags: AtomicU32,
}

/// One side's count word: `{ version: 32 (high), ended: 1 (bit 31), count: 31 }` in one 64-bit
/// word. The low 32 bits are what a reader outside the protocol wants (`ring::ends::ENDED` and the
/// count); the version makes every update of the word a distinct value, so that an update computed
/// from a stale look at the participant table cannot land (see `ring::ends`).
#[repr(transparent)]
#[derive(Default)]
pub struct CountWord(pub(crate) AtomicU64);

impl CountWord {
    /// `{ ended, count }`, without the version.
    #[inline]
    pub fn load(&self, order: Ordering) -> u32 {
        self.0.load(order) as u32
    }
}

/// Set once any producer has attached (shown by `shmq stat`).
pub const ENDS_PRODUCER_SEEN: u32 = 1;
/// Set once any consumer has attached (shown by `shmq stat`).
pub const ENDS_CONSUMER_SEEN: u32 = 2;
/// Set at creation for queues without end of stream (see `QueueBuilder::persistent`).
pub const ENDS_PERSISTENT: u32 = 4;
/// Set at creation for queues: a side ends only if the other side is attached when its last
/// handle leaves (a queue everybody has left lies dormant, and anyone may attach again). A
/// pipe's ends, without this flag, end for good whenever their handle leaves.
pub const ENDS_NEED_WITNESS: u32 = 8;

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

/// An entry of the participant table: one attached handle, or one handed to a child. 48 bytes.
///
/// `state` is `{ generation, state }` (see [`StateWord`]) and goes `FREE → CLAIMED → ACTIVE → FREE`,
/// or `ACTIVE → HANDOVER → ACTIVE` when a parent hands the entry to a child, or
/// `CLAIMED → REAPING_CLAIM → FREE` and `ACTIVE | HANDOVER → REAPING → FREE` when a survivor frees
/// or repairs the entry of a dead process. `FREE → CLAIMED` starts a new generation; no other
/// transition changes it. While the entry is in use, its owner holds its liveness lock, an OFD
/// write lock on byte [`Participant::lock_offset`] of the segment file, from before it claims the
/// entry until after it frees it (in handover through the one open file description that the
/// parent and the child share). The kernel drops it when its holder dies: an entry not `FREE`
/// whose lock nobody holds belongs to a dead process. That is how death is confirmed without
/// guessing from timeouts or PIDs. A reaper names itself in `detail` and is alive while its own
/// lock is held (see `segment::table`).
#[repr(C)]
#[derive(Default)]
pub struct Participant {
    /// `{ generation: 32, state: 32 }`: [`PARTICIPANT_FREE`], [`PARTICIPANT_CLAIMED`],
    /// [`PARTICIPANT_ACTIVE`], [`PARTICIPANT_HANDOVER`], [`PARTICIPANT_REAPING`] or
    /// [`PARTICIPANT_REAPING_CLAIM`] (see [`StateWord`]).
    pub state: StateWord,
    /// What the state needs to say, by state: `CLAIMED` and `ACTIVE`: the owner's process id (for
    /// display only, never trusted for liveness); `HANDOVER`: the `CLOCK_MONOTONIC` second of the
    /// handover; `REAPING*`: `REAPER_MARK | reaper` (`segment::table`). A dead entry's reaper
    /// CASes its mark in, so that one survivor wins.
    pub detail: AtomicU32,
    /// [`ROLE_PRODUCER`] | [`ROLE_CONSUMER`], per ring: bits `2*ring`, `2*ring + 1`. The truth of
    /// who holds which role: each ring's count words are a cache of these bits (`ring::ends`).
    pub roles: AtomicU32,
    /// Joinable queues: the operation on `unfinished` this entry has in flight,
    /// `{ seq: 16, kind: 3, arg: 45 }` (see `segment::tasks`).
    pub op: AtomicU64,
    /// Joinable queues: `{ journal: 25, count: 39 }`: tasks this entry took and released from the
    /// ring (`count`), and the slot of a release in progress (`journal`, index + 1; see
    /// `segment::tasks`).
    pub takes: AtomicU64,
    /// Joinable queues: tasks marked done through this entry.
    pub dones: AtomicU64,
    /// Joinable queues: `{ counted: 1 (bit 63), pos: 45 }`: a put counted in `unfinished` that
    /// may not be published yet, at position `pos` (see `segment::tasks`).
    pub putpos: AtomicU64,
}

impl Participant {
    /// The byte of the segment file whose OFD lock marks entry `index` as alive. Locks may lie
    /// beyond the end of the file; these never overlap the mapping's meaning.
    pub fn lock_offset(index: usize) -> i64 {
        (1i64 << 40) + index as i64
    }
}

/// A participant entry's `{ generation: 32 (high), state: 32 (low) }` in one 64-bit word, so that a
/// transition names the generation it acts on: a CAS from `{ g, ACTIVE }` cannot succeed on an
/// entry that was freed and claimed again meanwhile (which would be `{ g + 1, ... }`).
#[repr(transparent)]
#[derive(Default)]
pub struct StateWord(pub(crate) AtomicU64);

impl StateWord {
    /// The state alone, without the generation (what `shmq ls` and `stat` look at).
    #[inline]
    pub fn load(&self, order: Ordering) -> u32 {
        self.0.load(order) as u32
    }
}

/// Packs `{ generation, state }`.
#[inline]
pub const fn entry_word(generation: u32, state: u32) -> u64 {
    ((generation as u64) << 32) | state as u64
}

/// Unpacks `{ generation, state }`.
#[inline]
pub const fn entry_parts(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// Entry unused.
pub const PARTICIPANT_FREE: u32 = 0;
/// Entry being filled in by its new owner (which holds its lock).
pub const PARTICIPANT_CLAIMED: u32 = 1;
/// Entry in use by a live (or not yet reaped) handle.
pub const PARTICIPANT_ACTIVE: u32 = 2;
/// Entry left attached by a parent for a child to adopt; `detail` holds the `CLOCK_MONOTONIC`
/// second of the handover (shown only). Alive exactly while its lock is held, through the
/// description the parent and the child share.
pub const PARTICIPANT_HANDOVER: u32 = 3;
/// Entry of a dead process (`ACTIVE` or `HANDOVER` when it died) being repaired by a survivor.
pub const PARTICIPANT_REAPING: u32 = 4;
/// Entry of a process that died while claiming it (`CLAIMED`), being freed by a survivor: it
/// never held anything.
pub const PARTICIPANT_REAPING_CLAIM: u32 = 5;
/// Role bit: may send on ring `r` (shifted by `2 * r`).
pub const ROLE_PRODUCER: u32 = 1;
/// Role bit: may receive on ring `r` (shifted by `2 * r`).
pub const ROLE_CONSUMER: u32 = 2;

/// Counters behind `task_done` / `join`.
#[repr(C)]
#[derive(Default)]
pub struct JoinState {
    /// Tasks put and not yet marked done, and the entry whose operation on the count is in flight.
    pub unfinished: Unfinished,
    /// `join` sleeps here.
    pub bell: DoorbellWords,
}

/// `{ tag: 24 (high), count: 40 }`: tasks put and not yet marked done (`count`), and the entry
/// whose operation on the count is in flight (`tag`: `{ index + 1: 9, seq: 15 }`, 0 for none; see
/// `segment::tasks`).
#[repr(transparent)]
#[derive(Default)]
pub struct Unfinished(pub(crate) AtomicU64);

impl Unfinished {
    /// The count alone, without the tag.
    #[inline]
    pub fn load(&self, order: Ordering) -> u64 {
        self.0.load(order) & UNFINISHED_COUNT
    }
}

/// The count bits of [`Unfinished`].
pub const UNFINISHED_COUNT: u64 = (1 << 40) - 1;

#[cfg(not(loom))]
pub use header::*;

#[cfg(not(loom))]
mod header {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    /// Header flag: puts count unfinished tasks (`task_done` / `join`).
    pub const FLAG_JOINABLE: u32 = 1;
    /// Header flag (pipes): the rings visit their slots in sequence, not in
    /// [`SlotOrder`](crate::ring::slot_order::SlotOrder)'s bit-reversed order
    /// (`PipeBuilder::sequential`).
    pub const FLAG_SEQUENTIAL: u32 = 2;
    /// Every header flag this build knows.
    pub const KNOWN_FLAGS: u32 = FLAG_JOINABLE | FLAG_SEQUENTIAL;

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
        /// [`FLAG_JOINABLE`] | [`FLAG_SEQUENTIAL`]; other bits zero.
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
        /// Tasks of a joinable queue that dead consumers had taken and not marked done: recovery
        /// marks them done (so `join` does not wait for them) and counts them here.
        pub lost_tasks: AtomicU64,
    }

    const _: () = {
        assert!(std::mem::size_of::<SlotHeader>() == PAYLOAD_OFFSET);
        assert!(std::mem::size_of::<RingCtrl>() == 5 * LINE);
        assert!(std::mem::size_of::<Participant>() == 48);
        assert!(std::mem::size_of::<StateWord>() == 8 && std::mem::size_of::<CountWord>() == 8);
        assert!(std::mem::size_of::<Ends>() <= LINE);
        assert!(std::mem::offset_of!(Header, join) == LINE);
        assert!(std::mem::offset_of!(Header, recovery) == 2 * LINE);
        assert!(std::mem::offset_of!(Header, participants) == 3 * LINE);
        assert!(std::mem::size_of::<Header>() == 3 * LINE + 48 * MAX_PARTICIPANTS);
        assert!(std::mem::align_of::<Header>() <= LINE);
    };
}
