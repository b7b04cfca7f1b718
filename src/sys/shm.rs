//! Shared-memory files: names in `/dev/shm`, `shm_open`-style opens, memfds, and mappings.
//!
//! A named segment is built hidden and named only when it is complete: [`create_named`] opens an
//! unnamed file in `/dev/shm` (`O_TMPFILE`) with an explicit mode, the caller reserves, maps and
//! initialises it, and [`link_hidden`] gives it its name with `linkat`, exclusively. A creator
//! killed before that leaves no file behind, and nobody ever sees a half-built segment under the
//! name. Where `O_TMPFILE` (or `/proc`, which the link goes through) is missing, the file is
//! created under its name with `O_CREAT | O_EXCL | O_NOFOLLOW` instead, as before: visible
//! before it is ready, and left behind if its creator dies midway.
//!
//! Openers use `O_NOFOLLOW` and `fstat` the result (regular file, real size) before mapping it.
//! Anonymous segments are memfds sealed against shrinking and growing once sized, so no peer can
//! truncate them under us (which would turn our next access into `SIGBUS`; named segments rely on
//! `sys::sigbus` instead).
//!
//! Every segment's pages are reserved when it is created ([`reserve`]): `ftruncate` alone only
//! sets the size, and a page first touched when the file system is full raises `SIGBUS`. A
//! segment that cannot fit fails at creation with [`Error::NoSpace`], quickly when the free space
//! the kernel reports already says so.

use crate::Error;
use memmap2::{MmapOptions, MmapRaw};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// Where named segments live.
pub const SHM_DIR: &str = "/dev/shm";
/// Longest accepted name, leading slash included.
pub const MAX_NAME: usize = 250;

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

/// Checks the permission bits asked for a named segment.
///
/// Only `0o777` bits (no setuid, setgid or sticky bit). And no read access for other users
/// without write access (`0o004` without `0o002`): such a user cannot attach, but could hold read
/// locks on the liveness bytes, which keeps every new participant out. Write access makes a user
/// a peer, trusted with the memory anyway; the group bits are the creator's choice of peers.
pub fn validate_mode(mode: u32) -> Result<(), Error> {
    if mode & !0o777 != 0 {
        return Err(Error::InvalidArgument("mode must be within 0o777 (no setuid, setgid or sticky bit)"));
    }
    if mode & 0o004 != 0 && mode & 0o002 == 0 {
        return Err(Error::InvalidArgument(
            "mode must not let other users read a segment they cannot write (0o004 without 0o002)",
        ));
    }
    Ok(())
}

/// The file system path of a (validated) segment name.
pub fn path_of(name: &str) -> String {
    format!("{SHM_DIR}{name}")
}

pub fn map_err(e: io::Error, name: &str) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound(name.into()),
        Some(libc::EEXIST) => Error::AlreadyExists(name.into()),
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied(name.into()),
        Some(libc::ELOOP) => Error::PermissionDenied(name.into()),
        _ => Error::Io(e),
    }
}

pub fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens `path`. Segment paths are opened with `O_NOFOLLOW`; `/proc/self/fd/N` is a magic link
/// that must be followed, which is what `reopen` asks for.
pub fn open_raw(path: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let nofollow = if path.starts_with("/proc/self/fd/") { 0 } else { libc::O_NOFOLLOW };
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; open has no other pointers.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC | nofollow, mode) })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// A new named segment file, empty.
pub struct NewFile {
    /// The file, open for reading and writing, with exactly the requested mode.
    pub file: File,
    /// Whether it is still unnamed (`O_TMPFILE`): [`link_hidden`] names it once it is ready.
    /// `false`: it was created under its name (no `O_TMPFILE`), and is visible already.
    pub hidden: bool,
}

/// Creates the file of named segment `name` with exactly `mode` permissions (the umask does not
/// narrow it): unnamed if the system allows, else under its name, exclusively.
///
/// A name that is taken fails here with `AlreadyExists` (and again, atomically, in
/// [`link_hidden`]), so that a taken name costs no reservation.
pub fn create_named(name: &str, mode: u32) -> Result<NewFile, Error> {
    validate_name(name)?;
    validate_mode(mode)?;
    let path = path_of(name);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => return Err(Error::AlreadyExists(name.into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(map_err(e, name)),
    }
    // The link goes through /proc/self/fd: without /proc, an unnamed file could never be named.
    if std::path::Path::new("/proc/self/fd").is_dir() {
        match open_raw(SHM_DIR, libc::O_TMPFILE | libc::O_RDWR, mode) {
            Ok(file) => {
                set_mode(&file, mode)?;
                return Ok(NewFile { file, hidden: true });
            }
            // No O_TMPFILE here: the file system does not support it, or the kernel predates it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {}
            Err(e) => return Err(map_err(e, name)),
        }
    }
    let file = open_raw(&path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode).map_err(|e| map_err(e, name))?;
    if let Err(e) = set_mode(&file, mode) {
        let _ = unlink_if_same(name, file_id(&file)?);
        return Err(e);
    }
    Ok(NewFile { file, hidden: false })
}

fn set_mode(file: &File, mode: u32) -> Result<(), Error> {
    // SAFETY: fchmod on a descriptor we own.
    cvt(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

/// Names the unnamed file `file` (from [`create_named`]) `name`, exclusively: `AlreadyExists` if
/// the name was taken meanwhile. Atomic: openers find no file, or the complete one.
pub fn link_hidden(file: &File, name: &str) -> Result<(), Error> {
    let bad = || Error::InvalidName(name.into());
    let src = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|_| bad())?;
    let dst = CString::new(path_of(name)).map_err(|_| bad())?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call. AT_SYMLINK_FOLLOW
    // makes linkat follow the /proc magic link to our file, which needs no privilege.
    cvt(unsafe { libc::linkat(libc::AT_FDCWD, src.as_ptr(), libc::AT_FDCWD, dst.as_ptr(), libc::AT_SYMLINK_FOLLOW) })
        .map_err(|e| map_err(e, name))?;
    Ok(())
}

/// Which file a descriptor or a name is: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

/// The identity of the file behind `file`.
pub fn file_id(file: &File) -> io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    let md = file.metadata()?;
    Ok(FileId { dev: md.dev(), ino: md.ino() })
}

/// Removes the name `name` if it still names the file `id`; `Ok(false)` if it names another
/// file (or none).
///
/// The name is looked up, then removed: a process that replaces the file under the name between
/// the two system calls loses its name (its attached processes keep their memory). Nothing in
/// POSIX removes a name only if it names a given file.
pub fn unlink_if_same(name: &str, id: FileId) -> Result<bool, Error> {
    use std::os::unix::fs::MetadataExt;
    validate_name(name)?;
    let path = path_of(name);
    let md = match std::fs::symlink_metadata(&path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(map_err(e, name)),
    };
    if (FileId { dev: md.dev(), ino: md.ino() }) != id {
        return Ok(false);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(map_err(e, name)),
    }
}

/// Whether `file` is sealed against shrinking and growing (a memfd from
/// [`create_sealed_memfd`]): nobody can truncate it.
pub fn is_sealed(file: &File) -> bool {
    // SAFETY: F_GET_SEALS on a descriptor we own; fails cleanly (EINVAL) on files without seals.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    let both = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    seals >= 0 && seals & both == both
}

/// Whether `file` lives on the file system of [`SHM_DIR`] (a named segment's file, named or not).
pub fn on_shm_device(file: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.dev() == std::fs::metadata(SHM_DIR)?.dev())
}

/// `TMPFS_MAGIC`: tmpfs and memfds keep their pages in memory.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Bytes that can still be allocated for `file`: the free space its file system reports (for a
/// tmpfs with a size limit), and for memory-backed file systems also the memory the kernel
/// reports available (RAM that can be freed without swapping, plus free swap).
fn free_space(file: &File) -> io::Result<Option<u64>> {
    // SAFETY: all-zero is a valid statfs value, filled in by fstatfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs on a descriptor we own with an exclusively borrowed statfs.
    cvt(unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) })?;
    // f_blocks 0: a tmpfs mounted without a size limit (memfds live on one).
    let mut free = (st.f_blocks > 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_bsize as u64));
    if st.f_type as i64 == TMPFS_MAGIC {
        if let Some(mem) = available_memory() {
            free = Some(free.map_or(mem, |f| f.min(mem)));
        }
    }
    Ok(free)
}

/// `MemAvailable + SwapFree` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let kb: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        kb.checked_mul(1024)
    };
    Some(field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0)))
}

/// Bytes reserved by one `fallocate` call: small enough that a call ends in a few milliseconds.
/// A tmpfs gives back what an interrupted call had allocated, so a signal that arrives more often
/// than one call lasts would otherwise keep a large reservation from ever finishing.
const RESERVE_STEP: u64 = 4 << 20;

/// Sizes the new, empty `file` to `size` bytes (in one step) and allocates every page of it, so
/// that no later access can fault for want of space. Fails with `NoSpace` without allocating
/// anything when the free space reported already says it cannot fit, and with `NoSpace` when the
/// reservation itself runs out. On a file system that cannot reserve (no `fallocate`) the file
/// is only sized.
///
/// The reservation takes time in proportion to `size`; a creator killed meanwhile leaves nothing
/// if its file was unnamed (the kernel frees an unlinked file's pages when its last descriptor
/// closes).
pub fn reserve(file: &File, size: u64) -> Result<(), Error> {
    let no_space = |free: Option<u64>| Error::NoSpace { needed: size, free: free.unwrap_or(0) };
    let free = free_space(file)?;
    if free.is_some_and(|f| size > f) || libc::off_t::try_from(size).is_err() {
        return Err(no_space(free));
    }
    file.set_len(size)?;
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(RESERVE_STEP);
        // SAFETY: fallocate on a descriptor we own, mode 0, within the file's size (checked to
        // fit an off_t above).
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset as libc::off_t, len as libc::off_t) };
        if r == 0 {
            offset += len;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ENOSPC | libc::ENOMEM | libc::EFBIG) => return Err(no_space(free_space(file).ok().flatten())),
            // The file system cannot reserve: sized only, pages come on first touch.
            Some(libc::EOPNOTSUPP) => return Ok(()),
            _ => return Err(e.into()),
        }
    }
    Ok(())
}

/// Opens the existing file `name` for reading and writing, without following a symbolic link.
pub fn open_named(name: &str) -> Result<File, Error> {
    validate_name(name)?;
    open_raw(&path_of(name), libc::O_RDWR, 0).map_err(|e| map_err(e, name))
}

/// Creates a memfd of `size` zeroed bytes, every page reserved ([`reserve`]), sealed at that size
/// (no peer can shrink or grow it).
pub fn create_sealed_memfd(size: u64) -> Result<File, Error> {
    let label = c"shmq";
    // SAFETY: `label` is a valid C string; the flags are known to memfd_create.
    let fd = cvt(unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
    // SAFETY: `fd` was just returned and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    reserve(&file, size)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl F_ADD_SEALS on a memfd we own, with an int argument.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(file)
}

/// A new, close-on-exec open file description of the file behind descriptor `fd` (through
/// `/proc/self/fd`, or a duplicate of the descriptor where `/proc` is missing).
pub fn reopen_fd(fd: RawFd) -> io::Result<File> {
    open_raw(&format!("/proc/self/fd/{fd}"), libc::O_RDWR, 0).or_else(|_| {
        // SAFETY: F_DUPFD_CLOEXEC on an fd number; fails cleanly if it is not open.
        let d = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: `d` is a fresh descriptor owned by nobody else.
        Ok(unsafe { File::from_raw_fd(d) })
    })
}

/// The file's length and whether it is a regular file.
pub fn file_len(file: &File) -> io::Result<(u64, bool)> {
    let md = file.metadata()?;
    Ok((md.len(), md.file_type().is_file()))
}

/// Maps `len` bytes of `file`, shared, readable and writable.
pub fn map(file: &File, len: u64) -> Result<MmapRaw, Error> {
    let len = usize::try_from(len).map_err(|_| Error::SizeMismatch("segment larger than the address space".into()))?;
    Ok(MmapOptions::new().len(len).map_raw(file)?)
}

/// Removes a named segment, whichever file the name stands for now.
pub fn unlink(name: &str) -> Result<(), Error> {
    validate_name(name)?;
    std::fs::remove_file(path_of(name)).map_err(|e| map_err(e, name))
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
    fn modes_are_validated() {
        for ok in [0o600, 0o660, 0o666, 0o640, 0o700, 0o606] {
            validate_mode(ok).unwrap();
        }
        for bad in [0o4600, 0o2600, 0o1600, 0o10600, 0o644, 0o604, 0o664, 0o444] {
            assert!(matches!(validate_mode(bad), Err(Error::InvalidArgument(_))), "{bad:o}");
        }
    }

    #[test]
    fn a_memfd_is_reserved_and_sealed() {
        let f = create_sealed_memfd(3 * 4096).unwrap();
        assert!(is_sealed(&f));
        use std::os::unix::fs::MetadataExt;
        assert!(f.metadata().unwrap().blocks() * 512 >= 3 * 4096, "pages reserved");
        assert!(!on_shm_device(&f).unwrap());
    }
}
