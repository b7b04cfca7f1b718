//! The multi-producer multi-consumer queue: [`Queue`], its options ([`QueueBuilder`]), and the
//! in-place read and write guards ([`InPlace`], [`Reservation`]).

use crate::pipe::Handover;
use crate::ring::doorbell::{self, IdleCheck};
use crate::ring::ends::{self, Ended, Refused, Sync};
use crate::ring::mem::RingMem;
use crate::ring::mpmc::{self, Mpmc, ReadClaim, WriteClaim};
use crate::ring::SegmentRings;
use crate::segment::geometry::Geometry;
use crate::segment::layout::{FLAG_JOINABLE, ROLE_CONSUMER, ROLE_PRODUCER};
use crate::segment::participants::{self, ParticipantInfo, Registration};
use crate::segment::recover::{self, RecoveryStats};
use crate::segment::tasks::TooMany;
use crate::segment::Segment;
use crate::sys::crash::{self, alive};
use crate::sys::{clock, inherit};
use crate::{Error, JoinError, Message, RecvError, SendError};
use bytemuck::Pod;
use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

mod builder;
mod message;

pub use builder::QueueBuilder;
pub use message::{InPlace, Iter, Reservation, TryIter};

/// Which ends of a queue a handle uses.
///
/// End of stream is decided by counting handles: once every handle with the producer role has
/// been closed or dropped (and at least one existed), consumers get [`RecvError::Closed`] after
/// draining; once every consumer has gone, producers get [`SendError::Closed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    /// Puts only.
    Producer,
    /// Gets only.
    Consumer,
    /// Puts and gets, like a Python `multiprocessing.Queue` (the default).
    #[default]
    Both,
}

impl Role {
    fn bits(self) -> u32 {
        match self {
            Role::Producer => ROLE_PRODUCER,
            Role::Consumer => ROLE_CONSUMER,
            Role::Both => ROLE_PRODUCER | ROLE_CONSUMER,
        }
    }

    /// The role's name in the environment of a worker it was handed to.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Both => "both",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Role> {
        [Role::Producer, Role::Consumer, Role::Both].into_iter().find(|r| r.name() == name)
    }
}

/// A bit of `Queue::roles` beside the role bits: [`Queue::close`] was called.
const CLOSED: u32 = 1 << 31;
/// The role bits of `Queue::roles`.
const ROLES: u32 = ROLE_PRODUCER | ROLE_CONSUMER;

/// The environment variable that carries the participant entry a parent made for a child
/// (`index,generation`, see [`Queue::share_with`]).
fn entry_var(key: &str) -> String {
    format!("{}_ENTRY", inherit::env_var(key))
}

/// The error of an attach refused because the queue has ended.
fn closed(refused: Refused) -> Error {
    Error::Closed(match refused {
        Refused::Ended(Ended::Producers) | Refused::Taken => {
            "this queue has ended: every producer has gone (end of stream), and it takes no new one"
        }
        Refused::Ended(Ended::Consumers) => {
            "this queue has ended: every consumer has gone (broken pipe), and it takes no new one"
        }
    })
}

/// Spin iterations before a blocking call sleeps, by default.
pub const DEFAULT_SPIN: u32 = 4096;

/// A bounded multi-producer multi-consumer queue in shared memory.
///
/// `Send + Sync`: threads of one process share a handle by reference or in an `Arc`
/// (`Arc<Queue>` is the `Clone` of a queue: every clone is the same handle, with one participant
/// entry and one set of roles, as a crossbeam channel's clones are one channel). A handle is not
/// `Clone` itself because a second handle is a second participant: its own roles, counted in end
/// of stream, and its own liveness; open one with [`Queue::open`] or hand the queue to a child with
/// [`Queue::share_with`]. Each process opens its own handle.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// let q = Arc::new(shmq::Queue::anonymous(8, 64)?);
/// let producer = { let q = Arc::clone(&q); std::thread::spawn(move || q.put(b"from a thread")) };
/// producer.join().unwrap()?;
/// assert_eq!(&*q.get()?, b"from a thread");
/// # Ok(()) }
/// ```
pub struct Queue {
    ring: Mpmc,
    reg: Registration,
    /// Role bits this handle still holds (`close` drops the producer bit and sets [`CLOSED`]).
    roles: AtomicU32,
    spin: u32,
    joinable: bool,
    /// Joinable queues: one operation on `unfinished` at a time per handle (its entry has one
    /// `op` word and one `putpos`; see `segment::tasks`).
    task_lock: Mutex<()>,
    /// When this handle last looked for dead participants (see `recover_if_due`).
    idle: IdleCheck,
    geometry: Geometry,
    seg: Segment,
}

/// When a blocking call gives up.
#[derive(Clone, Copy)]
enum Wait {
    Never,
    Until(u64),
    Forever,
}

impl Wait {
    fn after(d: Duration) -> Wait {
        Wait::Until(clock::now().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64))
    }
}

impl Queue {
    /// Options for creating or opening a queue.
    pub fn builder() -> QueueBuilder {
        QueueBuilder::default()
    }

    /// Creates a named queue of `capacity` messages of at most `slot_size` bytes. It persists
    /// until removed with [`shmq::unlink`](crate::unlink) (see [`QueueBuilder::unlink_on_drop`]).
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Queue, Error> {
        Queue::builder().capacity(capacity).slot_size(slot_size).create(name)
    }

    /// Creates an anonymous queue; hand it to children with [`Queue::share_with`].
    pub fn anonymous(capacity: usize, slot_size: usize) -> Result<Queue, Error> {
        Queue::builder().capacity(capacity).slot_size(slot_size).create_anonymous()
    }

    /// Opens a named queue as producer and consumer.
    pub fn open(name: &str) -> Result<Queue, Error> {
        Queue::builder().open(name)
    }

    /// Opens a queue inherited from the parent process under `key`, as producer and consumer.
    pub fn from_env(key: &str) -> Result<Queue, Error> {
        Queue::builder().from_env(key)
    }

    pub(crate) fn attach(seg: Segment, geometry: Geometry, role: Role, spin: u32) -> Result<Queue, Error> {
        let rings = SegmentRings::new(&seg, &geometry);
        let mut reg = Registration::new(&seg, &geometry, &rings)?;
        alive(crash::point("queue.attach"));
        if let Err(refused) = rings.join(&reg, role.bits(), Sync::Join) {
            reg.release(seg.header());
            return Err(closed(refused));
        }
        Ok(Queue::with(seg, geometry, reg, role.bits(), spin))
    }

    /// Takes over the entry a parent made for this process ([`Queue::share_with`]), in `role`
    /// (else the role the parent counted for it): the roles it adds are joined (refused if that
    /// side has ended), the roles it keeps confirmed as attached, the roles it drops left (which
    /// ends a side only if someone had attached to it for real, see `ring::ends`).
    pub(crate) fn adopt(
        seg: Segment,
        geometry: Geometry,
        lock: File,
        (index, generation): (usize, u32),
        role: Option<Role>,
        spin: u32,
    ) -> Result<Queue, Error> {
        let rings = SegmentRings::new(&seg, &geometry);
        let mut reg = Registration::adopt(&seg, lock, index, generation)?;
        let held = reg.entry(seg.header()).roles.load(Ordering::Acquire) & ROLES;
        let want = role.map_or(held, Role::bits);
        if want & !held != 0 {
            if let Err(refused) = rings.join(&reg, want & !held, Sync::Join) {
                rings.leave(&reg, held);
                reg.release(seg.header());
                return Err(closed(refused));
            }
        }
        rings.confirm(want & held);
        rings.leave(&reg, held & !want);
        Ok(Queue::with(seg, geometry, reg, want, spin))
    }

    fn with(seg: Segment, geometry: Geometry, reg: Registration, bits: u32, spin: u32) -> Queue {
        let ring = Mpmc::new(RingMem::in_segment(&seg, &geometry, 0));
        let joinable = geometry.flags & FLAG_JOINABLE != 0;
        Queue {
            ring,
            reg,
            roles: AtomicU32::new(bits),
            spin,
            joinable,
            task_lock: Mutex::new(()),
            idle: IdleCheck::new(),
            geometry,
            seg,
        }
    }

    /// The rings and participant table of this queue's segment.
    fn rings(&self) -> SegmentRings<'_> {
        SegmentRings::new(&self.seg, &self.geometry)
    }

    /// The mapped segment (for `crate::fuzzing`).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Lets a child spawned from `cmd` open this queue with [`Queue::from_env`]`(key)`, as
    /// producer and consumer ([`Role::Both`]; see [`Queue::share_with_role`]). Drop the returned
    /// [`Handover`] once `cmd` has been spawned.
    pub fn share_with(&self, cmd: &mut Command, key: &str) -> Handover {
        self.share_with_role(cmd, key, Role::Both)
    }

    /// Lets a child spawned from `cmd` open this queue with [`Queue::from_env`]`(key)`, counted
    /// in `role` from now on. Drop the returned [`Handover`] once `cmd` has been spawned.
    /// Works for anonymous and named queues alike.
    ///
    /// The child is attached from this call, not from the moment it opens the queue: a
    /// participant entry is made for it here, with `role` counted, and marked as handed over.
    /// So end of stream cannot fire in the moment between spawning workers and their opening the
    /// queue (a `close` right after the spawn waits for them). The child inherits the open file
    /// description that holds the entry's liveness lock, and takes the entry over in `from_env`;
    /// the entry counts as alive while this process holds the [`Handover`] or any process holds
    /// that descriptor — the child from its start, whether or not it ever calls `from_env`, and
    /// any process it starts before calling `from_env` (which marks the descriptor
    /// close-on-exec). A child that dies, even before opening the queue, is reaped like any dead
    /// peer: its role is uncounted, and a command never spawned leaves when the `Handover` is
    /// dropped. A child that opens the queue in another role ([`QueueBuilder::role`]) joins the
    /// roles it adds and leaves those it drops. Until the child opens the queue its roles are
    /// held, not attached: they keep a side from ending, but uncounting them (the child dropped
    /// one, or died before opening) ends a side only if someone had attached to it for real (end
    /// of stream or a broken pipe then follows, as for any dead peer).
    ///
    /// The `Handover` owns the descriptor the child inherits, so dropping the queue before the
    /// spawn changes nothing for the child; dropping the `Handover` before the spawn makes the
    /// spawn fail, or the child's `from_env` refuse a descriptor that is not this queue's. If no
    /// entry can be made (the table is full, or the queue has ended), the child gets the queue
    /// as a plain descriptor and attaches when it opens it, reporting any error then.
    pub fn share_with_role(&self, cmd: &mut Command, key: &str, role: Role) -> Handover {
        cmd.env(inherit::role_var(key), role.name());
        match self.hand_over(role) {
            Ok((lock, index, generation)) => {
                inherit::share_fd(cmd, lock.as_raw_fd(), key);
                cmd.env(entry_var(key), format!("{index},{generation}"));
                Handover::holding(lock)
            }
            Err(_) => {
                cmd.env_remove(entry_var(key));
                match self.seg.reopen() {
                    Ok(file) => {
                        inherit::share_fd(cmd, file.as_raw_fd(), key);
                        Handover::holding(file)
                    }
                    Err(_) => {
                        // Not even a descriptor: the child's `from_env` finds no valid one.
                        cmd.env_remove(inherit::env_var(key));
                        Handover::nothing()
                    }
                }
            }
        }
    }

    /// Makes an entry for a child in `role`, counted, and marks it handed over; returns the
    /// description holding its lock, its index and generation.
    fn hand_over(&self, role: Role) -> Result<(File, usize, u32), Error> {
        let rings = self.rings();
        let mut reg = Registration::new(&self.seg, &self.geometry, &rings)?;
        if let Err(refused) = rings.join(&reg, role.bits(), Sync::Hold) {
            reg.release(self.seg.header());
            return Err(closed(refused));
        }
        let (index, generation) = reg.id();
        reg.hand_over(self.seg.header());
        Ok((reg.into_lock(), index, generation))
    }

    // ----- put -----

    /// `Ok` if this handle may put: `Closed` after [`Queue::close`], `WrongRole` for a consumer.
    #[inline]
    fn may_put(&self) -> Result<(), SendError> {
        let roles = self.roles.load(Ordering::Relaxed);
        match () {
            _ if roles & ROLE_PRODUCER != 0 => Ok(()),
            _ if roles & CLOSED != 0 => Err(SendError::Closed),
            _ => Err(SendError::WrongRole),
        }
    }

    #[inline]
    fn claim_put(&self, len: usize, wait: Wait) -> Result<WriteClaim<'_>, SendError> {
        self.may_put()?;
        if len > self.geometry.slot_size as usize {
            return Err(SendError::TooLarge { len, max: self.geometry.slot_size as usize });
        }
        // The common case, inlined: the consumers are there and the slot at the tail is free.
        if !ends::consumers_gone(self.ring.mem.ctrl()) {
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
    fn claim_with<'q>(
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
        let deadline = match wait {
            // Full: before saying so, look for a dead last consumer (see `recover_if_due`).
            Wait::Never => {
                return attempt()
                    .or_else(|| self.recover_if_due().then(attempt).flatten())
                    .unwrap_or(Err(SendError::Full))
            }
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        };
        doorbell::block_on(&ctrl.not_full, deadline, self.spin, attempt, || {
            self.recover_if_due();
        })
        .unwrap_or(Err(SendError::Timeout))
    }

    #[inline]
    fn put_bytes(&self, msg: &[u8], wait: Wait) -> Result<(), SendError> {
        let mut c = self.claim_put(msg.len(), wait)?;
        c.write(msg);
        self.commit(c, msg.len());
        Ok(())
    }

    #[inline]
    fn commit(&self, c: WriteClaim<'_>, len: usize) {
        if self.joinable {
            return self.commit_counted(c, |c| c.commit(len as u32));
        }
        c.commit(len as u32);
    }

    /// Commits a claim of a joinable queue: the task is counted before it is published, so
    /// `join` can never see zero while it is in flight and `task_done` for it can never
    /// underflow; the count and this entry's record of it change in one step (see
    /// `segment::tasks`), so a kill at any point leaves a state recovery completes or undoes.
    #[cold]
    fn commit_counted<'q>(&'q self, c: WriteClaim<'q>, publish: impl FnOnce(WriteClaim<'q>)) {
        let rings = self.rings();
        let ledger = rings.ledger().expect("a joinable queue");
        let me = self.reg.index();
        let _one = self.task_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut stall = rings.stall(Some(me));
        alive(ledger.count_put(me, c.position(), &mut |holder| stall.wait(holder)));
        alive(crash::point("queue.publish"));
        publish(c);
        alive(ledger.published(me));
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

    fn put_group(&self, msg: &[u8], wait: Wait) -> Result<(), SendError> {
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
            self.commit_counted(claim, |c| c.commit_group(len));
        } else {
            claim.commit_group(len);
        }
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

    /// Reserves a slot to write a message in place (zero-copy), blocking while the queue is full.
    ///
    /// Write into [`Reservation::buf`], then [`Reservation::commit`] the length. Dropping the
    /// reservation uncommitted gives the slot up: consumers skip it.
    pub fn reserve(&self) -> Result<Reservation<'_>, SendError> {
        self.claim_put(0, Wait::Forever).map(|claim| Reservation::new(self, claim))
    }

    /// As [`Queue::reserve`], but fails with `Full` instead of blocking.
    pub fn try_reserve(&self) -> Result<Reservation<'_>, SendError> {
        self.claim_put(0, Wait::Never).map(|claim| Reservation::new(self, claim))
    }

    /// Reserves a slot, lets `write` fill it and return the length, and commits.
    pub fn put_with(&self, write: impl FnOnce(&mut [u8]) -> usize) -> Result<(), SendError> {
        let mut r = self.reserve()?;
        let len = write(r.buf());
        r.commit(len)
    }

    // ----- get -----

    #[inline]
    fn claim_get(&self, wait: Wait) -> Result<ReadClaim<'_>, RecvError> {
        if self.roles.load(Ordering::Relaxed) & ROLE_CONSUMER == 0 {
            return Err(RecvError::WrongRole);
        }
        // The common case, inlined: a message at the head.
        let first = match self.ring.claim_read(self.reg.owner()) {
            Ok(c) => return Ok(self.counted(c)),
            Err(e) => e,
        };
        self.claim_get_slow(wait, first)
    }

    /// Everything `claim_get` does not do inline: empty, end of stream, waiting, errors. `first`
    /// is what the inline try found, so a poll that finds the queue empty looks at the head once.
    #[inline(never)]
    fn claim_get_slow(&self, wait: Wait, first: RecvError) -> Result<ReadClaim<'_>, RecvError> {
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
        let deadline = match wait {
            // Empty: before saying so, look for a dead last producer (see `recover_if_due`).
            Wait::Never => {
                return attempt()
                    .or_else(|| self.recover_if_due().then(attempt).flatten())
                    .unwrap_or(Err(RecvError::Empty))
            }
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        };
        doorbell::block_on(&ctrl.not_empty, deadline, self.spin, attempt, || {
            self.recover_if_due();
        })
        .unwrap_or(Err(RecvError::Timeout))
    }

    /// A read claim of a joinable queue moves its task into this entry's `takes` when it is
    /// released (see `segment::tasks`).
    #[inline]
    fn counted<'q>(&'q self, c: ReadClaim<'q>) -> ReadClaim<'q> {
        if self.joinable {
            return c.counted_in(&self.reg.entry(self.seg.header()).takes);
        }
        c
    }

    /// The in-place view of a read claim (a claim whose length is corrupt is dropped: its slots
    /// are freed, and the error reported).
    #[inline]
    fn in_place<'q>(&'q self, claim: ReadClaim<'q>) -> Result<InPlace<'q>, RecvError> {
        if claim.count() > 1 {
            return InPlace::assemble(claim);
        }
        let len = claim.len()?;
        Ok(InPlace::new(claim, len))
    }

    /// Copies a claimed message out; the claim drops (its slots are freed) on return.
    #[inline]
    fn take(claim: ReadClaim<'_>) -> Result<Message, RecvError> {
        if claim.count() > 1 {
            let mut v = Vec::new();
            claim.copy_fragments(&mut v)?;
            return Ok(Message::from_vec(v));
        }
        let len = claim.len()?;
        Ok(Message::with_len(len, |b| claim.copy_out(b)))
    }

    /// Copies a claimed message into `buf` (cleared first); returns its length.
    fn take_into(claim: ReadClaim<'_>, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
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
    fn take_value<T: Pod>(claim: ReadClaim<'_>) -> Result<T, RecvError> {
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
    pub fn get(&self) -> Result<Message, RecvError> {
        self.claim_get(Wait::Forever).and_then(Self::take)
    }

    /// As [`Queue::get`], blocking at most `timeout`.
    ///
    /// Errors: `Timeout`, `Closed`, `WrongRole`, `Corrupt`, `Forked`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Message, RecvError> {
        self.claim_get(Wait::after(timeout)).and_then(Self::take)
    }

    /// Takes the oldest message if there is one now (Python's `get_nowait`).
    ///
    /// Errors: `Empty`, `Closed`, `WrongRole`, `Corrupt`, `Forked`.
    #[inline]
    pub fn try_get(&self) -> Result<Message, RecvError> {
        self.claim_get(Wait::Never).and_then(Self::take)
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
            || self.ring.len() > 0
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

    // ----- state -----

    /// Stops this handle from putting (Python's `close`). When every producer has closed or gone,
    /// consumers see end of stream once the queue is drained. Idempotent.
    pub fn close(&self) {
        self.roles.fetch_or(CLOSED, Ordering::AcqRel);
        if self.roles.fetch_and(!ROLE_PRODUCER, Ordering::AcqRel) & ROLE_PRODUCER != 0 {
            self.rings().leave(&self.reg, ROLE_PRODUCER);
        }
    }

    /// Marks one task taken from a joinable queue as done (Python's `task_done`).
    ///
    /// Tasks are counted against the handle that took them: mark a task done on the handle that
    /// got it (as workers do), so that if the process dies, recovery marks done exactly the tasks
    /// it took and did not mark (see [`Queue::join`]). A `task_done` on another handle is
    /// accepted (the count is global), but then a task can be marked done twice should the taker
    /// die holding it.
    ///
    /// Errors: `NotJoinable`, `TooManyTaskDone` (more calls than items put).
    pub fn task_done(&self) -> Result<(), JoinError> {
        if !self.joinable {
            return Err(JoinError::NotJoinable);
        }
        let rings = self.rings();
        let ledger = rings.ledger().expect("a joinable queue");
        let me = self.reg.index();
        let _one = self.task_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut stall = rings.stall(Some(me));
        match alive(ledger.done(me, &mut |holder| stall.wait(holder))) {
            Err(TooMany) => Err(JoinError::TooManyTaskDone),
            Ok(left) => {
                if left == 0 {
                    doorbell::ring_all(&self.seg.header().join.bell);
                }
                Ok(())
            }
        }
    }

    /// Waits until every item put has been marked done (Python's `join`).
    ///
    /// A task is counted from just before its put publishes it until it is marked done. If a
    /// process dies, recovery (which every waiting call runs, see [`Queue::recover`]) settles
    /// what it held: a put that died unpublished is uncounted with its message; a consumer that
    /// dies holding tasks it took and did not mark done — a message it was reading in place, or
    /// had already taken with `get` — has them marked done, counted in
    /// [`RecoveryStats::lost_tasks`]. So `join` returns once every task is done or lost with its
    /// consumer, and never waits for a dead process. A task marked done while its message was
    /// still held in place counts once. A handle dropped normally while holding tasks it did not
    /// mark done leaves them unfinished, as Python's does.
    pub fn join(&self) -> Result<(), JoinError> {
        self.join_until(None)
    }

    /// As [`Queue::join`], giving up with `Timeout` after `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        let Wait::Until(d) = Wait::after(timeout) else { unreachable!() };
        self.join_until(Some(d))
    }

    fn join_until(&self, deadline: Option<u64>) -> Result<(), JoinError> {
        if !self.joinable {
            return Err(JoinError::NotJoinable);
        }
        let join = &self.seg.header().join;
        // The count alone: an operation in flight has already changed it (see `segment::tasks`).
        let done = || (join.unfinished.load(Ordering::Acquire) == 0).then_some(());
        doorbell::block_on(&join.bell, deadline, self.spin, done, || {
            self.recover_if_due();
        })
        .ok_or(JoinError::Timeout)
    }

    /// Items put and not yet marked done (joinable queues; 0 otherwise).
    pub fn unfinished_tasks(&self) -> u64 {
        self.seg.header().join.unfinished.load(Ordering::Acquire)
    }

    /// Repairs what dead participants left behind (see `docs/DESIGN.md`): their uncommitted
    /// messages are dropped, the messages they had taken are counted as lost, and their roles are
    /// uncounted. Returns how many dead participants were reaped.
    ///
    /// Calls do this by themselves: every call that is about to report nothing to do (`Empty`,
    /// `Full`, `Timeout`) or to sleep looks if this handle has not looked for 10 ms, and then
    /// re-checks. So whatever way a program waits, a death is reported within tens of
    /// milliseconds (end of stream when the last producer died, `Closed` on put when the last
    /// consumer did), and a dead participant's claims stop blocking the others as soon. Call this
    /// to repair at once, or to learn how many were reaped.
    pub fn recover(&self) -> usize {
        recover::reap_dead(
            &self.seg,
            &self.geometry,
            Some(self.reg.index()),
            &SegmentRings::new(&self.seg, &self.geometry),
        )
    }

    /// [`Queue::recover`] if this handle last looked [`doorbell::CHECK_INTERVAL_NS`] ago or more;
    /// says whether it looked (then the caller re-checks its condition once). Runs only where a
    /// call is about to report nothing to do, or to sleep: a call that succeeds never reads the
    /// clock.
    #[cold]
    #[inline(never)]
    fn recover_if_due(&self) -> bool {
        if !self.idle.due() {
            return false;
        }
        self.recover();
        true
    }

    /// What crash recovery has done to this queue so far.
    pub fn recovery_stats(&self) -> RecoveryStats {
        recover::stats(&self.seg)
    }

    /// Messages in the queue (Python's `qsize`): approximate while others operate on it, but
    /// always within `0..=capacity`.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether [`Queue::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`Queue::len`] is the capacity.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Handles attached with the producer role (and not closed) across all processes.
    pub fn producer_count(&self) -> usize {
        ends::producer_count(self.ring.mem.ctrl()) as usize
    }

    /// Handles attached with the consumer role across all processes.
    pub fn consumer_count(&self) -> usize {
        ends::consumer_count(self.ring.mem.ctrl()) as usize
    }

    /// Messages the queue holds.
    pub fn capacity(&self) -> usize {
        self.geometry.capacity as usize
    }

    /// Largest message in bytes.
    pub fn slot_size(&self) -> usize {
        self.geometry.slot_size as usize
    }

    /// The segment's name (`None` for anonymous queues).
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// The handles attached to this queue, with whether their processes are alive.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        match self.seg.reopen() {
            Ok(probe) => participants::participants(&self.seg, &probe),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if self.reg.forked() {
            // A handle copied by fork(): the roles and the entry are the parent's.
            return;
        }
        // Roles first (cleared in the entry, then recounted), then the entry: a kill in between
        // leaves an entry without roles, or roles that its reaper clears and recounts.
        let bits = self.roles.swap(0, Ordering::AcqRel) & ROLES;
        self.rings().leave(&self.reg, bits);
        self.reg.release(self.seg.header());
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.seg.name())
            .field("capacity", &self.geometry.capacity)
            .field("slot_size", &self.geometry.slot_size)
            .field("len", &self.len())
            .finish()
    }
}
