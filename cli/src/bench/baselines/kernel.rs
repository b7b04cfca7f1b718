//! Kernel baselines: pipe(2), socketpair, eventfd and POSIX message queues.

#[allow(unused_imports)]
use super::*;

// ----- pipe(2), socketpair, eventfd -----

pub fn pipe2_row(ctx: &Ctx) -> Result<Measured, RowError> {
    let fail = RowError::Failed;
    let (ab_r, ab_w) = pipe_pair().map_err(fail)?;
    let (ba_r, ba_w) = pipe_pair().map_err(fail)?;
    let mut spec = ctx.child_spec("pipe(2)");
    spec.fds = vec![ab_r.as_raw_fd(), ba_w.as_raw_fd()];
    let (w, r) = (ab_w.as_raw_fd(), ba_r.as_raw_fd());
    // Once the child holds its ends, ours go: the child's death then reads as EOF here.
    let close_theirs = move || drop((ab_r, ba_w));
    run_pingpong(
        ctx,
        spec,
        |_| {},
        close_theirs,
        None,
        |_, i| {
            write8(w, i)?;
            read8(r).map(drop)
        },
    )
}

pub(super) fn echo_fds(r: RawFd, w: RawFd, rounds: u64) -> Result<(), String> {
    for _ in 0..rounds {
        let v = read8(r)?;
        write8(w, v)?;
    }
    Ok(())
}

pub fn socketpair_row(ctx: &Ctx) -> Result<Measured, RowError> {
    let mut s = [0; 2];
    // SAFETY: `s` has room for the two descriptors socketpair writes.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, s.as_mut_ptr()) };
    if r != 0 {
        return Err(RowError::Failed(os_err("socketpair")));
    }
    let (mine, theirs) = (owned(s[0]), owned(s[1]));
    let mut spec = ctx.child_spec("socketpair");
    spec.fds = vec![theirs.as_raw_fd()];
    let fd = mine.as_raw_fd();
    run_pingpong(
        ctx,
        spec,
        |_| {},
        move || drop(theirs),
        None,
        |_, i| {
            write8(fd, i)?;
            read8(fd).map(drop)
        },
    )
}

pub fn eventfd_row(ctx: &Ctx) -> Result<Measured, RowError> {
    let ab = eventfd().map_err(RowError::Failed)?;
    let ba = eventfd().map_err(RowError::Failed)?;
    let mut spec = ctx.child_spec("eventfd");
    spec.fds = vec![ab.as_raw_fd(), ba.as_raw_fd()];
    let (w, r) = (ab.as_raw_fd(), ba.as_raw_fd());
    // Both processes hold both eventfds, so a dead child is no EOF: the watchdog posts to the
    // eventfd we read. `ba` outlives the watchdog (disarmed inside run_pingpong).
    let unblock: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = write8(r, 1);
    });
    run_pingpong(
        ctx,
        spec,
        |_| {},
        || {},
        Some(unblock),
        |abort, _| {
            write8(w, 1)?;
            read8(r)?;
            if abort.load(Ordering::Relaxed) {
                return Err(harness::ABORTED.into());
            }
            Ok(())
        },
    )
}

// ----- POSIX message queues (mq_open): the kernel's own bounded message queue -----

/// Creates a POSIX message queue of 8-byte messages, opened for reading and writing, and removes
/// its name at once: the queue lives as long as a descriptor does, so no name is left behind
/// however the row ends. On Linux an `mqd_t` is a file descriptor (close-on-exec, which the
/// harness clears on the child's copies), so it is held as an `OwnedFd`.
pub(super) fn mq_create(tag: &str) -> Result<OwnedFd, RowError> {
    let name = std::ffi::CString::new(format!("/shmq-bench-{}-{tag}", std::process::id()))
        .expect("no NUL in a formatted name");
    // SAFETY: mq_attr is plain old data; all-zero is a valid value to fill in.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // At most one message is in flight per direction; 8 stays under the default msg_max (10).
    attr.mq_maxmsg = 8;
    attr.mq_msgsize = 8;
    // SAFETY: `name` is a valid C string; with O_CREAT, mq_open reads a mode (passed as the
    // promoted unsigned int) and a pointer to an mq_attr that outlives the call.
    let fd = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600 as libc::c_uint,
            &mut attr as *mut libc::mq_attr,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOSYS | libc::EACCES | libc::EPERM) => {
                RowError::Skipped(format!("POSIX message queues are not available here (mq_open: {e})"))
            }
            _ => RowError::Failed(format!("mq_open: {e}")),
        });
    }
    let fd = owned(fd);
    // SAFETY: `name` is a valid C string.
    if unsafe { libc::mq_unlink(name.as_ptr()) } != 0 {
        return Err(RowError::Failed(os_err("mq_unlink")));
    }
    Ok(fd)
}

pub(super) fn mq_send8(mq: RawFd, v: u64) -> Result<(), String> {
    let b = v.to_ne_bytes();
    loop {
        // SAFETY: `b` is 8 readable bytes that outlive the call; `mq` is an open queue.
        if unsafe { libc::mq_send(mq, b.as_ptr().cast(), 8, 0) } == 0 {
            return Ok(());
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(os_err("mq_send"));
        }
    }
}

/// Blocks until a message arrives; the queue's messages are exactly 8 bytes.
pub(super) fn mq_receive8(mq: RawFd) -> Result<u64, String> {
    let mut b = [0u8; 8];
    loop {
        // SAFETY: `b` is 8 writable bytes (the queue's message size) that outlive the call.
        let n = unsafe { libc::mq_receive(mq, b.as_mut_ptr().cast(), 8, std::ptr::null_mut()) };
        match n {
            8 => return Ok(u64::from_ne_bytes(b)),
            n if n >= 0 => return Err(format!("mq_receive: {n} bytes, expected 8")),
            _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            _ => return Err(os_err("mq_receive")),
        }
    }
}

/// Two POSIX message queues, one per direction, both sides blocking in `mq_receive`.
pub fn posix_mq_row(ctx: &Ctx) -> Result<Measured, RowError> {
    let ab = mq_create("ab")?;
    let ba = mq_create("ba")?;
    let mut spec = ctx.child_spec("posix-mq");
    spec.fds = vec![ab.as_raw_fd(), ba.as_raw_fd()];
    let (w, r) = (ab.as_raw_fd(), ba.as_raw_fd());
    // As with eventfd, both processes hold both queues, so a dead child is no EOF: the watchdog
    // posts to the queue we read. `ba` outlives the watchdog (disarmed inside run_pingpong).
    let unblock: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = mq_send8(r, u64::MAX);
    });
    run_pingpong(
        ctx,
        spec,
        |_| {},
        || {},
        Some(unblock),
        |abort, i| {
            mq_send8(w, i)?;
            let v = mq_receive8(r)?;
            if abort.load(Ordering::Relaxed) {
                return Err(harness::ABORTED.into());
            }
            if v != i {
                return Err(format!("round {i}: echo carried {v}"));
            }
            Ok(())
        },
    )
}

pub(super) fn posix_mq_child(a: &ChildArgs) -> Result<(), String> {
    let (r, w) = (a.fd(0)?, a.fd(1)?);
    for _ in 0..a.rounds {
        let v = mq_receive8(r)?;
        mq_send8(w, v)?;
    }
    Ok(())
}
