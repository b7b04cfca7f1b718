//! The single-producer single-consumer ring behind pipes (no compare-and-swap anywhere).
//!
//! `tail` counts messages ever published and `head` messages ever consumed; each is written by
//! one side only. Each side keeps its own position, slot index and a *cached* copy of the other
//! side's counter, and reloads the shared counter only when the cache says "maybe full" / "maybe
//! empty" (rtrb's technique): most operations touch no cache line the other side writes.
//!
//! Position `p` lives in slot `mem.order.slot(p % capacity)`, a
//! [`SlotOrder`](crate::ring::slot_order::SlotOrder): bit-reversed where the capacity allows and the creator
//! did not ask for sequence, so that consecutive messages are not in consecutive lines. Each side
//! keeps the slot of its next position beside the index, so the fast paths compute no order.
//!
//! The counter read from the other side is untrusted: `head <= tail <= head + capacity` is checked
//! on every reload, and a slot's length is read once and checked against the slot size.

use crate::ring::doorbell;
use crate::ring::mem::{copy_from_shared, copy_to, load_word_shared, RingMem};
use crate::ring::took::Took;
use crate::sys::atomic::Ordering;
use crate::Message;

/// Slot header `aux` bit: the message continues in the next slot (messages larger than a slot
/// travel as consecutive fragments published together).
pub(crate) const AUX_MORE: u32 = 1;

/// The other side broke the ring's invariants (the reason, for the error message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt(pub &'static str);

/// The producing side's private state.
pub(crate) struct Producer {
    pub mem: RingMem,
    tail: u64,
    /// `tail % capacity`: the position's index, before [`SlotOrder`](crate::ring::slot_order::SlotOrder).
    idx: u64,
    /// The slot that position goes to (`mem.order`).
    slot0: u64,
    cached_head: u64,
}

/// The consuming side's private state.
pub(crate) struct Consumer {
    pub mem: RingMem,
    head: u64,
    /// `head % capacity`: the position's index, before [`SlotOrder`](crate::ring::slot_order::SlotOrder).
    idx: u64,
    /// The slot that position goes to (`mem.order`).
    slot0: u64,
    cached_tail: u64,
}

/// `idx + n` modulo `cap`, for `idx < cap` and `n <= cap`.
#[inline]
fn advance(idx: u64, n: u64, cap: u64) -> u64 {
    let i = idx + n;
    if i >= cap {
        i - cap
    } else {
        i
    }
}

/// The slot of the `n`th position after index `idx` (whose slot, `slot0`, each side keeps).
#[inline]
fn nth_slot(mem: &RingMem, idx: u64, slot0: u64, n: u64) -> u64 {
    if n == 0 {
        return slot0;
    }
    mem.order.slot(advance(idx, n, mem.capacity))
}

fn check(head: u64, tail: u64, cap: u64) -> Result<(), Corrupt> {
    if tail.wrapping_sub(head) > cap {
        return Err(Corrupt("pipe counters out of range"));
    }
    Ok(())
}

impl Producer {
    /// Takes over the producing side of a ring at its current state.
    pub fn new(mem: RingMem) -> Result<Self, Corrupt> {
        let tail = mem.ctrl().tail.load(Ordering::Acquire);
        let head = mem.ctrl().head.load(Ordering::Acquire);
        check(head, tail, mem.capacity)?;
        let idx = tail % mem.capacity;
        Ok(Producer { mem, tail, idx, slot0: mem.order.slot(idx), cached_head: head })
    }

    /// Free slots, reloading the consumer's counter only if the cached one shows none.
    #[inline]
    pub fn room(&mut self) -> Result<u64, Corrupt> {
        self.room_for(1)
    }

    /// Free slots, reloading the consumer's counter only if the cached one shows fewer than `need`.
    #[inline]
    pub fn room_for(&mut self, need: u64) -> Result<u64, Corrupt> {
        let cap = self.mem.capacity;
        let mut used = self.tail.wrapping_sub(self.cached_head);
        if used > cap - need.min(cap) {
            // ORDERING: Acquire, pairs with the Release store in `Consumer::release`. SYNC POINT:
            // pipe-released: the consumer is done with the slots we are about to reuse.
            let head = self.mem.ctrl().head.load(Ordering::Acquire);
            check(head, self.tail, cap)?;
            self.cached_head = head;
            used = self.tail.wrapping_sub(head);
        }
        Ok(cap - used)
    }

    /// The slot index of the `n`th unpublished message (`n < room()`).
    #[inline]
    pub fn slot(&self, n: u64) -> u64 {
        nth_slot(&self.mem, self.idx, self.slot0, n)
    }

    /// Copies `msg` (at most a slot; longer panics) into the payload of the `n`th unpublished
    /// position (`n < room()`: the consumer does not read it until it is published).
    #[inline]
    pub fn write(&mut self, n: u64, msg: &[u8]) {
        assert!(msg.len() <= self.mem.slot_size && n < self.mem.capacity, "a write outside the free slots");
        let idx = self.slot(n);
        // SAFETY: `idx < capacity` (`nth_slot` of `n < capacity`), and the slot's payload holds `slot_size >=
        // msg.len()` bytes. The position is unpublished, so the consumer does not read it, and
        // `&mut self` makes this the only access from this process; `msg` is the caller's memory.
        unsafe { copy_to(msg, self.mem.payload(idx)) }
    }

    /// The whole payload (`slot_size` bytes, contents unspecified) of the `n`th unpublished
    /// position, to write a message in place.
    #[inline]
    pub fn payload_mut(&mut self, n: u64) -> &mut [u8] {
        assert!(n < self.mem.capacity, "a position outside the ring");
        let idx = self.slot(n);
        // SAFETY: as in `write`: an in-bounds, unpublished slot of `slot_size` payload bytes,
        // reachable only through this `&mut self` borrow while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.mem.payload(idx), self.mem.slot_size) }
    }

    /// Records the length of the `n`th unpublished message (a whole message in one slot).
    #[inline]
    pub fn set_len(&self, n: u64, len: u32) {
        self.set_fragment(n, len, false);
    }

    /// Records the `n`th unpublished slot as a fragment of `len` bytes; `more`: the message
    /// continues in the next slot.
    #[inline]
    pub fn set_fragment(&self, n: u64, len: u32, more: bool) {
        let slot = self.mem.slot(self.slot(n));
        slot.len.store(len, Ordering::Relaxed);
        slot.aux.store(if more { AUX_MORE } else { 0 }, Ordering::Relaxed);
    }

    /// Publishes the next `n` messages (written with [`Producer::set_len`] and their payloads)
    /// and wakes the consumer if it sleeps.
    #[inline]
    pub fn publish(&mut self, n: u64) {
        // Last slot first: a consumer that sees the first slot's stamp then sees every later
        // stamp of the same publish (they were stored before it), so a message split across
        // several slots is never seen in part.
        for i in (0..n).rev() {
            // ORDERING: Release, pairs with the Acquire load of the stamp in
            // `Consumer::available` / `Consumer::published`. SYNC POINT: pipe-published: the
            // slot's length and payload (and the later slots' stamps) are visible to a consumer
            // that sees this stamp. A consumer waiting for one message polls this stamp, in the
            // line that holds the payload, instead of the tail's line.
            let stamp = self.tail.wrapping_add(i + 1);
            self.mem.slot(self.slot(i)).stamp.store(stamp, Ordering::Release);
        }
        self.idx = advance(self.idx, n, self.mem.capacity);
        self.slot0 = self.mem.order.slot(self.idx);
        self.tail = self.tail.wrapping_add(n);
        // ORDERING: Release, pairs with the Acquire load in `Consumer::available`. SYNC POINT:
        // pipe-published: lengths and payloads are visible before the new tail.
        self.mem.ctrl().tail.store(self.tail, Ordering::Release);
        doorbell::ring(&self.mem.ctrl().not_empty);
    }
}

impl Consumer {
    /// Takes over the consuming side of a ring at its current state.
    pub fn new(mem: RingMem) -> Result<Self, Corrupt> {
        let tail = mem.ctrl().tail.load(Ordering::Acquire);
        let head = mem.ctrl().head.load(Ordering::Acquire);
        if head.wrapping_sub(tail) > mem.capacity {
            check(head, tail, mem.capacity)?;
        }
        // A tail behind the head is a publish still landing: start from "nothing known".
        let cached_tail = if tail.wrapping_sub(head) <= mem.capacity { tail } else { head };
        let idx = head % mem.capacity;
        Ok(Consumer { mem, head, idx, slot0: mem.order.slot(idx), cached_tail })
    }

    /// The slot index of the `n`th unread position (`n < capacity`).
    #[inline]
    fn slot(&self, n: u64) -> u64 {
        nth_slot(&self.mem, self.idx, self.slot0, n)
    }

    /// Whether a message is ready (`Ok(n)`, `n >= 1`) or not (`Ok(0)`), touching the producer's
    /// lines as little as possible: the cached tail, then the next slot's stamp (in the same line
    /// as its payload). [`Consumer::available_all`] counts everything published.
    #[inline]
    pub fn available(&mut self) -> Result<u64, Corrupt> {
        let n = self.cached_tail.wrapping_sub(self.head);
        if n != 0 {
            return Ok(n);
        }
        // ORDERING: Acquire, pairs with the Release store of the stamp in `Producer::publish`.
        // SYNC POINT: pipe-published. A stamp is trusted only if it is exactly the next position.
        // Messages are published in order, each with its stamp, so the next slot's stamp alone
        // says whether anything is ready: the tail's line is not touched while we poll.
        if self.mem.slot(self.slot0).stamp.load(Ordering::Acquire) == self.head.wrapping_add(1) {
            self.cached_tail = self.head.wrapping_add(1);
            return Ok(1);
        }
        Ok(0)
    }

    /// Whether the `n`th unread slot carries its published stamp (`n < capacity`).
    #[inline]
    pub fn published(&self, n: u64) -> bool {
        // ORDERING: Acquire, pairs with the Release store in `Producer::publish`.
        n < self.mem.capacity
            && self.mem.slot(self.slot(n)).stamp.load(Ordering::Acquire) == self.head.wrapping_add(n + 1)
    }

    /// Messages ready to read, reloading the producer's counter only if the cached one shows none.
    #[inline]
    pub fn available_all(&mut self) -> Result<u64, Corrupt> {
        let known = self.cached_tail.wrapping_sub(self.head);
        if known > 1 {
            return Ok(known);
        }
        // ORDERING: Acquire, pairs with the Release store in `Producer::publish`. SYNC POINT:
        // pipe-published.
        let tail = self.mem.ctrl().tail.load(Ordering::Acquire);
        // We may have read messages by their stamps before the producer's tail store that
        // publishes them lands: a tail up to `capacity` behind our head means "nothing new".
        if self.head.wrapping_sub(tail) <= self.mem.capacity {
            return Ok(known);
        }
        check(self.head, tail, self.mem.capacity)?;
        self.cached_tail = tail;
        Ok(tail.wrapping_sub(self.head))
    }

    /// The slot index, checked length and "more fragments follow" flag of the `n`th unread slot
    /// (`n < available()`).
    #[inline]
    pub fn peek(&self, n: u64) -> Result<(u64, usize, bool), Corrupt> {
        let idx = self.slot(n);
        let slot = self.mem.slot(idx);
        let len = slot.len.load(Ordering::Relaxed) as usize;
        if len > self.mem.slot_size {
            return Err(Corrupt("message length exceeds the slot size"));
        }
        Ok((idx, len, slot.aux.load(Ordering::Relaxed) & AUX_MORE != 0))
    }

    /// The first `len` bytes (at most the slot size: `len` as [`Consumer::peek`] returned it) of
    /// the `n`th unread message (`n < available()`), read in place. The slice borrows `self`, so
    /// the message cannot be released while it is read.
    ///
    /// The bytes stay in shared memory: a peer that breaks the protocol can change them while
    /// they are read.
    #[inline]
    pub fn payload(&self, n: u64, len: usize) -> &[u8] {
        assert!(n < self.mem.capacity, "a position outside the ring");
        let idx = self.slot(n);
        let len = len.min(self.mem.slot_size);
        // SAFETY: `idx < capacity` (`nth_slot` of `n < capacity`) and `len <= slot_size`, so the slice lies inside
        // the slot's payload. The message is published and unreleased (`release` needs `&mut
        // self`, which this borrow excludes), so the producer does not write it.
        unsafe { std::slice::from_raw_parts(self.mem.payload(idx), len) }
    }

    /// Copies the first `dst.len()` bytes (at most the slot size; more panics) of the `n`th unread
    /// message (`n < available()`) into `dst`, with a copy that is no data race even if a peer
    /// writes the slot meanwhile (see [`copy_from_shared`]).
    #[inline]
    pub fn copy_out(&self, n: u64, dst: &mut [u8]) {
        assert!(n < self.mem.capacity && dst.len() <= self.mem.slot_size, "a read outside the ring");
        let idx = self.slot(n);
        // SAFETY: `idx < capacity` (`nth_slot` of `n < capacity`) and `dst.len() <= slot_size`:
        // the source lies inside the slot's payload, which this process only reads.
        unsafe { copy_from_shared(self.mem.payload(idx), dst) }
    }

    /// Takes the next message if it is ready and fits one slot, in one pass: the length check,
    /// the copy into a [`Message`] and the release, with no guard in between (the round trip of
    /// a busy-polling pair is made of little else).
    #[inline(always)]
    pub fn take_now(&mut self) -> Took {
        match self.available() {
            Ok(0) => return Took::Empty,
            Ok(_) => {}
            Err(_) => return Took::Other,
        }
        let (idx, len, more) = match self.peek(0) {
            Ok(found) => found,
            Err(_) => return Took::Other,
        };
        if more {
            return Took::Other;
        }
        let payload = self.mem.payload(idx);
        let m = if len == 8 && payload as usize % 8 == 0 {
            // SAFETY: `peek` checked `8 == len <= slot_size`, and `idx < capacity` (`nth_slot` of
            // 0): 8 aligned bytes of the slot's payload, published and not yet released, only
            // read here.
            Message::from_word(unsafe { load_word_shared(payload) })
        } else {
            // SAFETY: as above, `len <= slot_size` bytes of that payload.
            Message::with_len(len, |b| unsafe { copy_from_shared(payload, b) })
        };
        self.release(1);
        Took::Message(m)
    }

    /// Frees the next `n` messages for the producer and wakes it if it sleeps.
    #[inline]
    pub fn release(&mut self, n: u64) {
        self.idx = advance(self.idx, n, self.mem.capacity);
        self.slot0 = self.mem.order.slot(self.idx);
        self.head = self.head.wrapping_add(n);
        if self.cached_tail.wrapping_sub(self.head) > self.mem.capacity {
            // We consumed past what the cache knew (fragments found by their stamps): the cache
            // must never lag the head, or it would read as a huge number of messages.
            self.cached_tail = self.head;
        }
        // ORDERING: Release, pairs with the Acquire load in `Producer::room`. SYNC POINT:
        // pipe-released: our reads of the payloads happen before the producer rewrites them.
        self.mem.ctrl().head.store(self.head, Ordering::Release);
        doorbell::ring(&self.mem.ctrl().not_full);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ring::mem::HeapRing;

    fn send(p: &mut Producer, v: u64) -> bool {
        if p.room().unwrap() == 0 {
            return false;
        }
        let idx = p.slot(0);
        // SAFETY: slot `idx` is ours until published; 8 bytes, 8-aligned on the heap ring.
        unsafe { (p.mem.payload(idx) as *mut u64).write(v) };
        p.set_len(0, 8);
        p.publish(1);
        true
    }

    fn recv(c: &mut Consumer) -> Option<u64> {
        if c.available().unwrap() == 0 {
            return None;
        }
        let (idx, len, _) = c.peek(0).unwrap();
        assert_eq!(len, 8);
        // SAFETY: published and not yet released: the producer does not touch it.
        let v = unsafe { (c.mem.payload(idx) as *const u64).read() };
        c.release(1);
        Some(v)
    }

    #[test]
    fn order_is_kept_across_many_wraps() {
        // 3: slots in sequence; 16 and 64: in `SlotOrder`'s bit-reversed order.
        for cap in [3u64, 16, 64] {
            let h = HeapRing::new(cap, 8);
            let (mut p, mut c) = (Producer::new(h.mem).unwrap(), Consumer::new(h.mem).unwrap());
            let mut next = 0;
            for i in 0..10_000u64 {
                assert!(send(&mut p, i));
                if i % cap == cap - 1 {
                    assert!(!send(&mut p, 99), "capacity is exact");
                    while let Some(v) = recv(&mut c) {
                        assert_eq!(v, next);
                        next += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn positions_follow_the_slot_order_and_fragments_stay_together() {
        let h = HeapRing::new(64, 8);
        let order = h.mem.order;
        assert_ne!(order.slot(4), 4, "a heap ring of 64 (16-byte headers, 4 to a line) is reordered");
        let (mut p, mut c) = (Producer::new(h.mem).unwrap(), Consumer::new(h.mem).unwrap());
        let mut pos = 0u64;
        for round in 0..1000u64 {
            let k = 1 + round % 3;
            assert!(p.room_for(k).unwrap() >= k);
            for i in 0..k {
                assert_eq!(p.slot(i), order.slot((pos + i) % 64));
                p.set_fragment(i, 8, i + 1 < k);
            }
            p.publish(k);
            assert_eq!(c.available(), Ok(1));
            for i in 0..k {
                assert!(c.published(i));
                let (idx, len, more) = c.peek(i).unwrap();
                assert_eq!((idx, len, more), (order.slot((pos + i) % 64), 8, i + 1 < k));
            }
            assert!(!c.published(k));
            c.release(k);
            pos += k;
        }
    }

    #[test]
    fn out_of_range_counters_are_corruption() {
        let h = HeapRing::new(4, 8);
        let mut c = Consumer::new(h.mem).unwrap();
        h.ctrl().tail.store(5, Ordering::Relaxed);
        assert!(c.available_all().is_err(), "more published than the ring holds");
        h.hdrs()[0].stamp.store(7, Ordering::Relaxed);
        assert_eq!(c.available(), Ok(0), "a stamp is trusted only if it is the next position");
        h.ctrl().tail.store(1, Ordering::Relaxed);
        assert_eq!(c.available_all(), Ok(1));
        h.hdrs()[0].stamp.store(1, Ordering::Relaxed);
        h.hdrs()[0].len.store(9, Ordering::Relaxed);
        assert_eq!(c.available(), Ok(1));
        assert!(c.peek(0).is_err(), "a length beyond the slot");
    }

    /// Consuming a message spanning several slots, found by its first stamp, must not leave the
    /// cached tail behind the head (which would read as ~2^64 messages ready).
    #[test]
    fn regression_cached_tail_never_lags_the_head_after_fragments() {
        let h = HeapRing::new(4, 8);
        let (mut p, mut c) = (Producer::new(h.mem).unwrap(), Consumer::new(h.mem).unwrap());
        for i in 0..3 {
            p.set_fragment(i, 8, i < 2);
        }
        p.publish(3);
        assert_eq!(c.available(), Ok(1), "found by the first slot's stamp");
        assert!(c.published(1) && c.published(2) && !c.published(3));
        c.release(3);
        assert_eq!(c.available(), Ok(0));
        assert_eq!(c.available_all(), Ok(0));
    }

    #[test]
    fn threads_pass_a_million_values_in_order() {
        let h = HeapRing::new(64, 8);
        let (mut p, mut c) = (Producer::new(h.mem).unwrap(), Consumer::new(h.mem).unwrap());
        const N: u64 = 1_000_000;
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..N {
                    while !send(&mut p, i) {
                        std::thread::yield_now(); // tests run in parallel on few cores
                    }
                }
            });
            let mut next = 0;
            while next < N {
                match recv(&mut c) {
                    Some(v) => {
                        assert_eq!(v, next);
                        next += 1;
                    }
                    None => std::thread::yield_now(),
                }
            }
        });
    }
}
