//! The limits every shmq latency row is compared with: a cache line handed back and forth
//! (`atomic-limit`) and a shared futex (`futex-limit`).

#[allow(unused_imports)]
use super::*;

// ----- atomic-limit -----

pub fn atomic_limit(ctx: &Ctx) -> Result<Measured, RowError> {
    let page = SharedPage::create().map_err(RowError::Failed)?;
    let mut spec = ctx.child_spec("atomic-limit");
    spec.fds = vec![page.fd()];
    let (ping, pong) = (page.u64_at(0), page.u64_at(1));
    run_pingpong(
        ctx,
        spec,
        |_| {},
        || {},
        None,
        |abort, i| {
            ping.store(i + 1, Ordering::Release);
            spin_until(abort, || pong.load(Ordering::Acquire) == i + 1)
        },
    )
}

pub(super) fn atomic_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let page = SharedPage::inherit(a.fd(0)?)?;
    let (ping, pong) = (page.u64_at(0), page.u64_at(1));
    for i in 0..a.rounds {
        dl.spin_until(|| ping.load(Ordering::Acquire) == i + 1)?;
        pong.store(i + 1, Ordering::Release);
    }
    Ok(())
}

// ----- futex-limit -----

pub fn futex_limit(ctx: &Ctx) -> Result<Measured, RowError> {
    let page = SharedPage::create().map_err(RowError::Failed)?;
    let mut spec = ctx.child_spec("futex-limit");
    spec.fds = vec![page.fd()];
    let (ping, pong) = (page.u32_at(0), page.u32_at(1));
    run_pingpong(
        ctx,
        spec,
        |_| {},
        || {},
        None,
        |abort, i| {
            let v = (i + 1) as u32;
            ping.store(v, Ordering::Release);
            futex_wake(ping);
            futex_wait_for(pong, v, || abort.load(Ordering::Relaxed))
        },
    )
}

pub(super) fn futex_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let page = SharedPage::inherit(a.fd(0)?)?;
    let (ping, pong) = (page.u32_at(0), page.u32_at(1));
    for i in 0..a.rounds {
        let v = (i + 1) as u32;
        futex_wait_for(ping, v, || dl.passed())?;
        pong.store(v, Ordering::Release);
        futex_wake(pong);
    }
    Ok(())
}
