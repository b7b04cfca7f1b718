//! The rows that measure shmq itself: queue and pipe round trips (spinning and blocking), and
//! queue throughput from N producer processes to M consumer processes.

use super::harness::{spin_until, time_rounds, ChildSpec, Deadline, Peer, Victim, Watchdog};
use super::{ChildArgs, Ctx, Measured, RowError};
use shmq::{Connection, Handover, Message, PipeBuilder, Queue, RecvError, Role, SendError};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Slots per direction for the latency rows.
const PINGPONG_CAPACITY: usize = 64;
/// Slot size for the latency rows (messages are 8 bytes).
const PINGPONG_SLOT: usize = 64;
/// Slots of the throughput queue.
const TPUT_CAPACITY: usize = 1024;
/// How long one blocking wait lasts before side A looks at the abort flag again.
const SLICE: Duration = Duration::from_millis(100);

/// Spin rows busy-poll with `try_*`; block rows use the blocking calls with `spin(0)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Spin,
    Block,
}

impl Mode {
    /// Spin rows never block (only `try_*` calls), so they keep the default spin setting.
    fn builder(self) -> shmq::QueueBuilder {
        match self {
            Mode::Spin => Queue::builder(),
            Mode::Block => Queue::builder().spin(0),
        }
    }

    /// Spin budget for the pipe's blocking calls (the spin rows only use `try_*`).
    fn pipe_spin(self) -> u32 {
        match self {
            Mode::Spin => 4096,
            Mode::Block => 0,
        }
    }

    fn of_row(row: &str) -> Mode {
        if row.ends_with("-block") {
            Mode::Block
        } else {
            Mode::Spin
        }
    }
}

fn err(what: &str) -> impl Fn(shmq::Error) -> RowError + '_ {
    move |e| RowError::Failed(format!("{what}: {e}"))
}

// ----- queue round trips -----

/// Two anonymous queues, one per direction; side A puts on `ab` and gets from `ba`.
pub fn queue_latency(ctx: &Ctx, mode: Mode) -> Result<Measured, RowError> {
    let row = match mode {
        Mode::Spin => "shmq-queue-spin",
        Mode::Block => "shmq-queue-block",
    };
    let builder = mode.builder().capacity(PINGPONG_CAPACITY).slot_size(PINGPONG_SLOT);
    let ab = builder.clone().role(Role::Producer).create_anonymous().map_err(err("creating queue"))?;
    let ba = builder.role(Role::Consumer).create_anonymous().map_err(err("creating queue"))?;
    let spec = ctx.child_spec(row);
    // The handovers hold what the child inherits until it has been spawned.
    let mut handovers = Vec::new();
    let peer = Peer::spawn(&spec, |cmd| {
        handovers.push(ab.share_with(cmd, "AB"));
        handovers.push(ba.share_with(cmd, "BA"));
    })
    .map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
    drop(handovers);
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Pid(peer.pid())], None);
    let timed = time_rounds(ctx.warmup, ctx.rounds, |i| {
        let msg = i.to_le_bytes();
        match mode {
            Mode::Spin => {
                let mut put = Ok(());
                spin_until(dog.flag(), || match ab.try_put(&msg) {
                    Err(SendError::Full) => false,
                    r => {
                        put = r;
                        true
                    }
                })?;
                put.map_err(|e| e.to_string())
            }
            Mode::Block => ab.put(&msg).map_err(|e| e.to_string()),
        }
        .and_then(|()| reply(&ba, mode, dog.flag(), i))
    });
    let fired = dog.disarm();
    finish(peer, timed, fired, ctx)
}

/// Side A's half of the round: wait for the echo of `i` on `ba`. The echo is copied into a stack
/// buffer, as the pipe rows do: a heap copy per round would be measured as part of the queue.
fn reply(ba: &Queue, mode: Mode, abort: &AtomicBool, i: u64) -> Result<(), String> {
    let mut echo = [0u8; 8];
    let got = match mode {
        Mode::Spin => spin_echo(abort, || ba.try_get().map(|m: Message| copy_echo(&m, &mut echo)))?,
        Mode::Block => loop {
            match ba.get_timeout(SLICE) {
                Err(RecvError::Timeout) if abort.load(Ordering::Relaxed) => return Err(super::harness::ABORTED.into()),
                Err(RecvError::Timeout) => continue,
                r => break r.map(|m: Message| copy_echo(&m, &mut echo)),
            }
        },
    };
    check_echo(i, got, &echo)
}

fn finish(
    peer: Peer,
    timed: Result<hdrhistogram::Histogram<u64>, String>,
    fired: bool,
    ctx: &Ctx,
) -> Result<Measured, RowError> {
    let finished = peer.finish(Duration::from_secs(5));
    match timed {
        Ok(h) => {
            finished.map_err(RowError::Failed)?;
            Ok(Measured::Latency(h))
        }
        Err(_) if fired => Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout))),
        Err(e) => Err(RowError::Failed(match finished {
            Err(c) => format!("{e} ({c})"),
            Ok(()) => e,
        })),
    }
}

fn queue_latency_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let mode = Mode::of_row(&a.row);
    let open =
        |key: &str, role: Role| mode.builder().role(role).from_env(key).map_err(|e| format!("opening {key}: {e}"));
    let ab = open("AB", Role::Consumer)?;
    let ba = open("BA", Role::Producer)?;
    let mut buf = [0u8; PINGPONG_SLOT];
    for _ in 0..a.rounds {
        let len = match mode {
            Mode::Spin => {
                let mut len = 0;
                dl.spin_until(|| match ab.try_get() {
                    Ok(m @ Message { .. }) => {
                        len = take(&m, &mut buf);
                        true
                    }
                    Err(_) => false,
                })?;
                len
            }
            Mode::Block => {
                let m = ab.get_timeout(dl.left()).map_err(|e| e.to_string())?;
                take(&m, &mut buf)
            }
        };
        match mode {
            Mode::Spin => dl.spin_until(|| ba.try_put(&buf[..len]).is_ok())?,
            Mode::Block => ba.put(&buf[..len]).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

// ----- throughput, N producer processes to M consumer processes -----

/// Producers (pinned to core A) send `size`-byte messages for `ctx.duration`; consumers (core B)
/// receive and copy out every message until end of stream. Counts must match exactly.
///
/// `share(cmd, k)` hands the segment to child `k` (producers first) and may return a guard to
/// drop once that child is spawned; `after_go` runs once every child has been told to start.
#[allow(clippy::too_many_arguments)]
fn run_throughput(
    ctx: &Ctx,
    row: &str,
    size: usize,
    producers: usize,
    consumers: usize,
    mut share: impl FnMut(&mut Command, usize) -> Option<Handover>,
    after_go: impl FnOnce(),
) -> Result<Measured, RowError> {
    let mut peers = Vec::new();
    for k in 0..producers + consumers {
        let producer = k < producers;
        let mut spec: ChildSpec = ctx.child_spec(row);
        spec.core = ctx.cores[usize::from(!producer)];
        spec.size = size;
        spec.duration = ctx.duration;
        spec.role = Some(if producer { "producer" } else { "consumer" }.into());
        let mut handover = None;
        let peer =
            Peer::spawn(&spec, |cmd| handover = share(cmd, k)).map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
        drop(handover);
        peers.push(peer);
    }
    let victims = peers.iter().map(|p| Victim::Pid(p.pid())).collect();
    let dog = Watchdog::arm(ctx.row_timeout, victims, None);
    let run = (|| -> Result<(u64, u64, Duration), String> {
        for p in peers.iter_mut() {
            p.expect("ready")?;
        }
        let start = Instant::now();
        for p in peers.iter_mut() {
            p.go()?;
        }
        after_go();
        let mut counts = [0u64; 2];
        // Consumers first: they finish last, and their "done" ends the measurement.
        for (k, p) in peers.iter_mut().enumerate().rev() {
            let line = p.line()?;
            let n: u64 = line
                .strip_prefix("done ")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("child said {line:?}"))?;
            counts[usize::from(k >= producers)] += n;
        }
        Ok((counts[0], counts[1], start.elapsed()))
    })();
    let fired = dog.disarm();
    let mut child_errors = Vec::new();
    for p in peers {
        if let Err(e) = p.finish(Duration::from_secs(5)) {
            child_errors.push(e);
        }
    }
    match run {
        Err(_) if fired => Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout))),
        Err(e) => Err(RowError::Failed(format!("{e} {}", child_errors.join("; ")))),
        Ok(_) if !child_errors.is_empty() => Err(RowError::Failed(child_errors.join("; "))),
        Ok((sent, received, _)) if sent != received => {
            Err(RowError::Failed(format!("producers sent {sent} messages but consumers got {received}")))
        }
        Ok((_, received, elapsed)) => Ok(Measured::Throughput { size, messages: received, elapsed }),
    }
}

/// One anonymous queue; N producer and M consumer processes.
pub fn queue_throughput(ctx: &Ctx, size: usize, producers: usize, consumers: usize) -> Result<Measured, RowError> {
    // The bench holds a producer role until every child is running, so that no consumer can
    // see end of stream before the last producer has even attached.
    let q = Queue::builder()
        .capacity(TPUT_CAPACITY)
        .slot_size(size)
        .role(Role::Producer)
        .create_anonymous()
        .map_err(err("creating queue"))?;
    run_throughput(
        ctx,
        "shmq-queue-tput",
        size,
        producers,
        consumers,
        |cmd, _| Some(q.share_with(cmd, "Q")),
        || q.close(),
    )
}

/// One one-way anonymous pipe: its sending end to the producer, its receiving end to the consumer.
pub fn pipe_throughput(ctx: &Ctx, size: usize) -> Result<Measured, RowError> {
    let (tx, rx) = PipeBuilder::new()
        .duplex(false)
        .capacity(TPUT_CAPACITY)
        .slot_size(size)
        .create_anonymous()
        .map_err(err("creating pipe"))?;
    let mut ends = [Some(tx), Some(rx)];
    run_throughput(
        ctx,
        "shmq-pipe-tput",
        size,
        1,
        1,
        |cmd, k| ends[k].take().map(|end| end.share_with(cmd, "P")),
        || {},
    )
}

/// The producer loop: sends until `duration` has passed (clock read every 256 messages) or the
/// receiving side has gone. `send` returns `Ok(false)` for "closed".
fn produce(a: &ChildArgs, mut send: impl FnMut(&[u8]) -> Result<bool, String>) -> Result<u64, String> {
    let mut buf = vec![0u8; a.size];
    let k = a.size.min(8);
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        for _ in 0..256 {
            buf[..k].copy_from_slice(&i.to_le_bytes()[..k]);
            if !send(&buf)? {
                return Ok(i);
            }
            i += 1;
        }
        if start.elapsed() >= Duration::from_millis(a.duration_ms) {
            return Ok(i);
        }
    }
}

/// The consumer loop: receives into a private buffer (a real consumer copies the message out)
/// until end of stream. `recv` returns `Ok(false)` at end of stream.
fn consume(a: &ChildArgs, mut recv: impl FnMut(&mut [u8]) -> Result<bool, String>) -> Result<u64, String> {
    let mut buf = vec![0u8; a.size];
    let mut n = 0u64;
    while recv(&mut buf)? {
        std::hint::black_box(&buf);
        n += 1;
    }
    Ok(n)
}

fn throughput_child(a: &ChildArgs) -> Result<(), String> {
    let producer = match a.role.as_deref() {
        Some("producer") => true,
        Some("consumer") => false,
        r => return Err(format!("bad role {r:?}")),
    };
    // Blocking calls without a deadline (no clock read per message): the bench's watchdog and
    // PR_SET_PDEATHSIG bound this process.
    let n = if a.row == "shmq-queue-tput" {
        let q = Queue::builder()
            .role(if producer { Role::Producer } else { Role::Consumer })
            .from_env("Q")
            .map_err(|e| format!("opening queue: {e}"))?;
        super::harness::child_ready_go()?;
        if producer {
            let n = produce(a, |m| match q.put(m) {
                Ok(()) => Ok(true),
                Err(SendError::Closed) => Ok(false),
                Err(e) => Err(format!("put: {e}")),
            })?;
            // Detach before reporting, so consumers can see end of stream.
            drop(q);
            n
        } else {
            consume(a, |buf| match q.get() {
                Ok(m) => {
                    buf[..m.len()].copy_from_slice(&m);
                    Ok(true)
                }
                Err(RecvError::Closed) => Ok(false),
                Err(e) => Err(format!("get: {e}")),
            })?
        }
    } else {
        let mut c = Connection::from_env("P").map_err(|e| format!("opening pipe: {e}"))?;
        super::harness::child_ready_go()?;
        if producer {
            let n = produce(a, |m| match c.send(m) {
                Ok(()) => Ok(true),
                Err(SendError::Closed) => Ok(false),
                Err(e) => Err(format!("send: {e}")),
            })?;
            drop(c);
            n
        } else {
            consume(a, |buf| match c.recv() {
                Ok(m) => {
                    buf[..m.len()].copy_from_slice(&m);
                    Ok(true)
                }
                Err(RecvError::Closed) => Ok(false),
                Err(e) => Err(format!("recv: {e}")),
            })?
        }
    };
    println!("done {n}");
    Ok(())
}

// ----- pipe round trips -----

/// One duplex anonymous pipe; side A keeps one end, side B gets the other.
pub fn pipe_latency(ctx: &Ctx, mode: Mode) -> Result<Measured, RowError> {
    let row = match mode {
        Mode::Spin => "shmq-pipe-spin",
        Mode::Block => "shmq-pipe-block",
    };
    let (mut a, b) = PipeBuilder::new()
        .duplex(true)
        .capacity(PINGPONG_CAPACITY)
        .slot_size(PINGPONG_SLOT)
        .spin(mode.pipe_spin())
        .create_anonymous()
        .map_err(err("creating pipe"))?;
    let spec = ctx.child_spec(row);
    let mut handover = None;
    let peer = Peer::spawn(&spec, |cmd| handover = Some(b.share_with(cmd, "P")))
        .map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
    drop(handover);
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Pid(peer.pid())], None);
    let abort = dog.flag();
    let timed = time_rounds(ctx.warmup, ctx.rounds, |i| {
        let msg = i.to_le_bytes();
        let mut echo = [0u8; 8];
        let got = match mode {
            Mode::Spin => {
                let mut sent = Ok(());
                spin_until(abort, || match a.try_send(&msg) {
                    Err(SendError::Full) => false,
                    r => {
                        sent = r;
                        true
                    }
                })?;
                sent.map_err(|e| e.to_string())?;
                spin_echo(abort, || a.try_recv().map(|m: Message| copy_echo(&m, &mut echo)))?
            }
            Mode::Block => {
                a.send(&msg).map_err(|e| e.to_string())?;
                loop {
                    match a.recv_timeout(SLICE) {
                        Err(RecvError::Timeout) if abort.load(Ordering::Relaxed) => {
                            return Err(super::harness::ABORTED.into())
                        }
                        Err(RecvError::Timeout) => continue,
                        r => break r.map(|m: Message| copy_echo(&m, &mut echo)),
                    }
                }
            }
        };
        check_echo(i, got, &echo)
    });
    let fired = dog.disarm();
    finish(peer, timed, fired, ctx)
}

fn copy_echo(m: &[u8], echo: &mut [u8; 8]) -> usize {
    if let Ok(v) = <&[u8; 8]>::try_from(m) {
        *echo = *v; // the expected case, as a fixed-size move (a user's `recv_value::<u64>`)
        return 8;
    }
    let n = m.len().min(8);
    echo[..n].copy_from_slice(&m[..n]);
    m.len()
}

/// Side B's copy of a message it will echo: the 8-byte messages of the latency rows as one
/// fixed-size move (as a user's `recv_value::<u64>` would), others with `copy_from_slice`.
fn take(m: &[u8], buf: &mut [u8; PINGPONG_SLOT]) -> usize {
    if let Ok(v) = <&[u8; 8]>::try_from(m) {
        buf[..8].copy_from_slice(v);
    } else {
        buf[..m.len()].copy_from_slice(m);
    }
    m.len()
}

/// Side A of a spin row: busy-polls `try_recv` (which copies the echo out, into a stack buffer,
/// so the round trip measures no allocation) until it returns anything but `Empty`.
fn spin_echo(
    abort: &AtomicBool,
    mut try_recv: impl FnMut() -> Result<usize, RecvError>,
) -> Result<Result<usize, RecvError>, String> {
    let mut got = Ok(0);
    spin_until(abort, || match try_recv() {
        Err(RecvError::Empty) => false,
        r => {
            got = r;
            true
        }
    })?;
    Ok(got)
}

/// Whether round `i` came back with its own 8 bytes.
fn check_echo(i: u64, got: Result<usize, RecvError>, echo: &[u8; 8]) -> Result<(), String> {
    match got {
        Ok(8) if *echo == i.to_le_bytes() => Ok(()),
        Ok(n) => Err(format!("round {i}: echo carried {:?}", &echo[..n.min(8)])),
        Err(e) => Err(format!("round {i}: {e}")),
    }
}

fn pipe_latency_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let mode = Mode::of_row(&a.row);
    let mut c = PipeBuilder::new().spin(mode.pipe_spin()).from_env("P").map_err(|e| format!("opening pipe: {e}"))?;
    let mut buf = [0u8; PINGPONG_SLOT];
    for _ in 0..a.rounds {
        let len = match mode {
            Mode::Spin => {
                let mut len = 0;
                dl.spin_until(|| match c.try_recv() {
                    Ok(m @ Message { .. }) => {
                        len = take(&m, &mut buf);
                        true
                    }
                    Err(_) => false,
                })?;
                len
            }
            Mode::Block => {
                let m = c.recv_timeout(dl.left()).map_err(|e| e.to_string())?;
                take(&m, &mut buf)
            }
        };
        match mode {
            Mode::Spin => dl.spin_until(|| c.try_send(&buf[..len]).is_ok())?,
            Mode::Block => c.send(&buf[..len]).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

/// Runs side B of a shmq row; `None` if the row is not one of these.
pub fn child(a: &ChildArgs, dl: Deadline) -> Option<Result<(), String>> {
    Some(match a.row.as_str() {
        "shmq-queue-spin" | "shmq-queue-block" => queue_latency_child(a, dl),
        "shmq-queue-tput" | "shmq-pipe-tput" => throughput_child(a),
        "shmq-pipe-spin" | "shmq-pipe-block" => pipe_latency_child(a, dl),
        _ => return None,
    })
}
