//! What a consumer holds (a [`Message`]) and what a producer writes in place (a [`Reservation`]).

use super::Queue;
use crate::ring::mpmc::{ReadClaim, WriteClaim};
use crate::{RecvError, SendError};
use bytemuck::Pod;
use std::fmt;

/// A message read in place. Dereferences to its bytes; frees its slot when dropped.
///
/// The bytes stay in shared memory while the guard lives: a peer that breaks the protocol can
/// change them meanwhile. Validate a private copy (`get_value`, `get_serde`, or `to_vec()`), not
/// the guard, when peers are not trusted.
pub struct Message<'q> {
    claim: ReadClaim<'q>,
    len: usize,
    /// A message that spanned several slots, copied out (its slots stay claimed until drop, so a
    /// consumer that dies holding the message is seen holding it, and the loss is counted).
    owned: Option<Vec<u8>>,
}

impl<'q> Message<'q> {
    /// A single-slot message of `len` bytes (checked against the slot size), read in place.
    #[inline]
    pub(super) fn in_place(claim: ReadClaim<'q>, len: usize) -> Self {
        Message { claim, len, owned: None }
    }

    /// Copies a message that spans several slots out of them (the slots are freed when the
    /// message drops, or at once if a fragment is corrupt).
    pub(super) fn assemble(claim: ReadClaim<'q>, slot_size: usize) -> Result<Self, RecvError> {
        let mut body = Vec::with_capacity(claim.count() as usize * slot_size);
        claim.copy_fragments(&mut body)?;
        Ok(Message { claim, len: body.len(), owned: Some(body) })
    }

    /// A `Pod` view of the bytes, if size and alignment fit (payloads are 16-byte aligned).
    pub fn as_value<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }

    pub(super) fn read_value<T: Pod>(self) -> Result<T, RecvError> {
        if self.len != std::mem::size_of::<T>() {
            return Err(RecvError::SizeMismatch { len: self.len, expected: std::mem::size_of::<T>() });
        }
        Ok(bytemuck::pod_read_unaligned(&self))
    }
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.owned {
            Some(v) => v,
            None => self.claim.bytes(self.len),
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.len).finish()
    }
}

/// A slot claimed for writing in place (see [`Queue::reserve`]). Dropping it uncommitted gives
/// the slot up: consumers skip it.
pub struct Reservation<'q> {
    q: &'q Queue,
    claim: WriteClaim<'q>,
}

impl<'q> Reservation<'q> {
    pub(super) fn new(q: &'q Queue, claim: WriteClaim<'q>) -> Self {
        Reservation { q, claim }
    }

    /// The whole slot (`slot_size` bytes; contents unspecified) to write the message into.
    pub fn buf(&mut self) -> &mut [u8] {
        self.claim.payload_mut()
    }

    /// Publishes the first `len` bytes of [`Reservation::buf`] as the message. `len` larger than
    /// the slot gives the slot up and returns `TooLarge`.
    pub fn commit(self, len: usize) -> Result<(), SendError> {
        let max = self.q.slot_size();
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        self.q.commit(self.claim, len);
        Ok(())
    }
}
