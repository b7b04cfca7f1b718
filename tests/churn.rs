//! Churn: processes that open and drop producer and consumer handles in a loop (and put, take
//! and mark tasks done, and reap the dead, in between) are SIGKILLed at random moments, at whatever instruction they
//! are on. Every batch of kills ends with every child killed and the survivor's `recover()`, and
//! then the counts must be exact: the survivor's own roles, counted once; no entry left in the
//! participant table; `unfinished` equal to the tasks left in the ring.
//!
//! `SHMQ_CHURN_KILLS=N` sets the number of kills (default 150, the CI size); a soak runs 1,000 or
//! more (see `docs/DESIGN.md`, "Counts that survive a kill").

use shmq::{JoinError, Queue, RecvError, Role};
use std::process::Child;
use std::time::{Duration, Instant};

mod common;
use common::{child, job, unique};

/// Children churning at once.
const CHILDREN: usize = 4;
/// Kills per batch.
const BATCH: u64 = 25;

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let (what, name) = job.split_once(':').unwrap();
    assert_eq!(what, "churn");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((std::process::id() as u64) << 16));
    // Until killed: open in a random role, do a few things, maybe close, drop; again.
    let mut first = true;
    loop {
        let role = [Role::Producer, Role::Consumer, Role::Both][rng.next(3) as usize];
        let q = match Queue::builder().role(role).spin(16).open(name) {
            Ok(q) => q,
            Err(e) => panic!("open: {e}"),
        };
        if std::mem::take(&mut first) {
            println!("churning");
        }
        for _ in 0..rng.next(4) {
            match rng.next(5) {
                0 | 1 => {
                    let _ = q.put_timeout(b"task", Duration::from_millis(1));
                }
                2 => {
                    if let Ok(m) = q.try_get() {
                        drop(m);
                        q.task_done().unwrap();
                    }
                }
                3 => {
                    if let Ok(m) = q.try_get_in_place() {
                        q.task_done().unwrap();
                        drop(m);
                    }
                }
                // Reap whoever died: a kill may land in the middle of a recovery too.
                _ => {
                    q.recover();
                }
            }
        }
        if rng.next(2) == 0 {
            q.close();
        }
        drop(q);
    }
}

/// Starts a churning child and waits (bounded) until it has opened the queue once, so that every
/// kill lands in the middle of the churn.
fn spawn(name: &str) -> Child {
    use std::io::BufRead;
    let mut c = child("child_entry", &format!("churn:{name}")).spawn().unwrap();
    let out = c.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line == "churning" {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("a churning child never started");
    c
}

/// The survivor's checks at the end of a batch (every child dead).
fn exact(q: &Queue, batch: u64) {
    q.recover();
    assert_eq!(
        (q.producer_count(), q.consumer_count()),
        (1, 1),
        "batch {batch}: role counts drifted (only the survivor is attached)"
    );
    let entries = q.participants();
    assert_eq!(entries.len(), 1, "batch {batch}: entries left behind: {entries:?}");
    let unfinished = q.unfinished_tasks();
    let mut left = 0;
    loop {
        match q.try_get() {
            Ok(_) => {
                left += 1;
                assert_eq!(q.task_done(), Ok(()), "batch {batch}: task_done refused");
            }
            Err(RecvError::Empty) => break,
            Err(e) => panic!("batch {batch}: {e}"),
        }
    }
    assert_eq!(unfinished, left, "batch {batch}: unfinished counted {unfinished} tasks, the ring held {left}");
    assert_eq!(q.join_timeout(Duration::ZERO), Ok(()), "batch {batch}: join would wait");
    assert_eq!(q.task_done(), Err(JoinError::TooManyTaskDone), "batch {batch}");
}

#[test]
fn regression_random_kills_of_churning_handles_leave_exact_counts() {
    let kills_wanted: u64 = std::env::var("SHMQ_CHURN_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(150);
    let name = unique("churn");
    // Both roles: the survivor keeps the stream from ending, so every open succeeds.
    let q = Queue::builder().capacity(16).slot_size(16).joinable(true).unlink_on_drop(true).create(&name).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let mut children: Vec<Child> = (0..CHILDREN).map(|_| spawn(&name)).collect();
    let start = Instant::now();
    let (mut kills, mut batches) = (0u64, 0u64);
    while kills < kills_wanted {
        std::thread::sleep(Duration::from_micros(1_000 + rng.next(9_000)));
        let i = rng.next(CHILDREN as u64) as usize;
        let _ = children[i].kill(); // SIGKILL, at whatever instruction it is on
        let _ = children[i].wait();
        kills += 1;
        if kills % BATCH == 0 || kills == kills_wanted {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            kills += CHILDREN as u64 - 1;
            batches += 1;
            exact(&q, batches);
            if kills >= kills_wanted {
                break;
            }
            for c in &mut children {
                *c = spawn(&name);
            }
        } else {
            children[i] = spawn(&name);
        }
        assert!(start.elapsed() < Duration::from_secs(600), "churn ran over ten minutes");
    }
    let stats = q.recovery_stats();
    eprintln!(
        "churn: {kills} kills in {batches} batches, {:.1?}; reaped {}, lost reads {}, lost tasks {}, dropped writes {}",
        start.elapsed(),
        stats.reaped,
        stats.lost_reads,
        stats.lost_tasks,
        stats.dropped_writes
    );
}
