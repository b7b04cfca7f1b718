//! Pipe throughput: one producer thread, one consumer thread, messages of 8 B to 64 KiB.
//!
//! Same-run baselines: `rtrb` (the in-process SPSC reference), a trivial shared-memory ring (the
//! least any SPSC ring in a shared mapping must do), and, for 64 KiB, `memcpy` bandwidth.
//! Both threads live in one process (the ring memory is a real shared mapping either way).
//!
//! ```text
//! cargo bench --bench pipe_throughput
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [8, 64, 1024, 65536];

fn capacity_for(size: usize) -> usize {
    (1 << 20) / size.max(64)
}

/// Sends `n` messages of `size` bytes through a shmq channel, one `send` each.
fn shmq_single(size: usize, n: u64) -> Duration {
    let (mut tx, mut rx) = shmq::channel(capacity_for(size).max(2), size).unwrap();
    let msg = vec![7u8; size];
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..n {
                while tx.try_send(&msg).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut got = 0;
        while got < n {
            if let Ok(m) = rx.try_recv() {
                black_box(m[0]);
                got += 1;
            }
        }
    });
    start.elapsed()
}

/// As `shmq_single`, with `send_batch` / `recv_batch` (one publish per batch), on a pipe whose
/// slots go in sequence (`PipeBuilder::sequential`), as bulk streams of small messages want.
fn shmq_batch(size: usize, n: u64) -> Duration {
    let (rx, tx) = shmq::PipeBuilder::new()
        .duplex(false)
        .capacity(capacity_for(size).max(2))
        .slot_size(size)
        .sequential(true)
        .create_anonymous()
        .unwrap();
    let (mut tx, mut rx) = (tx.into_sender().unwrap(), rx.into_receiver().unwrap());
    let msg = vec![7u8; size];
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut sent = 0;
            while sent < n {
                let k = (n - sent).min(64) as usize;
                sent += tx.send_batch(std::iter::repeat_n(&msg[..], k)).unwrap() as u64;
            }
        });
        let mut got = 0;
        while got < n {
            if let Ok(k) = rx.recv_batch(256, |m| {
                black_box(m[0]);
            }) {
                got += k as u64;
            }
        }
    });
    start.elapsed()
}

/// rtrb with each message a `Vec`-free chunk write of `size` bytes.
fn rtrb_chunks(size: usize, n: u64) -> Duration {
    let slots = capacity_for(size).max(2) * size;
    let (mut p, mut c) = rtrb::RingBuffer::<u8>::new(slots);
    let msg = vec![7u8; size];
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..n {
                loop {
                    if let Ok(mut ch) = p.write_chunk_uninit(size) {
                        let (a, b) = ch.as_mut_slices();
                        let k = a.len();
                        // SAFETY: `a` and `b` are the chunk's `size` uninitialised bytes.
                        unsafe {
                            std::ptr::copy_nonoverlapping(msg.as_ptr(), a.as_mut_ptr() as *mut u8, k);
                            std::ptr::copy_nonoverlapping(msg.as_ptr().add(k), b.as_mut_ptr() as *mut u8, size - k);
                            ch.commit_all();
                        }
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
        });
        let mut got = 0;
        while got < n {
            if let Ok(ch) = c.read_chunk(size) {
                black_box(ch.as_slices().0.first());
                ch.commit_all();
                got += 1;
            }
        }
    });
    start.elapsed()
}

/// rtrb's plain `push`/`pop` of u64 (its headline figure), for the 8-byte row.
fn rtrb_u64(n: u64) -> Duration {
    let (mut p, mut c) = rtrb::RingBuffer::<u64>::new(capacity_for(8));
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..n {
                while p.push(i).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut got = 0;
        while got < n {
            if let Ok(v) = c.pop() {
                black_box(v);
                got += 1;
            }
        }
    });
    start.elapsed()
}

/// The trivial ring: fixed `size`-byte slots in a shared anonymous mapping, head and tail on
/// their own lines, each side caching the other's index. No length, no doorbell, no checks.
fn trivial_shm_ring(size: usize, n: u64) -> Duration {
    let cap = capacity_for(size).max(2);
    let bytes = 256 + cap * size;
    let mut map = memmap2::MmapOptions::new().len(bytes).map_anon().unwrap();
    let base = map.as_mut_ptr() as usize;
    // SAFETY: the mapping is page-aligned and at least 256 bytes; offsets 0 and 128 hold the two
    // indices, each 8-byte aligned, alive until `map` drops after the threads are joined.
    let (tail, head) = unsafe { (&*(base as *const AtomicU64), &*((base + 128) as *const AtomicU64)) };
    let msg = vec![7u8; size];
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut cached_head = 0;
            for t in 0..n {
                while t - cached_head == cap as u64 {
                    cached_head = head.load(Ordering::Acquire);
                }
                let slot = base + 256 + (t as usize % cap) * size;
                // SAFETY: slot `t % cap` lies inside the mapping and is owned by the producer.
                unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), slot as *mut u8, size) };
                tail.store(t + 1, Ordering::Release);
            }
        });
        let mut cached_tail = 0;
        for h in 0..n {
            while h == cached_tail {
                cached_tail = tail.load(Ordering::Acquire);
            }
            let slot = base + 256 + (h as usize % cap) * size;
            // SAFETY: published slot inside the mapping, not written until we advance head.
            black_box(unsafe { *(slot as *const u8) });
            head.store(h + 1, Ordering::Release);
        }
    });
    let e = start.elapsed();
    drop(map);
    e
}

/// One thread copying `size`-byte messages between two buffers: the bandwidth ceiling.
fn memcpy(size: usize, n: u64) -> Duration {
    let src = vec![7u8; size];
    let mut dst = vec![0u8; capacity_for(size).max(2) * size];
    let slots = dst.len() / size;
    let start = Instant::now();
    for i in 0..n as usize {
        let at = (i % slots) * size;
        dst[at..at + size].copy_from_slice(black_box(&src));
    }
    black_box(&dst);
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe_throughput");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("shmq-send", size), &size, |b, &s| b.iter_custom(|n| shmq_single(s, n)));
        g.bench_with_input(BenchmarkId::new("shmq-batch", size), &size, |b, &s| b.iter_custom(|n| shmq_batch(s, n)));
        g.bench_with_input(BenchmarkId::new("rtrb-chunks", size), &size, |b, &s| b.iter_custom(|n| rtrb_chunks(s, n)));
        g.bench_with_input(BenchmarkId::new("trivial-shm-ring", size), &size, |b, &s| {
            b.iter_custom(|n| trivial_shm_ring(s, n))
        });
        if size == 8 {
            g.bench_function(BenchmarkId::new("rtrb-push-u64", size), |b| b.iter_custom(rtrb_u64));
        }
        if size == 65536 {
            g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, &s| b.iter_custom(|n| memcpy(s, n)));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
