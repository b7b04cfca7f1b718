//! Awaited round trips through shmq queues and pipes (library feature `async`): both sides await
//! on a tokio current-thread runtime, side A in the bench process, side B in the echo child, so
//! each round trip goes through each process's waiter thread and its runtime's wake-up. The
//! queues and the pipe are those of the blocking rows (`spin(0)`: an awaited call never spins).

use super::latency::{check_echo, copy_echo, finish, take};
#[allow(unused_imports)]
use super::*;
use harness::{abortable, runtime, time_rounds_async, TaskWaker};

/// Side A of an awaited row: spawns side B with `spec` (`share` hands it its segments, and what
/// it returns is dropped once side B is started), then awaits `rounds` on a current-thread
/// runtime, raced against the row's watchdog.
fn run_awaited<H>(
    ctx: &Ctx,
    spec: ChildSpec,
    share: impl FnOnce(&mut Command) -> H,
    rounds: impl std::future::Future<Output = Result<hdrhistogram::Histogram<u64>, String>>,
) -> Result<Measured, RowError> {
    let rt = runtime().map_err(RowError::Failed)?;
    let mut kept = None;
    let peer = Peer::spawn(&spec, |cmd| kept = Some(share(cmd)));
    drop(kept);
    let peer = peer.map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
    let task = TaskWaker::default();
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Pid(peer.pid())], Some(task.unblock()));
    let timed = rt.block_on(abortable(dog.flag(), &task, rounds));
    let fired = dog.disarm();
    finish(peer, timed, fired, ctx)
}

/// `shmq-queue-async`: the queues of `shmq-queue-block`; side A awaits `put_async` on `ab` and
/// `get_async` on `ba`, side B the reverse.
pub fn queue_latency_async(ctx: &Ctx) -> Result<Measured, RowError> {
    let builder = Mode::Block.builder().capacity(PINGPONG_CAPACITY).slot_size(PINGPONG_SLOT);
    let ab = builder.clone().role(Role::Producer).create_anonymous().map_err(err("creating queue"))?;
    let ba = builder.role(Role::Consumer).create_anonymous().map_err(err("creating queue"))?;
    let spec = ctx.child_spec("shmq-queue-async");
    let rounds = time_rounds_async(ctx.warmup, ctx.rounds, async |i| {
        let msg = i.to_le_bytes();
        ab.put_async(&msg).await.map_err(|e| e.to_string())?;
        let mut echo = [0u8; 8];
        let got = ba.get_async().await.map(|m: Message| copy_echo(&m, &mut echo));
        check_echo(i, got, &echo)
    });
    run_awaited(ctx, spec, |cmd| (ab.share_with(cmd, "AB", Role::Both), ba.share_with(cmd, "BA", Role::Both)), rounds)
}

/// `shmq-pipe-async`: the duplex pipe of `shmq-pipe-block`; each side awaits `send_async` and
/// `recv_async` on its end.
pub fn pipe_latency_async(ctx: &Ctx) -> Result<Measured, RowError> {
    let (mut a, b) = PipeBuilder::new()
        .duplex(true)
        .capacity(PINGPONG_CAPACITY)
        .slot_size(PINGPONG_SLOT)
        .spin(Mode::Block.pipe_spin())
        .create_anonymous()
        .map_err(err("creating pipe"))?;
    let spec = ctx.child_spec("shmq-pipe-async");
    let rounds = time_rounds_async(ctx.warmup, ctx.rounds, async |i| {
        let msg = i.to_le_bytes();
        a.send_async(&msg).await.map_err(|e| e.to_string())?;
        let mut echo = [0u8; 8];
        let got = a.recv_async().await.map(|m: Message| copy_echo(&m, &mut echo));
        check_echo(i, got, &echo)
    });
    run_awaited(ctx, spec, |cmd| b.hand_over(cmd, "P"), rounds)
}

/// Side B of an awaited row: `echo` on a current-thread runtime, given up on at the child's
/// deadline (by a watchdog of its own, so that no timer is polled per round).
fn echo_awaited(dl: Deadline, echo: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    let rt = runtime()?;
    let task = TaskWaker::default();
    let dog = Watchdog::arm(dl.left(), vec![], Some(task.unblock()));
    let r = rt.block_on(abortable(dog.flag(), &task, echo));
    if dog.disarm() {
        return Err("child timed out".into());
    }
    r
}

pub(super) fn queue_latency_async_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let open = |key: &str, role: Role| {
        Mode::Block.builder().role(role).from_env(key).map_err(|e| format!("opening {key}: {e}"))
    };
    let ab = open("AB", Role::Consumer)?;
    let ba = open("BA", Role::Producer)?;
    echo_awaited(dl, async {
        let mut buf = [0u8; PINGPONG_SLOT];
        for _ in 0..a.rounds {
            let len = take(&ab.get_async().await.map_err(|e| e.to_string())?, &mut buf);
            ba.put_async(&buf[..len]).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

pub(super) fn pipe_latency_async_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let mut c =
        PipeBuilder::new().spin(Mode::Block.pipe_spin()).from_env("P").map_err(|e| format!("opening pipe: {e}"))?;
    echo_awaited(dl, async {
        let mut buf = [0u8; PINGPONG_SLOT];
        for _ in 0..a.rounds {
            let len = take(&c.recv_async().await.map_err(|e| e.to_string())?, &mut buf);
            c.send_async(&buf[..len]).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
