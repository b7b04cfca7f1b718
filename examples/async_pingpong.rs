//! Round-trip latency of awaited calls, beside blocking calls and tokio's in-process channel.
//!
//! ```text
//! cargo run --release --features async --example async_pingpong [-- ROUNDS]
//! ```
//! Each row ping-pongs 8-byte messages ROUNDS times (default 20,000, after a tenth as warm-up)
//! and prints round-trip percentiles:
//! - `tokio mpsc`: two tokio current-thread runtimes on two threads of this process, one
//!   bounded `tokio::sync::mpsc` channel each way (the in-process async baseline);
//! - `shmq pipe, blocking` / `shmq queue, blocking`: two processes, blocking `recv`/`get` with no
//!   spinning, so every wait sleeps on the futex (as `pipe_pingpong --block`);
//! - `shmq pipe, awaited` / `shmq queue, awaited`: two processes, each a tokio current-thread
//!   runtime awaiting `recv_value_async`/`get_value_async` (the waiter thread wakes the task).
//!
//! The two sides are pinned to cores 0 and 1 (modulo the online CPUs); a process's waiter
//! thread runs on its side's core. Each row also shows the CPU time both sides used per round
//! trip (warm-up included), which tells sleeping from spinning. Compare rows of one run only:
//! hosts and runs differ.

use hdrhistogram::Histogram;
use shmq::{Connection, PipeBuilder, Queue, RecvError, Role};
use std::process::{Child, Command};
use std::time::Instant;

#[path = "common/pin.rs"]
mod pin;
use pin::pin;

type Hist = Histogram<u64>;

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // The IO and time drivers on, as in a server: remote wake-ups then go through the driver.
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Round-trip times: `rounds` recorded after a tenth as warm-up.
struct Recorder {
    hist: Hist,
    rounds: u64,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

impl Recorder {
    fn new(rounds: u64) -> Res<Recorder> {
        Ok(Recorder { hist: Hist::new_with_bounds(1, 10_000_000_000, 3)?, rounds })
    }

    /// The round numbers, warm-up first.
    fn rounds(&self) -> std::ops::Range<u64> {
        0..self.rounds + self.rounds / 10
    }

    /// Round `i`, sent at `start`, came back as `reply`.
    fn record(&mut self, i: u64, start: Instant, reply: u64) -> Res<()> {
        let ns = start.elapsed().as_nanos() as u64;
        assert_eq!(reply, i, "the reply matches");
        if i >= self.rounds / 10 {
            self.hist.record(ns.max(1))?;
        }
        Ok(())
    }
}

/// CPU time (user + system) used so far by this process (`RUSAGE_SELF`) or by its waited-for
/// children (`RUSAGE_CHILDREN`), in nanoseconds.
fn cpu_ns(who: libc::c_int) -> u64 {
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; `who` is RUSAGE_SELF or RUSAGE_CHILDREN.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Both sides' CPU time so far: this process and its finished children.
fn cpu_both() -> u64 {
    cpu_ns(libc::RUSAGE_SELF) + cpu_ns(libc::RUSAGE_CHILDREN)
}

/// Prints a row: the percentiles, and the CPU time both sides used per round trip (a side that
/// spun instead of sleeping would show it here).
fn row(name: &str, h: &Hist, cpu: u64) {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<58} p50 {:>7.1} µs  p99 {:>7.1} µs  p99.9 {:>7.1} µs  max {:>8.1} µs  cpu {:>5.1} µs/trip",
        us(0.5),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0,
        cpu as f64 / 1000.0 / (h.len().max(1) as f64 * 1.1),
    );
}

// ----- the echo side (a child process) -----

fn echo(kind: &str, mode: &str) -> Res<()> {
    pin(1);
    match (kind, mode) {
        ("pipe", "block") => {
            let mut c = PipeBuilder::new().spin(0).from_env("PIPE")?;
            loop {
                match c.recv_value::<u64>() {
                    Ok(v) => c.send_value(&v)?,
                    Err(RecvError::Closed) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        ("pipe", "async") => {
            let mut c = Connection::from_env("PIPE")?;
            runtime()?.block_on(async {
                loop {
                    match c.recv_value_async::<u64>().await {
                        Ok(v) => c.send_value_async(&v).await?,
                        Err(RecvError::Closed) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
            })
        }
        ("queue", mode) => {
            let ping = Queue::builder().spin(0).role(Role::Consumer).from_env("PING")?;
            let pong = Queue::builder().spin(0).role(Role::Producer).from_env("PONG")?;
            if mode == "block" {
                loop {
                    match ping.get_value::<u64>() {
                        Ok(v) => pong.put_value(&v)?,
                        Err(RecvError::Closed) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            runtime()?.block_on(async {
                loop {
                    match ping.get_value_async::<u64>().await {
                        Ok(v) => pong.put_value_async(&v).await?,
                        Err(RecvError::Closed) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
            })
        }
        _ => Err(format!("unknown echo {kind} {mode}").into()),
    }
}

/// Spawns the echo child; `share` hands it its ends and returns what must live until the spawn.
fn spawn_echo<H>(kind: &str, mode: &str, share: impl FnOnce(&mut Command) -> H) -> std::io::Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["echo", kind, mode]);
    let kept = share(&mut cmd);
    let child = cmd.spawn();
    drop(kept);
    child
}

// ----- the rows -----

fn tokio_mpsc(rounds: u64) -> Res<Hist> {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(64);
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(64);
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        pin(1);
        runtime()?.block_on(async move {
            while let Some(v) = ping_rx.recv().await {
                if pong_tx.send(v).await.is_err() {
                    break;
                }
            }
        });
        Ok(())
    });
    let mut rec = Recorder::new(rounds)?;
    runtime()?.block_on(async {
        for i in rec.rounds() {
            let t = Instant::now();
            ping_tx.send(i).await?;
            let v = pong_rx.recv().await.ok_or("the echo thread stopped")?;
            rec.record(i, t, v)?;
        }
        Res::Ok(())
    })?;
    drop(ping_tx);
    echo.join().expect("the echo thread panicked")?;
    Ok(rec.hist)
}

fn shmq_pipe(rounds: u64, awaited: bool) -> Res<Hist> {
    let (mut a, b) = PipeBuilder::new().capacity(64).slot_size(8).spin(0).create_anonymous()?;
    let mut handover = None;
    let mut child = spawn_echo("pipe", if awaited { "async" } else { "block" }, |cmd| {
        handover = Some(b.hand_over(cmd, "PIPE"));
    })?;
    drop(handover);
    let mut rec = Recorder::new(rounds)?;
    if awaited {
        runtime()?.block_on(async {
            for i in rec.rounds() {
                let t = Instant::now();
                a.send_value_async(&i).await?;
                let v = a.recv_value_async::<u64>().await?;
                rec.record(i, t, v)?;
            }
            Res::Ok(())
        })?;
    } else {
        for i in rec.rounds() {
            let t = Instant::now();
            a.send_value(&i)?;
            let v = a.recv_value::<u64>()?;
            rec.record(i, t, v)?;
        }
    }
    drop(a);
    child.wait()?;
    Ok(rec.hist)
}

fn shmq_queue(rounds: u64, awaited: bool) -> Res<Hist> {
    let ping = Queue::builder().capacity(64).slot_size(8).spin(0).role(Role::Producer).create_anonymous()?;
    let pong = Queue::builder().capacity(64).slot_size(8).spin(0).role(Role::Consumer).create_anonymous()?;
    let mut child = spawn_echo("queue", if awaited { "async" } else { "block" }, |cmd| {
        (ping.share_with(cmd, "PING", Role::Both), pong.share_with(cmd, "PONG", Role::Both))
    })?;
    let mut rec = Recorder::new(rounds)?;
    if awaited {
        runtime()?.block_on(async {
            for i in rec.rounds() {
                let t = Instant::now();
                ping.put_value_async(&i).await?;
                let v = pong.get_value_async::<u64>().await?;
                rec.record(i, t, v)?;
            }
            Res::Ok(())
        })?;
    } else {
        for i in rec.rounds() {
            let t = Instant::now();
            ping.put_value(&i)?;
            let v = pong.get_value::<u64>()?;
            rec.record(i, t, v)?;
        }
    }
    drop(ping); // the echo sees end of stream
    child.wait()?;
    Ok(rec.hist)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("echo") {
        return echo(&args[2], &args[3]);
    }
    let rounds: u64 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    pin(0);
    println!("round trips of 8-byte messages, {rounds} rounds each, {} online CPUs", pin::online_cpus());
    let timed = |f: &dyn Fn() -> Res<Hist>| -> Res<(Hist, u64)> {
        let before = cpu_both();
        let h = f()?;
        Ok((h, cpu_both() - before))
    };
    let (mpsc, cpu) = timed(&|| tokio_mpsc(rounds))?;
    row("tokio mpsc, two current-thread runtimes (in-process)", &mpsc, cpu);
    let (pipe_block, cpu) = timed(&|| shmq_pipe(rounds, false))?;
    row("shmq pipe, blocking (two processes)", &pipe_block, cpu);
    let (pipe_async, cpu) = timed(&|| shmq_pipe(rounds, true))?;
    row("shmq pipe, awaited (two processes, tokio current-thread)", &pipe_async, cpu);
    let (queue_block, cpu) = timed(&|| shmq_queue(rounds, false))?;
    row("shmq queue, blocking (two processes)", &queue_block, cpu);
    let (queue_async, cpu) = timed(&|| shmq_queue(rounds, true))?;
    row("shmq queue, awaited (two processes, tokio current-thread)", &queue_async, cpu);
    let ratio = |a: &Hist, b: &Hist| a.value_at_quantile(0.5) as f64 / b.value_at_quantile(0.5).max(1) as f64;
    println!(
        "awaited / blocking, p50: pipe {:.2}x, queue {:.2}x",
        ratio(&pipe_async, &pipe_block),
        ratio(&queue_async, &queue_block)
    );
    Ok(())
}
