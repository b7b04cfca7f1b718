//! Two processes ping-pong 8-byte messages over a duplex pipe; prints round-trip percentiles.
//!
//! ```text
//! cargo run --release --example pipe_pingpong [-- ROUNDS] [--block]
//! ```
//! By default both sides busy-poll (`try_recv`); `--block` uses `recv` with no spinning, so every
//! wait sleeps on the futex.

use hdrhistogram::Histogram;
use shmq::{Connection, PipeBuilder, RecvError};
use std::process::Command;
use std::time::Instant;

#[path = "common/pin.rs"]
mod pin;
use pin::pin;

fn recv_u64(c: &mut Connection, block: bool) -> Result<u64, RecvError> {
    loop {
        let r = if block { c.recv() } else { c.try_recv() };
        match r {
            Ok(m) => return Ok(u64::from_ne_bytes((*m).try_into().expect("8-byte message"))),
            Err(RecvError::Empty) => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let block = args.iter().any(|a| a == "--block");
    if args.get(1).map(String::as_str) == Some("echo") {
        pin(1);
        let mut c = PipeBuilder::new().spin(if block { 0 } else { 1 << 20 }).from_env("PIPE")?;
        loop {
            match recv_u64(&mut c, block) {
                Ok(v) => c.send_value(&v)?,
                Err(RecvError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let rounds: u64 =
        args.iter().skip(1).find(|a| !a.starts_with("--")).map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let spin = if block { 0 } else { 1 << 20 };
    let (mut a, b) = PipeBuilder::new().capacity(64).slot_size(8).spin(spin).create_anonymous()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("echo");
    if block {
        cmd.arg("--block");
    }
    let handover = b.hand_over(&mut cmd, "PIPE");
    let mut child = cmd.spawn()?;
    drop(handover);
    pin(0);

    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
    let warmup = rounds / 10;
    for i in 0..rounds + warmup {
        let t = Instant::now();
        a.send_value(&i)?;
        let v = recv_u64(&mut a, block)?;
        let ns = t.elapsed().as_nanos() as u64;
        assert_eq!(v, i, "reply matches");
        if i >= warmup {
            hist.record(ns.max(1))?;
        }
    }
    drop(a);
    child.wait()?;
    println!(
        "pipe ping-pong ({}, {} rounds): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        if block { "blocking" } else { "busy-poll" },
        rounds,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
    Ok(())
}
