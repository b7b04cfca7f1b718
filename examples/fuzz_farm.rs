//! A fuzzing farm in miniature: a coordinator hands test inputs to N worker processes over one
//! queue and collects their verdicts over another (the job LibAFL's LLMP does for fuzzers).
//!
//! ```text
//! cargo run --release --example fuzz_farm [-- WORKERS SECONDS]
//! ```
//! Each worker runs a toy target on every input (a crash is "the input starts with `FUZZ`") and
//! sends back a verdict: which worker ran it, the input id, and whether it crashed. The
//! coordinator reports executions per second and how many inputs each worker took.

use bytemuck::{Pod, Zeroable};
use shmq::{Queue, RecvError, Role, Worker};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Verdict {
    input: u64,
    worker: u32,
    crashed: u32,
}

/// The toy target: "crashes" on inputs that start with FUZZ.
fn target(input: &[u8]) -> bool {
    input.starts_with(b"FUZZ")
}

/// A deterministic input generator (xorshift), with a FUZZ prefix now and then.
fn input(id: u64, buf: &mut [u8]) -> usize {
    let mut x = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let len = 16 + (x % 48) as usize;
    for b in buf[..len].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    if id % 997 == 0 {
        buf[..4].copy_from_slice(b"FUZZ");
    }
    len
}

fn worker(id: u32) -> Result<(), Box<dyn std::error::Error>> {
    let inputs = Queue::builder().role(Role::Consumer).from_env("INPUTS")?;
    let verdicts = Queue::builder().role(Role::Producer).from_env("VERDICTS")?;
    loop {
        let (input, crashed) = match inputs.get() {
            // Zero-copy: the target reads the input in place, in the shared slot.
            Ok(m) => (u64::from_le_bytes(m[..8].try_into()?), target(&m[8..])),
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        verdicts.put_value(&Verdict { input, worker: id, crashed: crashed as u32 })?;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker(args[2].parse()?);
    }
    let workers: u32 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(4);
    let seconds: f64 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(2.0);

    let inputs = Queue::builder().capacity(256).slot_size(72).role(Role::Producer).create_anonymous()?;
    let verdicts = Queue::builder().capacity(256).slot_size(16).role(Role::Consumer).create_anonymous()?;
    let children = (0..workers)
        .map(|w| {
            Worker::this_program()?
                .args(["worker", &w.to_string()])
                .queue("INPUTS", &inputs, Role::Both)
                .queue("VERDICTS", &verdicts, Role::Both)
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;

    let start = Instant::now();
    let (mut sent, mut done, mut crashes) = (0u64, 0u64, 0u64);
    let mut per_worker = vec![0u64; workers as usize];
    let deadline = start + Duration::from_secs_f64(seconds);
    let drain = |done: &mut u64, crashes: &mut u64, per_worker: &mut [u64]| -> Result<(), RecvError> {
        loop {
            match verdicts.try_get_value::<Verdict>() {
                Ok(v) => {
                    *done += 1;
                    *crashes += v.crashed as u64;
                    if let Some(c) = per_worker.get_mut(v.worker as usize) {
                        *c += 1;
                    }
                }
                Err(RecvError::Empty) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    while Instant::now() < deadline {
        // Hand out inputs while there is room, then collect whatever verdicts are ready.
        loop {
            let id = sent;
            match inputs.try_reserve() {
                Ok(mut slot) => {
                    let buf = slot.buf();
                    buf[..8].copy_from_slice(&id.to_le_bytes());
                    let len = input(id, &mut buf[8..]);
                    slot.commit(8 + len)?;
                    sent += 1;
                }
                Err(shmq::SendError::Full) => break,
                Err(e) => return Err(e.into()),
            }
        }
        // Sleep (futex) until at least one verdict is back rather than spin: the workers need
        // the cores more than the coordinator does.
        match verdicts.get_value_timeout::<Verdict>(Duration::from_millis(10)) {
            Ok(v) => {
                done += 1;
                crashes += v.crashed as u64;
                per_worker[v.worker as usize] += 1;
            }
            Err(RecvError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
        drain(&mut done, &mut crashes, &mut per_worker)?;
    }
    inputs.close(); // workers finish what is queued, then see end of stream
    loop {
        match verdicts.get_value::<Verdict>() {
            Ok(v) => {
                done += 1;
                crashes += v.crashed as u64;
                per_worker[v.worker as usize] += 1;
            }
            Err(RecvError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    for c in children {
        c.join()?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{workers} workers, {secs:.2} s: {done} executions ({:.0} execs/s), {crashes} crashes found",
        done as f64 / secs
    );
    for (w, n) in per_worker.iter().enumerate() {
        println!("  worker {w}: {n} inputs");
    }
    assert_eq!(sent, done, "every input got a verdict");
    Ok(())
}
