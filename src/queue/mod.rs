//! The multi-producer multi-consumer queue: [`Queue`], its options ([`QueueBuilder`]), and the
//! in-place read and write guards ([`InPlace`], [`Reservation`]).

use crate::pipe::Handover;
use crate::ring::doorbell::{self, IdleCheck, Wait};
use crate::ring::ends::{self, Ended, Refused, Sync};
use crate::ring::mem::RingMem;
use crate::ring::mpmc::{self, Mpmc, ReadClaim, WriteClaim};
use crate::ring::took::Took;
use crate::ring::SegmentRings;
use crate::segment::geometry::Geometry;
use crate::segment::layout::{FLAG_JOINABLE, ROLE_CONSUMER, ROLE_PRODUCER};
use crate::segment::participants::{self, ParticipantInfo, Registration};
use crate::segment::recover::{self, RecoveryStats};
use crate::segment::tasks::NotDone;
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
mod get;
mod message;
mod put;

pub use builder::QueueBuilder;
pub use message::{InPlace, Iter, Reservation, TryIter};

/// Which ends of a queue a handle uses.
///
/// End of stream is decided by counting handles: once every handle with the producer role has
/// been closed, dropped or has died (and at least one existed), consumers get
/// [`RecvError::Closed`] after draining; once every consumer has gone, producers get
/// [`SendError::Closed`] (broken pipe), a blocked `put` included.
///
/// Handles opened without a role are [`Role::Both`], as any Python `Queue` handle may put and
/// get. A `Both` handle counts on both sides: its own `put` never sees a broken pipe while it is
/// open (it could still get), and no `get` sees end of stream while it is open. Give handles
/// that only put the `Producer` role, and handles that only get the `Consumer` role, where end of
/// stream or broken pipe matters; a role handed to a child ([`Queue::share_with`],
/// [`Worker::queue`](crate::Worker::queue)) is always stated. The README's "End of stream: the
/// rules" has the whole set.
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
            "this queue has ended: every producer has gone (end of stream), and it takes no new one; \
             for producers that come and go, create the queue with QueueBuilder::persistent(true)"
        }
        Refused::Ended(Ended::Consumers) => {
            "this queue has ended: every consumer has gone (broken pipe), and it takes no new one; \
             for consumers that come and go, create the queue with QueueBuilder::persistent(true)"
        }
    })
}

/// What a joinable queue's put or `task_done` reports when another entry's operation on the task
/// count never finishes (see `recover::Stall`).
const STUCK_COUNT: &str = "the task count stays held by another participant's unfinished operation";

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

    /// Opens a queue inherited from the parent process under `key`, in the role the parent gave
    /// ([`Queue::share_with`], [`Worker::queue`](crate::Worker::queue)); see
    /// [`QueueBuilder::from_env`] to choose another.
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

    /// Lets a child spawned from `cmd` open this queue with [`Queue::from_env`]`(key)`, counted
    /// in `role` from now on; this handle stays usable here (a queue is shared, where a pipe end
    /// is handed over: [`Connection::hand_over`](crate::Connection::hand_over)). Drop the returned
    /// [`Handover`] once `cmd` has been spawned. Works for anonymous and named queues alike.
    ///
    /// End of stream counts producers and broken pipe consumers, so give a child the role it
    /// plays: a child that only gets is a [`Role::Consumer`] (as [`Role::Both`] it would also
    /// count as a producer, and the stream would not end while it runs).
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
    pub fn share_with(&self, cmd: &mut Command, key: &str, role: Role) -> Handover {
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
    /// Errors: `NotJoinable`, `TooManyTaskDone` (more calls than items put), `Corrupt` (another
    /// participant holds the task count and never lets go: a hostile segment).
    pub fn task_done(&self) -> Result<(), JoinError> {
        if !self.joinable {
            return Err(JoinError::NotJoinable);
        }
        let rings = self.rings();
        let ledger = rings.ledger().expect("a joinable queue");
        let me = self.reg.index();
        let _one = self.task_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut stall = rings.stall(me);
        match alive(ledger.done(me, &mut |holder| stall.wait(holder))) {
            Err(NotDone::TooMany) => Err(JoinError::TooManyTaskDone),
            Err(NotDone::Stuck) => Err(JoinError::Corrupt(STUCK_COUNT)),
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
        self.join_until(Some(clock::deadline_after(timeout)))
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
