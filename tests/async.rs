//! Awaiting queues and pipes (feature `async`) on tokio's multi-thread runtime: many tasks on one
//! queue, cancellation by `select!` and timeouts, a killed peer process, a stream until end of
//! file, sinks, and `join`.
//!
//! Every test runs under [`run`]: one at a time (the waiter thread and its registrations are per
//! process, and the tests check that none is left behind), bounded by [`LIMIT`]. Waiter counts on
//! the doorbells are read with `shmq::inspect` where that feature is on (`--all-features`).
#![cfg(feature = "async")]

use futures_util::{SinkExt, StreamExt};
use shmq::{
    aio, Connection, Handover, JoinError, PipeBuilder, PipeStream, Queue, QueueSink, RecvError, Role, SendError,
};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{child, finish, finish_killed, job, unique};

/// Longest any test may run.
const LIMIT: Duration = Duration::from_secs(60);
/// How soon after a kill an awaiting task must see it (generous: the design bound is ~35 ms).
const REPORTED_WITHIN: Duration = Duration::from_secs(1);
/// How long a survivor awaits before its peer is killed (not a multiple of the 25 ms slice, so
/// that a kill does not fall just before a slice ends by construction).
const KILL_AFTER: Duration = Duration::from_millis(113);
/// How long a child waits to be killed before it exits by itself (so no child outlives a failure).
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `test` on a fresh two-thread runtime, alone, within [`LIMIT`]; then checks that no
/// future is left registered with the waiter thread.
fn run<F: std::future::Future>(test: F) -> F::Output {
    let _alone = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let out = rt.block_on(async { tokio::time::timeout(LIMIT, test).await.expect("the test ran past its limit") });
    drop(rt);
    assert_eq!(aio::registrations(), 0, "a registration outlived its future");
    out
}

/// `(not_empty.waiters, not_full.waiters)` of a named queue's ring.
#[cfg(feature = "inspect")]
fn waiters(name: &str) -> (u32, u32) {
    let i = shmq::inspect::inspect(name).unwrap();
    (i.rings[0].not_empty.waiters, i.rings[0].not_full.waiters)
}

/// Without `inspect` the counts cannot be read from outside: every check of them passes.
#[cfg(not(feature = "inspect"))]
fn waiters(_name: &str) -> (u32, u32) {
    (0, 0)
}

fn value(m: &[u8]) -> u64 {
    u64::from_ne_bytes(m.try_into().expect("an 8-byte message"))
}

// ----- children -----

/// The child side of the multi-process tests. Does nothing unless started as a child.
#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let mut words = job.split(':');
    let _keep = match words.next().unwrap() {
        "pipe-sender" => {
            let mut c = Connection::from_env("P").unwrap();
            c.send(b"last").unwrap();
            Keep::Pipe(c)
        }
        "pipe-receiver" => Keep::Pipe(Connection::from_env("P").unwrap()),
        "queue-producer" => {
            let q = Queue::builder().role(Role::Producer).from_env("Q").unwrap();
            q.put(b"last").unwrap();
            Keep::Queue(q)
        }
        // Sends N numbered messages with blocking sends, then exits: end of file.
        "pipe-streamer" => {
            let n: u64 = words.next().unwrap().parse().unwrap();
            let mut c = Connection::from_env("P").unwrap();
            for i in 0..n {
                c.send_value(&i).unwrap();
            }
            return;
        }
        other => panic!("unknown job {other}"),
    };
    println!("peer: ready");
    std::thread::sleep(CHILD_LIFETIME);
}

/// What a child holds while it waits to be killed.
#[allow(dead_code)] // held, never read
enum Keep {
    Pipe(Connection),
    Queue(Queue),
}

/// A running child that said it is ready.
struct Peer {
    child: Child,
}

impl Peer {
    /// Starts `job`; `share` hands it what it needs. Waits (bounded) until it says "ready".
    fn start(job: &str, share: impl FnOnce(&mut Command) -> Option<Handover>) -> Peer {
        let mut cmd = child("child_entry", job);
        let handover = share(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        drop(handover); // the child holds the end now
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let ready = loop {
            match lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line == "peer: ready" => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child never said it was ready");
        }
        Peer { child }
    }

    /// SIGKILLs the child after `after`, on another thread; that thread returns the moment
    /// just before the kill.
    fn kill_after(mut self, after: Duration) -> std::thread::JoinHandle<Instant> {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let t = Instant::now();
            self.child.kill().unwrap();
            finish_killed(self.child, Duration::from_secs(20));
            t
        })
    }
}

/// Checks that an awaiting task saw the kill soon after it (and not before).
fn seen_soon(what: &str, killed: Instant, seen: Instant) {
    assert!(seen >= killed, "{what}: the death was reported before the kill");
    let after = seen - killed;
    eprintln!("{what}: reported {after:?} after the kill");
    assert!(after < REPORTED_WITHIN, "{what}: the death was reported only {after:?} after the kill");
}

// ----- many tasks, one queue -----

#[test]
fn many_tasks_awaiting_one_queue_each_message_reaches_exactly_one_task() {
    const PRODUCERS: u64 = 4;
    const EACH: u64 = 500;
    const CONSUMERS: usize = 16;
    let name = unique("async-many");
    let q = Arc::new(Queue::builder().capacity(3).slot_size(8).unlink_on_drop(true).create(&name).unwrap());
    let per_task = run(async {
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        match q.get_value_async::<u64>().await {
                            Ok(v) => got.push(v),
                            Err(RecvError::Closed) => return got,
                            Err(e) => panic!("get_async: {e}"),
                        }
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = q.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        q.put_value_async(&(p << 32 | i)).await.unwrap();
                    }
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        q.close(); // the only producer handle: end of stream once drained
        let mut per_task = Vec::new();
        for c in consumers {
            per_task.push(c.await.unwrap());
        }
        per_task
    });
    let mut all: Vec<u64> = per_task.iter().flatten().copied().collect();
    all.sort_unstable();
    let want: Vec<u64> = (0..PRODUCERS).flat_map(|p| (0..EACH).map(move |i| p << 32 | i)).collect();
    assert_eq!(all, want, "every message exactly once");
    for (p, got) in (0..PRODUCERS).map(|p| (p, per_task.iter().flatten().filter(move |v| *v >> 32 == p))) {
        // One producer's messages reach the tasks in the order it put them.
        let got: Vec<u64> = got.copied().collect();
        assert_eq!(got.len() as u64, EACH, "producer {p}");
    }
    eprintln!("messages per task: {:?}", per_task.iter().map(Vec::len).collect::<Vec<_>>());
    assert_eq!(waiters(&name), (0, 0));
}

/// Awaiting tasks, whose futures `select!` keeps cancelling, share a queue with blocking
/// consumer threads (all on the same doorbell): every message is delivered exactly once, and a
/// blocking consumer still gets messages (a wake-up the waiter thread takes without a task to
/// give it to is passed on).
#[test]
fn awaiting_tasks_and_blocking_consumers_share_a_queue() {
    const N: u64 = 2000;
    let name = unique("async-mixed");
    let q = Arc::new(Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(&name).unwrap());
    let blocking: Vec<_> = (0..2)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match q.get_value_timeout::<u64>(LIMIT) {
                        Ok(v) => got.push(v),
                        Err(RecvError::Closed) => return got,
                        Err(e) => panic!("get: {e}"),
                    }
                }
            })
        })
        .collect();
    let awaited = run(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        tokio::select! {
                            r = q.get_value_async::<u64>() => match r {
                                Ok(v) => got.push(v),
                                Err(RecvError::Closed) => return got,
                                Err(e) => panic!("get_async: {e}"),
                            },
                            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                        }
                    }
                })
            })
            .collect();
        for i in 0..N {
            if i % 16 == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            q.put_value_async(&i).await.unwrap();
        }
        q.close();
        let mut got = Vec::new();
        for t in tasks {
            got.extend(t.await.unwrap());
        }
        got
    });
    let blocked: Vec<Vec<u64>> = blocking.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!(
        "awaiting tasks got {}, blocking threads {:?}",
        awaited.len(),
        blocked.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let mut all: Vec<u64> = awaited.into_iter().chain(blocked.into_iter().flatten()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "every message exactly once");
    assert_eq!(waiters(&name), (0, 0));
}

// ----- cancellation -----

#[test]
fn a_timed_out_get_takes_nothing_and_leaves_no_waiter() {
    let name = unique("async-timeout-get");
    let q = Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(&name).unwrap();
    let before = waiters(&name);
    run(async {
        let r = tokio::time::timeout(Duration::from_millis(50), q.get_async()).await;
        assert!(r.is_err(), "nothing to get: the timeout fires");
        assert_eq!(aio::registrations(), 0);
        assert_eq!(waiters(&name), before);
        q.put(b"kept").unwrap();
        assert_eq!(&*q.get_async().await.unwrap(), b"kept");
    });
    assert_eq!(waiters(&name), before);
}

#[test]
fn a_timed_out_put_puts_nothing_and_leaves_no_waiter() {
    let name = unique("async-timeout-put");
    let q = Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(&name).unwrap();
    let before = waiters(&name);
    run(async {
        q.put(b"a").unwrap();
        q.put(b"b").unwrap();
        let r = tokio::time::timeout(Duration::from_millis(50), q.put_async(b"c")).await;
        assert!(r.is_err(), "no room: the timeout fires");
        assert_eq!(q.len(), 2);
        assert_eq!(waiters(&name), before);
        assert_eq!(&*q.get().unwrap(), b"a");
        q.put_async(b"d").await.unwrap();
        assert_eq!(&*q.get().unwrap(), b"b");
        assert_eq!(&*q.get().unwrap(), b"d");
        assert!(q.is_empty());
    });
    assert_eq!(waiters(&name), before);
}

/// A consumer that gives up after a millisecond (a `select!` against a sleep) while a producer
/// puts at scattered moments, 0 to 3 ms apart: every message still arrives, once, in order.
#[test]
fn gets_cancelled_by_select_lose_no_message() {
    const N: u64 = 300;
    let name = unique("async-select-get");
    let q = Arc::new(Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(&name).unwrap());
    let (got, cancelled) = run(async {
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    std::thread::sleep(Duration::from_micros((i * 7919) % 3000));
                    q.put_value(&i).unwrap();
                }
                q.close();
            })
        };
        let (mut got, mut cancelled) = (Vec::new(), 0);
        loop {
            tokio::select! {
                r = q.get_async() => match r {
                    Ok(m) => got.push(value(&m)),
                    Err(RecvError::Closed) => break,
                    Err(e) => panic!("get_async: {e}"),
                },
                _ = tokio::time::sleep(Duration::from_millis(1)) => cancelled += 1,
            }
        }
        producer.join().unwrap();
        (got, cancelled)
    });
    eprintln!("{cancelled} gets cancelled");
    assert!(cancelled > 0, "the select never cancelled a get: the test proved nothing");
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert_eq!(waiters(&name), (0, 0));
}

/// The same on the put side: a full queue, puts cancelled by a sleep, a slow consumer.
#[test]
fn puts_cancelled_by_select_put_each_message_once() {
    const N: u64 = 300;
    let name = unique("async-select-put");
    let q = Arc::new(Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(&name).unwrap());
    let consumer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            for i in 0..N {
                std::thread::sleep(Duration::from_micros((i * 7919) % 3000));
                got.push(q.get_value_timeout::<u64>(LIMIT).unwrap());
            }
            got
        })
    };
    let cancelled = run(async {
        let (mut i, mut cancelled) = (0, 0);
        while i < N {
            tokio::select! {
                r = q.put_value_async(&i) => {
                    r.unwrap();
                    i += 1;
                }
                _ = tokio::time::sleep(Duration::from_millis(1)) => cancelled += 1,
            }
        }
        cancelled
    });
    let got = consumer.join().unwrap();
    eprintln!("{cancelled} puts cancelled");
    assert!(cancelled > 0, "the select never cancelled a put: the test proved nothing");
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert!(q.is_empty());
    assert_eq!(waiters(&name), (0, 0));
}

/// `select!` over two queues: the losing branch's future is dropped and its queue keeps what
/// arrives later.
#[test]
fn the_losing_branch_of_a_select_leaves_its_queue_intact() {
    let a = Queue::anonymous(2, 8).unwrap();
    let b = Arc::new(Queue::anonymous(2, 8).unwrap());
    run(async {
        let putter = {
            let b = b.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                b.put(b"b").unwrap();
            })
        };
        tokio::select! {
            _ = a.get_async() => panic!("nothing was put into a"),
            r = b.get_async() => assert_eq!(&*r.unwrap(), b"b"),
        }
        putter.join().unwrap();
        a.put(b"a").unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(&*a.get_async().await.unwrap(), b"a");
    });
}

#[test]
fn a_timed_out_recv_takes_nothing() {
    run(async {
        let (mut tx, mut rx) = shmq::channel(2, 8).unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(30), rx.recv_async()).await.is_err());
        tx.send(b"x").unwrap();
        assert_eq!(&*rx.recv_async().await.unwrap(), b"x");
        tx.send(b"a").unwrap();
        tx.send(b"b").unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(30), tx.send_async(b"c")).await.is_err());
        assert_eq!(&*rx.recv().unwrap(), b"a");
        tx.send_async(b"d").await.unwrap();
        assert_eq!(&*rx.recv_async().await.unwrap(), b"b");
        assert_eq!(&*rx.recv_async().await.unwrap(), b"d");
        assert_eq!(rx.try_recv().unwrap_err(), RecvError::Empty);
    });
}

// ----- a killed peer -----

#[test]
fn a_killed_sender_wakes_an_awaiting_recv_with_end_of_file() {
    let (tx, rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    let peer = Peer::start("pipe-sender", |cmd| Some(tx.hand_over(cmd, "P")));
    let mut rx = rx.into_receiver().unwrap();
    run(async {
        assert_eq!(&*rx.recv_async().await.unwrap(), b"last");
        let killer = peer.kill_after(KILL_AFTER);
        let r = rx.recv_async().await;
        let seen = Instant::now();
        assert_eq!(r.unwrap_err(), RecvError::Closed);
        seen_soon("pipe recv_async", killer.join().unwrap(), seen);
    });
}

#[test]
fn a_killed_receiver_wakes_an_awaiting_send_with_a_broken_pipe() {
    let (tx, rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    let peer = Peer::start("pipe-receiver", |cmd| Some(rx.hand_over(cmd, "P")));
    let mut tx = tx.into_sender().unwrap();
    run(async {
        while tx.try_send(b"fill").is_ok() {}
        let killer = peer.kill_after(KILL_AFTER);
        let r = tx.send_async(b"more").await;
        let seen = Instant::now();
        assert_eq!(r.unwrap_err(), SendError::Closed);
        seen_soon("pipe send_async", killer.join().unwrap(), seen);
    });
}

#[test]
fn a_killed_producer_wakes_an_awaiting_get_with_end_of_stream() {
    let q = Queue::builder().capacity(4).slot_size(16).role(Role::Consumer).create_anonymous().unwrap();
    let peer = Peer::start("queue-producer", |cmd| Some(q.share_with(cmd, "Q", Role::Both)));
    run(async {
        assert_eq!(&*q.get_async().await.unwrap(), b"last");
        let killer = peer.kill_after(KILL_AFTER);
        let r = q.get_async().await;
        let seen = Instant::now();
        assert_eq!(r.unwrap_err(), RecvError::Closed);
        seen_soon("queue get_async", killer.join().unwrap(), seen);
    });
}

// ----- streams and sinks -----

#[test]
fn a_stream_over_a_pipe_yields_every_message_until_end_of_file() {
    const N: u64 = 2000;
    let (tx, rx) = PipeBuilder::new().duplex(false).capacity(8).slot_size(8).create_anonymous().unwrap();
    let mut cmd = child("child_entry", &format!("pipe-streamer:{N}"));
    let handover = tx.hand_over(&mut cmd, "P");
    let streamer = cmd.spawn().unwrap();
    drop(handover);
    let got = run(async {
        let mut stream = PipeStream::new(rx);
        let mut got = Vec::new();
        while let Some(m) = stream.next().await {
            got.push(value(&m.unwrap()));
        }
        assert!(futures_util::stream::FusedStream::is_terminated(&stream));
        assert!(stream.next().await.is_none(), "a finished stream stays finished");
        got
    });
    finish(streamer, LIMIT);
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}

#[test]
fn a_sink_into_a_queue_delivers_every_item_in_order() {
    const N: u64 = 1000;
    let q = Arc::new(Queue::anonymous(4, 16).unwrap());
    let consumer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < N as usize + 1 {
                got.push(q.get_timeout(LIMIT).unwrap().to_vec());
            }
            got
        })
    };
    run(async {
        let mut sink = QueueSink::new(q.clone());
        for i in 0..N {
            sink.feed(i.to_ne_bytes().to_vec()).await.unwrap();
        }
        // Larger than a slot: put as one message over several slots.
        sink.send(vec![7u8; 40]).await.unwrap();
        let (_q, held) = sink.into_inner();
        assert!(held.is_none(), "flushed");
    });
    let got = consumer.join().unwrap();
    let want: Vec<Vec<u8>> = (0..N).map(|i| i.to_ne_bytes().to_vec()).chain([vec![7u8; 40]]).collect();
    assert_eq!(got, want);
}

#[test]
fn a_sink_into_a_pipe_and_a_stream_out_of_it() {
    const N: u64 = 1000;
    run(async {
        let (tx, rx) = shmq::channel(4, 8).unwrap();
        let sender = tokio::spawn(async move {
            let mut sink = shmq::PipeSink::new(tx);
            let mut items = futures_util::stream::iter((0..N).map(|i| Ok(i.to_ne_bytes())));
            sink.send_all(&mut items).await.unwrap();
            // Dropping the sink drops the sender: end of file.
        });
        let got: Vec<u64> = PipeStream::new(rx).map(|m| value(&m.unwrap())).collect().await;
        sender.await.unwrap();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
    });
}

#[test]
fn reserve_async_awaits_room_and_writes_in_place() {
    run(async {
        let q = Queue::anonymous(1, 8).unwrap();
        q.put(b"full").unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(30), q.reserve_async()).await.is_err());
        assert_eq!(&*q.get().unwrap(), b"full");
        let mut r = q.reserve_async().await.unwrap();
        r.buf()[..2].copy_from_slice(b"ok");
        r.commit(2).unwrap();
        assert_eq!(&*q.get().unwrap(), b"ok");

        let (mut tx, mut rx) = shmq::channel(1, 8).unwrap();
        tx.send(b"full").unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(30), tx.reserve_async()).await.is_err());
        assert_eq!(&*rx.recv().unwrap(), b"full");
        let mut r = tx.reserve_async().await.unwrap();
        r.buf()[..2].copy_from_slice(b"ok");
        r.commit(2).unwrap();
        assert_eq!(&*rx.recv_async().await.unwrap(), b"ok");
    });
}

#[test]
fn a_duplex_connection_round_trip() {
    run(async {
        let (mut a, mut b) = shmq::pipe().unwrap();
        let echo = tokio::spawn(async move {
            while let Ok(m) = b.recv_async().await {
                b.send_async(&m).await.unwrap();
            }
        });
        for i in 0..200u64 {
            a.send_value_async(&i).await.unwrap();
            assert_eq!(a.recv_value_async::<u64>().await.unwrap(), i);
        }
        drop(a);
        echo.await.unwrap();
    });
}

// ----- join -----

#[test]
fn join_async_resolves_once_every_item_is_done() {
    let q = Arc::new(Queue::builder().capacity(4).slot_size(16).joinable(true).create_anonymous().unwrap());
    run(async {
        q.put(b"early").unwrap();
        let r = tokio::time::timeout(Duration::from_millis(30), q.join_async()).await;
        assert!(r.is_err(), "one item is unfinished: join waits");
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    while q.get_async().await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        q.task_done().unwrap();
                    }
                })
            })
            .collect();
        for i in 0..20u64 {
            q.put_value_async(&i).await.unwrap();
        }
        q.join_async().await.unwrap();
        assert_eq!(q.unfinished_tasks(), 0);
        q.close();
        for w in workers {
            w.await.unwrap();
        }
        let plain = Queue::anonymous(2, 8).unwrap();
        assert_eq!(plain.join_async().await.unwrap_err(), JoinError::NotJoinable);
    });
}

/// The futures can move between the runtime's threads (`tokio::spawn` needs `Send`).
#[test]
fn the_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let q = Queue::anonymous(2, 8).unwrap();
    let (mut tx, mut rx) = shmq::channel(2, 8).unwrap();
    let (mut c, _d) = shmq::pipe().unwrap();
    send(&q.get_async());
    send(&q.put_async(b"x"));
    send(&q.join_async());
    send(&q.reserve_async());
    send(&rx.recv_async());
    send(&tx.send_async(b"x"));
    send(&tx.reserve_async());
    send(&c.recv_async());
    send(&c.send_async(b"x"));
    send(&q.stream());
    send(&q.sink::<Vec<u8>>());
}
