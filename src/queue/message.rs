//! Reading a message in place ([`InPlace`]) and writing one in place ([`Reservation`]).

use super::Queue;
use crate::ring::mpmc::{ReadClaim, WriteClaim};
use crate::{RecvError, SendError};
use bytemuck::Pod;
use std::fmt;

/// A message read in place ([`Queue::get_in_place`]). Dereferences to its bytes; frees its slot
/// when dropped.
///
/// Holding it keeps the slot taken: producers that come round to that slot a lap later wait for
/// it. The bytes stay in shared memory while the guard lives, and a peer that breaks the protocol
/// can change them meanwhile: validate a private copy ([`Queue::get`], `get_value`, `get_serde`),
/// not the guard, when peers are not trusted.
pub struct InPlace<'q> {
    claim: ReadClaim<'q>,
    len: usize,
    /// A message that spanned several slots, copied out (its slots stay claimed until drop, so a
    /// consumer that dies holding the message is seen holding it, and the loss is counted).
    owned: Option<Vec<u8>>,
}

impl<'q> InPlace<'q> {
    /// A single-slot message of `len` bytes (checked against the slot size), read in place.
    #[inline]
    pub(super) fn new(claim: ReadClaim<'q>, len: usize) -> Self {
        InPlace { claim, len, owned: None }
    }

    /// Copies a message that spans several slots out of them (the slots are freed when the
    /// guard drops, or at once if a fragment is corrupt).
    pub(super) fn assemble(claim: ReadClaim<'q>) -> Result<Self, RecvError> {
        let mut body = Vec::new();
        claim.copy_fragments(&mut body)?;
        Ok(InPlace { claim, len: body.len(), owned: Some(body) })
    }

    /// A `Pod` view of the bytes, if size and alignment fit (payloads are 16-byte aligned).
    pub fn as_value<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }
}

impl std::ops::Deref for InPlace<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.owned {
            Some(v) => v,
            None => self.claim.bytes(self.len),
        }
    }
}

impl fmt::Debug for InPlace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InPlace").field("len", &self.len).finish()
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
        self.q.commit(self.claim, len)
    }
}

/// Blocking iterator over a queue's messages (see [`Queue::iter`]): ends at end of stream.
pub struct Iter<'q> {
    pub(super) q: &'q Queue,
}

impl Iterator for Iter<'_> {
    type Item = crate::Message;

    fn next(&mut self) -> Option<crate::Message> {
        self.q.get().ok()
    }
}

/// Non-blocking iterator over the messages a queue holds now (see [`Queue::try_iter`]).
pub struct TryIter<'q> {
    pub(super) q: &'q Queue,
}

impl Iterator for TryIter<'_> {
    type Item = crate::Message;

    fn next(&mut self) -> Option<crate::Message> {
        self.q.try_get().ok()
    }
}

impl<'q> IntoIterator for &'q Queue {
    type Item = crate::Message;
    type IntoIter = Iter<'q>;

    fn into_iter(self) -> Iter<'q> {
        self.iter()
    }
}
