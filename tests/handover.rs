//! A queue handed to a child counts the child's role from the moment it is shared, holds the
//! descriptor the child inherits until the spawn, and the child keeps the segment to itself.

use shmq::{Queue, RecvError, Role, Worker};
use std::time::Duration;

mod common;
use common::{child, finish, job, tagged};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    match job.as_str() {
        // A worker that produces ten messages and exits.
        "produce-ten" => {
            let q = Queue::from_env("Q").unwrap();
            for i in 0..10u64 {
                q.put_value(&i).unwrap();
            }
        }
        // Says which queue it was given: the first message in it.
        "which" => {
            let q = Queue::from_env("Q").unwrap();
            let m = q.try_get().unwrap();
            println!("which {}", String::from_utf8_lossy(&m));
        }
        // Says whether the inherited descriptor is close-on-exec once the queue is open.
        "cloexec" => {
            let _q = Queue::from_env("Q").unwrap();
            let fd: i32 = std::env::var("SHMQ_FD_Q").unwrap().parse().unwrap();
            // SAFETY: F_GETFD reads the descriptor flags of a number; no memory is involved.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            println!("cloexec {}", flags < 0 || flags & libc::FD_CLOEXEC != 0);
        }
        other => panic!("unknown job {other}"),
    }
}

fn worker(job: &str) -> Worker {
    common::worker(job)
}

/// Regression: `close()` right after spawning the workers ended the stream on a momentary zero
/// (the workers had not opened the queue yet), so the consumer saw end of stream at once and the
/// workers could not attach as producers.
#[test]
fn regression_close_right_after_spawning_producers_does_not_end_the_stream() {
    let q = Queue::builder().capacity(64).slot_size(8).create_anonymous().unwrap();
    let workers: Vec<_> =
        (0..3).map(|_| worker("produce-ten").queue("Q", &q, Role::Producer).spawn().unwrap().into_child()).collect();
    q.close(); // our producer role: the workers' keep the stream open
    let mut got = 0;
    loop {
        match q.get_timeout(LIMIT) {
            Ok(_) => got += 1,
            Err(RecvError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    for w in workers {
        finish(w, LIMIT);
    }
    assert_eq!(got, 30, "end of stream came before every worker had produced");
}

/// Regression: the child was told a descriptor number only, so dropping the queue before the
/// spawn and creating another let the child open that other queue under the same number.
#[test]
fn regression_a_queue_dropped_before_the_spawn_is_still_the_one_the_child_opens() {
    let first = Queue::builder().capacity(4).slot_size(8).create_anonymous().unwrap();
    first.put(b"first").unwrap();
    let w = worker("which").queue("Q", &first, Role::Both);
    drop(first);
    let second = Queue::builder().capacity(4).slot_size(8).create_anonymous().unwrap();
    second.put(b"second").unwrap();
    let out = finish(w.spawn().unwrap().into_child(), LIMIT);
    assert_eq!(tagged(&out, "which"), ["first"]);
    drop(second);
}

/// The same through `share_with`: the `Handover` holds the shared descriptor until the spawn.
#[test]
fn a_handover_holds_the_shared_queue_until_the_spawn() {
    let first = Queue::builder().capacity(4).slot_size(8).create_anonymous().unwrap();
    first.put(b"first").unwrap();
    let mut cmd = child("child_entry", "which");
    let handover = first.share_with(&mut cmd, "Q", Role::Both);
    drop(first);
    let second = Queue::builder().capacity(4).slot_size(8).create_anonymous().unwrap();
    second.put(b"second").unwrap();
    let c = cmd.spawn().unwrap();
    drop(handover);
    assert_eq!(tagged(&finish(c, LIMIT), "which"), ["first"]);
}

/// Regression: a queue's inherited descriptor stayed inheritable after `from_env`, so the
/// child's own children held the segment.
#[test]
fn regression_from_env_marks_the_inherited_descriptor_close_on_exec() {
    let q = Queue::builder().capacity(4).slot_size(8).create_anonymous().unwrap();
    let out = finish(worker("cloexec").queue("Q", &q, Role::Both).spawn().unwrap().into_child(), LIMIT);
    assert_eq!(tagged(&out, "cloexec"), ["true"]);
}

/// A worker that never starts is reaped like any dead peer: its role, counted from the share, is
/// uncounted. It never attached for real, so the side does not end: a producer that comes later
/// is still welcome (as before anyone had attached).
#[test]
fn a_worker_that_never_starts_is_uncounted_and_ends_nothing() {
    let q = Queue::builder().capacity(4).slot_size(8).role(Role::Consumer).create_anonymous().unwrap();
    let w = Worker::new("/nonexistent/shmq-worker").queue("Q", &q, Role::Producer);
    assert_eq!(q.producer_count(), 1, "counted from the share");
    assert!(w.spawn().is_err());
    assert_eq!(q.get_timeout(Duration::from_millis(50)).unwrap_err(), RecvError::Timeout);
    assert_eq!(q.producer_count(), 0, "uncounted once its handover was dropped");
    let w = worker("produce-ten").queue("Q", &q, Role::Producer).spawn().unwrap().into_child();
    for i in 0..10u64 {
        assert_eq!(q.get_value::<u64>().unwrap(), i);
    }
    assert_eq!(q.get_timeout(LIMIT).unwrap_err(), RecvError::Closed, "its producer has gone");
    finish(w, LIMIT);
}
