//! Hooks for the fuzz targets in `fuzz/` and their replay in `tests/fuzz_replay.rs`.
//!
//! **Not part of the stable API**: hidden from the documentation, and may change or disappear in
//! any release. It gives a test what a hostile peer process has anyway: the raw bytes of a
//! segment, to open (as a file of arbitrary contents) or to overwrite while this process uses it.
//!
//! Compiled only with the `fuzzing` feature, which the fuzz crate and the corpus replay test
//! (`required-features = ["fuzzing"]`) turn on.

pub use crate::ring::mpmc::{stamp, unpack};

use crate::pipe::Connection;
use crate::queue::{Queue, Role};
use crate::segment::format;
use crate::segment::layout::Kind;
use crate::segment::Segment;
use crate::Error;
use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A file holding `bytes` (unsealed: its size is whatever `bytes` is).
///
/// Each thread rewrites one memfd of its own in place and hands out a duplicate descriptor of
/// it: creating and destroying a memfd per input cost more than everything else an execution
/// does. So every handle opened by an earlier call on this thread must be dropped before the
/// next call (the file may shrink under it), which the fuzz targets do.
fn memfd_with(bytes: &[u8]) -> Result<File, Error> {
    thread_local! {
        static SCRATCH: std::cell::OnceCell<File> = const { std::cell::OnceCell::new() };
    }
    SCRATCH.with(|cell| {
        let file = match cell.get() {
            Some(f) => f,
            None => {
                let label = c"shmq-fuzz";
                // SAFETY: `label` is a valid C string; MFD_CLOEXEC is a known flag.
                let fd = unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC) };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
                // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
                let _ = cell.set(unsafe { File::from_raw_fd(fd) });
                cell.get().expect("just set")
            }
        };
        file.set_len(bytes.len() as u64)?;
        file.write_all_at(bytes, 0)?;
        Ok(file.try_clone()?)
    })
}

/// Opens `bytes`, as a segment file, the way `Queue::open` opens a named segment (as producer and
/// consumer, no spinning), except that an unpublished segment fails at once with `NotReady`
/// instead of after the usual wait.
pub fn open_queue(bytes: &[u8]) -> Result<Queue, Error> {
    let seg = Segment::open_file(memfd_with(bytes)?, None, Duration::ZERO)?;
    let g = format::validate(&seg, Kind::Queue)?;
    Queue::attach(seg, g, Role::Both, 0)
}

/// Opens `bytes`, as a segment file, the way `PipeBuilder::open` does (end 1), then also tries to
/// attach end 0 of the same mapping. Unpublished segments fail at once, as in [`open_queue`].
pub fn open_pipe(bytes: &[u8]) -> Result<(Connection, Result<Connection, Error>), Error> {
    let seg = Segment::open_file(memfd_with(bytes)?, None, Duration::ZERO)?;
    let g = format::validate(&seg, Kind::Pipe)?;
    let seg = Arc::new(seg);
    let end1 = Connection::attach(seg.clone(), g, 1, 0)?;
    let end0 = Connection::attach(seg, g, 0, 0);
    Ok((end1, end0))
}

/// The bytes of a mapped segment, as another process sees them: every access is a relaxed
/// single-byte atomic, and offsets outside the mapping are ignored.
pub struct SegmentBytes<'a> {
    base: *mut u8,
    len: usize,
    /// Keeps a pipe's mapping alive even after its `Connection` was split into halves.
    _keep: Option<Arc<Segment>>,
    _borrow: PhantomData<&'a ()>,
}

// SAFETY: a `SegmentBytes` only reads and writes the mapping through `AtomicU8` (`read`, `write`,
// `to_vec`), so threads may share it, as processes share the segment itself; the mapping outlives
// it (the borrow, or `_keep`).
unsafe impl Sync for SegmentBytes<'_> {}

impl SegmentBytes<'_> {
    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: segments are at least a page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn byte(&self, off: usize) -> Option<&AtomicU8> {
        // SAFETY: off < len, so the byte lies inside the mapping, which `_keep` or the borrowed
        // handle keeps mapped for the life of `self`; AtomicU8 has no alignment requirement,
        // and every access to shared segment bytes is atomic or protocol-owned.
        (off < self.len).then(|| unsafe { AtomicU8::from_ptr(self.base.add(off)) })
    }

    /// Reads byte `off` (0 outside the mapping).
    pub fn read(&self, off: usize) -> u8 {
        self.byte(off).map_or(0, |b| b.load(Ordering::Relaxed))
    }

    /// Overwrites bytes from `off` on, dropping whatever falls outside the mapping.
    pub fn write(&self, off: usize, bytes: &[u8]) {
        for (i, v) in bytes.iter().enumerate() {
            if let Some(b) = off.checked_add(i).and_then(|o| self.byte(o)) {
                b.store(*v, Ordering::Relaxed);
            }
        }
    }

    /// A copy of the whole mapping.
    pub fn to_vec(&self) -> Vec<u8> {
        (0..self.len).map(|i| self.read(i)).collect()
    }
}

/// The segment behind a queue handle.
pub fn queue_segment(q: &Queue) -> SegmentBytes<'_> {
    let seg = q.segment();
    SegmentBytes { base: seg.base(), len: seg.len() as usize, _keep: None, _borrow: PhantomData }
}

/// The segment behind a pipe end; it stays mapped as long as the result lives.
pub fn pipe_segment(c: &Connection) -> SegmentBytes<'static> {
    let seg = c.segment().clone();
    SegmentBytes { base: seg.base(), len: seg.len() as usize, _keep: Some(seg), _borrow: PhantomData }
}

/// Where things are in a segment's bytes: `(ring_offset, ring_bytes, slot_stride)` as its header
/// says, to aim overwrites at control blocks and slot headers. `None` if the header is too short.
pub fn ring_layout(bytes: &[u8]) -> Option<(usize, usize, usize)> {
    use crate::segment::layout::Header;
    let word = |off: usize| {
        let b = bytes.get(off..off + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?) as usize)
    };
    Some((
        word(std::mem::offset_of!(Header, ring_offset))?,
        word(std::mem::offset_of!(Header, ring_bytes))?,
        word(std::mem::offset_of!(Header, slot_stride))?,
    ))
}
