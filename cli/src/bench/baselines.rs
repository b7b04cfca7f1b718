//! The rows shmq is compared with: the hardware and kernel limits (raw atomics, raw futex), the
//! classic kernel channels (pipe, socketpair, eventfd, POSIX message queues), Python's
//! multiprocessing, and in-process SPSC/MPMC rings (crossbeam `ArrayQueue`, `rtrb`) between
//! threads.
//!
//! Each latency row has a parent side (side A: send, wait for the reply, time it) and a child
//! side (side B: wait, reply), in the same place so the protocol reads as one.

use super::harness::{self, spin_until, time_rounds, ChildSpec, Deadline, Peer, Victim, Watchdog};
use super::{ChildArgs, Ctx, Measured, RowError};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: only called on descriptors just returned by the kernel and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

// ----- a page of shared memory with words on separate 128-byte lines -----

/// One page of `MAP_SHARED` memory from a memfd, seen as words 128 bytes apart.
pub struct SharedPage {
    map: MmapRaw,
    _file: File,
}

impl SharedPage {
    pub fn create() -> Result<SharedPage, String> {
        // SAFETY: a valid C string label and known flags.
        let fd = unsafe { libc::memfd_create(c"shmq-bench".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_err("memfd_create"));
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(4096).map_err(|e| format!("sizing memfd: {e}"))?;
        Self::map(file)
    }

    /// Maps the page a parent passed as descriptor `fd`.
    pub fn inherit(fd: RawFd) -> Result<SharedPage, String> {
        // SAFETY: the parent passed this descriptor for us to own; nothing else in this process
        // uses it.
        let file = unsafe { File::from_raw_fd(fd) };
        Self::map(file)
    }

    fn map(file: File) -> Result<SharedPage, String> {
        let map = MmapOptions::new().len(4096).map_raw(&file).map_err(|e| format!("mmap: {e}"))?;
        Ok(SharedPage { map, _file: file })
    }

    pub fn fd(&self) -> RawFd {
        self._file.as_raw_fd()
    }

    pub fn u64_at(&self, line: usize) -> &AtomicU64 {
        assert!(line < 4096 / 128);
        // SAFETY: the mapping is one page, page-aligned, alive as long as `self`; line * 128 is
        // inside it and 8-byte aligned. Every access to it is atomic, in both processes.
        unsafe { &*(self.map.as_ptr().add(line * 128) as *const AtomicU64) }
    }

    pub fn u32_at(&self, line: usize) -> &AtomicU32 {
        assert!(line < 4096 / 128);
        // SAFETY: as for `u64_at`, with 4-byte alignment.
        unsafe { &*(self.map.as_ptr().add(line * 128) as *const AtomicU32) }
    }
}

// ----- raw futex, without FUTEX_PRIVATE_FLAG (the word is shared between processes) -----

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts =
        libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: `word` is a live, aligned AtomicU32 in a shared mapping; `ts` outlives the call.
    // FUTEX_WAIT takes a relative timeout. Any return is re-checked by the caller.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, &ts as *const libc::timespec);
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: the address is only a key for the kernel's wait queue; no memory is accessed.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

/// Sleeps on `word` until it holds `want`: never spins, so every round trip sleeps on each side.
fn futex_wait_for(word: &AtomicU32, want: u32, give_up: impl Fn() -> bool) -> Result<(), String> {
    loop {
        let v = word.load(Ordering::Acquire);
        if v == want {
            return Ok(());
        }
        if give_up() {
            return Err(harness::ABORTED.into());
        }
        futex_wait(word, v, Duration::from_millis(100));
    }
}

// ----- fd rows: read and write exactly 8 bytes -----

fn write8(fd: RawFd, v: u64) -> Result<(), String> {
    let b = v.to_ne_bytes();
    // SAFETY: `b` is 8 readable bytes that outlive the call.
    let n = unsafe { libc::write(fd, b.as_ptr().cast(), 8) };
    if n == 8 {
        Ok(())
    } else {
        Err(os_err("write"))
    }
}

/// Reads 8 bytes (a stream may deliver them in pieces). EOF: the peer is gone.
fn read8(fd: RawFd) -> Result<u64, String> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        // SAFETY: the destination is the unfilled tail of `b`, 8 - got writable bytes.
        let n = unsafe { libc::read(fd, b[got..].as_mut_ptr().cast(), 8 - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 {
            return Err("peer closed its end".into());
        } else if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(os_err("read"));
        }
    }
    Ok(u64::from_ne_bytes(b))
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut p = [0; 2];
    // SAFETY: `p` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_err("pipe2"));
    }
    Ok((owned(p[0]), owned(p[1])))
}

fn eventfd() -> Result<OwnedFd, String> {
    // SAFETY: no pointers; known flags.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(os_err("eventfd"));
    }
    Ok(owned(fd))
}

/// Runs a ping-pong row: spawns side B with `spec`, arms the watchdog, times the rounds.
fn run_pingpong(
    ctx: &Ctx,
    spec: ChildSpec,
    share: impl FnOnce(&mut Command),
    after_spawn: impl FnOnce(),
    unblock: Option<Box<dyn FnOnce() + Send>>,
    mut round: impl FnMut(&AtomicBool, u64) -> Result<(), String>,
) -> Result<Measured, RowError> {
    let peer = Peer::spawn(&spec, share).map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
    after_spawn();
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Pid(peer.pid())], unblock);
    let timed = time_rounds(ctx.warmup, ctx.rounds, |i| round(dog.flag(), i));
    let fired = dog.disarm();
    let finished = peer.finish(Duration::from_secs(5));
    match (timed, fired) {
        (Ok(h), _) => {
            finished.map_err(RowError::Failed)?;
            Ok(Measured::Latency(h))
        }
        (Err(_), true) => Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout))),
        (Err(e), false) => Err(RowError::Failed(match finished {
            Err(c) => format!("{e} ({c})"),
            Ok(()) => e,
        })),
    }
}

// ----- atomic-limit -----

pub fn atomic_limit(ctx: &Ctx) -> Result<Measured, RowError> {
    let page = SharedPage::create().map_err(RowError::Failed)?;
    let mut spec = ctx.child_spec("atomic-limit");
    spec.fds = vec![page.fd()];
    let (ping, pong) = (page.u64_at(0), page.u64_at(1));
    run_pingpong(
        ctx,
        spec,
        |_| {},
        || {},
        None,
        |abort, i| {
            ping.store(i + 1, Ordering::Release);
            spin_until(abort, || pong.load(Ordering::Acquire) == i + 1)
        },
    )
}

fn atomic_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let page = SharedPage::inherit(a.fd(0)?)?;
    let (ping, pong) = (page.u64_at(0), page.u64_at(1));
    for i in 0..a.rounds {
        dl.spin_until(|| ping.load(Ordering::Acquire) == i + 1)?;
        pong.store(i + 1, Ordering::Release);
    }
    Ok(())
}

// ----- futex-limit -----

pub fn futex_limit(ctx: &Ctx) -> Result<Measured, RowError> {
    let page = SharedPage::create().map_err(RowError::Failed)?;
    let mut spec = ctx.child_spec("futex-limit");
    spec.fds = vec![page.fd()];
    let (ping, pong) = (page.u32_at(0), page.u32_at(1));
    run_pingpong(
        ctx,
        spec,
        |_| {},
        || {},
        None,
        |abort, i| {
            let v = (i + 1) as u32;
            ping.store(v, Ordering::Release);
            futex_wake(ping);
            futex_wait_for(pong, v, || abort.load(Ordering::Relaxed))
        },
    )
}

fn futex_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let page = SharedPage::inherit(a.fd(0)?)?;
    let (ping, pong) = (page.u32_at(0), page.u32_at(1));
    for i in 0..a.rounds {
        let v = (i + 1) as u32;
        futex_wait_for(ping, v, || dl.passed())?;
        pong.store(v, Ordering::Release);
        futex_wake(pong);
    }
    Ok(())
}

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

fn echo_fds(r: RawFd, w: RawFd, rounds: u64) -> Result<(), String> {
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
fn mq_create(tag: &str) -> Result<OwnedFd, RowError> {
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

fn mq_send8(mq: RawFd, v: u64) -> Result<(), String> {
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
fn mq_receive8(mq: RawFd) -> Result<u64, String> {
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

fn posix_mq_child(a: &ChildArgs) -> Result<(), String> {
    let (r, w) = (a.fd(0)?, a.fd(1)?);
    for _ in 0..a.rounds {
        let v = mq_receive8(r)?;
        mq_send8(w, v)?;
    }
    Ok(())
}

// ----- python multiprocessing -----

const PYTHON: &str = r#"
import json, os, sys, time
import multiprocessing as mp

def pin(core):
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass

def echo_pipe(conn, n, core):
    pin(core)
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())

def echo_queue(qin, qout, n, core):
    pin(core)
    for _ in range(n):
        qout.put(qin.get())

def main():
    mode = sys.argv[1]
    rounds, warmup, core_a, core_b = (int(x) for x in sys.argv[2:6])
    total = rounds + warmup
    pin(core_a)
    msg = b"\0" * 8
    if mode == "pipe":
        here, there = mp.Pipe()
        peer = mp.Process(target=echo_pipe, args=(there, total, core_b), daemon=True)
        send, recv = here.send_bytes, here.recv_bytes
    else:
        qab, qba = mp.Queue(), mp.Queue()
        peer = mp.Process(target=echo_queue, args=(qab, qba, total, core_b), daemon=True)
        send, recv = qab.put, qba.get
    peer.start()
    now = time.perf_counter_ns
    samples = []
    for i in range(total):
        t0 = now()
        send(msg)
        recv()
        t1 = now()
        if i >= warmup:
            samples.append(t1 - t0)
    peer.join(5)
    json.dump({"samples": samples}, sys.stdout)

if __name__ == "__main__":
    main()
"#;

/// `mode`: "pipe" (`multiprocessing.Pipe`) or "queue" (two `multiprocessing.Queue`s).
pub fn python_row(ctx: &Ctx, mode: &str) -> Result<Measured, RowError> {
    let args = [mode.to_string(), ctx.rounds.to_string(), ctx.warmup.to_string()];
    let text = run_python(ctx, PYTHON, &args)?;
    let samples = parse_samples(&text).ok_or_else(|| RowError::Failed("python3 printed no samples".into()))?;
    let mut h = harness::new_histogram();
    for s in samples {
        h.saturating_record(s.max(1));
    }
    Ok(Measured::Latency(h))
}

/// The seed demo in Python (`seed_demo.py`): the work of the `seed-demo-shmq` row, done with
/// `multiprocessing.Queue(maxsize=3)`. Context switches: python's and its children's (all
/// waited for by python before it exits, so all in our RUSAGE_CHILDREN once we have waited).
pub fn python_seed_demo(ctx: &Ctx) -> Result<Measured, RowError> {
    let total = ctx.seed_messages;
    let before = harness::context_switches(libc::RUSAGE_CHILDREN);
    let text = run_python(ctx, include_str!("seed_demo.py"), &[total.to_string()])?;
    let switches = harness::context_switches(libc::RUSAGE_CHILDREN).saturating_sub(before);
    let field = |name: &str| {
        let mut words = text.split_whitespace();
        words.find(|w| *w == name).and_then(|_| words.next()).and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(received), Some(lost), Some(duplicated), Some(elapsed_ns)) =
        (field("received"), field("lost"), field("duplicated"), field("elapsed_ns"))
    else {
        return Err(RowError::Failed(format!("python3 printed {:?}", text.trim())));
    };
    if received != total || lost != 0 || duplicated != 0 {
        return Err(RowError::Failed(format!(
            "{total} messages: python counted {received}; {lost} lost, {duplicated} duplicated"
        )));
    }
    Ok(Measured::Throughput {
        size: 8,
        messages: total,
        elapsed: Duration::from_nanos(elapsed_ns),
        context_switches: Some(switches),
    })
}

/// Runs `python3 -c script args... core_a core_b` in a process group of its own (which the
/// watchdog kills whole) and returns what it printed. No python3: the row is skipped.
fn run_python(ctx: &Ctx, script: &str, args: &[String]) -> Result<String, RowError> {
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .arg(ctx.cores[0].to_string())
        .arg(ctx.cores[1].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(RowError::Skipped("python3 not found".into())),
        Err(e) => return Err(RowError::Failed(format!("spawning python3: {e}"))),
    };
    let pid = child.id() as i32;
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Group(pid)], None);
    // Collects stdout and stderr until python exits (or the watchdog kills its group).
    let out = child.wait_with_output();
    let fired = dog.disarm();
    let out = out.map_err(|e| RowError::Failed(format!("waiting for python3: {e}")))?;
    if fired {
        return Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout)));
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_owned();
        return Err(RowError::Failed(format!("python3 failed: {last}")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The numbers of `{"samples": [n, n, ...]}`.
fn parse_samples(json: &str) -> Option<Vec<u64>> {
    let start = json.find('[')? + 1;
    let end = start + json[start..].find(']')?;
    let body = json[start..end].trim();
    if body.is_empty() {
        return None;
    }
    body.split(',').map(|s| s.trim().parse().ok()).collect()
}

// ----- in-process baselines: crossbeam ArrayQueue and rtrb between two pinned threads -----

/// What a message looks like in memory: `N` bytes, the first 8 a sequence number.
fn message<const N: usize>(i: u64) -> [u8; N] {
    let mut m = [0u8; N];
    let k = N.min(8);
    m[..k].copy_from_slice(&i.to_le_bytes()[..k]);
    m
}

/// Runs a producer thread on core A and a consumer thread on core B for `ctx.duration`.
/// `produce(stop)` returns how many it sent; `consume(done)` how many it received, draining
/// after `done` is set.
fn two_threads(
    ctx: &Ctx,
    size: usize,
    produce: impl FnOnce() -> u64 + Send,
    consume: impl FnOnce(&AtomicBool) -> u64 + Send,
) -> Result<Measured, RowError> {
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(2);
    let cores = ctx.cores;
    let (sent, received, elapsed) = std::thread::scope(|s| {
        let p = s.spawn(|| {
            let _ = harness::pin_to(cores[0]);
            barrier.wait();
            let n = produce();
            done.store(true, Ordering::Release);
            n
        });
        let c = s.spawn(|| {
            let _ = harness::pin_to(cores[1]);
            barrier.wait();
            let start = Instant::now();
            let n = consume(&done);
            (n, start.elapsed())
        });
        let sent = p.join().expect("producer thread");
        let (received, elapsed) = c.join().expect("consumer thread");
        (sent, received, elapsed)
    });
    if sent != received {
        return Err(RowError::Failed(format!("sent {sent} but received {received}")));
    }
    Ok(Measured::Throughput { size, messages: received, elapsed, context_switches: None })
}

/// Calls `step` until `duration` has passed (the clock is read every 256 steps).
fn for_duration(duration: Duration, mut step: impl FnMut(u64)) -> u64 {
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        for _ in 0..256 {
            step(i);
            i += 1;
        }
        if start.elapsed() >= duration {
            return i;
        }
    }
}

pub fn crossbeam_row<const N: usize>(ctx: &Ctx) -> Result<Measured, RowError> {
    let q = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(1024));
    let (qp, qc) = (q.clone(), q);
    two_threads(
        ctx,
        N,
        move || {
            for_duration(ctx.duration, |i| {
                let mut m = message::<N>(i);
                while let Err(back) = qp.push(m) {
                    m = back;
                }
            })
        },
        move |done| {
            let mut n = 0u64;
            loop {
                match qc.pop() {
                    Some(m) => {
                        std::hint::black_box(&m);
                        n += 1;
                    }
                    None if done.load(Ordering::Acquire) && qc.is_empty() => return n,
                    None => {}
                }
            }
        },
    )
}

/// crossbeam's `ArrayQueue` (capacity 1024) of 8-byte messages between `producers` producer
/// threads and `consumers` consumer threads, thread `k` (producers first) pinned to `core_of(k)`;
/// producers push for `ctx.duration`, consumers pop until the producers are done and the queue
/// is empty, and the counts must match. A thread that finds the queue full or empty spins a
/// little and then yields (as crossbeam's `Backoff::snooze` does), so that more threads than
/// cores still make progress, as the shmq processes do by sleeping.
pub fn crossbeam_mpmc(
    ctx: &Ctx,
    producers: usize,
    consumers: usize,
    core_of: &dyn Fn(usize) -> usize,
) -> Result<Measured, RowError> {
    let q = crossbeam_queue::ArrayQueue::<[u8; 8]>::new(1024);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let barrier = Barrier::new(producers + consumers + 1);
    let (sent, received, elapsed) = std::thread::scope(|s| {
        let (q, finished, barrier) = (&q, &finished, &barrier);
        let ps: Vec<_> = (0..producers)
            .map(|k| {
                let core = core_of(k);
                s.spawn(move || {
                    let _ = harness::pin_to(core);
                    barrier.wait();
                    let n = for_duration(ctx.duration, |i| {
                        let mut m = message::<8>(i);
                        let mut step = 0;
                        while let Err(back) = q.push(m) {
                            m = back;
                            snooze(&mut step);
                        }
                    });
                    finished.fetch_add(1, Ordering::Release);
                    n
                })
            })
            .collect();
        let cs: Vec<_> = (0..consumers)
            .map(|k| {
                let core = core_of(producers + k);
                s.spawn(move || {
                    let _ = harness::pin_to(core);
                    barrier.wait();
                    let mut n = 0u64;
                    let mut step = 0;
                    loop {
                        match q.pop() {
                            Some(m) => {
                                std::hint::black_box(&m);
                                n += 1;
                                step = 0;
                            }
                            // A producer's last push comes before its Release increment.
                            None if finished.load(Ordering::Acquire) == producers && q.is_empty() => {
                                return (n, Instant::now())
                            }
                            None => snooze(&mut step),
                        }
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let sent: u64 = ps.into_iter().map(|t| t.join().expect("producer thread")).sum();
        let (mut received, mut end) = (0, start);
        for t in cs {
            let (n, at) = t.join().expect("consumer thread");
            received += n;
            end = end.max(at);
        }
        (sent, received, end.saturating_duration_since(start))
    });
    if sent != received {
        return Err(RowError::Failed(format!("sent {sent} but received {received}")));
    }
    Ok(Measured::Throughput { size: 8, messages: received, elapsed, context_switches: None })
}

/// Waits a little longer each time: spins 1, 2, 4, ... 32 times, then yields the core.
fn snooze(step: &mut u32) {
    if *step <= 5 {
        for _ in 0..1u32 << *step {
            std::hint::spin_loop();
        }
        *step += 1;
    } else {
        std::thread::yield_now();
    }
}

pub fn rtrb_row<const N: usize>(ctx: &Ctx) -> Result<Measured, RowError> {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; N]>::new(1024);
    two_threads(
        ctx,
        N,
        move || {
            for_duration(ctx.duration, |i| {
                let mut m = message::<N>(i);
                while let Err(rtrb::PushError::Full(back)) = tx.push(m) {
                    m = back;
                }
            })
        },
        move |done| {
            let mut n = 0u64;
            loop {
                match rx.pop() {
                    Ok(m) => {
                        std::hint::black_box(&m);
                        n += 1;
                    }
                    Err(_) if done.load(Ordering::Acquire) && rx.is_empty() => return n,
                    Err(_) => {}
                }
            }
        },
    )
}

// ----- ipc-channel (servo's cross-process channels), behind the `ipc-channel` feature -----

#[cfg(feature = "ipc-channel")]
const IPC_SERVER_ENV: &str = "SHMQ_BENCH_IPC_SERVER";

/// The channel pair the child hands back: how the parent sends to it, and how it hears back.
#[cfg(feature = "ipc-channel")]
type IpcPair = (ipc_channel::ipc::IpcSender<u64>, ipc_channel::ipc::IpcReceiver<u64>);

#[cfg(feature = "ipc-channel")]
pub fn ipc_channel_row(ctx: &Ctx) -> Result<Measured, RowError> {
    use ipc_channel::ipc::IpcOneShotServer;
    use std::cell::RefCell;
    let (server, name) =
        IpcOneShotServer::<IpcPair>::new().map_err(|e| RowError::Failed(format!("ipc-channel server: {e}")))?;
    let chans: RefCell<Option<IpcPair>> = RefCell::new(None);
    run_pingpong(
        ctx,
        ctx.child_spec("ipc-channel"),
        |cmd| {
            cmd.env(IPC_SERVER_ENV, &name);
        },
        || {
            // The child connects and sends its channel ends (bounded: the watchdog kills it).
            if let Ok((_, pair)) = server.accept() {
                *chans.borrow_mut() = Some(pair);
            }
        },
        None,
        |_, i| {
            let guard = chans.borrow();
            let (tx, rx) = guard.as_ref().ok_or("the ipc-channel child did not connect")?;
            tx.send(i).map_err(|e| e.to_string())?;
            match rx.recv() {
                Ok(v) if v == i => Ok(()),
                Ok(v) => Err(format!("round {i}: echo carried {v}")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
}

#[cfg(feature = "ipc-channel")]
fn ipc_channel_child(a: &ChildArgs) -> Result<(), String> {
    use ipc_channel::ipc::{channel, IpcSender};
    let name = std::env::var(IPC_SERVER_ENV).map_err(|_| "no ipc-channel server name".to_string())?;
    let bootstrap = IpcSender::<IpcPair>::connect(name).map_err(|e| e.to_string())?;
    let (to_child, from_parent) = channel::<u64>().map_err(|e| e.to_string())?;
    let (to_parent, from_child) = channel::<u64>().map_err(|e| e.to_string())?;
    bootstrap.send((to_child, from_child)).map_err(|e| e.to_string())?;
    for _ in 0..a.rounds {
        let v = from_parent.recv().map_err(|e| e.to_string())?;
        to_parent.send(v).map_err(|e| e.to_string())?;
    }
    Ok(())
}

// ----- iceoryx2 (zero-copy publish-subscribe), behind the `iceoryx2` feature -----

#[cfg(feature = "iceoryx2")]
const ICEORYX_SERVICE_ENV: &str = "SHMQ_BENCH_ICEORYX2_SERVICE";

/// One side of an iceoryx2 ping-pong: a node, a publisher on one service and a subscriber on the
/// other (the services "<prefix>/ping" and "<prefix>/pong", `u64` payloads).
#[cfg(feature = "iceoryx2")]
struct Iceoryx {
    publisher: iceoryx2::port::publisher::Publisher<iceoryx2::service::ipc::Service, u64, ()>,
    subscriber: iceoryx2::port::subscriber::Subscriber<iceoryx2::service::ipc::Service, u64, ()>,
    _node: iceoryx2::node::Node<iceoryx2::service::ipc::Service>,
}

#[cfg(feature = "iceoryx2")]
impl Iceoryx {
    /// Side A publishes on "ping" and subscribes to "pong"; side B the other way round.
    fn open(prefix: &str, side_a: bool) -> Result<Iceoryx, String> {
        use iceoryx2::prelude::*;
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(|e| format!("iceoryx2 node: {e:?}"))?;
        let service = |suffix: &str| {
            let name: ServiceName =
                format!("{prefix}/{suffix}").as_str().try_into().map_err(|e| format!("iceoryx2 name: {e:?}"))?;
            node.service_builder(&name)
                .publish_subscribe::<u64>()
                .open_or_create()
                .map_err(|e| format!("iceoryx2 service {suffix}: {e:?}"))
        };
        let (out, inp) = if side_a { ("ping", "pong") } else { ("pong", "ping") };
        let (out, inp) = (service(out)?, service(inp)?);
        let subscriber = inp.subscriber_builder().create().map_err(|e| format!("iceoryx2 subscriber: {e:?}"))?;
        let publisher = out.publisher_builder().create().map_err(|e| format!("iceoryx2 publisher: {e:?}"))?;
        Ok(Iceoryx { publisher, subscriber, _node: node })
    }

    fn send(&self, v: u64) -> Result<(), String> {
        self.publisher.send_copy(v).map(drop).map_err(|e| format!("iceoryx2 send: {e:?}"))
    }

    /// The next sample's value, if one has arrived.
    fn try_recv(&self) -> Result<Option<u64>, String> {
        match self.subscriber.receive() {
            Ok(s) => Ok(s.map(|s| *s)),
            Err(e) => Err(format!("iceoryx2 receive: {e:?}")),
        }
    }
}

/// Busy-polling ping-pong over two iceoryx2 publish-subscribe services. A sample published
/// before the peer's subscriber exists reaches nobody, so side A first says hello (value 0)
/// until side B answers; stray hello answers are skipped by the timed rounds (values from 1).
#[cfg(feature = "iceoryx2")]
pub fn iceoryx2_row(ctx: &Ctx) -> Result<Measured, RowError> {
    // iceoryx2 leaves machine-wide management files in /dev/shm (`iox2_*`) after its last node
    // goes. Remove those this row created, so that a run leaves /dev/shm as it found it.
    let iox_files = || -> std::collections::BTreeSet<std::ffi::OsString> {
        std::fs::read_dir("/dev/shm")
            .map(|d| d.flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with("iox2_")).collect())
            .unwrap_or_default()
    };
    let before = iox_files();
    let result = iceoryx2_pingpong(ctx);
    for name in iox_files().difference(&before) {
        let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(name));
    }
    result
}

#[cfg(feature = "iceoryx2")]
fn iceoryx2_pingpong(ctx: &Ctx) -> Result<Measured, RowError> {
    let prefix = format!("shmq-bench/{}/{}", std::process::id(), ctx.rounds);
    let me = Iceoryx::open(&prefix, true).map_err(RowError::Failed)?;
    let connected = std::cell::Cell::new(false);
    run_pingpong(
        ctx,
        ctx.child_spec("iceoryx2"),
        |cmd| {
            cmd.env(ICEORYX_SERVICE_ENV, &prefix);
        },
        || {},
        None,
        |abort, i| {
            while !connected.get() {
                me.send(0)?;
                let t = Instant::now();
                let mut got = None;
                spin_until(abort, || {
                    got = me.try_recv().transpose();
                    got.is_some() || t.elapsed() > Duration::from_millis(10)
                })?;
                if let Some(v) = got {
                    v?;
                    connected.set(true);
                }
            }
            me.send(i + 1)?;
            let mut out = Ok(());
            spin_until(abort, || match me.try_recv() {
                Ok(Some(v)) if v == i + 1 => true,
                Ok(_) => false,
                Err(e) => {
                    out = Err(e);
                    true
                }
            })?;
            out
        },
    )
}

#[cfg(feature = "iceoryx2")]
fn iceoryx2_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let prefix = std::env::var(ICEORYX_SERVICE_ENV).map_err(|_| "no iceoryx2 service name".to_string())?;
    let me = Iceoryx::open(&prefix, false)?;
    let mut answered = 0;
    while answered < a.rounds {
        let mut got = Ok(None);
        dl.spin_until(|| {
            got = me.try_recv();
            !matches!(got, Ok(None))
        })?;
        let v = got?.unwrap_or(0);
        me.send(v)?;
        if v != 0 {
            answered += 1;
        }
    }
    Ok(())
}

// ----- child dispatch for the rows in this file -----

/// Runs side B of a baseline row; `None` if the row is not one of these.
pub fn child(a: &ChildArgs, dl: Deadline) -> Option<Result<(), String>> {
    Some(match a.row.as_str() {
        "atomic-limit" => atomic_child(a, dl),
        "futex-limit" => futex_child(a, dl),
        "pipe(2)" => (|| echo_fds(a.fd(0)?, a.fd(1)?, a.rounds))(),
        "socketpair" => a.fd(0).and_then(|fd| echo_fds(fd, fd, a.rounds)),
        "posix-mq" => posix_mq_child(a),
        #[cfg(feature = "ipc-channel")]
        "ipc-channel" => ipc_channel_child(a),
        #[cfg(feature = "iceoryx2")]
        "iceoryx2" => iceoryx2_child(a, dl),
        "eventfd" => (|| {
            let (r, w) = (a.fd(0)?, a.fd(1)?);
            for _ in 0..a.rounds {
                read8(r)?;
                write8(w, 1)?;
            }
            Ok(())
        })(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_samples_are_parsed() {
        assert_eq!(parse_samples("{\"samples\": [1, 22,333]}"), Some(vec![1, 22, 333]));
        assert_eq!(parse_samples("{\"samples\": []}"), None);
        assert_eq!(parse_samples("garbage"), None);
    }
}
