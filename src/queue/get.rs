//! Getting: owned messages, into a caller's buffer, values, in place, and iterators.

#[allow(unused_imports)]
use super::*;

impl Queue {
    #[inline]
    pub(super) fn claim_get(&self, wait: Wait) -> Result<ReadClaim<'_>, RecvError> {
        if self.roles.load(Ordering::Relaxed) & ROLE_CONSUMER == 0 {
            return Err(RecvError::WrongRole);
        }
        // The common case, inlined: a message at the head.
        let first = match self.ring.claim_read(self.reg.owner()) {
            Ok(c) => return Ok(self.counted(c)),
            Err(e) => e,
        };
        if matches!((wait, &first), (Wait::Never, RecvError::Empty)) {
            return self.try_get_empty();
        }
        self.claim_get_slow(wait, first)
    }

    /// The common receive in one pass (see `Mpmc::take_now`): a single-slot message at the head,
    /// taken by a consumer handle of a queue that is not joinable (a joinable queue's receive
    /// also moves the task into this entry's count: the general path's).
    #[inline(always)]
    fn take_now(&self) -> Took {
        if self.roles.load(Ordering::Relaxed) & ROLE_CONSUMER == 0 || self.joinable {
            return Took::Other;
        }
        self.ring.take_now(self.reg.owner())
    }

    /// A poll found the queue empty: `Empty`, unless there is more to say (end of stream, a
    /// broken handle, a look for a dead producer that is due), which the general path says. The
    /// common answer costs a few loads and a read of the coarse clock.
    #[cold]
    #[inline(never)]
    fn try_get_empty(&self) -> Result<ReadClaim<'_>, RecvError> {
        if !ends::producers_gone(self.ring.mem.ctrl()) && self.seg.broken().is_none() && !self.idle.is_due() {
            return Err(RecvError::Empty);
        }
        self.claim_get_slow(Wait::Never, RecvError::Empty)
    }

    /// Everything `claim_get` does not do inline: empty, end of stream, waiting, errors. `first`
    /// is what the inline try found, so a poll that finds the queue empty looks at the head once.
    #[inline(never)]
    pub(super) fn claim_get_slow(&self, wait: Wait, first: RecvError) -> Result<ReadClaim<'_>, RecvError> {
        let ctrl = self.ring.mem.ctrl();
        let owner = self.reg.owner();
        let first = std::cell::Cell::new(Some(first));
        let claim = || match first.take() {
            // The inline try's answer stands for this attempt, unless there is more to say.
            Some(RecvError::Empty) => Err(RecvError::Empty),
            _ => self.ring.claim_read(owner).map(|c| self.counted(c)),
        };
        let attempt = || match claim() {
            Err(RecvError::Empty) if ends::producers_gone(ctrl) => {
                // Every producer detached after committing (Acquire in producers_gone): one more
                // look sees anything they left, and only then is it the end of the stream.
                match claim() {
                    Err(RecvError::Empty) => Some(Err(RecvError::Closed)),
                    r => Some(r),
                }
            }
            // Empty, or a handle that can no longer tell (forked, or its file truncated).
            Err(RecvError::Empty) => self.seg.broken().map(|b| Err(b.into())),
            r => Some(r),
        };
        // Empty: before saying so, look for a dead last producer (see `recover_if_due`).
        let look = || self.recover_if_due();
        doorbell::attempt_or_block(
            &ctrl.not_empty,
            wait,
            self.spin,
            attempt,
            look,
            RecvError::Empty,
            RecvError::Timeout,
        )
    }

    /// A read claim of a joinable queue moves its task into this entry's `takes` when it is
    /// released (see `segment::tasks`).
    #[inline]
    pub(super) fn counted<'q>(&'q self, c: ReadClaim<'q>) -> ReadClaim<'q> {
        if self.joinable {
            return c.counted_in(&self.reg.entry(self.seg.header()).takes);
        }
        c
    }

    /// The in-place view of a read claim (a claim whose length is corrupt is dropped: its slots
    /// are freed, and the error reported).
    #[inline]
    pub(super) fn in_place<'q>(&'q self, claim: ReadClaim<'q>) -> Result<InPlace<'q>, RecvError> {
        if claim.count() > 1 {
            return InPlace::assemble(claim);
        }
        let len = claim.len()?;
        Ok(InPlace::new(claim, len))
    }

    /// Copies a claimed message out; the claim drops (its slots are freed) on return.
    #[inline]
    pub(super) fn take(claim: ReadClaim<'_>) -> Result<Message, RecvError> {
        if claim.count() > 1 {
            let mut v = Vec::new();
            claim.copy_fragments(&mut v)?;
            return Ok(Message::from_vec(v));
        }
        let len = claim.len()?;
        Ok(Message::with_len(len, |b| claim.copy_out(b)))
    }

    /// Copies a claimed message into `buf` (cleared first); returns its length.
    pub(super) fn take_into(claim: ReadClaim<'_>, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        buf.clear();
        if claim.count() > 1 {
            claim.copy_fragments(buf)?;
        } else {
            buf.resize(claim.len()?, 0);
            claim.copy_out(buf);
        }
        Ok(buf.len())
    }

    /// Copies a claimed message out as a `T`, if it has `T`'s size.
    pub(super) fn take_value<T: Pod>(claim: ReadClaim<'_>) -> Result<T, RecvError> {
        let expected = std::mem::size_of::<T>();
        if claim.count() > 1 {
            let m = Self::take(claim)?;
            return m.to_value().ok_or(RecvError::SizeMismatch { len: m.len(), expected });
        }
        let len = claim.len()?;
        if len != expected {
            return Err(RecvError::SizeMismatch { len, expected });
        }
        let mut value = T::zeroed();
        claim.copy_out(bytemuck::bytes_of_mut(&mut value));
        Ok(value)
    }

    /// Takes the oldest message, blocking while the queue is empty (Python's `get`). The message
    /// is copied out and its slot freed before this returns.
    ///
    /// Errors: `Closed` (end of stream), `WrongRole`, `Corrupt`, `Forked`.
    #[inline]
    pub fn get(&self) -> Result<Message, RecvError> {
        match self.take_now() {
            Took::Message(m) => Ok(m),
            Took::Corrupt(e) => Err(e),
            Took::Empty | Took::Other => self.claim_get(Wait::Forever).and_then(Self::take),
        }
    }

    /// Everything an owned receive does not do in one pass (waiting, groups, joinable queues,
    /// end of stream, errors), out of line, so that `try_get` and `get_timeout` stay small enough
    /// to be inlined into the caller with their one-pass take. (`get` keeps its general path
    /// inline.)
    #[inline(never)]
    fn get_message(&self, wait: Wait) -> Result<Message, RecvError> {
        self.claim_get(wait).and_then(Self::take)
    }

    /// As [`Queue::get`], blocking at most `timeout`.
    ///
    /// Errors: `Timeout`, `Closed`, `WrongRole`, `Corrupt`, `Forked`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Message, RecvError> {
        match self.take_now() {
            Took::Message(m) => Ok(m),
            Took::Corrupt(e) => Err(e),
            Took::Empty | Took::Other => self.get_message(Wait::after(timeout)),
        }
    }

    /// Takes the oldest message if there is one now (Python's `get_nowait`).
    ///
    /// Errors: `Empty`, `Closed`, `WrongRole`, `Corrupt`, `Forked`.
    #[inline]
    pub fn try_get(&self) -> Result<Message, RecvError> {
        match self.take_now() {
            Took::Message(m) => Ok(m),
            Took::Corrupt(e) => Err(e),
            Took::Empty => self.try_get_empty().and_then(Self::take),
            Took::Other => self.get_message(Wait::Never),
        }
    }

    /// As [`Queue::get`], into `buf` (cleared first; it grows as needed, so a buffer reused from
    /// call to call makes no allocation once it is large enough). Returns the message's length.
    pub fn get_into(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.claim_get(Wait::Forever).and_then(|c| Self::take_into(c, buf))
    }

    /// As [`Queue::try_get`], into `buf` (see [`Queue::get_into`]).
    pub fn try_get_into(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.claim_get(Wait::Never).and_then(|c| Self::take_into(c, buf))
    }

    /// Takes the oldest message, blocking while the queue is empty, and lends its bytes in place:
    /// no copy, but the slot stays taken until the guard drops, and while it is held producers
    /// that come round to it a lap later wait for it. The bytes stay in shared memory, where a
    /// peer that breaks the protocol can change them: use this with trusted peers, and for short
    /// reads. [`Queue::get`] copies the message out instead.
    ///
    /// Errors: as [`Queue::get`].
    pub fn get_in_place(&self) -> Result<InPlace<'_>, RecvError> {
        self.claim_get(Wait::Forever).and_then(|c| self.in_place(c))
    }

    /// As [`Queue::get_in_place`], if there is a message now.
    #[inline]
    pub fn try_get_in_place(&self) -> Result<InPlace<'_>, RecvError> {
        self.claim_get(Wait::Never).and_then(|c| self.in_place(c))
    }

    /// Takes a `Pod` value, blocking while the queue is empty. The bytes are copied out, so `T`
    /// may have any alignment. A message of another size is consumed and reported as
    /// [`RecvError::SizeMismatch`].
    pub fn get_value<T: Pod>(&self) -> Result<T, RecvError> {
        self.claim_get(Wait::Forever).and_then(Self::take_value)
    }

    /// As [`Queue::get_value`], blocking at most `timeout`.
    pub fn get_value_timeout<T: Pod>(&self, timeout: Duration) -> Result<T, RecvError> {
        self.claim_get(Wait::after(timeout)).and_then(Self::take_value)
    }

    /// As [`Queue::get_value`], if there is a message now.
    pub fn try_get_value<T: Pod>(&self) -> Result<T, RecvError> {
        self.claim_get(Wait::Never).and_then(Self::take_value)
    }

    /// Messages until end of stream, each taken with [`Queue::get`] (crossbeam's `iter`,
    /// Python's `iter(q.get, sentinel)`): `for msg in &q { ... }`. The iterator also ends at any
    /// other error (`WrongRole`, `Corrupt`), which a following `get` reports.
    pub fn iter(&self) -> Iter<'_> {
        Iter { q: self }
    }

    /// The messages there are now, each taken with [`Queue::try_get`]; ends when the queue is
    /// empty (or at end of stream, or an error).
    pub fn try_iter(&self) -> TryIter<'_> {
        TryIter { q: self }
    }

    /// Whether a get would not wait now (a message, end of stream, or an error to report).
    pub(crate) fn receive_ready(&self) -> bool {
        self.roles.load(Ordering::Relaxed) & ROLE_CONSUMER == 0
            || self.ring.maybe_ready()
            || ends::producers_gone(self.ring.mem.ctrl())
    }

    /// The doorbell consumers sleep on.
    pub(crate) fn not_empty_bell(&self) -> &crate::segment::layout::DoorbellWords {
        &self.ring.mem.ctrl().not_empty
    }

    /// The doorbell producers sleep on (awaited puts, `crate::aio`).
    #[cfg(feature = "async")]
    pub(crate) fn not_full_bell(&self) -> &crate::segment::layout::DoorbellWords {
        &self.ring.mem.ctrl().not_full
    }

    /// The doorbell `join` sleeps on (awaited joins, `crate::aio`).
    #[cfg(feature = "async")]
    pub(crate) fn join_bell(&self) -> &crate::segment::layout::DoorbellWords {
        &self.seg.header().join.bell
    }

    /// [`Queue::join`]'s condition without waiting (awaited joins, `crate::aio`): `None` while
    /// items are unfinished, after looking for dead participants when due, as `join` does
    /// before each sleep.
    #[cfg(feature = "async")]
    pub(crate) fn try_join(&self) -> Option<Result<(), JoinError>> {
        if !self.joinable {
            return Some(Err(JoinError::NotJoinable));
        }
        let join = &self.seg.header().join;
        let done = || (join.unfinished.load(Ordering::Acquire) == 0).then_some(Ok(()));
        done().or_else(|| self.recover_if_due().then(done).flatten())
    }
}
