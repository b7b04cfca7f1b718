//! Looking at named segments from the outside: what `shmq ls`, `stat` and `rm` show.
//!
//! Nothing here maps a segment or attaches to it. The header and each ring's control block are
//! copied out of the file with `pread` into process-local values and validated exactly as an
//! opener validates them. So a foreign, corrupt, truncated or half-built
//! file is *reported*: never waited for (no ready timeout), never a panic, and never a `SIGBUS`
//! (a peer that truncates the file under us shortens a read; it cannot fault a mapping).
//!
//! Liveness comes from the kernel, as for attached handles: a participant is alive while some
//! open file description holds the OFD write lock on its byte in the participant table;
//! read locks, which anyone who may read the file can take, do not count. The lock bytes are
//! probed whatever the header says, so even a segment with a scribbled-over table is known to be
//! in use or not. An entry being handed to a child (`HANDOVER`) keeps its lock: parent and child
//! share the description that holds it.
//!
//! Every value is a snapshot: counters move while we read them.

use crate::ring::ends::ENDED;
use crate::segment::geometry::Geometry;
pub use crate::segment::layout::Kind;
use crate::segment::layout::{
    Header, Participant, RingCtrl, SlotHeader, ENDS_CONSUMER_SEEN, ENDS_NEED_WITNESS, ENDS_PERSISTENT,
    ENDS_PRODUCER_SEEN, LAYOUT_VERSION, MAGIC, MAX_PARTICIPANTS, PARTICIPANT_ACTIVE, READY,
};
use crate::segment::participants::ParticipantInfo;
use crate::sys::lock::byte_is_locked;
use crate::sys::shm::{path_of, validate_name, SHM_DIR};
use crate::Error;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::Ordering;

/// What the first bytes of a file in `/dev/shm` say about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Starts with the shmq magic number: a shmq segment (possibly corrupt or unfinished).
    Shmq,
    /// Anything else: not ours.
    Foreign,
}

/// A quick look at a named file: enough to decide whether `rm` may remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Whether it starts with the shmq magic number.
    pub kind: FileKind,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Live participants: lock bytes held by a live process (any table state), and entries
    /// being handed to a child within their grace period.
    pub live: usize,
}

/// The fixed header fields, as read (not trusted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Layout version.
    pub version: u32,
    /// Raw kind word (1 queue, 2 pipe).
    pub kind: u32,
    /// Whether the creator published the segment as ready.
    pub ready: bool,
    /// Rings in the segment.
    pub ring_count: u32,
    /// Slots per ring.
    pub capacity: u64,
    /// Largest payload.
    pub slot_size: u64,
    /// Bytes from one slot to the next.
    pub slot_stride: u64,
    /// Size the header claims for the whole segment.
    pub total_size: u64,
    /// Process id of the creator (display only).
    pub creator_pid: u32,
    /// Joinable-queue counter: items put and not yet marked done.
    pub join_unfinished: u64,
    /// Processes announced as sleeping in `join`.
    pub join_waiters: u32,
}

impl HeaderInfo {
    /// The kind, if the word is one shmq writes.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_u32(self.kind)
    }
}

/// One futex doorbell's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorbellInfo {
    /// The futex word (bumped on each wake).
    pub seq: u32,
    /// Processes announced as (about to be) sleeping.
    pub waiters: u32,
}

/// The live counters of one ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingInfo {
    /// Raw `head` word (queue: position hint; pipe: messages consumed).
    pub head: u64,
    /// Raw `tail` word (queue: position hint; pipe: messages published).
    pub tail: u64,
    /// Messages in the ring, derived from head and tail, within `0..=capacity`.
    pub len: u64,
    /// Consumers sleep here while the ring is empty.
    pub not_empty: DoorbellInfo,
    /// Producers sleep here while the ring is full.
    pub not_full: DoorbellInfo,
    /// Attached handles that may send.
    pub producers: u32,
    /// Whether every producer has gone for good (end of stream).
    pub producers_ended: bool,
    /// Attached handles that may receive.
    pub consumers: u32,
    /// Whether every consumer has gone for good (broken pipe).
    pub consumers_ended: bool,
    /// End flag bits (see [`RingInfo::flags_text`]).
    pub flags: u32,
}

impl RingInfo {
    /// The end flags in words: `producer-seen`, `consumer-seen`, `persistent`, joined by `|`
    /// (unknown bits in hex; `none` if no bit is set).
    pub fn flags_text(&self) -> String {
        let names = [
            (ENDS_PRODUCER_SEEN, "producer-seen"),
            (ENDS_CONSUMER_SEEN, "consumer-seen"),
            (ENDS_PERSISTENT, "persistent"),
            (ENDS_NEED_WITNESS, "ends-need-witness"),
        ];
        let mut v: Vec<String> =
            names.iter().filter(|(b, _)| self.flags & b != 0).map(|(_, n)| n.to_string()).collect();
        let rest = self.flags & !(ENDS_PRODUCER_SEEN | ENDS_CONSUMER_SEEN | ENDS_PERSISTENT | ENDS_NEED_WITNESS);
        if rest != 0 {
            v.push(format!("{rest:#x}"));
        }
        if v.is_empty() {
            "none".into()
        } else {
            v.join("|")
        }
    }
}

/// One slot's header, as `shmq stat --slots` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// Queue: `{ state, owner, position }`; pipe: the message count that published it.
    pub stamp: u64,
    /// Payload length written by the producer.
    pub len: u32,
    /// Queue: group bits (first slot of `n`, or continuation `j`); pipe: "more fragments".
    pub aux: u32,
}

impl SlotInfo {
    /// A queue stamp in words: state, owner (participant index + 1; 0 = none) and position as
    /// `lap:index` for a ring whose lap is `one_lap` positions.
    pub fn queue_text(&self, one_lap: u64) -> String {
        use crate::ring::mpmc::{unpack, AUX_CONT, AUX_COUNT, AUX_HEAD, EMPTY, FULL, READING, SKIPPED, WRITING};
        let one_lap = one_lap.max(1); // a lap of 0 positions is no ring: read it as 1
        let (state, owner, pos) = unpack(self.stamp);
        let name = match state {
            EMPTY => "EMPTY".to_string(),
            WRITING => format!("WRITING by {owner}"),
            FULL => "FULL".to_string(),
            READING => format!("READING by {owner}"),
            SKIPPED => "SKIPPED".to_string(),
            other => format!("state {other}?"),
        };
        let group = if self.aux & AUX_HEAD != 0 {
            format!(", first of {}", self.aux & AUX_COUNT)
        } else if self.aux & AUX_CONT != 0 {
            format!(", continuation +{}", self.aux & AUX_COUNT)
        } else {
            String::new()
        };
        format!("{name} at {}:{} (len {}{group})", pos / one_lap, pos % one_lap, self.len)
    }

    /// A pipe slot in words: which message published it, its length, and whether the message
    /// continues in the next slot.
    pub fn pipe_text(&self) -> String {
        let more = if self.aux & crate::ring::spsc::AUX_MORE != 0 { ", more follows" } else { "" };
        format!("published as message {} (len {}{more})", self.stamp, self.len)
    }
}

/// Reads the headers of the first `max` slots of each ring of a named segment that validates,
/// with `pread` (nothing mapped, as everywhere in this module). `Err` if it does not validate.
pub fn slots(name: &str, max: u64) -> Result<Vec<Vec<SlotInfo>>, Error> {
    let (file, md) = open_file(name)?;
    if file_kind(&file)? != FileKind::Shmq {
        return Err(Error::BadMagic);
    }
    let h = read_header(&file)?;
    let kind = Kind::from_u32(h.kind).ok_or(Error::BadMagic)?;
    let g = Geometry::validate(&h, md.len(), kind)?;
    let mut out = Vec::new();
    for r in 0..g.ring_count {
        let first = g.ring_start(r) + std::mem::size_of::<RingCtrl>() as u64;
        let mut ring = Vec::new();
        for idx in 0..g.capacity.min(max) {
            let mut slot = SlotHeader::default();
            // A validated geometry puts every slot inside the file (or the read comes up short).
            // SAFETY: SlotHeader is made of atomics, valid for any bit pattern.
            unsafe { read_at(&file, first + idx * g.slot_stride, &mut slot)? };
            ring.push(SlotInfo {
                stamp: slot.stamp.into_inner(),
                len: slot.len.into_inner(),
                aux: slot.aux.into_inner(),
            });
        }
        out.push(ring);
    }
    Ok(out)
}

/// Everything `shmq stat` shows about a segment that starts with the magic number.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The segment name (`/name`).
    pub name: String,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Permission bits of the file.
    pub mode: u32,
    /// Owner of the file.
    pub uid: u32,
    /// Header fields; `None` if the file is shorter than a header.
    pub header: Option<HeaderInfo>,
    /// Why the segment does not validate (`None`: it does, and `rings` is filled in).
    pub problem: Option<String>,
    /// Per-ring counters (only for a segment that validates).
    pub rings: Vec<RingInfo>,
    /// Active entries of the participant table, with whether each one's process is alive.
    pub participants: Vec<ParticipantInfo>,
    /// Live participants: lock bytes held by a live process (any table state), and entries
    /// being handed to a child within their grace period.
    pub live: usize,
}

impl Inspection {
    /// Whether the segment validates as an opener would require.
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }

    /// Active table entries whose process is alive.
    pub fn alive(&self) -> usize {
        self.participants.iter().filter(|p| p.alive).count()
    }
}

/// Opens `/dev/shm/<name>` read-only, without following links, and checks it is a regular file.
fn open_file(name: &str) -> Result<(File, std::fs::Metadata), Error> {
    validate_name(name)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path_of(name))
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound(name.into()),
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ELOOP) => Error::PermissionDenied(name.into()),
            _ => Error::Io(e),
        })?;
    let md = file.metadata()?;
    if !md.file_type().is_file() {
        return Err(Error::Corrupt("not a regular file"));
    }
    Ok((file, md))
}

fn file_kind(file: &File) -> io::Result<FileKind> {
    let mut magic = [0u8; 8];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) if u64::from_le_bytes(magic) == MAGIC => Ok(FileKind::Shmq),
        Ok(()) => Ok(FileKind::Foreign),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(FileKind::Foreign),
        Err(e) => Err(e),
    }
}

/// Participant lock bytes of `file` write-locked by some open file description.
fn live_locks(file: &File) -> Vec<bool> {
    (0..MAX_PARTICIPANTS)
        // An error probing a lock counts as alive: `rm` must err on the side of keeping.
        .map(|i| byte_is_locked(file, Participant::lock_offset(i)).unwrap_or(true))
        .collect()
}

/// Copies `size_of::<T>()` bytes at `offset` of `file` over `dst`.
///
/// # Safety
/// `T` must be valid for any bit pattern (integers and atomics only, like [`Header`]).
unsafe fn read_at<T>(file: &File, offset: u64, dst: &mut T) -> io::Result<()> {
    // SAFETY: `dst` is an exclusively borrowed, initialised `T`, so its bytes may be viewed as a
    // `[u8]` of its size; the caller guarantees any bytes written there form a valid `T`.
    let bytes = unsafe { std::slice::from_raw_parts_mut(dst as *mut T as *mut u8, std::mem::size_of::<T>()) };
    file.read_exact_at(bytes, offset)
}

/// Reads the header at the start of `file` (`UnexpectedEof` if the file is shorter).
fn read_header(file: &File) -> io::Result<Box<Header>> {
    // SAFETY: all-zero bytes are a valid Header (integers and atomics only).
    let mut h: Box<Header> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: Header is made of integers and atomics, valid for any bit pattern.
    unsafe { read_at(file, 0, &mut *h)? };
    Ok(h)
}

/// Looks at a named file without opening it as a segment: is it ours, and is it in use?
pub fn probe(name: &str) -> Result<Probe, Error> {
    let (file, md) = open_file(name)?;
    let kind = file_kind(&file)?;
    let live = live_locks(&file);
    Ok(Probe { kind, file_size: md.len(), live: live.into_iter().filter(|&l| l).count() })
}

/// Reads and validates a named segment's header, counters and participant table.
///
/// Fails only if the name is bad, the file cannot be opened, or it does not start with the shmq
/// magic number ([`Error::BadMagic`]). Anything wrong after that is reported in
/// [`Inspection::problem`].
pub fn inspect(name: &str) -> Result<Inspection, Error> {
    let (file, md) = open_file(name)?;
    if file_kind(&file)? != FileKind::Shmq {
        return Err(Error::BadMagic);
    }
    let locks = live_locks(&file);
    let mut out = Inspection {
        name: name.into(),
        file_size: md.len(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        header: None,
        problem: None,
        rings: Vec::new(),
        participants: Vec::new(),
        live: locks.iter().filter(|&&l| l).count(),
    };

    let h = match read_header(&file) {
        Ok(h) => h,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            out.problem = Some(format!(
                "truncated: file of {} bytes is smaller than a header ({} bytes)",
                out.file_size,
                std::mem::size_of::<Header>()
            ));
            return Ok(out);
        }
        Err(e) => return Err(e.into()),
    };
    out.live = locks.iter().filter(|&&l| l).count();
    out.header = Some(HeaderInfo {
        version: h.version,
        kind: h.kind,
        ready: h.ready.load(Ordering::Relaxed) == READY,
        ring_count: h.ring_count,
        capacity: h.capacity,
        slot_size: h.slot_size,
        slot_stride: h.slot_stride,
        total_size: h.total_size,
        creator_pid: h.creator_pid,
        join_unfinished: h.join.unfinished.load(Ordering::Relaxed),
        join_waiters: h.join.bell.waiters.load(Ordering::Relaxed),
    });
    out.participants = h
        .participants
        .iter()
        .enumerate()
        .filter(|(_, p)| p.state.load(Ordering::Relaxed) == PARTICIPANT_ACTIVE)
        .map(|(index, p)| ParticipantInfo {
            index,
            pid: p.detail.load(Ordering::Relaxed),
            roles: p.roles.load(Ordering::Relaxed),
            alive: locks[index],
        })
        .collect();

    if h.ready.load(Ordering::Relaxed) != READY {
        out.problem = Some("not ready: its creator has not finished (or died) initialising it".into());
        return Ok(out);
    }
    let kind = match Kind::from_u32(h.kind) {
        Some(k) => k,
        None if h.version != LAYOUT_VERSION => {
            out.problem =
                Some(format!("layout version {} is not supported (this build speaks {LAYOUT_VERSION})", h.version));
            return Ok(out);
        }
        None => {
            out.problem = Some(format!("unknown segment kind {}", h.kind));
            return Ok(out);
        }
    };
    let g = match Geometry::validate(&h, md.len(), kind) {
        Ok(g) => g,
        Err(e) => {
            out.problem = Some(e.to_string());
            return Ok(out);
        }
    };
    for r in 0..g.ring_count {
        match read_ring(&file, &g, r) {
            Ok(info) => out.rings.push(info),
            Err(e) => {
                out.problem = Some(format!("reading ring {r}: {e}"));
                break;
            }
        }
    }
    Ok(out)
}

fn read_ring(file: &File, g: &Geometry, r: u32) -> io::Result<RingInfo> {
    let mut ctrl = Box::<RingCtrl>::default();
    // SAFETY: RingCtrl is made of atomics, valid for any bit pattern. The offset comes from a
    // validated geometry, so the block lies inside the file (or the read comes up short).
    unsafe { read_at(file, g.ring_start(r), &mut *ctrl)? };
    let head = ctrl.head.load(Ordering::Relaxed);
    let tail = ctrl.tail.load(Ordering::Relaxed);
    let len = match g.kind {
        Kind::Queue => {
            // Decodes the `{ lap, index }` hints of our private copy of the control block.
            crate::ring::mpmc::len_between(tail, head, g.capacity) as u64
        }
        // Pipe: the words count messages published and consumed.
        Kind::Pipe => tail.wrapping_sub(head).min(g.capacity),
    };
    let bell = |b: &crate::segment::layout::DoorbellWords| DoorbellInfo {
        seq: b.seq.load(Ordering::Relaxed),
        waiters: b.waiters.load(Ordering::Relaxed),
    };
    Ok(RingInfo {
        head,
        tail,
        len,
        not_empty: bell(&ctrl.not_empty),
        not_full: bell(&ctrl.not_full),
        producers: ctrl.ends.producers.load(Ordering::Relaxed) & !ENDED,
        producers_ended: ctrl.ends.producers.load(Ordering::Relaxed) & ENDED != 0,
        consumers: ctrl.ends.consumers.load(Ordering::Relaxed) & !ENDED,
        consumers_ended: ctrl.ends.consumers.load(Ordering::Relaxed) & ENDED != 0,
        flags: ctrl.ends.flags.load(Ordering::Relaxed),
    })
}

/// Names (`/name`) of the files in `/dev/shm` that start with the shmq magic number, sorted.
///
/// Files that cannot be read are skipped.
pub fn list() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let Ok(entry) = entry else { continue };
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let name = format!("/{file_name}");
        if validate_name(&name).is_err() {
            continue;
        }
        let Ok((file, _)) = open_file(&name) else {
            continue;
        };
        if matches!(file_kind(&file), Ok(FileKind::Shmq)) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Removes a named segment (no checks: see [`probe`] for what to check first).
///
/// A process may attach between a check and this call; removing the name never disturbs
/// processes already attached (they keep the memory), it only stops new ones from opening it.
pub fn unlink(name: &str) -> Result<(), Error> {
    crate::sys::shm::unlink(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Queue, Role};

    fn unique(tag: &str) -> String {
        format!("/shmq-inspect-{tag}-{}", std::process::id())
    }

    #[test]
    fn queue_text_of_a_lap_of_zero_positions_does_not_divide_by_zero() {
        let slot = SlotInfo { stamp: 5, len: 0, aux: 0 };
        assert_eq!(slot.queue_text(0), slot.queue_text(1));
    }

    #[test]
    fn a_live_queue_validates_and_shows_its_participant() {
        let name = unique("live");
        let q =
            Queue::builder().capacity(8).slot_size(32).role(Role::Producer).unlink_on_drop(true).create(&name).unwrap();
        q.put(b"abc").unwrap();
        let i = inspect(&name).unwrap();
        assert!(i.is_valid(), "{:?}", i.problem);
        assert_eq!(i.header.as_ref().unwrap().capacity, 8);
        assert_eq!(i.rings.len(), 1);
        assert_eq!(i.rings[0].len, 1);
        assert_eq!(i.rings[0].producers, 1);
        assert_eq!(i.participants.len(), 1);
        assert_eq!(i.live, 1);
        assert_eq!(probe(&name).unwrap().live, 1);
        drop(q);
        assert!(matches!(inspect(&name), Err(Error::NotFound(_))));
    }

    #[test]
    fn a_duplex_pipe_shows_both_rings_and_their_counts() {
        let name = unique("pipe");
        let mut a = crate::PipeBuilder::new().capacity(4).slot_size(16).unlink_on_drop(true).create(&name).unwrap();
        let mut b = crate::PipeBuilder::new().open(&name).unwrap();
        a.send(b"x").unwrap();
        b.send(b"y").unwrap();
        b.send(b"z").unwrap();
        let i = inspect(&name).unwrap();
        assert!(i.is_valid(), "{:?}", i.problem);
        assert_eq!(i.header.as_ref().unwrap().kind(), Some(Kind::Pipe));
        // End 1 sends on ring 0, end 0 on ring 1.
        let lens: Vec<u64> = i.rings.iter().map(|r| r.len).collect();
        assert_eq!(lens, [2, 1]);
        assert!(i.rings.iter().all(|r| r.producers == 1 && r.consumers == 1));
        assert_eq!((i.participants.len(), i.alive()), (2, 2));
        drop((a, b));
    }

    #[test]
    fn a_truncated_file_with_the_magic_is_reported_not_waited_for() {
        let name = unique("trunc");
        std::fs::write(path_of(&name), b"SHMQSEG\0rest").unwrap();
        let start = std::time::Instant::now();
        let i = inspect(&name).unwrap();
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert!(i.problem.unwrap().contains("truncated"));
        assert_eq!(probe(&name).unwrap().kind, FileKind::Shmq);
        unlink(&name).unwrap();
    }

    #[test]
    fn a_foreign_file_is_bad_magic() {
        let name = unique("foreign");
        std::fs::write(path_of(&name), vec![7u8; 5000]).unwrap();
        assert!(matches!(inspect(&name), Err(Error::BadMagic)));
        assert_eq!(probe(&name).unwrap().kind, FileKind::Foreign);
        assert!(!list().unwrap().contains(&name));
        unlink(&name).unwrap();
    }
}
