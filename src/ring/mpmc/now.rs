//! The one-pass put and take: the common put (the slot the tail names is free now) and the
//! common receive (a committed single-slot message at the head) claim, copy and commit or
//! release in one go, with no claim object between the ring and the handle. Everything else
//! answers `false` or [`Took::Other`] and leaves the general path to the caller.

use super::claim::Fast;
use super::*;
use crate::ring::mem::{copy_from_shared, copy_to, load_word_shared};
use crate::ring::took::Took;
use crate::Message;

impl Mpmc {
    /// Puts `msg` into the slot the tail names if it is free now, in one pass: the eager claim,
    /// the copy and the commit, with no claim object in between (the round trip of a busy-polling
    /// pair is made of little else). `false` when the slot is not free or `msg` does not fit a
    /// slot: nothing was claimed, and the caller takes the general path.
    #[inline]
    pub fn put_now(&self, owner: u16, msg: &[u8]) -> bool {
        if msg.len() > self.mem.slot_size {
            return false;
        }
        let Some(c) = self.claim_write_eager(owner) else { return false };
        // SAFETY: `claim_write_eager` checked `c.idx < capacity`; the payload holds `slot_size
        // >= msg.len()` bytes (checked above), ours until the commit below.
        unsafe { copy_to(msg, self.mem.payload(c.idx)) };
        self.commit(c, msg.len() as u32);
        true
    }

    /// Takes the message at the head if it is a committed single-slot one, in one pass: the
    /// claim, the length check, the copy into a [`Message`] and the release, with no claim
    /// object in between.
    #[inline(always)]
    pub fn take_now(&self, owner: u16) -> Took {
        let c = match self.claim_read_fast(owner) {
            Fast::Claimed(c) => c,
            Fast::Empty => return Took::Empty,
            Fast::Other => return Took::Other,
        };
        let payload = self.mem.payload(c.idx);
        let took = match self.claimed_len(c) {
            Ok(8) if payload as usize % 8 == 0 => {
                // SAFETY: `claim_read_fast` checked `c.idx < capacity`, and the payload holds
                // `slot_size >= 8` bytes (`claimed_len` checked `len <= slot_size`), here
                // 8-aligned; the slot is ours and only read.
                let word = unsafe { load_word_shared(payload) };
                Took::Message(Message::from_word(word))
            }
            Ok(len) => Took::Message(Message::with_len(len, |b| {
                // SAFETY: as above, `len <= slot_size` bytes of the claimed slot's payload.
                unsafe { copy_from_shared(payload, b) }
            })),
            Err(e) => Took::Corrupt(e),
        };
        self.release(c);
        took
    }
}
