//! The sending half of a pipe end, and a slot reserved on it.

use super::{corrupt_send, End};
use crate::ring::doorbell::{self, IdleCheck, Wait};
use crate::ring::ends;
use crate::ring::spsc;
use crate::SendError;
use bytemuck::Pod;
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// The sending half of a pipe end. `Send`, not `Sync`: one thread sends at a time.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<shmq::Sender>(); // a pipe has one sender: not `Sync`
/// ```
pub struct Sender {
    pub(super) end: Arc<End>,
    pub(super) ring: spsc::Producer,
    pub(super) spin: u32,
    /// Set once the far side was seen gone, or corruption was seen: sticky.
    pub(super) dead: Option<SendError>,
    pub(super) handed_over: bool,
    /// This half's role bit in the participant entry.
    pub(super) role: u32,
    /// When this half last looked for a dead receiver (see `End::recover_if_due`).
    pub(super) idle: IdleCheck,
    pub(super) _not_sync: PhantomData<Cell<()>>,
}

impl Sender {
    /// Waits until `need` slots are free.
    #[inline]
    fn wait_room(&mut self, need: u64, wait: Wait) -> Result<(), SendError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let ring = &mut self.ring;
        let mem = ring.mem; // a copy of the pointers, so the bell does not borrow `ring`
        let bell = &mem.ctrl().not_full;
        let seg = &self.end.seg;
        let attempt = || {
            if ends::consumers_gone(ring.mem.ctrl()) {
                return Some(Err(SendError::Closed));
            }
            match ring.room_for(need) {
                // Full, or a handle that can no longer tell (forked, or its file truncated).
                Ok(n) if n < need => seg.broken().map(|b| Err(b.into())),
                Ok(_) => Some(Ok(())),
                Err(s) => Some(Err(corrupt_send(s))),
            }
        };
        // Full: before saying so, look for a dead receiver (see `End::recover_if_due`).
        let (end, idle) = (&self.end, &self.idle);
        let look = || end.recover_if_due(idle);
        let r = doorbell::attempt_or_block(bell, wait, self.spin, attempt, look, SendError::Full, SendError::Timeout);
        if let Err(e @ (SendError::Closed | SendError::Corrupt(_) | SendError::Forked)) = &r {
            self.dead = Some(e.clone());
        }
        r
    }

    #[inline]
    fn send_in(&mut self, msg: &[u8], wait: Wait) -> Result<(), SendError> {
        let max = self.end.geometry.slot_size as usize;
        if msg.len() > max {
            return self.send_large(msg, wait);
        }
        self.wait_room(1, wait)?;
        self.publish_one(msg);
        Ok(())
    }

    /// Writes `msg` (at most a slot) into the next slot and publishes it; there is room.
    #[inline]
    fn publish_one(&mut self, msg: &[u8]) {
        self.ring.write(0, msg);
        self.ring.set_len(0, msg.len() as u32);
        self.ring.publish(1);
    }

    /// A message larger than a slot: consecutive slots, each but the last flagged "more", all
    /// published by one release store, so the receiver sees the whole message or none of it.
    fn send_large(&mut self, msg: &[u8], wait: Wait) -> Result<(), SendError> {
        let slot = self.end.geometry.slot_size as usize;
        let capacity = self.end.geometry.capacity;
        let k = msg.len().div_ceil(slot) as u64;
        if k > capacity {
            return Err(SendError::TooLarge { len: msg.len(), max: slot * capacity as usize });
        }
        self.wait_room(k, wait)?;
        for (i, chunk) in msg.chunks(slot).enumerate() {
            self.ring.write(i as u64, chunk);
            self.ring.set_fragment(i as u64, chunk.len() as u32, (i as u64) + 1 < k);
        }
        self.ring.publish(k);
        Ok(())
    }

    /// Sends a message, blocking while the pipe is full.
    ///
    /// A message larger than a slot is split across consecutive slots (at most the capacity) and
    /// reassembled by the receiver, at the cost of one copy on receipt and 16 bytes per extra slot.
    ///
    /// Errors: `Closed` (the receiver has gone: broken pipe), `TooLarge` (larger than
    /// `slot_size * capacity`), `Corrupt`.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if self.send_now(msg) {
            return Ok(());
        }
        self.send_in(msg, Wait::Forever)
    }

    /// Sends a message, blocking at most `timeout` while the pipe is full.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_in(msg, Wait::after(timeout))
    }

    /// Sends a message if there is room now (`Full` otherwise).
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if self.send_now(msg) {
            return Ok(());
        }
        self.send_in(msg, Wait::Never)
    }

    /// The fast path of every send, inlined into the caller: a message that fits one slot, with
    /// room cached or in the consumer's counter, on a healthy pipe whose receiver is there. Says
    /// whether it sent; if not, the general path (which waits, splits or reports) runs instead.
    #[inline]
    fn send_now(&mut self, msg: &[u8]) -> bool {
        if msg.len() > self.end.geometry.slot_size as usize
            || self.dead.is_some()
            || ends::consumers_gone(self.ring.mem.ctrl())
            || !matches!(self.ring.room(), Ok(n) if n > 0)
        {
            return false;
        }
        self.publish_one(msg);
        true
    }

    /// Sends a `Pod` value's bytes, blocking while the pipe is full.
    pub fn send_value<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.send(bytemuck::bytes_of(value))
    }

    /// Sends a `Pod` value's bytes if there is room now.
    pub fn try_send_value<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.try_send(bytemuck::bytes_of(value))
    }

    /// Sends a `Pod` value's bytes, blocking at most `timeout` while the pipe is full.
    pub fn send_value_timeout<T: Pod>(&mut self, value: &T, timeout: Duration) -> Result<(), SendError> {
        self.send_timeout(bytemuck::bytes_of(value), timeout)
    }

    /// Sends as many of `msgs` as fit now, publishing them together (one release store and one
    /// doorbell check for the batch). Returns how many were sent: at least one if there was room,
    /// possibly fewer than the free slots (the receiver's position is read from a cache when it
    /// shows room). Stops before the first message larger than a slot (send those with `send`).
    pub fn send_batch<'m>(&mut self, msgs: impl IntoIterator<Item = &'m [u8]>) -> Result<usize, SendError> {
        let room = match self.wait_room(1, Wait::Never) {
            Ok(()) => self.ring.room().map_err(corrupt_send)?,
            Err(SendError::Full) => return Ok(0),
            Err(e) => return Err(e),
        };
        let max = self.end.geometry.slot_size as usize;
        let mut n = 0u64;
        for msg in msgs.into_iter() {
            if n == room || msg.len() > max {
                break;
            }
            self.ring.write(n, msg);
            self.ring.set_len(n, msg.len() as u32);
            n += 1;
        }
        if n > 0 {
            self.ring.publish(n);
        }
        Ok(n as usize)
    }

    /// Reserves the next slot to write a message in place, blocking while the pipe is full.
    /// Nothing is sent unless [`Reservation::commit`] is called.
    pub fn reserve(&mut self) -> Result<Reservation<'_>, SendError> {
        self.wait_room(1, Wait::Forever)?;
        Ok(Reservation { tx: self })
    }

    /// As [`Sender::reserve`], but `Full` instead of waiting for room.
    pub fn try_reserve(&mut self) -> Result<Reservation<'_>, SendError> {
        self.wait_room(1, Wait::Never)?;
        Ok(Reservation { tx: self })
    }

    /// Reserves a slot, lets `write` fill it and return the length, and sends it (as
    /// [`Queue::put_with`](crate::Queue::put_with)).
    pub fn send_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> Result<(), SendError> {
        let mut r = self.reserve()?;
        let len = write(r.buf());
        r.commit(len)
    }

    /// Slot size in bytes.
    pub fn slot_size(&self) -> usize {
        self.end.geometry.slot_size as usize
    }

    /// The doorbell this sender sleeps on (awaited sends, `crate::aio`).
    #[cfg(feature = "async")]
    pub(crate) fn not_full_bell(&self) -> &crate::segment::layout::DoorbellWords {
        &self.ring.mem.ctrl().not_full
    }

    /// Reaps dead participants now: if the receiver died, sends fail with `Closed` (broken pipe)
    /// from then on. Returns how many were reaped.
    ///
    /// Calls do this by themselves (see [`Connection::recover`](crate::Connection::recover)); call
    /// it to do it at once, or to learn how many were reaped.
    pub fn recover(&self) -> usize {
        self.end.recover()
    }
}

/// A slot reserved on a [`Sender`] for writing in place.
pub struct Reservation<'a> {
    tx: &'a mut Sender,
}

impl Reservation<'_> {
    /// The whole slot (`slot_size` bytes; contents unspecified).
    pub fn buf(&mut self) -> &mut [u8] {
        self.tx.ring.payload_mut(0)
    }

    /// Sends the first `len` bytes of [`Reservation::buf`].
    pub fn commit(self, len: usize) -> Result<(), SendError> {
        let max = self.tx.slot_size();
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        self.tx.ring.set_len(0, len as u32);
        self.tx.ring.publish(1);
        Ok(())
    }
}

impl Drop for Sender {
    #[inline]
    fn drop(&mut self) {
        if !self.handed_over {
            self.end.detach(self.role);
        }
    }
}
