//! In-process baselines: crossbeam `ArrayQueue` and rtrb between pinned threads.

#[allow(unused_imports)]
use super::*;

// ----- in-process baselines: crossbeam ArrayQueue and rtrb between two pinned threads -----

/// What a message looks like in memory: `N` bytes, the first 8 a sequence number.
pub(super) fn message<const N: usize>(i: u64) -> [u8; N] {
    let mut m = [0u8; N];
    let k = N.min(8);
    m[..k].copy_from_slice(&i.to_le_bytes()[..k]);
    m
}

/// Runs a producer thread on core A and a consumer thread on core B for `ctx.duration`.
/// `produce(stop)` returns how many it sent; `consume(done)` how many it received, draining
/// after `done` is set.
pub(super) fn two_threads(
    ctx: &Ctx,
    size: usize,
    produce: impl FnOnce() -> u64 + Send,
    consume: impl FnOnce(&AtomicBool) -> u64 + Send,
) -> Result<Measured, RowError> {
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(2);
    let cores = ctx.cores;
    let (sent, received, elapsed) = std::thread::scope(|s| {
        let p = s.spawn(|| {
            let _ = harness::pin_to(cores[0]);
            barrier.wait();
            let n = produce();
            done.store(true, Ordering::Release);
            n
        });
        let c = s.spawn(|| {
            let _ = harness::pin_to(cores[1]);
            barrier.wait();
            let start = Instant::now();
            let n = consume(&done);
            (n, start.elapsed())
        });
        let sent = p.join().expect("producer thread");
        let (received, elapsed) = c.join().expect("consumer thread");
        (sent, received, elapsed)
    });
    if sent != received {
        return Err(RowError::Failed(format!("sent {sent} but received {received}")));
    }
    Ok(Measured::Throughput { size, messages: received, elapsed, context_switches: None })
}

/// Calls `step` until `duration` has passed (the clock is read every 256 steps).
pub(super) fn for_duration(duration: Duration, mut step: impl FnMut(u64)) -> u64 {
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        for _ in 0..256 {
            step(i);
            i += 1;
        }
        if start.elapsed() >= duration {
            return i;
        }
    }
}

pub fn crossbeam_row<const N: usize>(ctx: &Ctx) -> Result<Measured, RowError> {
    let q = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(ctx.capacity));
    let (qp, qc) = (q.clone(), q);
    two_threads(
        ctx,
        N,
        move || {
            for_duration(ctx.duration, |i| {
                let mut m = message::<N>(i);
                while let Err(back) = qp.push(m) {
                    m = back;
                }
            })
        },
        move |done| {
            let mut n = 0u64;
            loop {
                match qc.pop() {
                    Some(m) => {
                        std::hint::black_box(&m);
                        n += 1;
                    }
                    None if done.load(Ordering::Acquire) && qc.is_empty() => return n,
                    None => {}
                }
            }
        },
    )
}

/// crossbeam's `ArrayQueue` (`ctx.capacity` slots) of `N`-byte messages between `producers` producer
/// threads and `consumers` consumer threads, thread `k` (producers first) pinned to `core_of(k)`;
/// producers push for `ctx.duration`, consumers pop until the producers are done and the queue
/// is empty, and the counts must match. A thread that finds the queue full or empty spins a
/// little and then yields (as crossbeam's `Backoff::snooze` does), so that more threads than
/// cores still make progress, as the shmq processes do by sleeping.
pub fn crossbeam_mpmc<const N: usize>(
    ctx: &Ctx,
    producers: usize,
    consumers: usize,
    core_of: &dyn Fn(usize) -> usize,
) -> Result<Measured, RowError> {
    let q = crossbeam_queue::ArrayQueue::<[u8; N]>::new(ctx.capacity);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let barrier = Barrier::new(producers + consumers + 1);
    let (sent, received, elapsed) = std::thread::scope(|s| {
        let (q, finished, barrier) = (&q, &finished, &barrier);
        let ps: Vec<_> = (0..producers)
            .map(|k| {
                let core = core_of(k);
                s.spawn(move || {
                    let _ = harness::pin_to(core);
                    barrier.wait();
                    let n = for_duration(ctx.duration, |i| {
                        let mut m = message::<N>(i);
                        let mut step = 0;
                        while let Err(back) = q.push(m) {
                            m = back;
                            snooze(&mut step);
                        }
                    });
                    finished.fetch_add(1, Ordering::Release);
                    n
                })
            })
            .collect();
        let cs: Vec<_> = (0..consumers)
            .map(|k| {
                let core = core_of(producers + k);
                s.spawn(move || {
                    let _ = harness::pin_to(core);
                    barrier.wait();
                    let mut n = 0u64;
                    let mut step = 0;
                    loop {
                        match q.pop() {
                            Some(m) => {
                                std::hint::black_box(&m);
                                n += 1;
                                step = 0;
                            }
                            // A producer's last push comes before its Release increment.
                            None if finished.load(Ordering::Acquire) == producers && q.is_empty() => {
                                return (n, Instant::now())
                            }
                            None => snooze(&mut step),
                        }
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let sent: u64 = ps.into_iter().map(|t| t.join().expect("producer thread")).sum();
        let (mut received, mut end) = (0, start);
        for t in cs {
            let (n, at) = t.join().expect("consumer thread");
            received += n;
            end = end.max(at);
        }
        (sent, received, end.saturating_duration_since(start))
    });
    if sent != received {
        return Err(RowError::Failed(format!("sent {sent} but received {received}")));
    }
    Ok(Measured::Throughput { size: N, messages: received, elapsed, context_switches: None })
}

/// Waits a little longer each time: spins 1, 2, 4, ... 32 times, then yields the core.
pub(super) fn snooze(step: &mut u32) {
    if *step <= 5 {
        for _ in 0..1u32 << *step {
            std::hint::spin_loop();
        }
        *step += 1;
    } else {
        std::thread::yield_now();
    }
}

pub fn rtrb_row<const N: usize>(ctx: &Ctx) -> Result<Measured, RowError> {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; N]>::new(ctx.capacity);
    two_threads(
        ctx,
        N,
        move || {
            for_duration(ctx.duration, |i| {
                let mut m = message::<N>(i);
                while let Err(rtrb::PushError::Full(back)) = tx.push(m) {
                    m = back;
                }
            })
        },
        move |done| {
            let mut n = 0u64;
            loop {
                match rx.pop() {
                    Ok(m) => {
                        std::hint::black_box(&m);
                        n += 1;
                    }
                    Err(_) if done.load(Ordering::Acquire) && rx.is_empty() => return n,
                    Err(_) => {}
                }
            }
        },
    )
}
