//! Helpers for tests that run real processes.
//!
//! A multi-process test re-runs its own test binary as the child, selecting one `#[test]` function
//! (the "child entry") with `--exact`, and passing what the child should do in environment
//! variables. Child entries are `#[ignore]`d, so a plain `cargo test` does not run them in the
//! parent (where they would assert nothing); the child runs its entry by exact name with
//! `--include-ignored`.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the child's job.
pub const JOB: &str = "SHMQ_TEST_JOB";

/// A command that re-runs this test binary's `entry` test as a child doing `job`.
pub fn child(entry: &str, job: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg(entry).args(CHILD_ARGS).env(JOB, job).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    cmd
}

/// The child-entry arguments of [`child`], for commands built another way (`shmq::Worker`).
pub const CHILD_ARGS: [&str; 5] = ["--exact", "--include-ignored", "--nocapture", "--test-threads=1", "-q"];

/// A `shmq::Worker` re-running this test binary's `child_entry` test as a child doing `job`,
/// its standard output piped (read it with [`finish`]).
pub fn worker(job: &str) -> shmq::Worker {
    let mut w = shmq::Worker::this_program().unwrap().arg("child_entry").args(CHILD_ARGS);
    w.command().env(JOB, job).stdin(Stdio::null()).stdout(Stdio::piped());
    w
}

/// The job this process was started for, if it is a child.
pub fn job() -> Option<String> {
    std::env::var(JOB).ok()
}

/// Waits for `child` at most `limit`; kills it and panics if it runs over. Returns its stdout.
pub fn finish(mut child: Child, limit: Duration) -> String {
    let start = Instant::now();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let s = reader.join().unwrap();
            assert!(status.success(), "child failed: {status}; output:\n{s}");
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish within {limit:?} (hung queue?)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lines the child printed that start with `tag `, without the tag.
pub fn tagged<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines().filter_map(|l| l.strip_prefix(tag).and_then(|r| r.strip_prefix(' '))).collect()
}

/// A segment name unique to this process and `what`.
pub fn unique(what: &str) -> String {
    format!("/shmq-test-{}-{}", std::process::id(), what)
}

/// Waits for `child`, which is expected to die by a signal, at most `limit`.
pub fn finish_killed(mut child: Child, limit: Duration) {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.signal().is_some(), "child should have been killed, got {status}");
            return;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not die within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SIGKILLs the calling process: a crash at exactly this point.
pub fn die_now() -> ! {
    // SAFETY: kill(2) on our own pid with SIGKILL; it does not return.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL was not delivered")
}

/// Waits for `child` at most `limit`, whether it exits or is killed; kills it and panics if it
/// runs over. Returns whether a signal ended it, and its stdout.
pub fn finish_or_killed(mut child: Child, limit: Duration) -> (bool, String) {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let s = reader.join().unwrap();
            if let Some(sig) = status.signal() {
                assert_eq!(sig, libc::SIGKILL, "child died of signal {sig}; output:\n{s}");
                return (true, s);
            }
            assert!(status.success(), "child failed: {status}; output:\n{s}");
            return (false, s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The crash points a child passed, in order, from its output under `SHMQ_DIE_AT=trace` (feature
/// `fuzzing`), each as `(name, n)`: the `n`th time it passed `name`, which `SHMQ_DIE_AT=name:n`
/// kills it at.
pub fn crash_points(trace: &str) -> Vec<(String, u64)> {
    let mut seen = std::collections::HashMap::<String, u64>::new();
    trace
        .lines()
        .filter_map(|l| l.strip_prefix("shmq-step "))
        .map(|name| {
            let n = seen.entry(name.to_string()).or_default();
            *n += 1;
            (name.to_string(), *n)
        })
        .collect()
}
