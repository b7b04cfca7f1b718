//! One poll of an awaited operation ([`Park`]): the non-blocking call, and if it would block,
//! a registration with the waiter thread and one more try (the lost-wake-up rule).

use super::waiter::Registration;
use crate::segment::layout::DoorbellWords;
use crate::{RecvError, SendError};
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// A doorbell's address, kept by a future across polls: it cannot hold a borrow of its handle's
/// bell while it lends the handle to the operation. Only [`Park::poll`] uses it, under its
/// contract.
#[derive(Clone, Copy)]
pub(crate) struct Bell(NonNull<DoorbellWords>);

// SAFETY: an address only; it is dereferenced (through atomics only) by `Park::poll` and the
// registration it makes, under their contract that the bell stays mapped.
unsafe impl Send for Bell {}
// SAFETY: as for `Send`.
unsafe impl Sync for Bell {}

impl Bell {
    pub(crate) fn of(bell: &DoorbellWords) -> Bell {
        Bell(NonNull::from(bell))
    }
}

/// What a future keeps between polls: its [`Registration`] while it waits, none otherwise.
///
/// Dropping it drops the registration, which takes the future off the waiter's table and off the
/// bell's `waiters` count: a cancelled future leaves nothing behind.
#[derive(Default)]
pub(crate) struct Park {
    reg: Option<Registration>,
}

impl Park {
    /// Runs `attempt` (the operation's non-blocking call; `None`: it would block) the way a
    /// blocking call would, without blocking:
    ///
    /// - not registered: try; if that would block, register on `bell` (announce), read `seq`,
    ///   try again;
    /// - registered (woken since): read `seq`, try;
    ///
    /// then, if the last try would block too, park with the `seq` read before it and return
    /// `Pending`: a publish the try missed bumps `seq` past it, and the waiter wakes the task. On
    /// `Ready` the registration is dropped.
    ///
    /// # Safety
    /// `bell` must stay mapped until this `Park` is dropped: the caller borrows or owns the handle
    /// whose segment holds it for as long as it keeps the `Park`, and drops the `Park` first.
    pub(crate) unsafe fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        bell: Bell,
        mut attempt: impl FnMut() -> Option<T>,
    ) -> Poll<T> {
        if self.reg.is_none() {
            if let Some(v) = attempt() {
                return Poll::Ready(v);
            }
            // SAFETY: delegated to the caller.
            self.reg = Some(unsafe { Registration::new(bell.0) });
        }
        let reg = self.reg.as_ref().expect("registered above");
        let seen = reg.seq();
        if let Some(v) = attempt() {
            if let Some(reg) = self.reg.take() {
                reg.done();
            }
            return Poll::Ready(v);
        }
        reg.park(cx.waker(), seen);
        Poll::Pending
    }
}

/// A receive's result, `None` for "would block" (`Empty`).
pub(crate) fn recv_ready<T>(r: Result<T, RecvError>) -> Option<Result<T, RecvError>> {
    match r {
        Err(RecvError::Empty) => None,
        r => Some(r),
    }
}

/// A send's result, `None` for "would block" (`Full`).
pub(crate) fn send_ready<T>(r: Result<T, SendError>) -> Option<Result<T, SendError>> {
    match r {
        Err(SendError::Full) => None,
        r => Some(r),
    }
}
