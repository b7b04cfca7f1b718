//! `shmq::Worker`: workers that die with their parent, and the lifecycle calls.

use shmq::{Queue, RecvError, Role, Worker, WorkerProcess};
use std::time::{Duration, Instant};

mod common;
use common::{child, finish, job, tagged};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    match job.as_str() {
        // The README's worker, as written.
        "readme-worker" => {
            let jobs = Queue::from_env("JOBS").unwrap(); // in the role the parent chose
            for job in &jobs {
                // until end of stream
                println!("{}", String::from_utf8_lossy(&job));
                jobs.task_done().unwrap();
            }
        }
        // A worker that never ends on its own: it waits on a queue nobody ever closes.
        "stuck-worker" => {
            let q = Queue::from_env("Q").unwrap();
            loop {
                let _ = q.get_timeout(Duration::from_secs(60));
            }
        }
        // The README's parent, as written (printing the workers' pids and exit statuses).
        "readme-parent" => {
            let jobs = Queue::builder().capacity(3).slot_size(64).joinable(true).create_anonymous().unwrap();
            let mut workers = Vec::new();
            for _ in 0..10 {
                workers.push(worker("readme-worker").queue("JOBS", &jobs, Role::Consumer).spawn().unwrap());
            }
            for w in &workers {
                println!("pid {}", w.pid());
            }
            for n in 0..100 {
                jobs.put(format!("job {n}").as_bytes()).unwrap();
            }
            jobs.join().unwrap(); // until every job is marked done
            jobs.close(); // end of stream: each worker's loop ends
            for w in workers {
                println!("exit {}", w.join().unwrap().code().unwrap_or(-1)); // each worker exits by itself
            }
        }
        // A parent that returns with its workers still blocked in `get` (it holds the producer
        // role): dropping their `WorkerProcess`es kills them.
        "parent-returns-early" => {
            let jobs = Queue::builder().capacity(3).slot_size(64).joinable(true).create_anonymous().unwrap();
            let mut workers = Vec::new();
            for _ in 0..10 {
                workers.push(worker("readme-worker").queue("JOBS", &jobs, Role::Consumer).spawn().unwrap());
            }
            for w in &workers {
                println!("pid {}", w.pid());
            }
            for n in 0..50u32 {
                jobs.put(format!("job {n}").as_bytes()).unwrap();
            }
            jobs.join().unwrap();
        }
        // A parent whose workers are stuck, and which exits without dropping them.
        "parent-exits-abruptly" => {
            let q = Queue::anonymous(2, 8).unwrap();
            let w = worker("stuck-worker").queue("Q", &q, Role::Both).spawn().unwrap();
            println!("pid {}", w.pid());
            std::process::exit(0); // no destructors run
        }
        other => panic!("unknown job {other}"),
    }
}

/// A worker re-running this test binary's child entry as `job`.
fn worker(job: &str) -> Worker {
    let mut w = common::worker(job);
    w.command().stdout(std::process::Stdio::null());
    w
}

/// Whether process `pid` has exited (gone, or a zombie waiting for a reaper).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_exited(pids: &[u32], limit: Duration) {
    let t = Instant::now();
    while !pids.iter().all(|&p| exited(p)) {
        assert!(t.elapsed() < limit, "workers still running {limit:?} after their parent: {pids:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pids_of(out: &str) -> Vec<u32> {
    tagged(out, "pid").into_iter().map(|p| p.parse().unwrap()).collect()
}

#[test]
fn the_readme_worker_example_runs_as_written() {
    let out = finish(child("child_entry", "readme-parent").spawn().unwrap(), LIMIT);
    let pids = pids_of(&out);
    assert_eq!(pids.len(), 10);
    assert_eq!(tagged(&out, "exit"), vec!["0"; 10], "every worker ends its loop at end of stream and exits");
    wait_exited(&pids, LIMIT);
}

#[test]
fn workers_of_a_parent_that_returns_early_are_killed() {
    let out = finish(child("child_entry", "parent-returns-early").spawn().unwrap(), LIMIT);
    let pids = pids_of(&out);
    assert_eq!(pids.len(), 10);
    wait_exited(&pids, LIMIT);
}

#[test]
fn workers_die_when_their_parent_exits_without_cleaning_up() {
    let out = finish(child("child_entry", "parent-exits-abruptly").spawn().unwrap(), LIMIT);
    let pids = pids_of(&out);
    assert_eq!(pids.len(), 1);
    wait_exited(&pids, LIMIT);
}

#[test]
fn is_alive_terminate_join_and_kill_on_drop() {
    let q = Queue::builder().capacity(2).slot_size(8).role(Role::Consumer).create_anonymous().unwrap();
    let mut w: WorkerProcess = worker("stuck-worker").queue("Q", &q, Role::Consumer).spawn().unwrap();
    assert!(w.is_alive());
    assert_eq!(w.join_timeout(Duration::from_millis(50)).unwrap(), None);
    w.terminate().unwrap();
    let status = w.join_timeout(LIMIT).unwrap().expect("terminated");
    assert!(!status.success());
    assert!(!w.is_alive());
    // Regression: a timeout too long to add to the clock panicked; it waits as long as the
    // worker runs (here: not at all).
    assert_eq!(w.join_timeout(Duration::MAX).unwrap(), Some(status));
    w.terminate().unwrap(); // a no-op once it has exited

    let w = worker("stuck-worker").queue("Q", &q, Role::Consumer).spawn().unwrap();
    let pid = w.pid();
    drop(w);
    assert!(exited(pid), "a dropped WorkerProcess kills and reaps its worker");
    assert_eq!(q.try_get().unwrap_err(), RecvError::Empty);
}

#[test]
fn outlive_parent_opts_out_of_kill_on_drop() {
    let q = Queue::anonymous(2, 8).unwrap();
    let w = worker("stuck-worker").queue("Q", &q, Role::Both).outlive_parent(true).spawn().unwrap();
    let pid = w.pid();
    let mut child = w.into_child();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!exited(pid), "still running");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_worker_opens_its_queue_in_the_role_the_parent_chose() {
    let q = Queue::builder().capacity(4).slot_size(16).role(Role::Consumer).create_anonymous().unwrap();
    let mut w = worker("stuck-worker").queue("Q", &q, Role::Consumer).spawn().unwrap();
    let t = Instant::now();
    while q.consumer_count() < 2 {
        assert!(t.elapsed() < LIMIT, "the worker did not attach");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(q.producer_count(), 0, "the worker took the consumer role only");
    w.kill().unwrap();
}
