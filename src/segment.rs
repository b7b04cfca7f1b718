//! Shared segments: create, open and map them; validate names; lock bytes for liveness.
//!
//! Named segments are files in `/dev/shm` created with `O_CREAT | O_EXCL | O_NOFOLLOW` and an
//! explicit mode; openers use `O_NOFOLLOW` and `fstat` the result (regular file, real size) before
//! mapping it. Anonymous segments are memfds sealed against shrinking and growing once sized, so
//! no peer can truncate them under us (which would turn our next access into SIGBUS).
//!
//! This is the lowest layer: it knows files and mappings, not rings.

use crate::layout::{Header, READY};
use crate::Error;
use memmap2::{MmapOptions, MmapRaw};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Where named segments live.
pub const SHM_DIR: &str = "/dev/shm";
/// Longest accepted name, leading slash included.
pub const MAX_NAME: usize = 250;
/// How long an opener waits for a creator to publish a segment as ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A mapped segment and the file behind it.
pub struct Segment {
    map: MmapRaw,
    file: File,
    name: Option<String>,
    unlink_on_drop: bool,
}

/// Checks a segment name: `/` then 1..=249 bytes with no `/` and no NUL, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let rest = name.strip_prefix('/').ok_or_else(|| Error::InvalidName(name.into()))?;
    let bad = rest.is_empty()
        || name.len() > MAX_NAME
        || rest.contains('/')
        || rest.contains('\0')
        || rest == "."
        || rest == "..";
    if bad {
        return Err(Error::InvalidName(name.into()));
    }
    Ok(())
}

/// The file system path of a (validated) segment name.
pub fn path_of(name: &str) -> String {
    format!("{SHM_DIR}{name}")
}

fn map_err(e: io::Error, name: &str) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound(name.into()),
        Some(libc::EEXIST) => Error::AlreadyExists(name.into()),
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied(name.into()),
        Some(libc::ELOOP) => Error::PermissionDenied(name.into()),
        _ => Error::Io(e),
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens `path`. Segment paths are opened with `O_NOFOLLOW`; `/proc/self/fd/N` is a magic link
/// that must be followed, which is what `reopen` asks for.
fn open_raw(path: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let nofollow = if path.starts_with("/proc/self/fd/") { 0 } else { libc::O_NOFOLLOW };
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; open has no other pointers.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC | nofollow, mode) })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn file_len(file: &File) -> io::Result<(u64, bool)> {
    let md = file.metadata()?;
    Ok((md.len(), md.file_type().is_file()))
}

fn map(file: &File, len: u64) -> Result<MmapRaw, Error> {
    let len = usize::try_from(len).map_err(|_| Error::SizeMismatch("segment larger than the address space".into()))?;
    Ok(MmapOptions::new().len(len).map_raw(file)?)
}

impl Segment {
    /// Creates a named segment of `size` zeroed bytes, exclusively, with `mode` permissions.
    pub fn create_named(name: &str, size: u64, mode: u32, unlink_on_drop: bool) -> Result<Segment, Error> {
        validate_name(name)?;
        let path = path_of(name);
        let file = open_raw(&path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode).map_err(|e| map_err(e, name))?;
        let seg = (|| {
            // The umask may have narrowed the mode: set exactly what was asked.
            // SAFETY: fchmod on a descriptor we own.
            cvt(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) })?;
            file.set_len(size)?;
            map(&file, size)
        })();
        match seg {
            Ok(map) => Ok(Segment { map, file, name: Some(name.into()), unlink_on_drop }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Creates an anonymous (memfd) segment of `size` zeroed bytes, sealed at that size.
    pub fn create_anonymous(size: u64) -> Result<Segment, Error> {
        let label = c"shmq";
        // SAFETY: `label` is a valid C string; the flags are known to memfd_create.
        let fd = cvt(unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
        // SAFETY: `fd` was just returned and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size)?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl F_ADD_SEALS on a memfd we own, with an int argument.
        cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
        let map = map(&file, size)?;
        Ok(Segment { map, file, name: None, unlink_on_drop: false })
    }

    /// Opens a named segment and waits (bounded) until its creator has published it as ready.
    ///
    /// The file must belong to this user (or to root): a segment another user created first under
    /// the name we expected would be that user's memory, not our peer's.
    pub fn open_named(name: &str) -> Result<Segment, Error> {
        use std::os::unix::fs::MetadataExt;
        validate_name(name)?;
        let file = open_raw(&path_of(name), libc::O_RDWR, 0).map_err(|e| map_err(e, name))?;
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
    pub fn open_inherited(fd: RawFd) -> Result<Segment, Error> {
        let file = open_raw(&format!("/proc/self/fd/{fd}"), libc::O_RDWR, 0)
            .or_else(|_| {
                // /proc may be missing: fall back to a duplicate of the descriptor itself.
                // SAFETY: F_DUPFD_CLOEXEC on an fd number; fails cleanly if it is not open.
                let d = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
                // SAFETY: `d` is a fresh descriptor owned by nobody else.
                Ok::<File, io::Error>(unsafe { File::from_raw_fd(d) })
            })
            .map_err(|e| map_err(e, &format!("fd {fd}")))?;
        Self::open_file(file, None, READY_TIMEOUT)
    }

    /// Maps an opened segment file once its creator has published it, waiting at most
    /// `ready_timeout` for that.
    pub(crate) fn open_file(file: File, name: Option<String>, ready_timeout: Duration) -> Result<Segment, Error> {
        let start = Instant::now();
        loop {
            let (len, regular) = file_len(&file)?;
            if !regular {
                return Err(Error::Corrupt("not a regular file"));
            }
            let timed_out = start.elapsed() > ready_timeout;
            if len >= std::mem::size_of::<Header>() as u64 {
                let map = map(&file, len)?;
                // SAFETY: the mapping holds at least a Header (checked just above), is
                // page-aligned, and outlives `h`; any bit pattern is a valid Header.
                let h = unsafe { &*(map.as_ptr() as *const Header) };
                // ORDERING: Acquire, pairs with the Release store in `publish`: the header and
                // the initial ring state are complete once READY is seen.
                if h.ready.load(Ordering::Acquire) == READY {
                    return Ok(Segment { map, file, name, unlink_on_drop: false });
                }
                // A creator writes the magic number before READY; anything else is foreign.
                // SAFETY: reading an integer field of the mapped header; volatile because the
                // creator may be writing it at this moment from another process.
                let magic = unsafe { std::ptr::read_volatile(&h.magic) };
                if magic != crate::layout::MAGIC && magic != 0 {
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
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    /// Publishes the segment as ready; the creator calls this after initialising everything.
    pub fn publish(&self) {
        // ORDERING: Release, pairs with the Acquire load in `open_file`.
        self.header().ready.store(READY, Ordering::Release);
    }

    /// Start of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length of the mapping.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
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
        Ok(open_raw(&format!("/proc/self/fd/{}", self.file.as_raw_fd()), libc::O_RDWR, 0)?)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            if let Some(n) = &self.name {
                let _ = std::fs::remove_file(path_of(n));
            }
        }
    }
}

/// Removes a named segment.
pub fn unlink(name: &str) -> Result<(), Error> {
    validate_name(name)?;
    std::fs::remove_file(path_of(name)).map_err(|e| map_err(e, name))
}

fn flock_at(ty: libc::c_int, offset: i64) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value that we then fill in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Takes an OFD write lock on byte `offset` of `file` without waiting. `Ok(false)`: held elsewhere.
///
/// OFD locks belong to the open file description and are released by the kernel when its last
/// descriptor closes — in particular when the owning process dies. (Classic POSIX record locks
/// would be dropped when *any* descriptor of the file is closed, so they are not used.)
pub fn try_lock_byte(file: &File, offset: i64) -> io::Result<bool> {
    let mut fl = flock_at(libc::F_WRLCK, offset);
    // SAFETY: F_OFD_SETLK with a valid, exclusively borrowed flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Whether some other open file description holds a lock on byte `offset` of `file`.
pub fn byte_is_locked(file: &File, offset: i64) -> io::Result<bool> {
    let mut fl = flock_at(libc::F_WRLCK, offset);
    // SAFETY: F_OFD_GETLK with a valid, exclusively borrowed flock; l_pid must be 0 for OFD.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["/a", "/jobs", "/with.dots-and_underscores"] {
            validate_name(ok).unwrap();
        }
        let long = format!("/{}", "x".repeat(MAX_NAME));
        for bad in ["", "a", "/", "//", "/a/b", "/.", "/..", "/a\0b", long.as_str()] {
            assert!(matches!(validate_name(bad), Err(Error::InvalidName(_))), "{bad:?}");
        }
    }

    #[test]
    fn liveness_lock_is_seen_from_another_description() {
        let seg = Segment::create_anonymous(4096 * 4).unwrap();
        let a = seg.reopen().unwrap();
        let b = seg.reopen().unwrap();
        assert!(!byte_is_locked(&b, 7).unwrap());
        assert!(try_lock_byte(&a, 7).unwrap());
        assert!(byte_is_locked(&b, 7).unwrap());
        assert!(!try_lock_byte(&b, 7).unwrap());
        drop(a);
        assert!(!byte_is_locked(&b, 7).unwrap());
    }
}
