//! The promises hold when the host or a peer misbehaves: a full `/dev/shm`, a peer that truncates
//! a named segment, a name unlinked and re-created, a `fork()` after attaching, another user with
//! read access, a creator killed midway, an unsealed inherited memfd.
//!
//! Each test is named after the failure it guards against. Those that can crash their process
//! (SIGBUS) run the crash in a child (this binary again, see `common`), bounded in time; every
//! test removes what it creates in `/dev/shm`. The full-device tests mount a small tmpfs of their
//! own over `/dev/shm` in a private mount namespace of the child, and are skipped (with a message)
//! where the system does not allow that.

use shmq::{Error, PipeBuilder, Queue, RecvError, Role, SendError};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{child, die_now, finish, finish_killed, job, unique};

const LIMIT: Duration = Duration::from_secs(60);

fn path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// Truncates the file behind a named segment to `len` bytes, as `truncate -s LEN` would.
fn truncate(name: &str, len: u64) {
    OpenOptions::new().write(true).open(path(name)).unwrap().set_len(len).unwrap();
}

/// Free bytes of the tmpfs at `/dev/shm`, and `MemAvailable + SwapFree`.
fn free_space() -> (u64, u64) {
    // SAFETY: all-zero is a valid statvfs, filled in by the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and an exclusively borrowed statvfs.
    assert_eq!(unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) }, 0);
    let shm = st.f_bavail as u64 * st.f_frsize as u64;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb = |key: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l[key.len()..].trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (shm, (kb("MemAvailable:") + kb("SwapFree:")) * 1024)
}

/// Bytes of a queue segment of `capacity` slots of `slot_size` (header and control block
/// included, rounded up to pages), as the library lays it out.
fn queue_bytes(capacity: u64, slot_size: u64) -> u64 {
    let stride = (16 + slot_size).div_ceil(64) * 64;
    (4480 + 640 + capacity * stride).div_ceil(4096) * 4096
}

/// Makes `cmd`'s child run with a tmpfs of `size_kb` KiB of its own at `/dev/shm` (a private
/// mount namespace; a user namespace too when not root).
fn in_small_tmpfs(cmd: &mut Command, size_kb: u32) {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("0 {uid} 1");
    let gid_map = format!("0 {gid} 1");
    let opts = CString::new(format!("size={size_kb}k")).unwrap();
    /// Writes `data` to `path` with system calls only (we are between fork and exec).
    fn write_file(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
        // SAFETY: a NUL-terminated path; the descriptor is closed before returning.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, data.as_ptr().cast(), data.len());
            libc::close(fd);
            if n != data.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
    // SAFETY: the closure runs in the child between fork and exec and makes system calls only,
    // on strings prepared before the fork; it allocates nothing (an io::Error of an OS code holds
    // no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if uid == 0 {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
                write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
            }
            let none = std::ptr::null();
            if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::MS_NOSUID | libc::MS_NODEV;
            if libc::mount(c"tmpfs".as_ptr(), c"/dev/shm".as_ptr(), c"tmpfs".as_ptr(), flags, opts.as_ptr().cast()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Bytes of valid queue segment, from a queue created and unlinked here.
fn valid_queue_bytes(name: &str) -> Vec<u8> {
    drop(Queue::builder().capacity(4).slot_size(32).unlink_on_drop(false).create(name).unwrap());
    let bytes = std::fs::read(path(name)).unwrap();
    shmq::unlink(name).unwrap();
    bytes
}

/// The child side of the tests here. Does nothing unless started as a child.
#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let mut words = job.split(':');
    let what = words.next().unwrap();
    let name = words.next().unwrap_or("");
    match what {
        "full-tmpfs" => full_tmpfs_child(),
        "create-big" => {
            println!("start");
            let q = Queue::builder().capacity(1 << 18).slot_size(4096).unlink_on_drop(true).create(name).unwrap();
            println!("created");
            std::thread::sleep(Duration::from_secs(30));
            drop(q);
        }
        "truncate-queue" => {
            let q = Queue::builder().capacity(4).slot_size(64).unlink_on_drop(true).create(name).unwrap();
            let peer = Queue::open(name).unwrap();
            q.put(b"before").unwrap();
            truncate(name, 0);
            // The first access after the truncation is this try_get.
            assert!(matches!(q.try_get(), Err(RecvError::Corrupt(_))), "try_get on a truncated queue");
            assert!(matches!(q.get_timeout(Duration::from_millis(50)), Err(RecvError::Corrupt(_))));
            // The peer's own mapping faults on its own first access; within a lap it reports too.
            let r = (0..=4).map(|_| peer.try_put(b"x")).find(Result::is_err);
            assert!(matches!(r, Some(Err(SendError::Corrupt(_)))), "{r:?}");
            assert!(matches!(peer.put_timeout(b"y", Duration::from_millis(50)), Err(SendError::Corrupt(_))));
            println!("ok");
        }
        "truncate-pipe" => {
            let mut end0 = PipeBuilder::new().capacity(4).slot_size(64).unlink_on_drop(true).create(name).unwrap();
            let mut end1 = PipeBuilder::new().open(name).unwrap();
            end1.send(b"before").unwrap();
            truncate(name, 0);
            let r = end0.recv_timeout(Duration::from_millis(50)).map(|m| m.to_vec());
            assert!(matches!(r, Err(RecvError::Corrupt(_))), "{r:?}");
            let r = (0..=4).map(|_| end1.send_timeout(b"x", Duration::from_millis(50))).find(Result::is_err);
            assert!(matches!(r, Some(Err(SendError::Corrupt(_)))), "{r:?}");
            println!("ok");
        }
        "sigbus-elsewhere" => {
            // Installs the handler (a named segment is guarded).
            let _q = Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(name).unwrap();
            // SAFETY: a valid C string label and a known flag.
            let fd = unsafe { libc::memfd_create(c"not-shmq".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(fd >= 0);
            // SAFETY: `fd` was just returned and is owned by nobody else.
            let f = unsafe { File::from_raw_fd(fd) };
            f.set_len(8192).unwrap();
            let map = memmap2::MmapOptions::new().len(8192).map_raw(&f).unwrap();
            f.set_len(0).unwrap();
            // SAFETY: in bounds of the mapping, whose file no longer has the page: SIGBUS, which is
            // not ours to repair, so the process must die of it.
            let v = unsafe { map.as_ptr().add(4096).read_volatile() };
            println!("survived {v}");
        }
        "producer-attaches-and-dies" => {
            let _q = Queue::builder().role(Role::Producer).open(name).unwrap();
            die_now();
        }
        "inherit-unsealed" => {
            let bytes = valid_queue_bytes(name);
            // SAFETY: a valid C string label and a known flag; no sealing allowed.
            let fd = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(fd >= 0);
            // SAFETY: `fd` was just returned and is owned by nobody else.
            let mut f = unsafe { File::from_raw_fd(fd) };
            f.write_all(&bytes).unwrap();
            // This child runs one test on one thread: nothing else reads the environment.
            share(&f, "UNSEALED");
            let r = Queue::from_env("UNSEALED");
            assert!(matches!(r, Err(Error::NotSealed)), "{r:?}");
            // A named segment's descriptor is a file in /dev/shm, which needs no seals.
            let q = Queue::builder().capacity(4).slot_size(32).unlink_on_drop(true).create(name).unwrap();
            let named = OpenOptions::new().read(true).write(true).open(path(name)).unwrap();
            share(&named, "NAMED");
            let inherited = Queue::from_env("NAMED").unwrap();
            inherited.put(b"hi").unwrap();
            assert_eq!(&*q.get().unwrap(), b"hi");
            println!("ok");
        }
        // An environment that names descriptors this process owns for other things: a file with
        // no identity sent along, and standard input (with its identity). Both are refused, and
        // neither is closed nor has its flags changed.
        "inherit-foreign" => {
            let own = File::open("/dev/null").unwrap();
            let flags = |fd: i32| {
                // SAFETY: F_GETFD on a descriptor number touches no memory.
                unsafe { libc::fcntl(fd, libc::F_GETFD) }
            };
            let before = (flags(own.as_raw_fd()), flags(0));
            // This child runs one test on one thread: nothing else reads the environment.
            std::env::set_var("SHMQ_FD_FOREIGN", own.as_raw_fd().to_string());
            std::env::set_var("SHMQ_FD_FOREIGN_END", "1,0,0");
            let r = shmq::Connection::from_env("FOREIGN");
            assert!(matches!(r, Err(Error::NotInherited(_))), "{r:?}");
            let r = Queue::from_env("FOREIGN");
            assert!(matches!(r, Err(Error::NotInherited(_))), "{r:?}");
            let m = File::open("/proc/self/fd/0").map(|f| f.metadata().unwrap());
            if let Ok(m) = m {
                std::env::set_var("SHMQ_FD_STDIN", "0");
                std::env::set_var("SHMQ_ID_STDIN", format!("{}:{}", m.dev(), m.ino()));
                let r = Queue::from_env("STDIN");
                assert!(matches!(r, Err(Error::NotInherited(_))), "{r:?}");
            }
            assert_eq!((flags(own.as_raw_fd()), flags(0)), before, "flags unchanged");
            assert!(own.metadata().is_ok(), "still open");
            println!("ok");
        }
        other => panic!("unknown job {other}"),
    }
}

/// Sets the variables a parent's `share_with` sets for file `f` under `key` (its descriptor's
/// number and the file's `device:inode`). This child runs one test on one thread: nothing else
/// reads the environment.
fn share(f: &File, key: &str) {
    let m = f.metadata().unwrap();
    std::env::set_var(format!("SHMQ_FD_{key}"), f.as_raw_fd().to_string());
    std::env::set_var(format!("SHMQ_ID_{key}"), format!("{}:{}", m.dev(), m.ino()));
}

/// In a 1 MiB tmpfs of its own: a segment larger than the device fails at creation, and one that
/// fits keeps working when the device fills up after it was created.
fn full_tmpfs_child() {
    let (free, _) = free_space();
    assert!(free <= 1 << 20, "not in the small tmpfs ({free} bytes free)");
    // Larger than the device: a typed error, quickly, and no file left.
    let t = Instant::now();
    let r = PipeBuilder::new().capacity(256).slot_size(8192).create("/too-big");
    assert!(matches!(r, Err(Error::NoSpace { .. })), "{r:?}");
    let r = Queue::builder().capacity(256).slot_size(8192).create("/too-big");
    assert!(matches!(r, Err(Error::NoSpace { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(std::fs::read_dir("/dev/shm").unwrap().count(), 0, "a failed creation left a file");

    // Slots over 4 KiB, whose payload pages nothing touches before the first send.
    let mut rx = PipeBuilder::new().duplex(false).capacity(16).slot_size(8192).create("/pipe").unwrap();
    let mut tx = PipeBuilder::new().open("/pipe").unwrap();
    let q = Queue::builder().capacity(8).slot_size(8192).create("/queue").unwrap();
    // Fill the device.
    let mut filler = File::create("/dev/shm/filler").unwrap();
    let chunk = vec![1u8; 4096];
    while filler.write_all(&chunk).is_ok() {}
    drop(filler);
    let msg = vec![7u8; 8000];
    for _ in 0..16 {
        tx.try_send(&msg).unwrap();
    }
    for _ in 0..16 {
        assert_eq!(&*rx.try_recv().unwrap(), &msg[..]);
    }
    for _ in 0..8 {
        q.try_put(&msg).unwrap();
    }
    for _ in 0..8 {
        assert_eq!(&*q.try_get().unwrap(), &msg[..]);
    }
    std::fs::remove_file("/dev/shm/filler").unwrap();
    println!("ok");
}

#[test]
fn regression_a_full_tmpfs_is_no_space_at_creation_and_never_sigbus_on_send() {
    let mut cmd = child("child_entry", "full-tmpfs");
    in_small_tmpfs(&mut cmd, 1024);
    match cmd.spawn() {
        Ok(c) => assert!(finish(c, LIMIT).contains("ok")),
        Err(e) => eprintln!("skipped: cannot give the child a tmpfs of its own ({e})"),
    }
}

#[test]
fn regression_a_huge_queue_fails_fast_with_no_space() {
    // The size from the issue: 2^24 slots of 4 KiB, about 70 GB.
    let (shm, mem) = free_space();
    let mut cases = vec![(1u64 << 24, 4096u64)];
    // And one twice the size of what is free, wherever that is more than 70 GB.
    let target = 2 * shm.min(mem);
    let slot = target.div_ceil(1 << 24).next_multiple_of(64);
    if slot <= 1 << 30 && queue_bytes(1 << 24, slot) <= 1 << 40 {
        cases.push((1 << 24, slot));
    }
    for (capacity, slot) in cases {
        let bytes = queue_bytes(capacity, slot);
        if bytes <= shm.min(mem) {
            eprintln!("skipped {capacity} x {slot}: {bytes} bytes would fit here");
            continue;
        }
        let name = unique("huge");
        let t = Instant::now();
        let r = Queue::create(&name, capacity as usize, slot as usize);
        assert!(matches!(r, Err(Error::NoSpace { .. })), "named: {r:?}");
        assert!(std::fs::symlink_metadata(path(&name)).is_err(), "a failed creation left its file");
        if bytes > mem {
            let r = Queue::anonymous(capacity as usize, slot as usize);
            assert!(matches!(r, Err(Error::NoSpace { .. })), "anonymous: {r:?}");
        }
        assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    }
}

#[test]
fn regression_every_page_is_reserved_at_creation() {
    let name = unique("reserved");
    let q = Queue::builder().capacity(64).slot_size(8192).unlink_on_drop(true).create(&name).unwrap();
    let md = std::fs::metadata(path(&name)).unwrap();
    assert!(md.blocks() * 512 >= md.len(), "{} of {} bytes allocated", md.blocks() * 512, md.len());
    drop(q);
    let p = PipeBuilder::new().capacity(64).slot_size(8192).unlink_on_drop(true).create(&name).unwrap();
    let md = std::fs::metadata(path(&name)).unwrap();
    assert!(md.blocks() * 512 >= md.len(), "{} of {} bytes allocated", md.blocks() * 512, md.len());
    drop(p);
}

#[test]
fn regression_a_killed_creation_leaves_no_file_and_is_never_visible_half_built() {
    let bytes = queue_bytes(1 << 18, 4096);
    let (shm, mem) = free_space();
    if 4 * bytes > shm.min(mem) {
        eprintln!("skipped: {bytes} bytes is too much of what is free here");
        return;
    }
    let name = unique("killed-creation");
    let mut c = child("child_entry", &format!("create-big:{name}")).spawn().unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "start" {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended before it started creating");
    }
    // Watch the name while the child builds the segment (a gigabyte takes it a good part of a
    // second), then kill it in the middle.
    let t = Instant::now();
    let mut seen = false;
    while t.elapsed() < Duration::from_millis(30) {
        seen |= std::fs::symlink_metadata(path(&name)).is_ok();
        std::thread::sleep(Duration::from_millis(1));
    }
    c.kill().unwrap();
    c.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    let left = std::fs::symlink_metadata(path(&name)).is_ok();
    if left {
        let _ = std::fs::remove_file(path(&name));
    }
    if rest.contains("created") {
        eprintln!("inconclusive: the child finished creating before it was killed");
        return;
    }
    assert!(!seen, "the name was visible before the segment was complete");
    assert!(!left, "the killed creation left its file behind");
}

fn run_child_ok(job: &str) {
    let out = finish(child("child_entry", job).spawn().unwrap(), LIMIT);
    assert!(out.contains("ok"), "child said: {out}");
}

#[test]
fn regression_a_truncated_queue_is_corrupt_not_sigbus() {
    let name = unique("truncated-queue");
    run_child_ok(&format!("truncate-queue:{name}"));
    // The creator survived to drop its handle, and removed its (truncated) file.
    assert!(std::fs::symlink_metadata(path(&name)).is_err(), "the truncated segment was left behind");
}

#[test]
fn regression_a_truncated_pipe_is_corrupt_not_sigbus() {
    let name = unique("truncated-pipe");
    run_child_ok(&format!("truncate-pipe:{name}"));
    assert!(std::fs::symlink_metadata(path(&name)).is_err(), "the truncated segment was left behind");
}

#[test]
fn a_sigbus_outside_our_mappings_still_kills() {
    let name = unique("sigbus-elsewhere");
    let mut c = child("child_entry", &format!("sigbus-elsewhere:{name}")).spawn().unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > LIMIT {
            let _ = c.kill();
            let _ = c.wait();
            panic!("the child neither died nor finished");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_file(path(&name)); // the child died holding it
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status}");
}

#[test]
fn regression_drop_never_unlinks_a_newcomers_segment() {
    let name = unique("newcomer");
    let first = Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(&name).unwrap();
    shmq::unlink(&name).unwrap();
    let newcomer = Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(&name).unwrap();
    newcomer.put(b"mine").unwrap();
    drop(first);
    let q = Queue::open(&name).expect("the first creator's drop removed the newcomer's name");
    assert_eq!(&*q.get().unwrap(), b"mine");
    drop(q);
    drop(newcomer);
    assert!(std::fs::symlink_metadata(path(&name)).is_err());
}

/// Forks; the child runs `f` and exits with 0 if it returned `true`, 1 otherwise. Returns whether
/// the child succeeded (bounded in time).
fn in_forked_child(f: impl FnOnce() -> bool) -> bool {
    // SAFETY: fork. The child only runs `f` (shmq calls, no output) and `_exit`s, never returning
    // into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
        // SAFETY: ends the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let t = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        if t.elapsed() > LIMIT {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child hung");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn regression_a_forked_childs_drop_leaves_the_parents_queue_alone() {
    let name = unique("forked-queue");
    let consumer =
        Queue::builder().capacity(1).slot_size(16).role(Role::Consumer).unlink_on_drop(true).create(&name).unwrap();
    let producer = Queue::builder().role(Role::Producer).open(&name).unwrap();
    producer.put(b"a").unwrap(); // full: the child's put takes the slow path
    let child_ok = in_forked_child(|| {
        let r = producer.try_put(b"x");
        let blocking = producer.put_timeout(b"x", Duration::from_millis(10));
        // SAFETY: the child's copies of the parent's handles, dropped once here and never used
        // again (the parent's handles are untouched: this runs only in the child).
        unsafe {
            drop(std::ptr::read(&producer));
            drop(std::ptr::read(&consumer));
        }
        r == Err(SendError::Forked) && blocking == Err(SendError::Forked)
    });
    assert!(child_ok, "the forked child did not see SendError::Forked");
    assert_eq!((consumer.producer_count(), consumer.consumer_count()), (1, 1), "the child uncounted our roles");
    assert_eq!(&*consumer.get().unwrap(), b"a");
    assert_eq!(consumer.get_timeout(Duration::from_millis(50)).unwrap_err(), RecvError::Timeout);
    assert_eq!(consumer.participants().iter().filter(|p| p.alive).count(), 2);
    drop(Queue::open(&name).expect("the forked child unlinked the creator's name"));
    drop(producer);
    assert_eq!(consumer.get_timeout(Duration::from_secs(5)).unwrap_err(), RecvError::Closed);
    drop(consumer);
    assert!(std::fs::symlink_metadata(path(&name)).is_err());
}

#[test]
fn regression_a_forked_childs_drop_leaves_the_pipe_open() {
    let (mut a, mut b) = shmq::pipe().unwrap();
    let child_ok = in_forked_child(|| {
        // SAFETY: the child's copies of the parent's ends, used and dropped here only (the
        // parent's ends are untouched: this runs only in the child).
        let (a, mut b) = unsafe { (std::ptr::read(&a), std::ptr::read(&b)) };
        let r = b.recv_timeout(Duration::from_millis(10)).map(|m| m.to_vec());
        drop(b);
        drop(a);
        r == Err(RecvError::Forked)
    });
    assert!(child_ok, "the forked child did not see RecvError::Forked");
    a.send(b"x").unwrap();
    assert_eq!(a.recv_timeout(Duration::from_millis(50)).unwrap_err(), RecvError::Timeout);
    assert_eq!(&*b.recv().unwrap(), b"x");
    drop(b);
    assert_eq!(a.recv_timeout(Duration::from_secs(5)).unwrap_err(), RecvError::Closed);
}

/// Opens `name` read-only, as another user with read access could, and read-locks every
/// liveness byte it can (those write-locked by live participants refuse it). Returns the file and
/// how many bytes it locked.
fn read_lock_liveness_bytes(name: &str) -> (File, usize) {
    let f = File::open(path(name)).unwrap();
    let mut locked = 0;
    for i in 0..256 {
        // SAFETY: all-zero is a valid flock; the fields that matter are set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_RDLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = (1 << 40) + i; // `Participant::lock_offset(i)`
        fl.l_len = 1;
        // SAFETY: F_OFD_SETLK with a valid, exclusively borrowed flock on a descriptor we own.
        if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) } == 0 {
            locked += 1;
        }
    }
    (f, locked)
}

#[test]
fn regression_read_locks_neither_fake_liveness_nor_block_reaping() {
    let name = unique("read-locked");
    let q = Queue::builder().capacity(2).slot_size(8).role(Role::Consumer).unlink_on_drop(true).create(&name).unwrap();
    finish_killed(child("child_entry", &format!("producer-attaches-and-dies:{name}")).spawn().unwrap(), LIMIT);
    let (reader, locked) = read_lock_liveness_bytes(&name);
    assert_eq!(locked, 255, "every byte but the live consumer's");
    #[cfg(feature = "inspect")]
    assert_eq!(shmq::inspect::probe(&name).unwrap().live, 1, "a read lock looked alive");
    // The dead producer is reaped, read lock or not: end of stream.
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap_err(), RecvError::Closed);
    // A reader can still keep new participants out; that is reported for what it is.
    // (As a consumer: the stream has ended, so no producer may join.)
    let r = Queue::builder().role(Role::Consumer).open(&name);
    assert!(matches!(r, Err(Error::LockedByReader)), "{r:?}");
    drop(reader);
    drop(Queue::builder().role(Role::Consumer).open(&name).unwrap());
}

#[test]
fn regression_modes_that_let_others_read_or_set_special_bits_are_refused() {
    let name = unique("mode");
    for mode in [0o4600, 0o2600, 0o1600, 0o644, 0o604, 0o664] {
        let r = Queue::builder().mode(mode).unlink_on_drop(true).create(&name);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "queue {mode:o}: {r:?}");
        let r = PipeBuilder::new().mode(mode).unlink_on_drop(true).create(&name);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "pipe {mode:o}: {r:?}");
        assert!(std::fs::symlink_metadata(path(&name)).is_err());
    }
    for mode in [0o600, 0o660, 0o666, 0o640] {
        let q = Queue::builder().mode(mode).unlink_on_drop(true).create(&name).unwrap();
        assert_eq!(std::fs::metadata(path(&name)).unwrap().mode() & 0o7777, mode);
        drop(q);
    }
}

#[test]
fn regression_an_unsealed_inherited_memfd_is_refused() {
    let name = unique("unsealed");
    run_child_ok(&format!("inherit-unsealed:{name}"));
    assert!(std::fs::symlink_metadata(path(&name)).is_err());
}

/// Regression: a descriptor number in the environment with no identity was taken for a segment
/// (`from_env` made a `File` of it and closed it on failure, closing a file the program owned),
/// and a queue's `from_env` set close-on-exec on standard input.
#[test]
fn regression_from_env_never_takes_a_descriptor_it_was_not_handed() {
    run_child_ok("inherit-foreign:unused");
}

#[cfg(feature = "inspect")]
#[test]
fn regression_an_end_in_handover_counts_as_live() {
    let name = unique("handover");
    let end = PipeBuilder::new().unlink_on_drop(false).create(&name).unwrap();
    // Being handed to a child that has not taken it yet: the parent's `Handover` (and then the
    // child) holds the description that holds the entry's lock.
    let mut cmd = Command::new("true");
    cmd.stdin(Stdio::null());
    let handover = end.hand_over(&mut cmd, "P");
    let live = shmq::inspect::probe(&name).unwrap().live;
    let i = shmq::inspect::inspect(&name).unwrap();
    drop(handover);
    shmq::unlink(&name).unwrap();
    assert_eq!(live, 1, "`rm --stale` would remove a pipe whose end is being handed over");
    assert_eq!(i.live, 1);
}
