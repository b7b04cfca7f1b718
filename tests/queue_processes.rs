//! The queue between real processes. Each test re-runs this binary as its children (see
//! `common`), bounds every child in time, and removes its segments.

use shmq::{Error, Queue, RecvError, Role, SendError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

mod common;
use common::{child, finish, job, tagged, unique};

const LIMIT: Duration = Duration::from_secs(60);
/// Items each producer of the ported seed demo puts.
const SEED_ITEMS: u64 = 300;

/// The child side of every test here. Does nothing unless started as a child.
#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let mut words = job.split(':');
    match words.next().unwrap() {
        // The README's Quick start, process A: create, put, exit.
        "quick-start-a" => {
            let q = Queue::create(words.next().unwrap(), 1024, 256).unwrap();
            q.put(b"hello").unwrap();
        }
        // Process B: open and get, after A has exited.
        "quick-start-b" => {
            let q = Queue::open(words.next().unwrap()).unwrap();
            let msg = q.get().unwrap();
            println!("got {}", String::from_utf8_lossy(&msg));
        }
        "open-or-create" => {
            let q = Queue::builder().capacity(8).slot_size(16).open_or_create(words.next().unwrap()).unwrap();
            q.put(b"hi").unwrap();
        }
        // The seed demo's worker functions, ported literally from Python: a producer puts its
        // items; a consumer prints each item as it gets it, until end of stream.
        "seed-producer" => {
            let id: u64 = words.next().unwrap().parse().unwrap();
            let q = Queue::from_env("Q").unwrap();
            for i in 0..SEED_ITEMS {
                q.put(format!("item {id}-{i}").as_bytes()).unwrap();
            }
        }
        "seed-consumer" => {
            let q = Queue::from_env("Q").unwrap();
            for item in &q {
                println!("got {}", String::from_utf8_lossy(&item));
            }
        }
        // A consumer that prints 2 KiB per item: its stdout pipe (64 KiB) fills long before the
        // end, and it blocks in `println!` until the parent reads.
        "verbose-consumer" => {
            let q = Queue::from_env("Q").unwrap();
            let padding = ".".repeat(2048);
            for item in &q {
                println!("got {}", String::from_utf8_lossy(&item));
                println!("{padding}");
            }
        }
        "produce" => {
            let (id, n): (u64, u64) = (words.next().unwrap().parse().unwrap(), words.next().unwrap().parse().unwrap());
            let q = Queue::builder().role(Role::Producer).from_env("Q").unwrap();
            for i in 0..n {
                q.put_value(&((id << 32) | i)).unwrap();
            }
        }
        "consume" => {
            let q = Queue::builder().role(Role::Consumer).from_env("Q").unwrap();
            let mut got = Vec::new();
            loop {
                match q.get_value::<u64>() {
                    Ok(v) => got.push(v),
                    Err(RecvError::Closed) => break,
                    Err(e) => panic!("consumer: {e}"),
                }
            }
            // One line per message: the parent checks each is seen exactly once.
            let mut out = String::with_capacity(got.len() * 12);
            for v in got {
                out.push_str(&format!("got {v}\n"));
            }
            print!("{out}");
        }
        "get-one" => {
            let q = Queue::open(words.next().unwrap()).unwrap();
            let m = q.get_timeout(Duration::from_secs(20)).unwrap();
            println!("msg {}", String::from_utf8_lossy(&m));
        }
        "hold-consumer" => {
            let q = Queue::builder().role(Role::Consumer).open(words.next().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(words.next().unwrap().parse().unwrap()));
            drop(q);
        }
        "drain-then-eof" => {
            let q = Queue::builder().role(Role::Consumer).from_env("Q").unwrap();
            let mut n = 0;
            loop {
                match q.get_timeout(Duration::from_secs(20)) {
                    Ok(_) => n += 1,
                    Err(RecvError::Closed) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            println!("drained {n}");
        }
        "put-large" => {
            let q = Queue::builder().role(Role::Producer).from_env("Q").unwrap();
            for len in 1..=200usize {
                let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
                q.put_large(&msg).unwrap();
            }
        }
        "joinable-worker" => {
            let q = Queue::builder().role(Role::Consumer).from_env("Q").unwrap();
            loop {
                match q.get() {
                    Ok(m) => {
                        drop(m);
                        q.task_done().unwrap();
                    }
                    Err(RecvError::Closed) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        other => panic!("unknown job {other}"),
    }
}

/// The seed's demo: 10 producer processes, 10 consumer processes, capacity 3; every message
/// exactly once.
#[test]
fn ten_producers_ten_consumers_capacity_three_exactly_once() {
    const P: u64 = 10;
    const C: usize = 10;
    const N: u64 = 2_000;
    let q = Queue::builder().capacity(3).slot_size(8).spin(256).create_anonymous().unwrap();
    let spawn = |job: String| {
        let mut cmd = child("child_entry", &job);
        let handover = q.share_with(&mut cmd, "Q", Role::Both);
        let c = cmd.spawn().unwrap();
        drop(handover);
        c
    };
    let consumers: Vec<_> = (0..C).map(|_| spawn("consume".into())).collect();
    let producers: Vec<_> = (0..P).map(|id| spawn(format!("produce:{id}:{N}"))).collect();
    // Like `p.join()` then `q.close()` in Python: our producer role keeps the stream open until
    // every producer child has finished, so no consumer can see end of stream too early.
    for p in producers {
        finish(p, LIMIT);
    }
    q.close();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for c in consumers {
        for v in tagged(&finish(c, LIMIT), "got") {
            *seen.entry(v.parse().unwrap()).or_default() += 1;
        }
    }
    let expected: Vec<u64> = (0..P).flat_map(|id| (0..N).map(move |i| (id << 32) | i)).collect();
    let lost = expected.iter().filter(|v| !seen.contains_key(v)).count();
    let duplicated = seen.values().filter(|&&c| c > 1).count();
    let unexpected = seen.keys().filter(|v| (**v >> 32) >= P || (**v & 0xffff_ffff) >= N).count();
    assert_eq!((lost, duplicated, unexpected), (0, 0, 0), "lost, duplicated, unexpected");
    assert_eq!(seen.len() as u64, P * N);
}

#[test]
fn put_blocks_on_full_until_another_process_gets() {
    let name = unique("block");
    let q = Queue::builder().capacity(2).slot_size(32).unlink_on_drop(true).create(&name).unwrap();
    q.put(b"one").unwrap();
    q.put(b"two").unwrap();
    assert_eq!(q.try_put(b"three"), Err(SendError::Full));
    let c = child("child_entry", &format!("get-one:{name}")).spawn().unwrap();
    let t = Instant::now();
    q.put_timeout(b"three", Duration::from_secs(30)).unwrap(); // blocks until the child gets
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(tagged(&finish(c, LIMIT), "msg"), ["one"]);
    assert_eq!(&*q.get().unwrap(), b"two");
    assert_eq!(&*q.get().unwrap(), b"three");
}

#[test]
fn producer_sees_closed_when_the_consumer_process_exits() {
    let name = unique("epipe");
    let q = Queue::builder().capacity(2).slot_size(8).role(Role::Producer).unlink_on_drop(true).create(&name).unwrap();
    let c = child("child_entry", &format!("hold-consumer:{name}:100")).spawn().unwrap();
    let start = Instant::now();
    while q.consumer_count() == 0 {
        assert!(start.elapsed() < LIMIT);
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = loop {
        match q.put_timeout(b"x", Duration::from_secs(30)) {
            Ok(()) => continue, // fills the queue, then blocks until the consumer leaves
            Err(e) => break e,
        }
    };
    assert_eq!(r, SendError::Closed);
    finish(c, LIMIT);
}

#[test]
fn anonymous_queue_is_inherited_and_consumer_sees_end_of_stream() {
    let q = Queue::builder().capacity(4).slot_size(8).role(Role::Producer).create_anonymous().unwrap();
    let mut cmd = child("child_entry", "drain-then-eof");
    let handover = q.share_with(&mut cmd, "Q", Role::Both);
    let c = cmd.spawn().unwrap();
    drop(handover);
    for i in 0..100u64 {
        q.put_value(&i).unwrap();
    }
    drop(q);
    assert_eq!(tagged(&finish(c, LIMIT), "drained"), ["100"]);
}

#[test]
fn from_env_without_a_parent_is_a_typed_error() {
    assert!(matches!(Queue::from_env("NOT_SHARED"), Err(Error::NotInherited(_))));
}

/// Python's JoinableQueue across processes, with workers started by `shmq::Worker`.
#[test]
fn joinable_queue_join_returns_when_worker_processes_mark_every_task_done() {
    let q = shmq::Queue::builder().capacity(4).slot_size(8).joinable(true).create_anonymous().unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let w = common::worker("joinable-worker");
            w.queue("Q", &q, Role::Both).spawn().unwrap().into_child()
        })
        .collect();
    for i in 0..300u64 {
        q.put_value(&i).unwrap();
    }
    q.join_timeout(LIMIT).expect("every task done");
    assert_eq!(q.unfinished_tasks(), 0);
    q.close();
    for w in workers {
        finish(w, LIMIT);
    }
}

#[test]
fn large_messages_cross_processes_whole_and_in_order() {
    let q = Queue::builder().capacity(8).slot_size(32).role(Role::Consumer).create_anonymous().unwrap();
    let mut cmd = child("child_entry", "put-large");
    let handover = q.share_with(&mut cmd, "Q", Role::Both);
    let c = cmd.spawn().unwrap();
    drop(handover);
    for len in 1..=200usize {
        let m = q.get_timeout(LIMIT).unwrap();
        let want: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        assert_eq!(&*m, &want[..], "message of {len} bytes");
    }
    assert_eq!(q.get_timeout(LIMIT).unwrap_err(), RecvError::Closed);
    finish(c, LIMIT);
}

#[test]
fn quick_start_process_b_gets_what_process_a_put_after_a_exited() {
    let name = unique("quick-start");
    finish(child("child_entry", &format!("quick-start-a:{name}")).spawn().unwrap(), LIMIT);
    let out = finish(child("child_entry", &format!("quick-start-b:{name}")).spawn().unwrap(), LIMIT);
    assert_eq!(tagged(&out, "got"), ["hello"]);
    shmq::unlink(&name).unwrap();
    assert!(matches!(Queue::open(&name), Err(Error::NotFound(_))));
}

#[test]
fn processes_started_in_any_order_meet_with_open_or_create_and_open_timeout() {
    let name = unique("any-order");
    // The consumer starts first and waits for a creator that comes 100 ms later.
    let late_creator = std::thread::spawn({
        let name = name.clone();
        move || {
            std::thread::sleep(Duration::from_millis(100));
            finish(child("child_entry", &format!("open-or-create:{name}")).spawn().unwrap(), LIMIT);
        }
    });
    let q = Queue::builder().role(Role::Consumer).open_timeout(&name, LIMIT).unwrap();
    assert_eq!(&*q.get_timeout(LIMIT).unwrap(), b"hi");
    late_creator.join().unwrap();
    // A second open_or_create opens the existing queue (its sizes, not these). Its only
    // producer has gone while we watched: end of stream is final, so only a consumer may join.
    let again = Queue::builder().capacity(2).slot_size(4).role(Role::Consumer).open_or_create(&name).unwrap();
    assert_eq!((again.capacity(), again.slot_size()), (8, 16));
    let missing = unique("never-created");
    let r = Queue::builder().open_timeout(&missing, Duration::from_millis(50));
    match r {
        Err(e @ Error::NotFound(_)) => assert!(e.to_string().contains("open_or_create"), "{e}"),
        other => panic!("{other:?}"),
    }
    shmq::unlink(&name).unwrap();
}

/// The seed demo ported literally from Python: 10 producer and 10 consumer processes on a queue
/// of capacity 3; consumers print every item as they get it (holding it while they print), and
/// the parent reads their output only at the end. Every item is printed exactly once.
#[test]
fn seed_demo_ported_from_python_prints_every_item_exactly_once() {
    let q = Queue::builder().capacity(3).slot_size(32).create_anonymous().unwrap();
    let worker = |job: String, role: Role| {
        let w = common::worker(&job);
        w.queue("Q", &q, role).spawn().unwrap()
    };
    let consumers: Vec<_> = (0..10).map(|_| worker("seed-consumer".into(), Role::Consumer)).collect();
    let producers: Vec<_> = (0..10).map(|id| worker(format!("seed-producer:{id}"), Role::Producer)).collect();
    for p in producers {
        finish(p.into_child(), LIMIT);
    }
    q.close(); // Python: join the producers, then tell the consumers there is no more
    let mut seen: HashMap<String, u32> = HashMap::new();
    for c in consumers {
        for item in tagged(&finish(c.into_child(), LIMIT), "got") {
            *seen.entry(item.to_string()).or_default() += 1;
        }
    }
    assert_eq!(seen.len() as u64, 10 * SEED_ITEMS, "every item printed");
    assert!(seen.values().all(|&n| n == 1), "an item printed twice");
}

/// A parent that puts every item itself, on a queue of capacity 3, and reads its printing
/// consumers' output only after the last put and `close`. One consumer prints 2 KiB per item, so
/// it blocks in `println!` with its stdout pipe full long before the end; the other consumers
/// keep the queue moving, because a consumer that has got an item holds no slot of the queue
/// (a consumer that held its slot while blocked would stall every put after one lap).
#[test]
fn a_parent_that_reads_its_workers_output_after_putting_everything_does_not_deadlock() {
    const ITEMS: u64 = 3_000;
    let q = Queue::builder().capacity(3).slot_size(32).create_anonymous().unwrap();
    let consumers: Vec<_> = (0..10)
        .map(|i| {
            let job = if i == 0 { "verbose-consumer" } else { "seed-consumer" };
            let w = common::worker(job);
            w.queue("Q", &q, Role::Consumer).spawn().unwrap()
        })
        .collect();
    let t = Instant::now();
    for i in 0..ITEMS {
        assert!(q.put_timeout(format!("item {i}").as_bytes(), LIMIT).is_ok(), "put {i} waited {LIMIT:?}");
    }
    q.close();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for c in consumers {
        for item in tagged(&finish(c.into_child(), LIMIT), "got") {
            *seen.entry(item.to_string()).or_default() += 1;
        }
    }
    assert!(t.elapsed() < LIMIT * 2);
    assert_eq!(seen.len() as u64, ITEMS, "every item printed");
    assert!(seen.values().all(|&n| n == 1), "an item printed twice");
}
