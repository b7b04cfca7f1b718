//! Why a pipe visits its slots in bit-reversed order: the same busy-polled ping-pong over rings
//! of 64 slots (bit-reversed order), 63 slots (the same memory, visited in sequence) and 4 slots
//! (too few lines for a prefetcher to run ahead), in alternation.
//!
//! ```text
//! cargo run --release --example ring_order [-- REPEATS ROUNDS]
//! ```
//! Each repeat runs every ring once: a child process echoes 8-byte messages over a duplex pipe
//! of 64-byte slots (128-byte strides), both processes pinned to cores 0 and 1. Printed: the
//! median over the repeats of each ring's mean round trip, and its ratio to the 4-slot ring.
//! The host can move the vCPUs of a virtual machine in the middle of a run, which moves every
//! figure; the alternation is there so that such a move hits all three rings alike.

use shmq::{Connection, PipeBuilder, RecvError};
use std::process::Command;
use std::time::Instant;

const RINGS: [usize; 3] = [64, 63, 4];

#[path = "common/pin.rs"]
mod pin;
use pin::pin;

/// Busy-polls for the next message; copies its 8 bytes out.
fn recv8(c: &mut Connection) -> Result<[u8; 8], RecvError> {
    loop {
        match c.try_recv() {
            Ok(m) => return Ok((*m).try_into().expect("8-byte message")),
            Err(RecvError::Empty) => {}
            Err(e) => return Err(e),
        }
    }
}

fn send8(c: &mut Connection, v: &[u8; 8]) -> Result<(), shmq::SendError> {
    loop {
        match c.try_send(v) {
            Err(shmq::SendError::Full) => {}
            r => return r,
        }
    }
}

/// One ring's mean round trip in nanoseconds, over `rounds` after a tenth as many warm-ups.
fn measure(capacity: usize, rounds: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let (mut a, b) = PipeBuilder::new().duplex(true).capacity(capacity).slot_size(64).create_anonymous()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("echo");
    let handover = b.hand_over(&mut cmd, "RING");
    let mut child = cmd.spawn()?;
    drop(handover);
    pin(0);
    let warmup = rounds / 10;
    let mut start = Instant::now();
    for i in 0..warmup + rounds {
        if i == warmup {
            start = Instant::now();
        }
        send8(&mut a, &i.to_le_bytes())?;
        assert_eq!(recv8(&mut a)?, i.to_le_bytes(), "the echo of round {i}");
    }
    let mean = start.elapsed().as_nanos() as f64 / rounds as f64;
    drop(a); // end of file for the child
    child.wait()?;
    Ok(mean)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("echo") {
        pin(1);
        let mut c = Connection::from_env("RING")?;
        loop {
            match recv8(&mut c) {
                Ok(v) => send8(&mut c, &v)?,
                Err(RecvError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let repeats: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(9);
    let rounds: u64 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let mut means = vec![Vec::new(); RINGS.len()];
    for _ in 0..repeats {
        for (k, &capacity) in RINGS.iter().enumerate() {
            means[k].push(measure(capacity, rounds)?);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = means.iter_mut().map(median).collect();
    println!("mean round trip, median of {repeats} repeats of {rounds} rounds:");
    for (k, &capacity) in RINGS.iter().enumerate() {
        let order = if capacity.is_power_of_two() { "bit-reversed order" } else { "in sequence" };
        let (mean, ratio) = (medians[k], medians[k] / medians[2]);
        println!("  {capacity:>2} slots, {order:<18} {mean:7.1} ns  {ratio:.2}x the 4-slot ring");
    }
    Ok(())
}
