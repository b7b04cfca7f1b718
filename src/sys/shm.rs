//! Shared-memory files: names in `/dev/shm`, `shm_open`-style opens, memfds, and mappings.
//!
//! Named segments are files in `/dev/shm` created with `O_CREAT | O_EXCL | O_NOFOLLOW` and an
//! explicit mode; openers use `O_NOFOLLOW` and `fstat` the result (regular file, real size) before
//! mapping it. Anonymous segments are memfds sealed against shrinking and growing once sized, so
//! no peer can truncate them under us (which would turn our next access into SIGBUS).

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

/// Creates `name` exclusively with exactly `mode` permissions (the umask does not narrow it).
pub fn create_named(name: &str, mode: u32) -> Result<File, Error> {
    validate_name(name)?;
    validate_mode(mode)?;
    let file =
        open_raw(&path_of(name), libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode).map_err(|e| map_err(e, name))?;
    // SAFETY: fchmod on a descriptor we own.
    if let Err(e) = cvt(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) }) {
        let _ = std::fs::remove_file(path_of(name));
        return Err(e.into());
    }
    Ok(file)
}

/// Opens the existing file `name` for reading and writing, without following a symbolic link.
pub fn open_named(name: &str) -> Result<File, Error> {
    validate_name(name)?;
    open_raw(&path_of(name), libc::O_RDWR, 0).map_err(|e| map_err(e, name))
}

/// Creates a memfd of `size` zeroed bytes, sealed at that size (no peer can shrink or grow it).
pub fn create_sealed_memfd(size: u64) -> Result<File, Error> {
    let label = c"shmq";
    // SAFETY: `label` is a valid C string; the flags are known to memfd_create.
    let fd = cvt(unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
    // SAFETY: `fd` was just returned and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl F_ADD_SEALS on a memfd we own, with an int argument.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(file)
}

/// Whether `file` is sealed against shrinking and growing (a memfd from
/// [`create_sealed_memfd`]): nobody can truncate it.
pub fn is_sealed(file: &File) -> bool {
    // SAFETY: F_GET_SEALS on a descriptor we own; fails cleanly (EINVAL) on files without seals.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    let both = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    seals >= 0 && seals & both == both
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

/// Removes a named segment.
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
}
