//! Pipe chaos: round after round, a fresh pipe between this process and a child, and the child
//! SIGKILLed at a random moment, sender or receiver in turn. A killed sender's messages arrive
//! whole, in order, each once, and then end of file; a killed receiver gives its sender a broken
//! pipe. Either way the survivor sees the death within a bound: a wedge fails the test.
//!
//! `SHMQ_PIPE_CHAOS_ROUNDS=N` sets the number of rounds (default 100, the CI size); larger values
//! make a soak (see `docs/ROBUSTNESS.md`).

use shmq::{Connection, PipeBuilder, RecvError, SendError};
use std::process::Child;
use std::time::{Duration, Instant};

mod common;
use common::{child, job};

/// The longest a survivor may take to see the death (the design bound is tens of milliseconds).
const DEATH_SEEN_WITHIN: Duration = Duration::from_secs(2);

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let mut c = Connection::from_env("P").unwrap();
    match job.as_str() {
        // Sends messages 0, 1, 2, ... until killed (or the receiver goes).
        "sender" => {
            for id in 0u64.. {
                match c.send(&message(id)) {
                    Ok(()) => {}
                    Err(SendError::Closed) => return,
                    Err(e) => panic!("sender: {e}"),
                }
            }
        }
        // Receives until killed.
        "receiver" => loop {
            match c.recv() {
                Ok(m) => std::hint::black_box(m),
                Err(RecvError::Closed) => return,
                Err(e) => panic!("receiver: {e}"),
            };
        },
        other => panic!("unknown job {other}"),
    }
}

/// Message `id`: 8 to 40 bytes (one to three 16-byte slots), the id first, then bytes derived
/// from it, so a receiver can tell a whole message from a torn one.
fn message(id: u64) -> Vec<u8> {
    let len = 8 + (id % 33) as usize;
    let mut m = id.to_le_bytes().to_vec();
    m.extend((8..len).map(|i| (id as u8).wrapping_mul(13).wrapping_add(i as u8)));
    m
}

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn spawn(job: &str, end: Connection) -> Child {
    let mut cmd = child("child_entry", job);
    let handover = end.hand_over(&mut cmd, "P");
    let c = cmd.spawn().unwrap();
    drop(handover);
    c
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[derive(Default)]
struct Counts {
    received: u64,
    max_death_seen: Duration,
}

/// The child sends; we receive for a while, kill it, and drain to end of file.
fn kill_the_sender(rng: &mut Rng, counts: &mut Counts) {
    let (tx, rx) = PipeBuilder::new().duplex(false).capacity(8).slot_size(16).create_anonymous().unwrap();
    let mut rx = rx.into_receiver().unwrap();
    let c = spawn("sender", tx);
    let mut next = 0u64;
    let mut check = |m: &[u8]| {
        let id = u64::from_le_bytes(m[..8].try_into().unwrap());
        assert_eq!(id, next, "a message lost, duplicated or out of order");
        assert!(m == message(id), "message {id} arrived torn");
        next += 1;
    };
    // Kill it while it streams: after its first message, at a random moment.
    check(&rx.recv_timeout(Duration::from_secs(20)).expect("the sender's first message"));
    let until = Instant::now() + Duration::from_micros(rng.next(3_000));
    while Instant::now() < until {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(m) => check(&m),
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("before the kill: {e}"),
        }
    }
    kill(c);
    let dead = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(m) => check(&m),
            Err(RecvError::Empty) => {
                assert!(dead.elapsed() < DEATH_SEEN_WITHIN, "no end of file {DEATH_SEEN_WITHIN:?} after the kill");
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(RecvError::Closed) => break,
            Err(e) => panic!("after the kill: {e}"),
        }
    }
    counts.max_death_seen = counts.max_death_seen.max(dead.elapsed());
    counts.received += next;
}

/// The child receives; we send for a while, kill it, and send until the broken pipe.
fn kill_the_receiver(rng: &mut Rng, counts: &mut Counts) {
    let (tx, rx) = PipeBuilder::new().duplex(false).capacity(8).slot_size(16).create_anonymous().unwrap();
    let mut tx = tx.into_sender().unwrap();
    let c = spawn("receiver", rx);
    // Kill it while it streams: once it has taken a message (a ring of 8 took a 9th), at a random
    // moment.
    let mut id = 0;
    while id < 9 {
        tx.send_timeout(&message(id), Duration::from_secs(20)).expect("the receiver takes messages");
        id += 1;
    }
    let until = Instant::now() + Duration::from_micros(rng.next(3_000));
    while Instant::now() < until {
        match tx.send_timeout(&message(id), Duration::from_millis(5)) {
            Ok(()) => id += 1,
            Err(SendError::Timeout) => {}
            Err(e) => panic!("before the kill: {e}"),
        }
    }
    kill(c);
    let dead = Instant::now();
    loop {
        match tx.try_send(&message(id)) {
            Ok(()) => id += 1,
            Err(SendError::Full) => {
                assert!(dead.elapsed() < DEATH_SEEN_WITHIN, "no broken pipe {DEATH_SEEN_WITHIN:?} after the kill");
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(SendError::Closed) => break,
            Err(e) => panic!("after the kill: {e}"),
        }
    }
    counts.max_death_seen = counts.max_death_seen.max(dead.elapsed());
}

#[test]
fn random_sigkills_of_pipe_ends_lose_nothing_committed_and_wedge_nothing() {
    let rounds: u64 = std::env::var("SHMQ_PIPE_CHAOS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ std::process::id() as u64);
    let mut counts = Counts::default();
    let start = Instant::now();
    for round in 0..rounds {
        if round % 2 == 0 {
            kill_the_sender(&mut rng, &mut counts);
        } else {
            kill_the_receiver(&mut rng, &mut counts);
        }
    }
    eprintln!(
        "pipe chaos: {rounds} kills in {:.1?}; {} messages received whole and in order from killed senders; \
         0 lost, 0 duplicated, 0 torn, 0 wedged; death seen at most {:.1?} after a kill",
        start.elapsed(),
        counts.received,
        counts.max_death_seen
    );
}
