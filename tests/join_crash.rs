//! `join` through the crash of a consumer: a task taken by a process that dies before marking it
//! done is marked done by recovery (and counted as lost), exactly once, however it was held.

use shmq::{JoinError, Queue};
use std::time::{Duration, Instant};

mod common;
use common::{child, die_now, finish_killed, job, unique};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let (what, name) = job.split_once(':').unwrap();
    let q = Queue::open(name).unwrap();
    match what {
        // Marks the task done while still holding the message in place, then dies holding it.
        "done-while-holding-then-die" => {
            let _m = q.get_in_place().unwrap();
            q.task_done().unwrap();
            die_now();
        }
        // Takes a task (an owned copy: its slot is already free) and dies before task_done.
        "take-then-die" => {
            let _m = q.get().unwrap();
            die_now();
        }
        // Holds a task in place and dies before task_done.
        "hold-then-die" => {
            let _m = q.get_in_place().unwrap();
            die_now();
        }
        other => panic!("unknown job {other}"),
    }
}

fn joinable(what: &str) -> (String, Queue) {
    let name = unique(what);
    let q = Queue::builder().capacity(4).slot_size(8).joinable(true).unlink_on_drop(true).create(&name).unwrap();
    (name, q)
}

fn run_to_death(job: &str, name: &str) {
    finish_killed(child("child_entry", &format!("{job}:{name}")).spawn().unwrap(), LIMIT);
}

/// Regression: `task_done` while still holding the message, then a kill, counted the task twice:
/// recovery took the held message off `unfinished` again, so `join` returned with a task left,
/// and that task's own `task_done` then failed with `TooManyTaskDone`.
#[test]
fn regression_task_done_while_holding_then_killed_counts_the_task_once() {
    let (name, q) = joinable("done-holding");
    q.put(b"one").unwrap();
    q.put(b"two").unwrap();
    run_to_death("done-while-holding-then-die", &name);
    q.recover();
    assert_eq!(q.unfinished_tasks(), 1, "the dead consumer's task was marked done twice");
    assert_eq!(q.join_timeout(Duration::from_millis(20)), Err(JoinError::Timeout), "join returned early");
    assert_eq!(&*q.get().unwrap(), b"two");
    assert_eq!(q.task_done(), Ok(()));
    assert_eq!(q.join_timeout(Duration::ZERO), Ok(()));
    assert_eq!(q.recovery_stats().lost_tasks, 0, "the task it held was marked done by itself");
}

/// Regression: a worker killed after taking a job and before `task_done` left `join` waiting
/// forever.
#[test]
fn regression_a_worker_killed_after_taking_a_job_does_not_hang_join() {
    let (name, q) = joinable("take-die");
    q.put(b"job").unwrap();
    run_to_death("take-then-die", &name);
    let t = Instant::now();
    assert_eq!(q.join_timeout(LIMIT), Ok(()), "join waited for a dead worker's task");
    eprintln!("join returned {:?} after the worker's death", t.elapsed());
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(q.recovery_stats().lost_tasks, 1, "counted as a lost task");
    assert_eq!(q.task_done(), Err(JoinError::TooManyTaskDone));
}

/// A consumer killed holding a task in place: the same, and the slot is freed.
#[test]
fn a_consumer_killed_holding_a_task_in_place_does_not_hang_join() {
    let (name, q) = joinable("hold-die");
    for i in 0..4u8 {
        q.put(&[i]).unwrap();
    }
    run_to_death("hold-then-die", &name);
    for _ in 0..3 {
        drop(q.get_timeout(LIMIT).unwrap());
        q.task_done().unwrap();
    }
    assert_eq!(q.join_timeout(LIMIT), Ok(()));
    let stats = q.recovery_stats();
    assert_eq!((stats.lost_reads, stats.lost_tasks), (1, 1));
    // Its slot is free: the queue takes four again.
    for i in 0..4u8 {
        q.try_put(&[i]).unwrap();
    }
}
