//! Kill at every step, as frc971's queue tests do: a child process runs an operation (attach,
//! close, drop, put, get, `task_done`, a refused pipe open, a handover, a recovery) and SIGKILLs
//! itself just before one of its shared writes; the parent then recovers and checks that the
//! counts are exact. Once for every crash point the operation passes, in order.
//!
//! The crash points are the library's own (`SHMQ_DIE_AT`, feature `fuzzing`): the child first
//! runs the operation under `SHMQ_DIE_AT=trace`, which prints every point it passes, and the
//! parent then runs it again under `SHMQ_DIE_AT=name:n` for each `(name, n)` of the trace.
//!
//! What "exact" means, after the parent's `recover()`:
//! - role counts: the parent's own roles, counted once; no other participant left in the table
//!   (and never a count wrapped below zero, nor a false end of stream or broken pipe);
//! - a joinable queue: `unfinished` equals the tasks left in the ring, which the parent then takes
//!   and marks done, after which `join` returns at once and one more `task_done` is refused.
#![cfg(feature = "fuzzing")]

use shmq::{Error, JoinError, PipeBuilder, Queue, RecvError, Role};
use std::time::Duration;

mod common;
use common::{child, crash_points, die_now, finish_or_killed, job, unique};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let w: Vec<&str> = job.split(':').collect();
    let name = w.get(1).copied().unwrap_or("");
    match w[0] {
        // Attach, put, close, attach again, drop both: every role change there is.
        "roles" => {
            let q = Queue::builder().role(Role::Producer).open(name).unwrap();
            q.put(b"x").unwrap();
            q.close();
            let q2 = Queue::open(name).unwrap();
            drop(q2);
            drop(q);
        }
        // Open end 1 of a pipe whose end 1 is attached: refused.
        "pipe-refused" => {
            let r = PipeBuilder::new().open(name);
            assert!(matches!(r, Err(Error::AlreadyAttached)), "{r:?}");
        }
        // Every way of taking and finishing tasks (the parent put t0..t3).
        "tasks" => {
            let q = Queue::open(name).unwrap();
            let m = q.get().unwrap();
            q.task_done().unwrap();
            drop(m);
            let m = q.get_in_place().unwrap();
            q.task_done().unwrap(); // while still holding it in place
            drop(m);
            q.put(b"c1").unwrap();
            let m = q.get().unwrap();
            q.task_done().unwrap();
            drop(m);
            let m = q.get_in_place().unwrap();
            drop(m);
            q.task_done().unwrap(); // after releasing it
            q.put_large(&[7u8; 40]).unwrap();
            q.put(b"c2").unwrap();
            let m = q.get().unwrap();
            q.task_done().unwrap();
            drop(m);
            drop(q);
        }
        // Takes the queue handed over under "Q" (as a consumer) as a producer instead, puts, drops.
        "adopt" => {
            let q = Queue::builder().role(Role::Producer).from_env("Q").unwrap();
            q.put(b"from the child").unwrap();
            drop(q);
        }
        // Dies (no crash point: at once) holding what recovery has to repair: `extra` more handles,
        // a task held in place, a write claim.
        "hold-and-die" => {
            let extra: usize = w[2].parse().unwrap();
            let _handles: Vec<Queue> = (0..extra).map(|_| Queue::open(name).unwrap()).collect();
            let q = Queue::open(name).unwrap();
            let _held = q.get_in_place().unwrap();
            let _claim = q.reserve().unwrap();
            die_now();
        }
        // A survivor that reaps: opening the queue (which reaps when the table is full), then
        // `recover()`.
        "reap" => {
            let q = Queue::open(name).unwrap();
            q.recover();
            drop(q);
        }
        other => panic!("unknown job {other}"),
    }
    println!("child: done");
}

/// Runs `job` under `SHMQ_DIE_AT` = `die_at`; `share` may hand it something. Returns whether it
/// was killed, and its output.
fn run(
    job: &str,
    die_at: &str,
    share: impl FnOnce(&mut std::process::Command) -> Option<shmq::Handover>,
) -> (bool, String) {
    let mut cmd = child("child_entry", job);
    cmd.env("SHMQ_DIE_AT", die_at);
    let handover = share(&mut cmd);
    let c = cmd.spawn().unwrap();
    drop(handover);
    finish_or_killed(c, LIMIT)
}

/// The crash points `job` passes when nothing kills it.
fn trace(job: &str, share: impl FnOnce(&mut std::process::Command) -> Option<shmq::Handover>) -> Vec<(String, u64)> {
    let (killed, out) = run(job, "trace", share);
    assert!(!killed);
    assert!(out.contains("child: done"), "{out}");
    let points = crash_points(&out);
    assert!(!points.is_empty(), "no crash points: is the library built with feature fuzzing?");
    points
}

/// The parent's checks after a kill (see the module docs); `q` holds both roles.
fn counts_are_exact(q: &Queue, at: &str) {
    q.recover();
    assert_eq!((q.producer_count(), q.consumer_count()), (1, 1), "killed at {at}: role counts drifted");
    let others: Vec<_> = q.participants();
    assert_eq!(others.len(), 1, "killed at {at}: entries left behind: {others:?}");
}

/// Takes every task left and marks it done: `unfinished` must have counted exactly those.
fn tasks_are_exact(q: &Queue, at: &str) {
    let unfinished = q.unfinished_tasks();
    let mut left = 0;
    loop {
        match q.try_get() {
            Ok(_) => {
                left += 1;
                q.task_done().unwrap_or_else(|e| panic!("killed at {at}: task_done refused: {e}"));
            }
            Err(RecvError::Empty) => break,
            Err(e) => panic!("killed at {at}: {e}"),
        }
    }
    assert_eq!(unfinished, left, "killed at {at}: unfinished counted {unfinished} tasks, the ring held {left}");
    assert_eq!(q.join_timeout(Duration::ZERO), Ok(()), "killed at {at}: join would wait");
    assert_eq!(q.task_done(), Err(JoinError::TooManyTaskDone), "killed at {at}");
}

/// Runs `job` once per crash point, with a fresh queue from `make` each time, and `check` after.
fn every_step(
    what: &str,
    job: impl Fn(&str) -> String,
    make: impl Fn(&str) -> Queue,
    share: impl Fn(&Queue, &mut std::process::Command) -> Option<shmq::Handover>,
    check: impl Fn(&Queue, &str),
) -> usize {
    let name = unique(what);
    let points = {
        let q = make(&name);
        let p = trace(&job(&name), |cmd| share(&q, cmd));
        check(&q, "nowhere (the run to the end)");
        p
    };
    let mut killed = 0;
    for (point, n) in &points {
        let q = make(&name);
        let at = format!("{point}:{n}");
        let (was_killed, out) = run(&job(&name), &at, |cmd| share(&q, cmd));
        assert!(was_killed, "not killed at {at}; output:\n{out}");
        killed += 1;
        check(&q, &at);
    }
    eprintln!("{what}: killed at each of {killed} crash points");
    killed
}

fn queue_both(name: &str) -> Queue {
    Queue::builder().capacity(8).slot_size(16).unlink_on_drop(true).create(name).unwrap()
}

fn joinable_both(name: &str) -> Queue {
    Queue::builder().capacity(8).slot_size(16).joinable(true).unlink_on_drop(true).create(name).unwrap()
}

#[test]
fn regression_role_counts_are_exact_after_a_kill_at_every_step_of_attach_close_and_drop() {
    every_step(
        "roles",
        |n| format!("roles:{n}"),
        queue_both,
        |_, _| None,
        |q, at| {
            counts_are_exact(q, at);
            // Nothing ended: the parent is a producer and a consumer throughout.
            q.put(b"after").unwrap();
            while q.try_get().is_ok() {}
        },
    );
}

#[test]
fn regression_a_refused_pipe_open_killed_at_every_step_leaves_the_attached_end_alone() {
    let name = unique("pipe-refused");
    let job = format!("pipe-refused:{name}");
    let make = || {
        let end0 = PipeBuilder::new().capacity(4).slot_size(16).unlink_on_drop(true).create(&name).unwrap();
        let end1 = PipeBuilder::new().open(&name).unwrap();
        (end0, end1)
    };
    let points = {
        let _ends = make();
        trace(&job, |_| None)
    };
    for (point, n) in points {
        let (mut end0, mut end1) = make();
        let at = format!("{point}:{n}");
        let (killed, _) = run(&job, &at, |_| None);
        assert!(killed, "not killed at {at}");
        end0.recover();
        // Both ends still attached: a round trip each way, and neither reports a closed peer.
        end0.send(b"ping").unwrap();
        assert_eq!(&*end1.recv_timeout(Duration::from_secs(5)).unwrap(), b"ping", "killed at {at}");
        end1.send(b"pong").unwrap();
        assert_eq!(&*end0.recv_timeout(Duration::from_secs(5)).unwrap(), b"pong", "killed at {at}");
        end1.recover();
        assert_eq!(end0.try_recv().unwrap_err(), RecvError::Empty, "killed at {at}: a false end of file");
        assert_eq!(end1.try_recv().unwrap_err(), RecvError::Empty, "killed at {at}: a false end of file");
    }
}

#[test]
fn regression_tasks_are_exact_after_a_kill_at_every_step_of_put_get_and_task_done() {
    let make = |name: &str| {
        let q = joinable_both(name);
        for t in 0..4u8 {
            q.put(&[t]).unwrap();
        }
        q
    };
    every_step(
        "tasks",
        |n| format!("tasks:{n}"),
        make,
        |_, _| None,
        |q, at| {
            counts_are_exact(q, at);
            tasks_are_exact(q, at);
        },
    );
}

#[test]
fn a_handover_killed_at_every_step_of_the_adoption_is_exact() {
    every_step(
        "adopt",
        |_| "adopt".into(),
        queue_both,
        |q, cmd| Some(q.share_with(cmd, "Q", Role::Consumer)),
        |q, at| {
            counts_are_exact(q, at);
            while q.try_get().is_ok() {}
            q.put(b"after").unwrap();
            assert_eq!(&*q.try_get().unwrap(), b"after");
        },
    );
}

/// A reaper killed at every step of recovering a dead consumer (a task held in place, a write
/// claim, roles): the next survivor takes it over, and the counts end exact. `extra` more dead
/// handles; with 254 the table is full, so the reaper is a registration without an entry.
fn reaper_killed_at_every_step(what: &str, extra: usize, sample: bool) {
    let name = unique(what);
    let make = |name: &str| {
        let q = joinable_both(name);
        for t in 0..3u8 {
            q.put(&[t]).unwrap();
        }
        let (killed, _) = run(&format!("hold-and-die:{name}:{extra}"), "", |_| None);
        assert!(killed);
        q
    };
    let job = format!("reap:{name}");
    let check = |q: &Queue, at: &str| {
        counts_are_exact(q, at);
        // The held task was marked done once (`tasks_are_exact`); the statistic is added after,
        // so a reaper killed in between leaves it uncounted there.
        assert!(q.recovery_stats().lost_tasks <= 1, "killed at {at}: the held task counted twice");
        tasks_are_exact(q, at);
    };
    let mut points = {
        let q = make(&name);
        let p = trace(&job, |_| None);
        check(&q, "nowhere");
        p
    };
    if sample {
        // Hundreds of entries make thousands of points: the first two and the last of each name.
        let last: std::collections::HashMap<String, u64> = points.iter().cloned().collect();
        points.retain(|(p, n)| *n <= 2 || last[p] == *n);
    }
    for (point, n) in &points {
        let q = make(&name);
        let at = format!("{point}:{n}");
        let (killed, out) = run(&job, &at, |_| None);
        assert!(killed, "not killed at {at}; output:\n{out}");
        check(&q, &at);
    }
    eprintln!("{what}: killed at each of {} crash points", points.len());
}

#[test]
fn a_reaper_killed_at_every_step_is_taken_over() {
    reaper_killed_at_every_step("reaper", 2, false);
}

/// Regression (a recovery begun by a registration that found the table full was never taken over
/// if that process died midway).
#[test]
fn regression_a_reaper_without_an_entry_killed_at_every_step_is_taken_over() {
    reaper_killed_at_every_step("reaper-full", 254, true);
}
