//! The receiving half of a pipe end, and a message read in place.

use super::{corrupt_recv, End};
use crate::ring::doorbell::{self, IdleCheck, Wait};
use crate::ring::ends;
use crate::ring::spsc::{self, Corrupt};
use crate::ring::took::Took;
use crate::{Message, RecvError};
use bytemuck::Pod;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// The receiving half of a pipe end. `Send`, not `Sync`: one thread receives at a time.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<shmq::Receiver>(); // a pipe has one receiver: not `Sync`
/// ```
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
    fn wait_msg(&mut self, wait: Wait) -> Result<u64, RecvError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let ring = &mut self.ring;
        let mem = ring.mem; // a copy of the pointers, so the bell does not borrow `ring`
        let bell = &mem.ctrl().not_empty;
        let seg = &self.end.seg;
        let attempt = || match ring.available() {
            Ok(0) if ends::producers_gone(ring.mem.ctrl()) => match ring.available() {
                Ok(0) => Some(Err(RecvError::Closed)),
                Ok(n) => Some(Ok(n)),
                Err(s) => Some(Err(corrupt_recv(s))),
            },
            // Empty, or a handle that can no longer tell (forked, or its file truncated).
            Ok(0) => seg.broken().map(|b| Err(b.into())),
            Ok(n) => Some(Ok(n)),
            Err(s) => Some(Err(corrupt_recv(s))),
        };
        // Empty: before saying so, look for a dead sender (see `End::recover_if_due`).
        let (end, idle) = (&self.end, &self.idle);
        let look = || end.recover_if_due(idle);
        let r = doorbell::attempt_or_block(bell, wait, self.spin, attempt, look, RecvError::Empty, RecvError::Timeout);
        if let Err(e @ (RecvError::Corrupt(_) | RecvError::Forked)) = &r {
            self.dead = Some(e.clone());
        }
        r
    }

    #[inline]
    fn recv_in(&mut self, wait: Wait) -> Result<InPlace<'_>, RecvError> {
        self.wait_msg(wait)?;
        match self.assemble() {
            Ok(body) => Ok(InPlace { rx: self, body }),
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
            let start = body.len();
            body.resize(start + len, 0);
            self.ring.copy_out(n, &mut body[start..]);
            n += 1;
            if !more {
                return Ok(Body { len: body.len(), owned: std::mem::ManuallyDrop::new(Some(body)), count: n });
            }
        }
    }

    /// Receives the next message, blocking while the pipe is empty (Python's `recv_bytes`). The
    /// message is copied out and its slot given back to the sender before this returns.
    ///
    /// Errors: `Closed` (end of file: the sender has gone and the pipe is drained), `Corrupt`.
    #[inline]
    pub fn recv(&mut self) -> Result<Message, RecvError> {
        match self.take_now() {
            Took::Message(m) => Ok(m),
            Took::Corrupt(e) => Err(e),
            Took::Empty | Took::Other => self.recv_in(Wait::Forever).map(InPlace::into_message),
        }
    }

    /// Everything an owned receive does not do in one pass (waiting, fragments, end of stream,
    /// errors), out of line, so that `try_recv` and `recv_timeout` stay small enough to be
    /// inlined into the caller with their one-pass take. (`recv` keeps its general path inline.)
    #[inline(never)]
    fn recv_message(&mut self, wait: Wait) -> Result<Message, RecvError> {
        self.recv_in(wait).map(InPlace::into_message)
    }

    /// As [`Receiver::recv`], blocking at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        match self.take_now() {
            Took::Message(m) => Ok(m),
            Took::Corrupt(e) => Err(e),
            Took::Empty | Took::Other => self.recv_message(Wait::after(timeout)),
        }
    }

    /// Receives the next message if there is one now (`Empty` otherwise).
    #[inline]
    pub fn try_recv(&mut self) -> Result<Message, RecvError> {
        match self.take_now() {
            Took::Message(m) => Ok(m),
            Took::Corrupt(e) => Err(e),
            Took::Empty => self.try_recv_empty().map(InPlace::into_message),
            Took::Other => self.recv_message(Wait::Never),
        }
    }

    /// As [`Receiver::recv`], into `buf` (cleared first; it grows as needed, so a buffer reused
    /// from call to call makes no allocation once it is large enough). Returns the length.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.recv_in_place().map(|m| m.copy_into(buf))
    }

    /// As [`Receiver::try_recv`], into `buf` (see [`Receiver::recv_into`]).
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.try_recv_in_place().map(|m| m.copy_into(buf))
    }

    /// Receives the next message, blocking while the pipe is empty, and lends its bytes in place:
    /// no copy, but the slot goes back to the sender only when the guard drops. The bytes stay in
    /// shared memory, where a sender that breaks the protocol can change them: use this with a
    /// trusted peer. [`Receiver::recv`] copies the message out instead.
    #[inline]
    pub fn recv_in_place(&mut self) -> Result<InPlace<'_>, RecvError> {
        if let Now::Ready(body) = self.now() {
            return Ok(InPlace { rx: self, body });
        }
        self.recv_in(Wait::Forever)
    }

    /// As [`Receiver::recv_in_place`], if there is a message now.
    #[inline]
    pub fn try_recv_in_place(&mut self) -> Result<InPlace<'_>, RecvError> {
        match self.now() {
            Now::Ready(body) => Ok(InPlace { rx: self, body }),
            Now::Empty => self.try_recv_empty(),
            Now::Other => self.recv_in(Wait::Never),
        }
    }

    /// `try_recv` found the pipe empty: `Empty`, unless a look for a dead sender is due and finds
    /// one (then end of file, or what it left).
    #[cold]
    #[inline(never)]
    fn try_recv_empty(&mut self) -> Result<InPlace<'_>, RecvError> {
        if self.end.recover_if_due(&self.idle) {
            return self.recv_in(Wait::Never);
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

    /// The common receive in one pass (see `spsc::Consumer::take_now`), on a healthy pipe whose
    /// sender is there (end of stream and errors are the general path's).
    #[inline(always)]
    fn take_now(&mut self) -> Took {
        if self.dead.is_some() {
            return Took::Other;
        }
        match self.ring.take_now() {
            Took::Empty if ends::producers_gone(self.ring.mem.ctrl()) => Took::Other,
            took => took,
        }
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
        self.recv_in_place().and_then(InPlace::into_value)
    }

    /// As [`Receiver::recv_value`], if there is a message now.
    pub fn try_recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        self.try_recv_in_place().and_then(InPlace::into_value)
    }

    /// As [`Receiver::recv_value`], blocking at most `timeout`.
    pub fn recv_value_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T, RecvError> {
        self.recv_in(Wait::after(timeout)).and_then(InPlace::into_value)
    }

    /// Python's `poll`: whether a message (or end of file) is ready, waiting up to `timeout`
    /// (`None`: wait until one is). Corruption counts as ready: the next `recv` reports it.
    pub fn poll(&mut self, timeout: Option<Duration>) -> bool {
        let wait = timeout.map_or(Wait::Forever, |t| if t.is_zero() { Wait::Never } else { Wait::after(t) });
        !matches!(self.wait_msg(wait), Err(RecvError::Empty | RecvError::Timeout))
    }

    /// Reads the messages ready now (at most `max`), calling `f` on each in order, and frees them
    /// together (one release store for the batch). Returns how many were read: at least one if
    /// any was ready, possibly fewer than all of them (the sender's position is read from a cache
    /// when it shows messages). `Empty` if none, `Closed` at end of file. A message that spans
    /// several slots is delivered alone, reassembled.
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        self.wait_msg(Wait::Never)?;
        let mut n = self.ring.available_all().map_err(corrupt_recv)?.min(max as u64);
        if n > 0 && matches!(self.ring.peek(0), Ok((_, _, true))) {
            // A message spanning several slots: deliver it alone, reassembled.
            f(&self.recv_in(Wait::Never)?);
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

/// A message received in place ([`Receiver::recv_in_place`]). Dereferences to its bytes; gives
/// the slot back to the sender when dropped.
///
/// The bytes stay in shared memory while the guard lives: a sender that breaks the protocol can
/// change them meanwhile. A message that spanned several slots is reassembled into an owned
/// buffer instead.
pub struct InPlace<'a> {
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

impl InPlace<'_> {
    /// A `Pod` view of the bytes, if size and alignment fit (payloads are 16-byte aligned).
    pub fn as_value<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }

    /// Copies the message out (see [`copy_from_shared`](crate::ring::mem)) and gives the slot
    /// back.
    #[inline]
    pub(crate) fn into_message(mut self) -> Message {
        match self.body.owned.take() {
            Some(v) => Message::from_vec(v),
            None => Message::with_len(self.body.len, |b| self.rx.ring.copy_out(0, b)),
        }
    }

    /// Copies the message into `buf` (cleared first) and gives the slot back; returns the length.
    fn copy_into(self, buf: &mut Vec<u8>) -> usize {
        buf.clear();
        match &*self.body.owned {
            Some(v) => buf.extend_from_slice(v),
            None => {
                buf.resize(self.body.len, 0);
                self.rx.ring.copy_out(0, buf);
            }
        }
        buf.len()
    }

    /// Copies the message out as a `T` if it has `T`'s size (it is consumed either way).
    fn into_value<T: Pod>(self) -> Result<T, RecvError> {
        let (len, expected) = (self.body.len, std::mem::size_of::<T>());
        if len != expected {
            return Err(RecvError::SizeMismatch { len, expected });
        }
        let mut value = T::zeroed();
        match &*self.body.owned {
            Some(v) => bytemuck::bytes_of_mut(&mut value).copy_from_slice(v),
            None => self.rx.ring.copy_out(0, bytemuck::bytes_of_mut(&mut value)),
        }
        Ok(value)
    }
}

impl std::ops::Deref for InPlace<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        if let Some(v) = &*self.body.owned {
            return v;
        }
        self.rx.ring.payload(0, self.body.len)
    }
}

impl Drop for InPlace<'_> {
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

impl fmt::Debug for InPlace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InPlace").field("len", &self.body.len).finish()
    }
}

/// Blocking iterator over a receiver's messages (see [`Receiver::iter`]): ends at end of file.
pub struct Iter<'a> {
    rx: &'a mut Receiver,
}

impl Iterator for Iter<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator over the messages ready now (see [`Receiver::try_iter`]).
pub struct TryIter<'a> {
    rx: &'a mut Receiver,
}

impl Iterator for TryIter<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}

impl Receiver {
    /// Whether a receive would not wait now (a message, end of file, or an error to report).
    pub(crate) fn receive_ready(&self) -> bool {
        self.dead.is_some() || self.ring.published(0) || ends::producers_gone(self.ring.mem.ctrl())
    }

    /// The doorbell this receiver sleeps on.
    pub(crate) fn not_empty_bell(&self) -> &crate::segment::layout::DoorbellWords {
        &self.ring.mem.ctrl().not_empty
    }

    /// Messages until end of file, each taken with [`Receiver::recv`]: `for msg in &mut rx`. The
    /// iterator also ends at any other error (`Corrupt`), which a following `recv` reports.
    pub fn iter(&mut self) -> Iter<'_> {
        Iter { rx: self }
    }

    /// The messages ready now, each taken with [`Receiver::try_recv`].
    pub fn try_iter(&mut self) -> TryIter<'_> {
        TryIter { rx: self }
    }
}

impl<'a> IntoIterator for &'a mut Receiver {
    type Item = Message;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}
