//! A participant table full of dead entries: an open reaps them all, with one scan of the ring.

use shmq::Queue;
use std::time::{Duration, Instant};

mod common;
use common::{child, die_now, finish_killed, job, unique};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let (n, name) = job.split_once(':').unwrap();
    // Fills the table with handles, then dies holding all of them.
    let _handles: Vec<Queue> = (0..n.parse().unwrap()).map(|_| Queue::open(name).unwrap()).collect();
    die_now();
}

/// Regression: an open that found the table full reaped every dead entry with a scan of the
/// whole ring each (0.64 s for 255 entries on a ring of 2^20 slots). Now one scan repairs every
/// dead owner: the open takes about one scan, whatever the number of dead.
#[test]
fn regression_an_open_on_a_full_table_reaps_every_dead_entry_in_one_scan() {
    let name = unique("full-table");
    let q = Queue::builder().capacity(1 << 20).slot_size(8).unlink_on_drop(true).create(&name).unwrap();
    finish_killed(child("child_entry", &format!("255:{name}")).spawn().unwrap(), LIMIT);
    let t = Instant::now();
    let other = Queue::open(&name).expect("the table had room once the dead were reaped");
    let took = t.elapsed();
    eprintln!("an open on a table of 255 dead entries took {took:?} (ring of 2^20 slots)");
    assert_eq!(q.recovery_stats().reaped, 255);
    assert_eq!(q.participants().len(), 2);
    // One scan of 2^20 slots takes milliseconds (tens in a debug build on a loaded machine); one
    // per dead entry took 255 times that.
    assert!(took < Duration::from_secs(2), "reaping 255 dead entries took {took:?}: a scan each?");
    drop(other);
}
