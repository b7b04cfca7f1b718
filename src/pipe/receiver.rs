//! The receiving half of a pipe end, and a message read in place.

use super::{corrupt_recv, deadline_after, End};
use crate::ring::doorbell::{self, IdleCheck};
use crate::ring::ends;
use crate::ring::spsc::{self, Corrupt};
use crate::RecvError;
use bytemuck::Pod;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// The receiving half of a pipe end. `Send`, not `Sync`: one thread receives at a time.
pub struct Receiver {
    pub(super) end: Arc<End>,
    pub(super) ring: spsc::Consumer,
    pub(super) spin: u32,
    pub(super) dead: Option<RecvError>,
    pub(super) handed_over: bool,
    /// This half's role bit in the participant entry.
    pub(super) role: u32,
    /// When this half last looked for a dead sender (see `End::recover_if_due`).
    pub(super) idle: IdleCheck,
    pub(super) _not_sync: PhantomData<Cell<()>>,
}

impl Receiver {
    /// Waits until a message is readable. `Ok(n)`: n messages ready.
    #[inline]
    fn wait_msg(&mut self, deadline: Option<Option<u64>>) -> Result<u64, RecvError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let ring = &mut self.ring;
        let attempt = |ring: &mut spsc::Consumer| match ring.available() {
            Ok(0) if ends::producers_gone(ring.mem.ctrl()) => match ring.available() {
                Ok(0) => Some(Err(RecvError::Closed)),
                Ok(n) => Some(Ok(n)),
                Err(s) => Some(Err(corrupt_recv(s))),
            },
            Ok(0) => None,
            Ok(n) => Some(Ok(n)),
            Err(s) => Some(Err(corrupt_recv(s))),
        };
        let (end, idle) = (&self.end, &self.idle);
        let r = match deadline {
            // Empty: before saying so, look for a dead sender (see `End::recover_if_due`).
            None => attempt(ring)
                .or_else(|| end.recover_if_due(idle).then(|| attempt(ring)).flatten())
                .unwrap_or(Err(RecvError::Empty)),
            Some(d) => {
                let mem = ring.mem; // a copy of the pointers, so the bell does not borrow `ring`
                let bell = &mem.ctrl().not_empty;
                doorbell::block_on(
                    bell,
                    d,
                    self.spin,
                    || attempt(ring),
                    || {
                        end.recover_if_due(idle);
                    },
                )
                .unwrap_or(Err(RecvError::Timeout))
            }
        };
        if let Err(e @ RecvError::Corrupt(_)) = &r {
            self.dead = Some(e.clone());
        }
        r
    }

    #[inline]
    fn recv_in(&mut self, deadline: Option<Option<u64>>) -> Result<PipeMessage<'_>, RecvError> {
        self.wait_msg(deadline)?;
        match self.assemble() {
            Ok(body) => Ok(PipeMessage { rx: self, body }),
            Err(s) => {
                let e = corrupt_recv(s);
                self.dead = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The next message: in place when it fits one slot, else a copy of its fragments.
    #[inline]
    fn assemble(&self) -> Result<Body, Corrupt> {
        let (_, len, more) = self.ring.peek(0)?;
        if !more {
            return Ok(Body { len, owned: std::mem::ManuallyDrop::new(None), count: 1 });
        }
        let mut body = Vec::with_capacity(len * 2);
        let mut n = 0;
        loop {
            // Fragments are published together, last stamp first: once the first is seen, a
            // later one without its stamp is not "still coming", it is corruption.
            if n > 0 && !self.ring.published(n) {
                return Err(Corrupt("a fragmented message was not published whole"));
            }
            let (_, len, more) = self.ring.peek(n)?;
            body.extend_from_slice(self.ring.payload(n, len));
            n += 1;
            if !more {
                return Ok(Body { len: body.len(), owned: std::mem::ManuallyDrop::new(Some(body)), count: n });
            }
        }
    }

    /// Receives the next message, blocking while the pipe is empty. The bytes are read in place;
    /// the slot goes back to the sender when the guard is dropped.
    ///
    /// Errors: `Closed` (end of file: the sender has gone and the pipe is drained), `Corrupt`.
    #[inline]
    pub fn recv(&mut self) -> Result<PipeMessage<'_>, RecvError> {
        if let Now::Ready(body) = self.now() {
            return Ok(PipeMessage { rx: self, body });
        }
        self.recv_in(Some(None))
    }

    /// Receives the next message, blocking at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<PipeMessage<'_>, RecvError> {
        self.recv_in(Some(deadline_after(timeout)))
    }

    /// Receives the next message if there is one now (`Empty` otherwise).
    #[inline]
    pub fn try_recv(&mut self) -> Result<PipeMessage<'_>, RecvError> {
        match self.now() {
            Now::Ready(body) => Ok(PipeMessage { rx: self, body }),
            Now::Empty => self.try_recv_empty(),
            Now::Other => self.recv_in(None),
        }
    }

    /// `try_recv` found the pipe empty: `Empty`, unless a look for a dead sender is due and finds
    /// one (then end of file, or what it left).
    #[cold]
    #[inline(never)]
    fn try_recv_empty(&mut self) -> Result<PipeMessage<'_>, RecvError> {
        if self.end.recover_if_due(&self.idle) {
            return self.recv_in(None);
        }
        Err(RecvError::Empty)
    }

    /// Reaps dead participants now: if the sender died, end of file follows once the pipe is
    /// drained. Returns how many were reaped.
    ///
    /// Calls do this by themselves (see [`Connection::recover`](crate::Connection::recover)); call
    /// it to do it at once, or to learn how many were reaped.
    pub fn recover(&self) -> usize {
        self.end.recover()
    }

    /// The fast path of every receive, inlined into the caller: on a healthy pipe, the next
    /// message if it fits one slot, or "empty" while the sender is there. Anything else
    /// (fragments, end of stream, corruption) goes the general way, which checks again.
    #[inline]
    fn now(&mut self) -> Now {
        if self.dead.is_some() {
            return Now::Other;
        }
        match self.ring.available() {
            Ok(0) if ends::producers_gone(self.ring.mem.ctrl()) => Now::Other,
            Ok(0) => Now::Empty,
            Ok(_) => match self.ring.peek(0) {
                Ok((_, len, false)) => Now::Ready(Body { len, owned: std::mem::ManuallyDrop::new(None), count: 1 }),
                _ => Now::Other,
            },
            Err(_) => Now::Other,
        }
    }

    /// Receives a `Pod` value (copied out, any alignment), blocking while the pipe is empty. A
    /// message of another size is consumed and reported as `SizeMismatch`.
    pub fn recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        let m = self.recv()?;
        if m.len() != std::mem::size_of::<T>() {
            return Err(RecvError::SizeMismatch { len: m.len(), expected: std::mem::size_of::<T>() });
        }
        Ok(bytemuck::pod_read_unaligned(&m))
    }

    /// Python's `poll`: whether a message (or end of file) is ready, waiting up to `timeout`
    /// (`None`: wait until one is). Corruption counts as ready: the next `recv` reports it.
    pub fn poll(&mut self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map_or(Some(None), |t| if t.is_zero() { None } else { Some(deadline_after(t)) });
        !matches!(self.wait_msg(deadline), Err(RecvError::Empty | RecvError::Timeout))
    }

    /// Reads the messages ready now (at most `max`), calling `f` on each in order, and frees them
    /// together (one release store for the batch). Returns how many were read: at least one if
    /// any was ready, possibly fewer than all of them (the sender's position is read from a cache
    /// when it shows messages). `Empty` if none, `Closed` at end of file. A message that spans
    /// several slots is delivered alone, reassembled.
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        self.wait_msg(None)?;
        let mut n = self.ring.available_all().map_err(corrupt_recv)?.min(max as u64);
        if n > 0 && matches!(self.ring.peek(0), Ok((_, _, true))) {
            // A message spanning several slots: deliver it alone, reassembled.
            f(&self.recv_in(None)?);
            return Ok(1);
        }
        for i in 0..n {
            let len = match self.ring.peek(i) {
                Ok((_, _, true)) => {
                    n = i; // stop before a fragmented message
                    break;
                }
                Ok((_, len, false)) => len,
                Err(s) => {
                    self.ring.release(i);
                    let e = corrupt_recv(s);
                    self.dead = Some(e.clone()); // sticky, as in `recv`
                    return Err(e);
                }
            };
            f(self.ring.payload(i, len));
        }
        if n > 0 {
            self.ring.release(n);
        }
        Ok(n as usize)
    }
}

impl Drop for Receiver {
    #[inline]
    fn drop(&mut self) {
        if !self.handed_over {
            self.end.detach(self.role);
        }
    }
}

/// A message received in place. Dereferences to its bytes; frees the slot when dropped.
///
/// A message that spanned several slots is reassembled into an owned buffer instead.
pub struct PipeMessage<'a> {
    rx: &'a mut Receiver,
    body: Body,
}

/// What a receive finds without waiting (see `Receiver::now`).
enum Now {
    Ready(Body),
    Empty,
    Other,
}

/// Where a received message's bytes are.
struct Body {
    /// Its length.
    len: usize,
    /// The reassembled bytes of a message that spanned several slots (dropped by hand, out of
    /// line, so that dropping a message in place inlines to the release alone).
    owned: std::mem::ManuallyDrop<Option<Vec<u8>>>,
    /// Slots to release when done.
    count: u64,
}

impl PipeMessage<'_> {
    /// A `Pod` view of the bytes, if size and alignment fit (payloads are 16-byte aligned).
    pub fn as_value<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }
}

impl std::ops::Deref for PipeMessage<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        if let Some(v) = &*self.body.owned {
            return v;
        }
        self.rx.ring.payload(0, self.body.len)
    }
}

impl Drop for PipeMessage<'_> {
    #[inline]
    fn drop(&mut self) {
        self.rx.ring.release(self.body.count);
        if self.body.owned.is_some() {
            drop_owned(&mut self.body.owned);
        }
    }
}

/// Frees a reassembled message's buffer, out of line (leaves `None`, so it is idempotent).
#[cold]
#[inline(never)]
fn drop_owned(owned: &mut Option<Vec<u8>>) {
    drop(owned.take());
}

impl fmt::Debug for PipeMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeMessage").field("len", &self.body.len).finish()
    }
}
