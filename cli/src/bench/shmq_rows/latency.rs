//! Round trips through shmq queues and pipes, busy-polling or blocking, and the echo helpers
//! both share.

#[allow(unused_imports)]
use super::*;

// ----- queue round trips -----

/// Two anonymous queues, one per direction; side A puts on `ab` and gets from `ba`.
pub fn queue_latency(ctx: &Ctx, mode: Mode) -> Result<Measured, RowError> {
    let row = match mode {
        Mode::Spin => "shmq-queue-spin",
        Mode::Block => "shmq-queue-block",
    };
    let builder = mode.builder().capacity(PINGPONG_CAPACITY).slot_size(PINGPONG_SLOT);
    let ab = builder.clone().role(Role::Producer).create_anonymous().map_err(err("creating queue"))?;
    let ba = builder.role(Role::Consumer).create_anonymous().map_err(err("creating queue"))?;
    let spec = ctx.child_spec(row);
    // The handovers hold what the child inherits until it has been spawned.
    let mut handovers = Vec::new();
    let peer = Peer::spawn(&spec, |cmd| {
        handovers.push(ab.share_with(cmd, "AB", Role::Both));
        handovers.push(ba.share_with(cmd, "BA", Role::Both));
    })
    .map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
    drop(handovers);
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Pid(peer.pid())], None);
    let timed = time_rounds(ctx.warmup, ctx.rounds, |i| {
        let msg = i.to_le_bytes();
        match mode {
            Mode::Spin => {
                let mut put = Ok(());
                spin_until(dog.flag(), || match ab.try_put(&msg) {
                    Err(SendError::Full) => false,
                    r => {
                        put = r;
                        true
                    }
                })?;
                put.map_err(|e| e.to_string())
            }
            Mode::Block => ab.put(&msg).map_err(|e| e.to_string()),
        }
        .and_then(|()| reply(&ba, mode, dog.flag(), i))
    });
    let fired = dog.disarm();
    finish(peer, timed, fired, ctx)
}

/// Side A's half of the round: wait for the echo of `i` on `ba`. The echo is copied into a stack
/// buffer, as the pipe rows do: a heap copy per round would be measured as part of the queue.
pub(super) fn reply(ba: &Queue, mode: Mode, abort: &AtomicBool, i: u64) -> Result<(), String> {
    let mut echo = [0u8; 8];
    let got = match mode {
        Mode::Spin => spin_echo(abort, || ba.try_get().map(|m: Message| copy_echo(&m, &mut echo)))?,
        Mode::Block => loop {
            match ba.get_timeout(SLICE) {
                Err(RecvError::Timeout) if abort.load(Ordering::Relaxed) => return Err(super::harness::ABORTED.into()),
                Err(RecvError::Timeout) => continue,
                r => break r.map(|m: Message| copy_echo(&m, &mut echo)),
            }
        },
    };
    check_echo(i, got, &echo)
}

pub(super) fn finish(
    peer: Peer,
    timed: Result<hdrhistogram::Histogram<u64>, String>,
    fired: bool,
    ctx: &Ctx,
) -> Result<Measured, RowError> {
    let finished = peer.finish(Duration::from_secs(5));
    match timed {
        Ok(h) => {
            finished.map_err(RowError::Failed)?;
            Ok(Measured::Latency(h))
        }
        Err(_) if fired => Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout))),
        Err(e) => Err(RowError::Failed(match finished {
            Err(c) => format!("{e} ({c})"),
            Ok(()) => e,
        })),
    }
}

pub(super) fn queue_latency_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let mode = Mode::of_row(&a.row);
    let open =
        |key: &str, role: Role| mode.builder().role(role).from_env(key).map_err(|e| format!("opening {key}: {e}"));
    let ab = open("AB", Role::Consumer)?;
    let ba = open("BA", Role::Producer)?;
    let mut buf = [0u8; PINGPONG_SLOT];
    for _ in 0..a.rounds {
        let len = match mode {
            Mode::Spin => {
                let mut len = 0;
                dl.spin_until(|| match ab.try_get() {
                    Ok(m @ Message { .. }) => {
                        len = take(&m, &mut buf);
                        true
                    }
                    Err(_) => false,
                })?;
                len
            }
            Mode::Block => {
                let m = ab.get_timeout(dl.left()).map_err(|e| e.to_string())?;
                take(&m, &mut buf)
            }
        };
        match mode {
            Mode::Spin => dl.spin_until(|| ba.try_put(&buf[..len]).is_ok())?,
            Mode::Block => ba.put(&buf[..len]).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

// ----- pipe round trips -----

/// One duplex anonymous pipe; side A keeps one end, side B gets the other.
pub fn pipe_latency(ctx: &Ctx, mode: Mode) -> Result<Measured, RowError> {
    let row = match mode {
        Mode::Spin => "shmq-pipe-spin",
        Mode::Block => "shmq-pipe-block",
    };
    let (mut a, b) = PipeBuilder::new()
        .duplex(true)
        .capacity(PINGPONG_CAPACITY)
        .slot_size(PINGPONG_SLOT)
        .spin(mode.pipe_spin())
        .create_anonymous()
        .map_err(err("creating pipe"))?;
    let spec = ctx.child_spec(row);
    let mut handover = None;
    let peer = Peer::spawn(&spec, |cmd| handover = Some(b.hand_over(cmd, "P")))
        .map_err(|e| RowError::Failed(format!("spawn: {e}")))?;
    drop(handover);
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Pid(peer.pid())], None);
    let abort = dog.flag();
    let timed = time_rounds(ctx.warmup, ctx.rounds, |i| {
        let msg = i.to_le_bytes();
        let mut echo = [0u8; 8];
        let got = match mode {
            Mode::Spin => {
                let mut sent = Ok(());
                spin_until(abort, || match a.try_send(&msg) {
                    Err(SendError::Full) => false,
                    r => {
                        sent = r;
                        true
                    }
                })?;
                sent.map_err(|e| e.to_string())?;
                spin_echo(abort, || a.try_recv().map(|m: Message| copy_echo(&m, &mut echo)))?
            }
            Mode::Block => {
                a.send(&msg).map_err(|e| e.to_string())?;
                loop {
                    match a.recv_timeout(SLICE) {
                        Err(RecvError::Timeout) if abort.load(Ordering::Relaxed) => {
                            return Err(super::harness::ABORTED.into())
                        }
                        Err(RecvError::Timeout) => continue,
                        r => break r.map(|m: Message| copy_echo(&m, &mut echo)),
                    }
                }
            }
        };
        check_echo(i, got, &echo)
    });
    let fired = dog.disarm();
    finish(peer, timed, fired, ctx)
}

pub(super) fn copy_echo(m: &[u8], echo: &mut [u8; 8]) -> usize {
    if let Ok(v) = <&[u8; 8]>::try_from(m) {
        *echo = *v; // the expected case, as a fixed-size move (a user's `recv_value::<u64>`)
        return 8;
    }
    let n = m.len().min(8);
    echo[..n].copy_from_slice(&m[..n]);
    m.len()
}

/// Side B's copy of a message it will echo: the 8-byte messages of the latency rows as one
/// fixed-size move (as a user's `recv_value::<u64>` would), others with `copy_from_slice`.
pub(super) fn take(m: &[u8], buf: &mut [u8; PINGPONG_SLOT]) -> usize {
    if let Ok(v) = <&[u8; 8]>::try_from(m) {
        buf[..8].copy_from_slice(v);
    } else {
        buf[..m.len()].copy_from_slice(m);
    }
    m.len()
}

/// Side A of a spin row: busy-polls `try_recv` (which copies the echo out, into a stack buffer,
/// so the round trip measures no allocation) until it returns anything but `Empty`.
pub(super) fn spin_echo(
    abort: &AtomicBool,
    mut try_recv: impl FnMut() -> Result<usize, RecvError>,
) -> Result<Result<usize, RecvError>, String> {
    let mut got = Ok(0);
    spin_until(abort, || match try_recv() {
        Err(RecvError::Empty) => false,
        r => {
            got = r;
            true
        }
    })?;
    Ok(got)
}

/// Whether round `i` came back with its own 8 bytes.
pub(super) fn check_echo(i: u64, got: Result<usize, RecvError>, echo: &[u8; 8]) -> Result<(), String> {
    match got {
        Ok(8) if *echo == i.to_le_bytes() => Ok(()),
        Ok(n) => Err(format!("round {i}: echo carried {:?}", &echo[..n.min(8)])),
        Err(e) => Err(format!("round {i}: {e}")),
    }
}

pub(super) fn pipe_latency_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let mode = Mode::of_row(&a.row);
    let mut c = PipeBuilder::new().spin(mode.pipe_spin()).from_env("P").map_err(|e| format!("opening pipe: {e}"))?;
    let mut buf = [0u8; PINGPONG_SLOT];
    for _ in 0..a.rounds {
        let len = match mode {
            Mode::Spin => {
                let mut len = 0;
                dl.spin_until(|| match c.try_recv() {
                    Ok(m @ Message { .. }) => {
                        len = take(&m, &mut buf);
                        true
                    }
                    Err(_) => false,
                })?;
                len
            }
            Mode::Block => {
                let m = c.recv_timeout(dl.left()).map_err(|e| e.to_string())?;
                take(&m, &mut buf)
            }
        };
        match mode {
            Mode::Spin => dl.spin_until(|| c.try_send(&buf[..len]).is_ok())?,
            Mode::Block => c.send(&buf[..len]).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}
