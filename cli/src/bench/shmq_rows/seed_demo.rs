//! The seed demo: 10 producer and 10 consumer processes on a queue of capacity 3.

#[allow(unused_imports)]
use super::*;

// ----- the seed demo: 10 producer and 10 consumer processes on a queue of capacity 3 -----

/// Producer and consumer processes of the seed demo (the Python row uses the same counts).
pub const SEED_PRODUCERS: u64 = 10;
pub const SEED_CONSUMERS: u64 = 10;

/// Messages producer `id` of the seed demo puts: `total` shared out, the first ones one more.
pub fn seed_share(total: u64, id: u64) -> u64 {
    total / SEED_PRODUCERS + u64::from(id < total % SEED_PRODUCERS)
}

/// `examples/seed_demo.rs` as a row: producers put `(id << 32) | i` on a queue of capacity 3,
/// consumers hand every message back to the bench over a second queue, and the bench counts each
/// one; it holds the producer role of the first queue until the producers have finished, then
/// closes it (Python: join the producers, then tell the consumers there is no more). Timed from
/// "go" (every child attached and waiting) to end of stream on the results queue; context
/// switches are those of every process of the row: the children's, and the bench's own over the
/// row (in the Python row, python's and its children's).
pub fn seed_demo(ctx: &Ctx) -> Result<Measured, RowError> {
    let total = ctx.seed_messages;
    let jobs = Queue::builder()
        .capacity(3)
        .slot_size(8)
        .role(Role::Producer)
        .create_anonymous()
        .map_err(err("creating queue"))?;
    let results = Queue::builder()
        .capacity(RESULTS_CAPACITY)
        .slot_size(8)
        .role(Role::Consumer)
        .create_anonymous()
        .map_err(err("creating queue"))?;
    let switches_before =
        harness::context_switches(libc::RUSAGE_CHILDREN) + harness::context_switches(libc::RUSAGE_SELF);

    // Consumers on core B, then producers on core A (with the bench, which collects).
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    for k in 0..SEED_CONSUMERS + SEED_PRODUCERS {
        let producer = k >= SEED_CONSUMERS;
        let mut spec = ctx.child_spec("seed-demo-shmq");
        spec.core = ctx.cores[usize::from(!producer)];
        spec.role = Some(if producer { "producer" } else { "consumer" }.into());
        spec.id = k.saturating_sub(SEED_CONSUMERS);
        spec.rounds = if producer { seed_share(total, spec.id) } else { 0 };
        let peer = Peer::spawn_worker(&spec, |w| {
            if producer {
                w.queue("JOBS", &jobs, Role::Producer)
            } else {
                w.queue("JOBS", &jobs, Role::Consumer).queue("RESULTS", &results, Role::Producer)
            }
        })
        .map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
        if producer {
            producers.push(peer)
        } else {
            consumers.push(peer)
        }
    }
    let victims = consumers.iter().chain(&producers).map(|p| Victim::Pid(p.pid())).collect();
    let dog = Watchdog::arm(ctx.row_timeout, victims, None);
    let abort = dog.flag();

    let mut seen = vec![0u8; total as usize];
    let first = |id: u64| (0..id).map(|k| seed_share(total, k)).sum::<u64>();
    let firsts: Vec<u64> = (0..SEED_PRODUCERS).map(first).collect();
    let run = (|| -> Result<(u64, u64, Duration), String> {
        for p in consumers.iter_mut().chain(producers.iter_mut()) {
            p.expect("ready")?;
        }
        let start = Instant::now();
        for p in consumers.iter_mut().chain(producers.iter_mut()) {
            p.go()?;
        }
        let (sent, elapsed) = std::thread::scope(|s| {
            let closer = s.spawn(|| {
                let mut sent: Result<u64, String> = Ok(0);
                for p in producers.iter_mut() {
                    sent = sent.and_then(|n| Ok(n + done_count(p)?));
                }
                // Closed on failure too, so that the consumers finish and the row ends now.
                jobs.close();
                sent
            });
            let collected = (|| loop {
                match results.get_value_timeout::<u64>(SLICE) {
                    Ok(v) => {
                        let (id, i) = (v >> 32, v & 0xffff_ffff);
                        match firsts.get(id as usize) {
                            Some(&f) if i < seed_share(total, id) => {
                                let c = &mut seen[(f + i) as usize];
                                *c = c.saturating_add(1);
                            }
                            _ => return Err(format!("a consumer handed back {v:#x}, which no producer put")),
                        }
                    }
                    Err(RecvError::Timeout) if abort.load(Ordering::Relaxed) => {
                        return Err(super::harness::ABORTED.to_string())
                    }
                    Err(RecvError::Timeout) => {}
                    Err(RecvError::Closed) => return Ok(start.elapsed()),
                    Err(e) => return Err(format!("collecting results: {e}")),
                }
            })();
            let sent = closer.join().expect("closer thread");
            (sent, collected)
        });
        let (sent, elapsed) = (sent?, elapsed?);
        let mut received = 0;
        for p in consumers.iter_mut() {
            received += done_count(p)?;
        }
        Ok((sent, received, elapsed))
    })();
    let fired = dog.disarm();
    let mut child_errors = Vec::new();
    for p in consumers.into_iter().chain(producers) {
        if let Err(e) = p.finish(Duration::from_secs(5)) {
            child_errors.push(e);
        }
    }
    // Every child has been waited for: its context switches are in RUSAGE_CHILDREN now.
    let switches = (harness::context_switches(libc::RUSAGE_CHILDREN) + harness::context_switches(libc::RUSAGE_SELF))
        .saturating_sub(switches_before);
    let (sent, received, elapsed) = match run {
        Err(_) if fired => return Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout))),
        Err(e) => return Err(RowError::Failed(format!("{e} {}", child_errors.join("; ")))),
        Ok(_) if !child_errors.is_empty() => return Err(RowError::Failed(child_errors.join("; "))),
        Ok(r) => r,
    };
    let lost = seen.iter().filter(|&&c| c == 0).count();
    let duplicated = seen.iter().filter(|&&c| c > 1).count();
    if sent != total || received != total || lost != 0 || duplicated != 0 {
        return Err(RowError::Failed(format!(
            "{total} messages: producers sent {sent}, consumers got {received}; {lost} lost, {duplicated} duplicated"
        )));
    }
    Ok(Measured::Throughput { size: 8, messages: total, elapsed, context_switches: Some(switches) })
}

/// The count in a child's closing "done N" line.
pub(super) fn done_count(p: &mut Peer) -> Result<u64, String> {
    let line = p.line()?;
    line.strip_prefix("done ").and_then(|n| n.parse().ok()).ok_or_else(|| format!("child said {line:?}"))
}

/// A seed-demo child: a producer puts its share of `(id << 32) | i`; a consumer hands every
/// message it gets back on the results queue until end of stream. Both report how many.
pub(super) fn seed_demo_child(a: &ChildArgs) -> Result<(), String> {
    // The roles are the bench's choice (`Worker::queue`).
    let jobs = Queue::from_env("JOBS").map_err(|e| format!("opening the job queue: {e}"))?;
    let n = match a.role.as_deref() {
        Some("producer") => {
            super::harness::child_ready_go()?;
            for i in 0..a.rounds {
                jobs.put_value(&((a.id << 32) | i)).map_err(|e| format!("put: {e}"))?;
            }
            a.rounds
        }
        Some("consumer") => {
            let results = Queue::from_env("RESULTS").map_err(|e| format!("opening the results queue: {e}"))?;
            super::harness::child_ready_go()?;
            let mut n = 0u64;
            loop {
                match jobs.get_value::<u64>() {
                    Ok(v) => results.put_value(&v).map_err(|e| format!("put: {e}"))?,
                    Err(RecvError::Closed) => break,
                    Err(e) => return Err(format!("get: {e}")),
                }
                n += 1;
            }
            n
        }
        r => return Err(format!("bad role {r:?}")),
    };
    // Detach before reporting (consumers: so that the bench sees end of stream).
    drop(jobs);
    println!("done {n}");
    Ok(())
}
