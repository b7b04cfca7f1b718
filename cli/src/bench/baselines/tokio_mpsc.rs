//! The in-process async baseline: tokio's bounded `mpsc` channel between two current-thread
//! runtimes on two pinned threads of the bench process.

#[allow(unused_imports)]
use super::*;
use harness::{abortable, runtime, time_rounds_async, TaskWaker};
use tokio::sync::mpsc;

/// Capacity of each direction's channel (as the shmq latency rows' 64 slots).
const CAPACITY: usize = 64;

/// `tokio-mpsc`: side A awaits on this thread (on core A, where `shmq bench` pinned it), the
/// echo awaits on a thread pinned to core B; one channel each way, 8-byte messages (`u64`).
pub fn tokio_mpsc_row(ctx: &Ctx) -> Result<Measured, RowError> {
    let (ping_tx, mut ping_rx) = mpsc::channel::<u64>(CAPACITY);
    let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(CAPACITY);
    let rt = runtime().map_err(RowError::Failed)?;
    let echo_core = ctx.cores[1];
    std::thread::scope(|s| {
        let echo = s.spawn(move || -> Result<(), String> {
            harness::pin_to(echo_core).map_err(|e| format!("pinning to core {echo_core}: {e}"))?;
            runtime()?.block_on(async move {
                // Ends when side A drops its sender (after the rounds, or on abort).
                while let Some(v) = ping_rx.recv().await {
                    if pong_tx.send(v).await.is_err() {
                        break;
                    }
                }
            });
            Ok(())
        });
        let task = TaskWaker::default();
        let dog = Watchdog::arm(ctx.row_timeout, vec![], Some(task.unblock()));
        let stopped = || "the echo thread stopped".to_string();
        let rounds = time_rounds_async(ctx.warmup, ctx.rounds, async |i| {
            ping_tx.send(i).await.map_err(|_| stopped())?;
            match pong_rx.recv().await {
                Some(v) if v == i => Ok(()),
                Some(v) => Err(format!("round {i}: echo carried {v}")),
                None => Err(stopped()),
            }
        });
        let timed = rt.block_on(abortable(dog.flag(), &task, rounds));
        let fired = dog.disarm();
        drop(ping_tx);
        let echoed = echo.join().unwrap_or_else(|_| Err("the echo thread panicked".into()));
        match (timed, echoed) {
            (Ok(h), Ok(())) => Ok(Measured::Latency(h)),
            (_, Err(e)) => Err(RowError::Failed(e)),
            (Err(_), Ok(())) if fired => Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout))),
            (Err(e), Ok(())) => Err(RowError::Failed(e)),
        }
    })
}
