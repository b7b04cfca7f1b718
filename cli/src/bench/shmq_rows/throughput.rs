//! Throughput: N producer processes to M consumer processes through a queue, and one pipe.

#[allow(unused_imports)]
use super::*;

// ----- throughput, N producer processes to M consumer processes -----

/// Producers send `size`-byte messages for `ctx.duration`; consumers receive and copy out every
/// message until end of stream. Counts must match exactly. Child `k` (producers first) runs on
/// core `core_of(k)`.
///
/// `share(cmd, k)` hands the segment to child `k` and may return a guard to drop once that child
/// is spawned; `after_go` runs once every child has been told to start.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_throughput(
    ctx: &Ctx,
    row: &str,
    size: usize,
    producers: usize,
    consumers: usize,
    core_of: &dyn Fn(usize) -> usize,
    mut share: impl FnMut(&mut Command, usize) -> Option<Handover>,
    after_go: impl FnOnce(),
) -> Result<Measured, RowError> {
    let mut peers = Vec::new();
    for k in 0..producers + consumers {
        let producer = k < producers;
        let mut spec: ChildSpec = ctx.child_spec(row);
        spec.core = core_of(k);
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
        Ok((_, received, elapsed)) => {
            Ok(Measured::Throughput { size, messages: received, elapsed, context_switches: None })
        }
    }
}

/// One anonymous queue; N producer processes on core A and M consumer processes on core B.
pub fn queue_throughput(ctx: &Ctx, size: usize, producers: usize, consumers: usize) -> Result<Measured, RowError> {
    queue_throughput_on(ctx, size, producers, consumers, &|k| ctx.cores[usize::from(k >= producers)])
}

/// One anonymous queue; N producer and M consumer processes, child `k` (producers first) on core
/// `core_of(k)`.
pub fn queue_throughput_on(
    ctx: &Ctx,
    size: usize,
    producers: usize,
    consumers: usize,
    core_of: &dyn Fn(usize) -> usize,
) -> Result<Measured, RowError> {
    // The bench holds a producer role until every child is running, so that no consumer can
    // see end of stream before the last producer has even attached.
    let q = Queue::builder()
        .capacity(ctx.capacity)
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
        core_of,
        |cmd, _| Some(q.share_with(cmd, "Q", Role::Both)),
        || q.close(),
    )
}

/// One one-way anonymous pipe: its sending end to the producer, its receiving end to the consumer.
pub fn pipe_throughput(ctx: &Ctx, size: usize) -> Result<Measured, RowError> {
    let (tx, rx) = PipeBuilder::new()
        .duplex(false)
        .capacity(ctx.capacity)
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
        &|k| ctx.cores[k],
        |cmd, k| ends[k].take().map(|end| end.hand_over(cmd, "P")),
        || {},
    )
}

/// The producer loop: sends until `duration` has passed (clock read every 256 messages) or the
/// receiving side has gone. `send` returns `Ok(false)` for "closed".
pub(super) fn produce(a: &ChildArgs, mut send: impl FnMut(&[u8]) -> Result<bool, String>) -> Result<u64, String> {
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

/// The consumer loop: receives until end of stream. `recv` returns `Ok(false)` at end of stream.
/// A received message is owned (copied out of its slot), and the consumer keeps it as the
/// in-process baselines' consumers keep what they pop: no second copy. (The rows count
/// messages; the tests check contents.)
pub(super) fn consume(mut recv: impl FnMut() -> Result<bool, String>) -> Result<u64, String> {
    let mut n = 0u64;
    while recv()? {
        n += 1;
    }
    Ok(n)
}

pub(super) fn throughput_child(a: &ChildArgs) -> Result<(), String> {
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
            consume(|| match q.get() {
                Ok(m) => {
                    std::hint::black_box(&*m);
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
            consume(|| match c.recv() {
                Ok(m) => {
                    std::hint::black_box(&*m);
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
