//! Putting: claims of one slot or a group, blocking and non-blocking, values and reservations.

#[allow(unused_imports)]
use super::*;

impl Queue {
    /// `Ok` if this handle may put: `Closed` after [`Queue::close`], `WrongRole` for a consumer.
    #[inline]
    pub(super) fn may_put(&self) -> Result<(), SendError> {
        let roles = self.roles.load(Ordering::Relaxed);
        match () {
            _ if roles & ROLE_PRODUCER != 0 => Ok(()),
            _ if roles & CLOSED != 0 => Err(SendError::Closed),
            _ => Err(SendError::WrongRole),
        }
    }

    /// A write claim of one slot for a message of `len` bytes. `eager`: whether the first try may
    /// claim eagerly (see `Mpmc::try_claim_write`); `false` when the caller has just made that try.
    #[inline]
    pub(super) fn claim_put(&self, len: usize, wait: Wait, eager: bool) -> Result<WriteClaim<'_>, SendError> {
        self.may_put()?;
        if len > self.geometry.slot_size as usize {
            return Err(SendError::TooLarge { len, max: self.geometry.slot_size as usize });
        }
        // The common case, inlined: the consumers are there and the slot at the tail is free.
        if eager && !ends::consumers_gone(self.ring.mem.ctrl()) {
            if let Ok(c) = self.ring.claim_write(self.reg.owner(), true) {
                return Ok(c);
            }
        }
        // Everything else (full, a stale hint, a broken pipe, waiting), out of line; the eager
        // try was made.
        self.claim_with(wait, false, |owner, first| self.ring.claim_write(owner, first))
    }

    /// Runs a claim (`claim(owner, first_try)`) until it gets room, the consumers are gone, or
    /// `wait` ends: the blocking shared by single-slot and group puts. `eager`: whether the first
    /// try may claim eagerly (see `Mpmc::try_claim_write`).
    #[inline(never)]
    pub(super) fn claim_with<'q>(
        &'q self,
        wait: Wait,
        eager: bool,
        claim: impl Fn(u16, bool) -> Result<WriteClaim<'q>, SendError>,
    ) -> Result<WriteClaim<'q>, SendError> {
        let ctrl = self.ring.mem.ctrl();
        let owner = self.reg.owner();
        let first = std::cell::Cell::new(eager);
        let attempt = || {
            if ends::consumers_gone(ctrl) {
                return Some(Err(SendError::Closed));
            }
            match claim(owner, first.replace(false)) {
                // Full, or a handle that can no longer tell (forked, or its file truncated).
                Err(SendError::Full) => self.seg.broken().map(|b| Err(b.into())),
                r => Some(r),
            }
        };
        // Full: before saying so, look for a dead last consumer (see `recover_if_due`).
        let look = || self.recover_if_due();
        doorbell::attempt_or_block(&ctrl.not_full, wait, self.spin, attempt, look, SendError::Full, SendError::Timeout)
    }

    #[inline]
    pub(super) fn put_bytes(&self, msg: &[u8], wait: Wait) -> Result<(), SendError> {
        // The common case in one pass (see `Mpmc::put_now`): a producer handle of a queue that
        // is not joinable (whose puts are counted: the general path's), consumers there, the
        // slot at the tail free.
        let plain = self.roles.load(Ordering::Relaxed) & ROLE_PRODUCER != 0 && !self.joinable;
        if plain && !ends::consumers_gone(self.ring.mem.ctrl()) && self.ring.put_now(self.reg.owner(), msg) {
            return Ok(());
        }
        let mut c = self.claim_put(msg.len(), wait, !plain)?;
        c.write(msg);
        self.commit(c, msg.len())
    }

    #[inline]
    pub(super) fn commit(&self, c: WriteClaim<'_>, len: usize) -> Result<(), SendError> {
        if self.joinable {
            return self.commit_counted(c, |c| c.commit(len as u32));
        }
        c.commit(len as u32);
        Ok(())
    }

    /// Commits a claim of a joinable queue: the task is counted before it is published, so
    /// `join` can never see zero while it is in flight and `task_done` for it can never
    /// underflow; the count and this entry's record of it change in one step (see
    /// `segment::tasks`), so a kill at any point leaves a state recovery completes or undoes. A
    /// count that stays held by another entry (a hostile segment) gives the claim up and
    /// reports the segment corrupt: nothing is published or counted.
    #[cold]
    pub(super) fn commit_counted<'q>(
        &'q self,
        c: WriteClaim<'q>,
        publish: impl FnOnce(WriteClaim<'q>),
    ) -> Result<(), SendError> {
        let rings = self.rings();
        let ledger = rings.ledger().expect("a joinable queue");
        let me = self.reg.index();
        let _one = self.task_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut stall = rings.stall(me);
        if alive(ledger.count_put(me, c.position(), &mut |holder| stall.wait(holder))).is_err() {
            return Err(SendError::Corrupt(STUCK_COUNT)); // dropping `c` gives the claim up
        }
        alive(crash::point("queue.publish"));
        publish(c);
        alive(ledger.published(me));
        Ok(())
    }

    /// Puts a message, blocking while the queue is full.
    ///
    /// Errors: `Closed`, `TooLarge`, `WrongRole`, `Corrupt`, `Forked`.
    pub fn put(&self, msg: &[u8]) -> Result<(), SendError> {
        self.put_bytes(msg, Wait::Forever)
    }

    /// Puts a message, blocking at most `timeout` while the queue is full.
    ///
    /// Errors: `Timeout`, `Closed`, `TooLarge`, `WrongRole`, `Corrupt`, `Forked`.
    pub fn put_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.put_bytes(msg, Wait::after(timeout))
    }

    /// Puts a message if there is room now (Python's `put_nowait`).
    ///
    /// Errors: `Full`, `Closed`, `TooLarge`, `WrongRole`, `Corrupt`, `Forked`.
    #[inline]
    pub fn try_put(&self, msg: &[u8]) -> Result<(), SendError> {
        self.put_bytes(msg, Wait::Never)
    }

    pub(super) fn put_group(&self, msg: &[u8], wait: Wait) -> Result<(), SendError> {
        let slot = self.geometry.slot_size as usize;
        if msg.len() <= slot {
            return self.put_bytes(msg, wait);
        }
        let max = mpmc::max_group_bytes(self.geometry.capacity, slot);
        if msg.len() > max {
            return Err(SendError::TooLarge { len: msg.len(), max });
        }
        self.may_put()?;
        let count = msg.len().div_ceil(slot) as u32;
        let mut claim = self.claim_with(wait, true, |owner, _| self.ring.claim_group(owner, count))?;
        claim.write_fragments(msg);
        let len = |j: u32| msg[j as usize * slot..].len().min(slot) as u32;
        if self.joinable {
            return self.commit_counted(claim, |c| c.commit_group(len));
        }
        claim.commit_group(len);
        Ok(())
    }

    /// Puts a message that may be larger than a slot, blocking until it fits. A message of
    /// `n` slots claims `n` consecutive slots in one operation and is delivered whole to one
    /// consumer (which gets a copy; see `docs/DESIGN.md`). Up to `slot_size × capacity` bytes.
    ///
    /// Cost: it waits for `n` free slots at once, and under contention from other producers a
    /// partial claim can be given up and retried (the given-up slots are skipped by consumers).
    /// Messages that fit a slot take the ordinary path.
    ///
    /// Errors: `Closed`, `TooLarge` (over `slot_size × capacity`, or `slot_size × (2^24 - 1)` on a
    /// queue of 2^24 slots), `WrongRole`, `Corrupt`, `Forked`.
    pub fn put_large(&self, msg: &[u8]) -> Result<(), SendError> {
        self.put_group(msg, Wait::Forever)
    }

    /// As [`Queue::put_large`], giving up with `Timeout` after `timeout`.
    pub fn put_large_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.put_group(msg, Wait::after(timeout))
    }

    /// As [`Queue::put_large`], but `Full` instead of waiting for room.
    pub fn try_put_large(&self, msg: &[u8]) -> Result<(), SendError> {
        self.put_group(msg, Wait::Never)
    }

    /// Puts a `Pod` value (its bytes, no serialisation), blocking while the queue is full.
    pub fn put_value<T: Pod>(&self, value: &T) -> Result<(), SendError> {
        self.put(bytemuck::bytes_of(value))
    }

    /// Puts a `Pod` value if there is room now.
    pub fn try_put_value<T: Pod>(&self, value: &T) -> Result<(), SendError> {
        self.try_put(bytemuck::bytes_of(value))
    }

    /// Puts a `Pod` value, blocking at most `timeout` while the queue is full.
    pub fn put_value_timeout<T: Pod>(&self, value: &T, timeout: Duration) -> Result<(), SendError> {
        self.put_timeout(bytemuck::bytes_of(value), timeout)
    }

    /// Reserves a slot to write a message in place (zero-copy), blocking while the queue is full.
    ///
    /// Write into [`Reservation::buf`], then [`Reservation::commit`] the length. Dropping the
    /// reservation uncommitted gives the slot up: consumers skip it.
    pub fn reserve(&self) -> Result<Reservation<'_>, SendError> {
        self.claim_put(0, Wait::Forever, true).map(|claim| Reservation::new(self, claim))
    }

    /// As [`Queue::reserve`], but fails with `Full` instead of blocking.
    pub fn try_reserve(&self) -> Result<Reservation<'_>, SendError> {
        self.claim_put(0, Wait::Never, true).map(|claim| Reservation::new(self, claim))
    }

    /// Reserves a slot, lets `write` fill it and return the length, and commits.
    pub fn put_with(&self, write: impl FnOnce(&mut [u8]) -> usize) -> Result<(), SendError> {
        let mut r = self.reserve()?;
        let len = write(r.buf());
        r.commit(len)
    }
}
