//! Every way of waiting sees a dead peer soon after its death: non-blocking calls in a loop, short
//! timeouts, blocking calls and batches, on pipes and on queues; and a child killed before it
//! takes its inherited pipe end is seen as gone at once.
//!
//! Each test starts a real child process (this binary again, see `common`), waits until it is
//! ready, lets the survivor wait a while, SIGKILLs the child from another thread and measures how
//! long the survivor takes to report the death. The design bound is tens of milliseconds: a
//! handle looks for dead peers at most every 10 ms on calls that find nothing to do, and a
//! sleeping call looks after each 25 ms slice, so about 10 ms for a caller that keeps calling and
//! at most about 35 ms for a sleeping one, after the kernel has torn the dead process down. The
//! tests assert [`REPORTED_WITHIN`] so that a loaded two-core machine passes, and print the
//! figure. Every wait is bounded: a survivor that never sees the death fails the test.

use shmq::{Connection, Handover, PipeBuilder, Queue, RecvError, Role, SendError, Worker};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{child, finish_killed, job};

/// How soon after the kill the survivor must report it (generous; the design bound is ~10–35 ms).
const REPORTED_WITHIN: Duration = Duration::from_secs(1);
/// How long the survivor waits (and checks) before the peer is killed.
const ALIVE_FOR: Duration = Duration::from_millis(100);
/// A survivor that has not seen the death after this long is wedged: the test fails.
const GIVE_UP: Duration = Duration::from_secs(20);
/// How long a child waits to be killed before it exits by itself (so no child outlives a failure).
const CHILD_LIFETIME: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(5);

/// The child side of every test here. Does nothing unless started as a child.
#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    // Each job attaches (but "never-opens"), says "ready" and waits to be killed.
    let _keep = match job.as_str() {
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
        "queue-consumer" => Keep::Queue(Queue::builder().role(Role::Consumer).from_env("Q").unwrap()),
        "never-opens" => Keep::Nothing,
        "adopt-and-report" => {
            let adopted = Connection::from_env("P");
            // The inherited descriptor must not leak into processes this child starts.
            let fd: i32 = std::env::var("SHMQ_FD_P").unwrap().parse().unwrap();
            // SAFETY: F_GETFD reads the descriptor flags of a number; no memory is involved.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            println!("peer: adopted {}", adopted.is_ok());
            let Ok(c) = adopted else { return };
            println!("peer: cloexec {}", flags >= 0 && flags & libc::FD_CLOEXEC != 0);
            Keep::Pipe(c)
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
    Nothing,
}

/// A running child and the lines it prints.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts `job`; `share` hands it what it needs. Waits (bounded) until it says "ready".
    fn start(job: &str, share: impl FnOnce(&mut Command) -> Option<Handover>) -> Peer {
        let mut cmd = child("child_entry", job);
        let handover = share(&mut cmd);
        let child = cmd.spawn().unwrap();
        drop(handover); // the child holds the end now
        let peer = Peer::attach(child);
        peer.expect("ready");
        peer
    }

    /// A child spawned elsewhere, whose lines are read from now on.
    fn attach(mut child: Child) -> Peer {
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        Peer { child, lines }
    }

    /// Waits (bounded) for the next line the child prints after `peer: ` (the test harness
    /// prints lines of its own) and checks it.
    fn expect(&self, want: &str) {
        loop {
            let line = self.lines.recv_timeout(GIVE_UP).expect("the child said nothing");
            if let Some(said) = line.strip_prefix("peer: ") {
                assert_eq!(said, want);
                return;
            }
        }
    }

    /// SIGKILLs the child; returns the moment just before the kill.
    fn kill(mut self) -> Instant {
        let t = Instant::now();
        self.child.kill().unwrap();
        finish_killed(self.child, GIVE_UP);
        t
    }

    /// Waits (bounded) for the child to exit successfully by itself.
    fn exits(mut self) {
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > GIVE_UP {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the child did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(self.child.wait().unwrap().success());
    }
}

/// Runs `survivor` on its own thread, kills `peer` after [`ALIVE_FOR`], and returns what the
/// survivor returned and how long after the kill it returned. The survivor returns the moment it
/// saw the death. Fails if the survivor saw it before the kill, or never.
fn kill_while<R: Send + 'static>(
    peer: Peer,
    survivor: impl FnOnce() -> (R, Instant) + Send + 'static,
) -> (R, Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(survivor());
    });
    std::thread::sleep(ALIVE_FOR);
    let killed = peer.kill();
    let (r, seen) = rx.recv_timeout(GIVE_UP).expect("the survivor never saw its peer die");
    assert!(seen >= killed, "the survivor reported its peer gone while it was alive");
    (r, seen - killed)
}

fn check(what: &str, after: Duration) {
    eprintln!("{what}: reported {after:?} after the kill");
    assert!(after < REPORTED_WITHIN, "{what}: the death was reported only {after:?} after the kill");
}

/// Loops on `step` until it says it is done (`Some`), for at most [`GIVE_UP`]; returns the
/// result and the moment it was done.
fn until<T>(mut step: impl FnMut() -> Option<T>) -> (T, Instant) {
    let start = Instant::now();
    loop {
        if let Some(r) = step() {
            return (r, Instant::now());
        }
        assert!(start.elapsed() < GIVE_UP, "still waiting after {GIVE_UP:?}");
        std::thread::yield_now();
    }
}

// ----- pipes: the sender dies, the receiver sees end of file after the drain -----

/// A one-way pipe whose sending end a child holds (it has sent "last"); the receiving end here.
fn pipe_with_dying_sender() -> (Connection, Peer) {
    let (tx, rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    let peer = Peer::start("pipe-sender", |cmd| Some(tx.hand_over(cmd, "P")));
    (rx, peer)
}

/// Receives until end of file with `recv` (one call); `Ok(None)`: nothing yet.
fn drain_to_eof(
    mut rx: Connection,
    mut recv: impl FnMut(&mut Connection) -> Result<Option<Vec<u8>>, RecvError>,
) -> (Vec<Vec<u8>>, Instant) {
    let mut got = Vec::new();
    until(|| match recv(&mut rx) {
        Ok(Some(m)) => {
            got.push(m);
            None
        }
        Ok(None) => None,
        Err(RecvError::Closed) => Some(std::mem::take(&mut got)),
        Err(e) => panic!("unexpected {e:?}"),
    })
}

fn pipe_receiver_sees_eof(
    what: &str,
    recv: impl FnMut(&mut Connection) -> Result<Option<Vec<u8>>, RecvError> + Send + 'static,
) {
    let (rx, peer) = pipe_with_dying_sender();
    let (got, after) = kill_while(peer, move || drain_to_eof(rx, recv));
    assert_eq!(got, [b"last".to_vec()], "{what}: everything sent is delivered before end of file");
    check(what, after);
}

fn none_if<T>(r: Result<T, RecvError>, nothing: RecvError) -> Result<Option<T>, RecvError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e == nothing => Ok(None),
        Err(e) => Err(e),
    }
}

#[test]
fn regression_try_recv_in_a_loop_sees_a_dead_sender() {
    pipe_receiver_sees_eof("pipe try_recv loop", |rx| none_if(rx.try_recv().map(|m| m.to_vec()), RecvError::Empty));
}

#[test]
fn regression_poll_zero_in_a_loop_sees_a_dead_sender() {
    pipe_receiver_sees_eof("pipe poll(0) loop", |rx| {
        if !rx.poll(Some(Duration::ZERO)) {
            return Ok(None);
        }
        rx.try_recv().map(|m| Some(m.to_vec())) // ready: a message, or end of file
    });
}

#[test]
fn regression_short_recv_timeouts_see_a_dead_sender() {
    pipe_receiver_sees_eof("pipe recv_timeout(5 ms) loop", |rx| {
        none_if(rx.recv_timeout(SHORT).map(|m| m.to_vec()), RecvError::Timeout)
    });
}

#[test]
fn blocking_recv_sees_a_dead_sender() {
    pipe_receiver_sees_eof("pipe blocking recv", |rx| rx.recv().map(|m| Some(m.to_vec())));
}

#[test]
fn regression_recv_batch_in_a_loop_sees_a_dead_sender() {
    pipe_receiver_sees_eof("pipe recv_batch loop", |rx| {
        let mut batch = Vec::new();
        let rx = rx.receiver().unwrap();
        match rx.recv_batch(16, |m| batch.push(m.to_vec())) {
            Ok(_) => Ok(Some(batch.concat())),
            Err(RecvError::Empty) => Ok(None),
            Err(e) => Err(e),
        }
    });
}

// ----- pipes: the receiver dies, the sender sees a broken pipe -----

/// A full one-way pipe whose receiving end a child holds; the sending end here.
fn full_pipe_with_dying_receiver() -> (Connection, Peer) {
    let (mut tx, rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    while tx.try_send(b"fill").is_ok() {}
    let peer = Peer::start("pipe-receiver", |cmd| Some(rx.hand_over(cmd, "P")));
    (tx, peer)
}

fn pipe_sender_sees_broken_pipe(
    what: &str,
    mut send: impl FnMut(&mut Connection) -> Option<SendError> + Send + 'static,
) {
    let (mut tx, peer) = full_pipe_with_dying_receiver();
    let (e, after) = kill_while(peer, move || until(|| send(&mut tx)));
    assert_eq!(e, SendError::Closed, "{what}");
    check(what, after);
}

/// `Some(error)` unless `r` is `Ok` or the error `nothing`.
fn error_unless(r: Result<(), SendError>, nothing: SendError) -> Option<SendError> {
    r.err().filter(|e| *e != nothing)
}

#[test]
fn regression_try_send_in_a_loop_sees_a_dead_receiver() {
    pipe_sender_sees_broken_pipe("pipe try_send loop", |tx| error_unless(tx.try_send(b"x"), SendError::Full));
}

#[test]
fn regression_short_send_timeouts_see_a_dead_receiver() {
    pipe_sender_sees_broken_pipe("pipe send_timeout(5 ms) loop", |tx| {
        error_unless(tx.send_timeout(b"x", SHORT), SendError::Timeout)
    });
}

#[test]
fn blocking_send_sees_a_dead_receiver() {
    pipe_sender_sees_broken_pipe("pipe blocking send", |tx| tx.send(b"x").err());
}

#[test]
fn regression_send_batch_in_a_loop_sees_a_dead_receiver() {
    pipe_sender_sees_broken_pipe("pipe send_batch loop", |tx| {
        let msgs: [&[u8]; 2] = [b"x", b"y"];
        tx.sender().unwrap().send_batch(msgs).err()
    });
}

// ----- queues: the last producer dies (end of stream), the last consumer dies (broken pipe) -----

/// A queue whose only producer is a child (it has put "last"); a consumer here.
fn queue_with_dying_producer() -> (Queue, Peer) {
    let q = Queue::builder().capacity(4).slot_size(16).role(Role::Consumer).create_anonymous().unwrap();
    let peer = Peer::start("queue-producer", |cmd| Some(q.share_with(cmd, "Q", Role::Both)));
    (q, peer)
}

fn queue_consumer_sees_end_of_stream(
    what: &str,
    get: impl Fn(&Queue) -> Result<Option<Vec<u8>>, RecvError> + Send + 'static,
) {
    let (q, peer) = queue_with_dying_producer();
    let (got, after) = kill_while(peer, move || {
        let mut got = Vec::new();
        until(|| match get(&q) {
            Ok(Some(m)) => {
                got.push(m);
                None
            }
            Ok(None) => None,
            Err(RecvError::Closed) => Some(std::mem::take(&mut got)),
            Err(e) => panic!("unexpected {e:?}"),
        })
    });
    assert_eq!(got, [b"last".to_vec()], "{what}: everything put is delivered before end of stream");
    check(what, after);
}

#[test]
fn regression_try_get_in_a_loop_sees_the_last_producer_die() {
    queue_consumer_sees_end_of_stream("queue try_get loop", |q| {
        none_if(q.try_get().map(|m| m.to_vec()), RecvError::Empty)
    });
}

#[test]
fn regression_short_get_timeouts_see_the_last_producer_die() {
    queue_consumer_sees_end_of_stream("queue get_timeout(5 ms) loop", |q| {
        none_if(q.get_timeout(SHORT).map(|m| m.to_vec()), RecvError::Timeout)
    });
}

#[test]
fn blocking_get_sees_the_last_producer_die() {
    queue_consumer_sees_end_of_stream("queue blocking get", |q| q.get().map(|m| Some(m.to_vec())));
}

/// A full queue whose only consumer is a child; a producer here.
fn full_queue_with_dying_consumer() -> (Queue, Peer) {
    let q = Queue::builder().capacity(2).slot_size(16).role(Role::Producer).create_anonymous().unwrap();
    let peer = Peer::start("queue-consumer", |cmd| Some(q.share_with(cmd, "Q", Role::Both)));
    while q.try_put(b"fill").is_ok() {}
    (q, peer)
}

fn queue_producer_sees_broken_pipe(what: &str, put: impl Fn(&Queue) -> Option<SendError> + Send + 'static) {
    let (q, peer) = full_queue_with_dying_consumer();
    let (e, after) = kill_while(peer, move || until(|| put(&q)));
    assert_eq!(e, SendError::Closed, "{what}");
    check(what, after);
}

#[test]
fn regression_try_put_in_a_loop_sees_the_last_consumer_die() {
    queue_producer_sees_broken_pipe("queue try_put loop", |q| error_unless(q.try_put(b"x"), SendError::Full));
}

#[test]
fn regression_short_put_timeouts_see_the_last_consumer_die() {
    queue_producer_sees_broken_pipe("queue put_timeout(5 ms) loop", |q| {
        error_unless(q.put_timeout(b"x", SHORT), SendError::Timeout)
    });
}

#[test]
fn blocking_put_sees_the_last_consumer_die() {
    queue_producer_sees_broken_pipe("queue blocking put", |q| q.put(b"x").err());
}

// ----- handover: a child that dies before taking its end -----

#[test]
fn regression_a_child_killed_before_it_takes_its_end_is_end_of_file_at_once() {
    let (tx, mut rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    let peer = Peer::start("never-opens", |cmd| Some(tx.hand_over(cmd, "P")));
    // Alive (it holds the inherited end) while it runs, even though it never opened it.
    assert_eq!(rx.recv_timeout(ALIVE_FOR).unwrap_err(), RecvError::Timeout);
    let killed = peer.kill();
    assert_eq!(rx.recv_timeout(GIVE_UP).unwrap_err(), RecvError::Closed);
    check("handover, child killed before from_env", killed.elapsed());
}

#[test]
fn regression_a_child_killed_before_it_takes_its_end_is_a_broken_pipe_at_once() {
    let (mut tx, rx) = PipeBuilder::new().duplex(false).capacity(2).slot_size(16).create_anonymous().unwrap();
    while tx.try_send(b"fill").is_ok() {}
    let peer = Peer::start("never-opens", |cmd| Some(rx.hand_over(cmd, "P")));
    let killed = peer.kill();
    assert_eq!(tx.send_timeout(b"x", GIVE_UP).unwrap_err(), SendError::Closed);
    check("handover, child killed before from_env (sender side)", killed.elapsed());
}

#[test]
fn an_end_handed_to_a_command_never_spawned_is_closed_at_once() {
    let (tx, mut rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    let mut cmd = child("child_entry", "never-opens");
    let handover = tx.hand_over(&mut cmd, "P");
    drop(cmd);
    let t = Instant::now();
    drop(handover);
    assert_eq!(rx.recv_timeout(GIVE_UP).unwrap_err(), RecvError::Closed);
    check("handover, never spawned", t.elapsed());
}

#[test]
fn an_end_handed_to_a_worker_that_cannot_start_is_closed_at_once() {
    let (tx, mut rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    let t = Instant::now();
    assert!(Worker::new("/nonexistent/shmq-worker").pipe("P", tx).spawn().is_err());
    assert_eq!(rx.recv_timeout(GIVE_UP).unwrap_err(), RecvError::Closed);
    check("handover, worker failed to start", t.elapsed());
}

#[test]
fn an_adopted_end_is_close_on_exec_and_adopted_once() {
    let (mut a, b) = PipeBuilder::new().capacity(4).slot_size(16).create_anonymous().unwrap();
    let mut cmd = child("child_entry", "adopt-and-report");
    let handover = b.hand_over(&mut cmd, "P");
    // The same command spawned twice: both children inherit the end, only one may take it.
    let first = cmd.spawn().unwrap();
    let first = Peer::attach(first);
    first.expect("adopted true");
    first.expect("cloexec true");
    first.expect("ready");
    let second = cmd.spawn().unwrap();
    drop(handover);
    let second = Peer::attach(second);
    second.expect("adopted false");
    second.exits();
    // The first child holds the end: alive, and still there after the second exited.
    assert_eq!(a.recv_timeout(ALIVE_FOR).unwrap_err(), RecvError::Timeout);
    let killed = first.kill();
    assert_eq!(a.recv_timeout(GIVE_UP).unwrap_err(), RecvError::Closed);
    check("adopted end, child killed", killed.elapsed());
}

// ----- recover() on pipes -----

#[test]
fn regression_pipes_have_recover() {
    let (tx, mut rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    let peer = Peer::start("pipe-sender", |cmd| Some(tx.hand_over(cmd, "P")));
    assert_eq!(rx.recover(), 0, "a live peer is never reaped");
    peer.kill();
    assert_eq!(rx.recover(), 1, "the dead sender is reaped on request");
    assert_eq!(rx.recover(), 0, "and only once");
    assert_eq!(&*rx.try_recv().unwrap(), b"last");
    assert_eq!(rx.try_recv().unwrap_err(), RecvError::Closed);

    let (tx, rx) = PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    let mut tx = tx.into_sender().unwrap();
    let peer = Peer::start("pipe-receiver", |cmd| Some(rx.hand_over(cmd, "P")));
    assert_eq!(tx.recover(), 0);
    peer.kill();
    assert_eq!(tx.recover(), 1);
    assert_eq!(tx.try_send(b"x").unwrap_err(), SendError::Closed);

    let (a, b) = PipeBuilder::new().capacity(4).slot_size(16).create_anonymous().unwrap();
    let (Some(mut tx), Some(mut rx)) = a.split() else { panic!("a duplex end has both halves") };
    let peer = Peer::start("pipe-receiver", |cmd| Some(b.hand_over(cmd, "P")));
    assert_eq!(rx.recover(), 0);
    peer.kill();
    assert_eq!(rx.recover(), 1);
    assert_eq!(rx.try_recv().unwrap_err(), RecvError::Closed);
    assert_eq!(tx.try_send(b"x").unwrap_err(), SendError::Closed);
}
