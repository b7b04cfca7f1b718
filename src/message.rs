//! [`Message`]: a received message, owned by the receiver.

use bytemuck::Pod;
use std::fmt;

/// Messages up to this many bytes are held inline, without a heap allocation. Longer ones are
/// held in a buffer of their own. A thread keeps one spare buffer (of at most 64 KiB): a dropped
/// message's buffer becomes the spare if the thread has none, the next receive of a one-slot
/// message of exactly its length takes it, and a receive of another length frees it. So a thread
/// that receives and drops one-slot messages of one length in turn allocates once. Messages of
/// changing lengths, and messages of several slots (`put_large`, a pipe's fragments), allocate
/// per receive; `get_into`/`recv_into` (into a reused `Vec`), the `*_value` calls and the in-place
/// receives allocate at no size.
pub const INLINE_BYTES: usize = 22;

/// A received message, owned: its slot went back to the senders before the call that returned
/// it did, so holding a `Message` never takes room from the queue or pipe.
///
/// The bytes were copied out of shared memory with a copy that is no data race even if a peer
/// rewrote the slot meanwhile, and nobody else can change them now: validate and decode them
/// freely. Up to [`INLINE_BYTES`] bytes are held inline (no heap allocation); larger messages in
/// a buffer of their own, which dropping the message may leave to the thread's next receive of
/// that length (see [`INLINE_BYTES`]).
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
pub struct Message(Words);

/// A message as three plain words, which the compiler can keep in registers from the copy out
/// of the slot to the caller: a representation with a byte array (an enum with an inline
/// buffer) went through memory on the way, and where a later load read back a different shape
/// than the stores had written, the CPU could not forward it and waited for every older store,
/// among them the receive's release of the slot to the sending core (see docs/EXPERIMENTS.md,
/// "Owned pipe receives on the Intel host", and "Owned receives of longer messages on the Intel
/// host", "The shape of `Message`").
///
/// Byte 23 (in memory order) is the kind. `INLINE`: the message is bytes 0..len, len in byte
/// 22. `WORD`: an 8-byte message, word `a`. `HEAP`: a buffer made by `Box<[u8]>::into_raw`, its
/// address in `a` (provenance exposed) and its length in `b`, owned by this message alone (a
/// clone copies it; `into_vec` and drop take it back exactly once). `Words` is `Copy` for its
/// byte view: copying the words of a `HEAP` message would alias its buffer, so only `Clone`
/// copies them, and only for the other kinds.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Words {
    a: u64,
    b: u64,
    c: u64,
}

const INLINE: u8 = 0;
const WORD: u8 = 1;
const HEAP: u8 = 2;

/// The third word of a message of `kind` whose inline length (if it is inline) is `len`.
#[inline(always)]
fn tail_word(len: u8, kind: u8) -> u64 {
    u64::from_ne_bytes([0, 0, 0, 0, 0, 0, len, kind])
}

impl Words {
    #[inline(always)]
    fn kind(&self) -> u8 {
        self.c.to_ne_bytes()[7]
    }

    /// The length of an `INLINE` message.
    #[inline(always)]
    fn inline_len(&self) -> usize {
        usize::from(self.c.to_ne_bytes()[6]).min(INLINE_BYTES)
    }

    /// The heap buffer's address (kind `HEAP`): the address `from_box` exposed, so the pointer
    /// has the provenance of the buffer it names.
    #[inline(always)]
    fn heap_ptr(&self) -> *mut u8 {
        std::ptr::with_exposed_provenance_mut(self.a as usize)
    }
}

impl Message {
    /// A message of `len` bytes, filled by `fill` (which writes every byte of the slice).
    #[inline(always)]
    pub(crate) fn with_len(len: usize, fill: impl FnOnce(&mut [u8])) -> Message {
        if len <= INLINE_BYTES {
            let mut bytes = [0u8; 24];
            fill(&mut bytes[..len]);
            bytes[22] = len as u8;
            bytes[23] = INLINE;
            Message(bytemuck::cast(bytes))
        } else {
            Self::heap(len, fill)
        }
    }

    /// A message longer than [`INLINE_BYTES`], in its own allocation: this thread's spare
    /// buffer if it has exactly `len` bytes (see [`SPARE_MAX_BYTES`]), a new one otherwise.
    ///
    /// Inlined into the receive, so that the buffer's pointer and length reach the `Message`
    /// in registers. A new buffer is allocated with `malloc`, then zeroed with `memset`, rather
    /// than by `vec![0; len]` (glibc's `calloc`, which bypasses the per-thread cache that serves
    /// small `malloc`s) or left unzeroed for `fill` to write (slower for long messages): chosen
    /// by measurement, see docs/EXPERIMENTS.md, "Receiving messages longer than 22 bytes" and
    /// "Owned receives of longer messages on the Intel host".
    #[inline(always)]
    #[allow(clippy::slow_vector_initialization, reason = "malloc + memset, not calloc: see above")]
    fn heap(len: usize, fill: impl FnOnce(&mut [u8])) -> Message {
        let mut buf = match spare::take(len) {
            Some(buf) => buf,
            None => {
                let mut v = Vec::with_capacity(len);
                v.resize(len, 0u8);
                v.into_boxed_slice()
            }
        };
        fill(&mut buf);
        Self::from_box(buf)
    }

    /// A message that owns `buf`.
    #[inline(always)]
    fn from_box(buf: Box<[u8]>) -> Message {
        let len = buf.len();
        let ptr = Box::into_raw(buf) as *mut u8;
        Message(Words { a: ptr.expose_provenance() as u64, b: len as u64, c: tail_word(0, HEAP) })
    }

    /// Takes the heap buffer back (kind `HEAP`), leaving `self` an empty inline message.
    #[inline(always)]
    fn take_box(&mut self) -> Box<[u8]> {
        let (ptr, len) = (self.0.heap_ptr(), self.0.b as usize);
        self.0 = Words { a: 0, b: 0, c: tail_word(0, INLINE) };
        // SAFETY: a `HEAP` message holds the raw parts of a `Box<[u8]>` it alone owns (see
        // `Words`), and marking `self` inline above means it is taken back only this once.
        unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
    }

    /// An 8-byte message, from the word that holds it (a receive's common case: built from a
    /// register, with no copy loop).
    #[inline(always)]
    pub(crate) fn from_word(word: u64) -> Message {
        Message(Words { a: word, b: 0, c: tail_word(0, WORD) })
    }

    /// A message whose bytes are already in a `Vec`.
    pub(crate) fn from_vec(v: Vec<u8>) -> Message {
        Self::from_box(v.into_boxed_slice())
    }

    /// The bytes as a `Vec` (no copy when the message is not inline).
    pub fn into_vec(mut self) -> Vec<u8> {
        if self.0.kind() == HEAP {
            self.take_box().into_vec()
        } else {
            self.to_vec()
        }
    }

    /// The bytes read as a `Pod` value (copied out: any alignment), if the sizes match.
    pub fn to_value<T: Pod>(&self) -> Option<T> {
        (self.len() == std::mem::size_of::<T>()).then(|| bytemuck::pod_read_unaligned(self))
    }
}

impl Clone for Message {
    fn clone(&self) -> Message {
        if self.0.kind() == HEAP {
            Self::from_box(Box::from(&**self))
        } else {
            Message(self.0)
        }
    }
}

// Inline, with the rest out of line: where the caller knows the message is inline or a word,
// dropping it compiles to nothing.
impl Drop for Message {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0.kind() == HEAP {
            spare::put(self.take_box());
        }
    }
}

/// The longest buffer a thread keeps as its spare (see [`INLINE_BYTES`]): a consumer that
/// receives and drops messages of one length makes no allocation per message, at the cost of at
/// most this much memory held per thread that received such a message, until the thread exits or
/// receives a message of another length.
pub(crate) const SPARE_MAX_BYTES: usize = 64 * 1024;

/// This thread's spare message buffer.
mod spare {
    use std::cell::Cell;

    thread_local! {
        static SPARE: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
    }

    /// The spare buffer if it has exactly `len` bytes. A spare of another length is freed: the
    /// buffer of the message this receive makes can take its place.
    #[inline(always)]
    pub(super) fn take(len: usize) -> Option<Box<[u8]>> {
        SPARE.try_with(|spare| spare.take().filter(|buf| buf.len() == len)).ok().flatten()
    }

    /// The spare's length, if the thread has one (for tests).
    #[cfg(test)]
    pub(super) fn len() -> Option<usize> {
        SPARE.with(|spare| {
            let buf = spare.take();
            let len = buf.as_ref().map(|b| b.len());
            spare.set(buf);
            len
        })
    }

    /// Makes `buf` the spare if the thread has none and `buf` is longer than
    /// [`INLINE_BYTES`](super::INLINE_BYTES) (no receive would reuse a shorter one) and no
    /// longer than [`SPARE_MAX_BYTES`](super::SPARE_MAX_BYTES); frees it otherwise. A spare is
    /// never replaced by a later drop, so the buffer of a message that no receive reuses (one of
    /// several slots, say) cannot push out the one that the next one-slot receive will.
    #[inline(never)]
    pub(super) fn put(buf: Box<[u8]>) {
        if buf.len() <= super::INLINE_BYTES || buf.len() > super::SPARE_MAX_BYTES {
            return;
        }
        let _ = SPARE.try_with(|spare| {
            let old = spare.take();
            spare.set(old.or(Some(buf)));
        });
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self.0.kind() {
            WORD => bytemuck::bytes_of(&self.0.a),
            // SAFETY: a `HEAP` message owns a buffer of `b` initialised bytes at `heap_ptr()`
            // (see `Words`), alive and unchanged while `self` is borrowed.
            HEAP => unsafe { std::slice::from_raw_parts(self.0.heap_ptr(), self.0.b as usize) },
            _ => &bytemuck::bytes_of(&self.0)[..self.0.inline_len()],
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
            let m = Message::with_len(len, |b| b.copy_from_slice(&src));
            assert_eq!(&*m, &src[..]);
            assert_eq!(m.clone().into_vec(), src);
        }
        assert_eq!(Message::with_len(8, |b| b.copy_from_slice(&7u64.to_ne_bytes())).to_value::<u64>(), Some(7));
        let word = Message::from_word(u64::from_ne_bytes(*b"12345678"));
        assert_eq!(&*word, b"12345678");
        assert_eq!(word.len(), 8);
        assert_eq!(word.clone().into_vec(), b"12345678");
        assert_eq!(word.to_value::<u64>(), Some(u64::from_ne_bytes(*b"12345678")));
        assert_eq!(word, Message::with_len(8, |b| b.copy_from_slice(b"12345678")));
        assert_eq!(Message::with_len(4, |b| b.fill(0)).to_value::<u64>(), None);
        // Three words: receives return it by value through several layers, and a larger inline
        // buffer makes every one of those moves cost more than the copy out of the slot.
        assert_eq!(std::mem::size_of::<Message>(), 24);
    }

    fn filled(len: usize, byte: u8) -> Message {
        Message::with_len(len, |b| b.fill(byte))
    }

    #[test]
    fn a_dropped_buffer_serves_the_next_message_of_its_length_on_the_thread() {
        assert_eq!(spare::len(), None);
        let first = filled(64, 1);
        let buf = first.as_ptr();
        drop(first);
        assert_eq!(spare::len(), Some(64));
        let again = filled(64, 2);
        assert_eq!(again.as_ptr(), buf, "the spare was not reused");
        assert_eq!(&*again, &[2u8; 64][..], "a reused buffer holds exactly the new bytes");
        assert_eq!(spare::len(), None);
        // A second live message of that length has a buffer of its own; the first buffer
        // dropped while the thread has no spare becomes it, a later one is freed.
        let second = filled(64, 3);
        let second_buf = second.as_ptr();
        drop(second);
        drop(again);
        assert_eq!(filled(64, 4).as_ptr(), second_buf);
        // A receive of another length frees the spare; its own buffer becomes the next one.
        let other = filled(100, 5);
        assert_eq!(spare::len(), None);
        drop(other);
        assert_eq!(spare::len(), Some(100));
        // Neither a clone nor another thread's drop shares or fills this thread's spare.
        let kept = filled(100, 6);
        let cloned = kept.clone();
        assert_ne!(cloned.as_ptr(), kept.as_ptr());
        std::thread::spawn(move || drop(cloned)).join().unwrap();
        assert_eq!(spare::len(), None);
        drop(kept);
        assert_eq!(spare::len(), Some(100));
    }

    #[test]
    fn only_buffers_a_receive_could_reuse_become_the_spare() {
        // Reassembled messages (of several slots) hold buffers too; one of `INLINE_BYTES` or
        // fewer, which no receive would reuse, is never kept.
        drop(Message::from_vec(vec![4u8; INLINE_BYTES]));
        assert_eq!(spare::len(), None);
        drop(filled(SPARE_MAX_BYTES + 1, 1));
        assert_eq!(spare::len(), None, "a buffer over the limit was kept");
        let big = filled(SPARE_MAX_BYTES, 2);
        drop(big);
        assert_eq!(spare::len(), Some(SPARE_MAX_BYTES));
        let reused = filled(SPARE_MAX_BYTES, 3);
        assert!(reused.iter().all(|&b| b == 3));
        // into_vec hands the buffer to the caller: nothing becomes the spare.
        let v = filled(64, 5).into_vec();
        assert_eq!(v, vec![5u8; 64]);
        assert_eq!(spare::len(), None);
    }

    #[test]
    fn a_message_of_several_slots_does_not_push_out_the_spare() {
        let one_slot = filled(64, 1);
        let kept = one_slot.as_ptr();
        drop(one_slot);
        let reassembled = Message::from_vec(vec![2u8; 100]);
        assert_eq!(&*reassembled, &[2u8; 100][..]);
        drop(reassembled);
        assert_eq!(spare::len(), Some(64));
        assert_eq!(filled(64, 3).as_ptr(), kept);
    }
}
