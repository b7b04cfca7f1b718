//! [`Message`]: a received message, owned by the receiver.

use bytemuck::Pod;
use std::fmt;

/// Messages up to this many bytes are held inline, without a heap allocation. Longer ones take
/// one allocation per receive; `get_into`/`recv_into` (into a reused `Vec`), the `*_value` calls
/// and the in-place receives take none at any size.
pub const INLINE_BYTES: usize = 22;

/// A received message, owned: its slot went back to the senders before the call that returned
/// it did, so holding a `Message` never takes room from the queue or pipe.
///
/// The bytes were copied out of shared memory with a copy that is no data race even if a peer
/// rewrote the slot meanwhile, and nobody else can change them now: validate and decode them
/// freely. Up to [`INLINE_BYTES`] bytes are held inline (no heap allocation); larger messages in
/// their own allocation.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q = shmq::Queue::anonymous(2, 64)?;
/// q.put(b"job 1")?;
/// let msg: shmq::Message = q.get()?;
/// q.put(b"job 2")?;
/// q.put(b"job 3")?; // the held message takes no room: the queue holds 2 more
/// assert_eq!(&*msg, b"job 1");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Message(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE_BYTES] },
    Heap(Box<[u8]>),
}

impl Message {
    /// A message of `len` bytes, written by `fill` at the pointer it is given.
    ///
    /// # Safety
    /// `fill` writes every one of the `len` bytes at the pointer (which may point at
    /// uninitialised memory: it must not read them).
    #[inline(always)]
    pub(crate) unsafe fn with_len(len: usize, fill: impl FnOnce(*mut u8)) -> Message {
        if len <= INLINE_BYTES {
            let mut bytes = [0u8; INLINE_BYTES];
            fill(bytes.as_mut_ptr());
            Message(Repr::Inline { len: len as u8, bytes })
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { Self::heap(len, fill) }
        }
    }

    /// A message longer than [`INLINE_BYTES`], in its own allocation (not zeroed first: `fill`
    /// writes it all).
    ///
    /// # Safety
    /// As for [`Message::with_len`].
    #[inline(never)]
    unsafe fn heap(len: usize, fill: impl FnOnce(*mut u8)) -> Message {
        let mut v = Vec::<u8>::with_capacity(len);
        fill(v.as_mut_ptr());
        // SAFETY: `fill` wrote all `len <= capacity` bytes (the caller's contract).
        unsafe { v.set_len(len) };
        Message(Repr::Heap(v.into_boxed_slice()))
    }

    /// An 8-byte message, from the word that holds it (a receive's common case: built from a
    /// register, with no copy loop).
    #[inline(always)]
    pub(crate) fn from_word(word: u64) -> Message {
        let mut bytes = [0u8; INLINE_BYTES];
        bytes[..8].copy_from_slice(&word.to_ne_bytes());
        Message(Repr::Inline { len: 8, bytes })
    }

    /// A message whose bytes are already in a `Vec`.
    pub(crate) fn from_vec(v: Vec<u8>) -> Message {
        Message(Repr::Heap(v.into_boxed_slice()))
    }

    /// The bytes as a `Vec` (no copy when the message is not inline).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Inline { len, bytes } => bytes[..len as usize].to_vec(),
            Repr::Heap(v) => v.into_vec(),
        }
    }

    /// The bytes read as a `Pod` value (copied out: any alignment), if the sizes match.
    pub fn to_value<T: Pod>(&self) -> Option<T> {
        (self.len() == std::mem::size_of::<T>()).then(|| bytemuck::pod_read_unaligned(self))
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Heap(v) => v,
        }
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Message> for Vec<u8> {
    fn from(m: Message) -> Vec<u8> {
        m.into_vec()
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        **self == **other
    }
}

impl Eq for Message {}

impl PartialEq<[u8]> for Message {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Message {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == other[..]
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_messages_hold_exactly_their_bytes() {
        for len in [0, 1, 8, INLINE_BYTES, INLINE_BYTES + 1, 4096] {
            let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
            // SAFETY: the copy writes all `len` bytes.
            let m = unsafe { Message::with_len(len, |p| p.copy_from_nonoverlapping(src.as_ptr(), len)) };
            assert_eq!(&*m, &src[..]);
            assert_eq!(m.clone().into_vec(), src);
        }
        // SAFETY: the write covers all 8 bytes.
        let seven = unsafe { Message::with_len(8, |p| (p as *mut u64).write_unaligned(7)) };
        assert_eq!(seven.to_value::<u64>(), Some(7));
        assert_eq!(&*Message::from_word(u64::from_ne_bytes(*b"12345678")), b"12345678");
        // SAFETY: the write covers all 4 bytes.
        assert_eq!(unsafe { Message::with_len(4, |p| p.write_bytes(0, 4)) }.to_value::<u64>(), None);
        // Three words: receives return it by value through several layers, and a larger inline
        // buffer makes every one of those moves cost more than the copy out of the slot.
        assert_eq!(std::mem::size_of::<Message>(), 24);
    }
}
