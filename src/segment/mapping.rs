//! A mapped segment and the file behind it: created, opened by name, or inherited.
//!
//! A mapping of a file that a peer could truncate (a named segment's, or an unsealed one's) is
//! registered with the `SIGBUS` guard (`sys::sigbus`) for as long as it is mapped: a peer that
//! truncates the file turns our next access into zeros and the segment into
//! [`Broken::Truncated`], never into a crash.
//!
//! A segment remembers the process that made this handle. In a child forked from it the
//! segment is [`Broken::Forked`], and dropping it leaves the name alone.

use crate::segment::layout::{Header, MAGIC, READY};
use crate::sys::shm::{self, FileId};
use crate::sys::{fork, sigbus};
use crate::{Error, RecvError, SendError};
use memmap2::MmapRaw;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long an opener waits for a creator to publish a segment as ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What `Corrupt` says about a segment whose file was truncated under its mapping.
pub const TRUNCATED: &str =
    "segment truncated: its file shrank under the mapping (or a page of it could not be allocated)";

/// Why a segment can no longer be used from this handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Broken {
    /// This process was forked from the one that made the handle.
    Forked,
    /// Its file was truncated under the mapping: this process now sees private zero pages.
    Truncated,
}

impl From<Broken> for SendError {
    fn from(b: Broken) -> SendError {
        match b {
            Broken::Forked => SendError::Forked,
            Broken::Truncated => SendError::Corrupt(TRUNCATED),
        }
    }
}

impl From<Broken> for RecvError {
    fn from(b: Broken) -> RecvError {
        match b {
            Broken::Forked => RecvError::Forked,
            Broken::Truncated => RecvError::Corrupt(TRUNCATED),
        }
    }
}

/// A mapping, and its registration with the `SIGBUS` guard if its file can be truncated.
struct Mapping {
    /// Declared before `map`, so dropped first: unregistered, then unmapped.
    guard: Option<sigbus::Guard>,
    map: MmapRaw,
}

impl Mapping {
    /// Maps `len` bytes of `file`; `guard`: registers the mapping with the `SIGBUS` guard.
    fn new(file: &File, len: u64, guard: bool) -> Result<Mapping, Error> {
        let map = shm::map(file, len)?;
        let guard = if guard && map.len() > 0 {
            match sigbus::register(map.as_ptr() as usize, map.len()) {
                Ok(g) => Some(g),
                Err(sigbus::RegisterError::Full) => return Err(Error::TooManySegments(sigbus::SLOTS)),
                Err(sigbus::RegisterError::Io(e)) => return Err(Error::Io(e)),
            }
        } else {
            None
        };
        Ok(Mapping { guard, map })
    }

    fn poisoned(&self) -> bool {
        self.guard.as_ref().is_some_and(sigbus::Guard::poisoned)
    }
}

/// A named segment as its creator made it.
struct Created {
    /// The file, so that only this file is ever unlinked by the name.
    id: FileId,
    unlink_on_drop: bool,
    /// Still unnamed: [`Segment::link`] names it.
    hidden: AtomicBool,
}

/// A mapped segment and the file behind it.
pub struct Segment {
    mapping: Mapping,
    file: File,
    name: Option<String>,
    /// Set for a named segment this handle created.
    created: Option<Created>,
    /// The process that made this handle.
    pid: u32,
    /// The entries this process's recovery passes through this mapping are reaping now.
    reaping: Reaping,
}

/// A set of participant-table indices (one bit each), for [`Segment::reaping`].
#[derive(Default)]
pub(crate) struct Reaping([AtomicU64; 4]);

impl Reaping {
    /// Adds entry `index`; `false` if it was there already (another pass has it).
    pub fn take(&self, index: usize) -> bool {
        let (w, b) = (index / 64 % 4, 1u64 << (index % 64));
        // ORDERING: AcqRel: the pass that gave the entry back (the Release of `give_back`) has
        // finished with it before this one looks at its mark.
        self.0[w].fetch_or(b, Ordering::AcqRel) & b == 0
    }

    /// Removes entry `index` (the caller took it).
    pub fn give_back(&self, index: usize) {
        // ORDERING: Release, pairs with the AcqRel in `take`.
        self.0[index / 64 % 4].fetch_and(!(1u64 << (index % 64)), Ordering::Release);
    }
}

impl Segment {
    /// Creates a named segment of `size` zeroed bytes, every page reserved, with `mode`
    /// permissions. The name appears only at [`Segment::link`] (where the system allows unnamed
    /// files; else at once), exclusively.
    pub fn create_named(name: &str, size: u64, mode: u32, unlink_on_drop: bool) -> Result<Segment, Error> {
        let pid = fork::pid();
        let new = shm::create_named(name, mode)?;
        let id = shm::file_id(&new.file)?;
        let seg = (|| {
            shm::reserve(&new.file, size)?;
            Mapping::new(&new.file, size, true)
        })();
        match seg {
            Ok(mapping) => Ok(Segment {
                mapping,
                file: new.file,
                name: Some(name.into()),
                created: Some(Created { id, unlink_on_drop, hidden: AtomicBool::new(new.hidden) }),
                pid,
                reaping: Reaping::default(),
            }),
            Err(e) => {
                if !new.hidden {
                    let _ = shm::unlink_if_same(name, id);
                }
                Err(e)
            }
        }
    }

    /// Gives a named segment made by [`Segment::create_named`] its name, once it is ready and its
    /// creator attached: exclusively (`AlreadyExists` if the name was taken meanwhile), and
    /// atomically, so that no opener (nor `shmq rm --stale`) ever finds it half-built or without
    /// a live participant. Does nothing for other segments, or one already named.
    pub fn link(&self) -> Result<(), Error> {
        let (Some(created), Some(name)) = (&self.created, &self.name) else { return Ok(()) };
        // ORDERING: Relaxed: a flag of this process's handle, not shared memory.
        if created.hidden.swap(false, Ordering::Relaxed) {
            shm::link_hidden(&self.file, name)?;
        }
        Ok(())
    }

    /// Creates an anonymous (memfd) segment of `size` zeroed bytes, sealed at that size.
    pub fn create_anonymous(size: u64) -> Result<Segment, Error> {
        let pid = fork::pid();
        let file = shm::create_sealed_memfd(size)?;
        // Sealed: nobody can truncate it, so no SIGBUS guard.
        let mapping = Mapping::new(&file, size, false)?;
        Ok(Segment { mapping, file, name: None, created: None, pid, reaping: Reaping::default() })
    }

    /// Opens a named segment and waits (bounded) until its creator has published it as ready.
    ///
    /// The file must belong to this user (or to root): a segment another user created first under
    /// the name we expected would be that user's memory, not our peer's.
    pub fn open_named(name: &str) -> Result<Segment, Error> {
        use std::os::unix::fs::MetadataExt;
        let file = shm::open_named(name)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let owner = file.metadata()?.uid();
        if owner != me && owner != 0 {
            return Err(Error::PermissionDenied(format!("{name} (owned by uid {owner})")));
        }
        Self::open_file(file, Some(name.into()), READY_TIMEOUT)
    }

    /// Opens a segment inherited as descriptor `fd`, through a new open file description (so that
    /// this process's liveness locks are its own, not shared with the parent's).
    ///
    /// An anonymous segment (a memfd) must be sealed against shrinking and growing (`NotSealed`
    /// otherwise); a named segment's file, in `/dev/shm`, cannot be sealed and is guarded
    /// against truncation instead.
    pub fn open_inherited(fd: RawFd) -> Result<Segment, Error> {
        let file = shm::reopen_fd(fd).map_err(|e| shm::map_err(e, &format!("fd {fd}")))?;
        if !shm::is_sealed(&file) && !shm::on_shm_device(&file).unwrap_or(false) {
            return Err(Error::NotSealed);
        }
        Self::open_file(file, None, READY_TIMEOUT)
    }

    /// Maps an opened segment file once its creator has published it, waiting at most
    /// `ready_timeout` for that.
    pub(crate) fn open_file(file: File, name: Option<String>, ready_timeout: Duration) -> Result<Segment, Error> {
        let pid = fork::pid();
        // A sealed file cannot shrink; any other can, under the mapping.
        let guard = !shm::is_sealed(&file);
        let start = Instant::now();
        loop {
            let (len, regular) = shm::file_len(&file)?;
            if !regular {
                return Err(Error::Corrupt("not a regular file"));
            }
            let timed_out = start.elapsed() > ready_timeout;
            if len >= std::mem::size_of::<Header>() as u64 {
                let mapping = Mapping::new(&file, len, guard)?;
                // SAFETY: the mapping holds at least a Header (checked just above), is
                // page-aligned, and outlives `h`; any bit pattern is a valid Header. Should the
                // file shrink meanwhile, the guard turns the fault into zeros (checked below).
                let h = unsafe { &*(mapping.map.as_ptr() as *const Header) };
                // ORDERING: Acquire, pairs with the Release store in `publish`: the header and
                // the initial ring state are complete once READY is seen.
                if h.ready.load(Ordering::Acquire) == READY && !mapping.poisoned() {
                    return Ok(Segment { mapping, file, name, created: None, pid, reaping: Reaping::default() });
                }
                if mapping.poisoned() {
                    return Err(Error::Corrupt(TRUNCATED));
                }
                // A creator writes the magic number before READY; anything else is foreign.
                // SAFETY: reading an integer field of the mapped header; volatile because the
                // creator may be writing it at this moment from another process.
                let magic = unsafe { std::ptr::read_volatile(&h.magic) };
                if magic != MAGIC && magic != 0 {
                    return Err(Error::BadMagic);
                }
                if timed_out {
                    return Err(Error::NotReady);
                }
            } else if len > 0 {
                // Creators size the file in one step: a short non-empty file is not a segment.
                return Err(Error::SizeMismatch(format!("file of {len} bytes is smaller than a header")));
            } else if timed_out {
                return Err(Error::NotReady);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The header at the start of the mapping (checked large enough when mapped).
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is at least size_of::<Header>() bytes (checked in every
        // constructor before a Segment exists), page-aligned, and lives as long as `self`.
        // Header is made of integers and atomics, valid for any bit pattern.
        unsafe { &*(self.mapping.map.as_ptr() as *const Header) }
    }

    /// Publishes the segment as ready; the creator calls this after initialising everything.
    pub fn publish(&self) {
        // ORDERING: Release, pairs with the Acquire load in `open_file`.
        self.header().ready.store(READY, Ordering::Release);
    }

    /// Start of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.mapping.map.as_mut_ptr()
    }

    /// Length of the mapping.
    pub fn len(&self) -> u64 {
        self.mapping.map.len() as u64
    }

    /// Why this handle can no longer use the segment, if it cannot: this process was forked
    /// from the one that made the handle, or the segment's file was truncated under the mapping.
    ///
    /// For the paths that report errors (a ring found full or empty, a wait): in a process that
    /// never forked and whose mappings are whole, two or three relaxed loads of process-local
    /// flags. The successful fast paths do not call it, so a send or receive may still succeed
    /// (on the private zero pages, or through the parent's entry) before this is reported.
    #[inline]
    pub(crate) fn broken(&self) -> Option<Broken> {
        if fork::maybe_forked(self.pid) {
            Some(Broken::Forked)
        } else if self.mapping.poisoned() {
            Some(Broken::Truncated)
        } else {
            None
        }
    }

    /// The entries this process's recovery passes through this mapping are reaping now (see
    /// `recover`: a reaper mark naming this handle's own entry is stale unless the entry is here).
    pub(crate) fn reaping(&self) -> &Reaping {
        &self.reaping
    }

    /// The backing file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The segment's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Opens a new, close-on-exec file description of the same file, for liveness locks.
    pub fn reopen(&self) -> Result<File, Error> {
        // Never a duplicate descriptor: a lock taken through one would be shared with `self.file`.
        Ok(shm::open_raw(&format!("/proc/self/fd/{}", self.file.as_raw_fd()), libc::O_RDWR, 0)?)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let Some(created) = &self.created else { return };
        // The name is the creator's to remove, not a forked child's; and only while it still
        // names the file we created (after `shmq::unlink` it may name a newcomer's segment).
        // ORDERING: Relaxed: a flag of this handle (see `link`).
        if created.unlink_on_drop && !created.hidden.load(Ordering::Relaxed) && !fork::forked(self.pid) {
            if let Some(n) = &self.name {
                let _ = shm::unlink_if_same(n, created.id);
            }
        }
    }
}
