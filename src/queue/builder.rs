//! Options for creating or opening a queue.

use super::{Queue, Role, DEFAULT_SPIN};
use crate::ring::mem::RingMem;
use crate::ring::mpmc::Mpmc;
use crate::segment::format::{self, Place};
use crate::segment::geometry::Geometry;
use crate::segment::layout::{Kind, ENDS_NEED_WITNESS, ENDS_PERSISTENT, FLAG_JOINABLE};
use crate::segment::Segment;
use crate::sys::inherit;
use crate::Error;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

/// Options for creating or opening a [`Queue`] (see [`Queue::builder`]).
#[derive(Clone, Debug)]
pub struct QueueBuilder {
    capacity: u64,
    slot_size: u64,
    mode: u32,
    unlink_on_drop: bool,
    /// `None`: not chosen here (the default, or the parent's choice for `from_env`).
    role: Option<Role>,
    spin: u32,
    persistent: bool,
    joinable: bool,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            capacity: 1024,
            slot_size: 256,
            mode: 0o600,
            unlink_on_drop: false,
            role: None,
            spin: DEFAULT_SPIN,
            persistent: false,
            joinable: false,
        }
    }
}

impl QueueBuilder {
    /// Messages the queue holds (exact, 1..=2^24). Default 1024.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity as u64;
        self
    }

    /// Largest message in bytes. Default 256.
    pub fn slot_size(mut self, slot_size: usize) -> Self {
        self.slot_size = slot_size as u64;
        self
    }

    /// Permission bits of a named segment. Default `0o600`.
    ///
    /// Within `0o777`, and not readable by other users who cannot also write it (`0o004`
    /// without `0o002`): `create` fails with [`Error::InvalidArgument`] otherwise (see
    /// `docs/DESIGN.md`, threat model).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Whether the creator removes the name when its handle is dropped. Default `false`: a named
    /// queue persists, messages and all, until it is removed with [`shmq::unlink`](crate::unlink)
    /// (or `shmq rm`), as a POSIX message queue does; processes can come and go in any order.
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.unlink_on_drop = yes;
        self
    }

    /// Which ends this handle uses. Default [`Role::Both`]; for [`QueueBuilder::from_env`], the
    /// role the parent chose ([`Worker::queue`](crate::Worker::queue)) if it chose one.
    pub fn role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Busy-poll iterations before a blocking call sleeps on the futex (0: sleep at once).
    pub fn spin(mut self, iterations: u32) -> Self {
        self.spin = iterations;
        self
    }

    /// A queue without end of stream (set at creation): `get` never returns `Closed` because the
    /// producers have gone, nor `put` because the consumers have, like Python's queues. For
    /// long-lived named queues that short-lived processes come and go on. Default `false`.
    pub fn persistent(mut self, yes: bool) -> Self {
        self.persistent = yes;
        self
    }

    /// A joinable queue (Python's `JoinableQueue`, set at creation): every put counts an unfinished
    /// task, [`Queue::task_done`] marks one done, and [`Queue::join`] waits until none is left.
    /// Costs one shared atomic add per put and one per `task_done`. Default `false`.
    pub fn joinable(mut self, yes: bool) -> Self {
        self.joinable = yes;
        self
    }

    /// Creates a named queue (`/name`, exclusively; fails if it exists).
    ///
    /// Every page is reserved: a queue that does not fit fails here with [`Error::NoSpace`]
    /// (never later with `SIGBUS`). The name appears only once the queue is complete and this
    /// handle attached, so a creator killed midway leaves nothing behind.
    pub fn create(self, name: &str) -> Result<Queue, Error> {
        let place = Place::Named { name, mode: self.mode, unlink_on_drop: self.unlink_on_drop };
        self.build(place)
    }

    /// Creates an anonymous queue (memfd), to hand to child processes with [`Queue::share_with`].
    pub fn create_anonymous(self) -> Result<Queue, Error> {
        self.build(Place::Anonymous)
    }

    fn build(self, place: Place<'_>) -> Result<Queue, Error> {
        let mut g = Geometry::new(Kind::Queue, 1, self.capacity, self.slot_size).map_err(Error::InvalidArgument)?;
        g.flags = if self.joinable { FLAG_JOINABLE } else { 0 };
        let seg = format::create(place, &g)?;
        let ring = Mpmc::new(RingMem::in_segment(&seg, &g, 0));
        ring.init();
        let persistent = if self.persistent { ENDS_PERSISTENT } else { 0 };
        ring.mem.ctrl().ends.flags.store(ENDS_NEED_WITNESS | persistent, Ordering::Relaxed);
        seg.publish();
        let q = Queue::attach(seg, g, self.role.unwrap_or_default(), self.spin)?;
        // Named last, once ready and with our liveness lock held (nothing for anonymous queues).
        q.seg.link()?;
        Ok(q)
    }

    /// Opens an existing named queue.
    pub fn open(self, name: &str) -> Result<Queue, Error> {
        let seg = Segment::open_named(name)?;
        let g = format::validate(&seg, Kind::Queue)?;
        Queue::attach(seg, g, self.role.unwrap_or_default(), self.spin)
    }

    /// Opens the named queue if it exists, else creates it with these options, for processes
    /// that start in any order. An existing queue keeps its own sizes.
    pub fn open_or_create(self, name: &str) -> Result<Queue, Error> {
        loop {
            match self.clone().open(name) {
                Err(Error::NotFound(_)) => {}
                r => return r,
            }
            match self.clone().create(name) {
                // Another process created it between our two tries: open that one.
                Err(Error::AlreadyExists(_)) => continue,
                r => return r,
            }
        }
    }

    /// Opens the named queue, waiting up to `timeout` for its creator to create it (and to
    /// finish creating it).
    pub fn open_timeout(self, name: &str, timeout: std::time::Duration) -> Result<Queue, Error> {
        let start = std::time::Instant::now();
        loop {
            match self.clone().open(name) {
                Err(Error::NotFound(_) | Error::NotReady) if start.elapsed() < timeout => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                r => return r,
            }
        }
    }

    /// Opens the queue a parent shared under `key` with [`Queue::share_with`], in the role set
    /// here, else the role the parent chose, else [`Role::Both`].
    ///
    /// The child takes over the participant entry the parent made for it, where its role was
    /// counted from the moment of sharing; a role set here that differs joins the roles it adds
    /// (refused with [`Error::Closed`] if that side has ended) and leaves the roles it drops. The
    /// inherited descriptor becomes this handle's own and is marked close-on-exec, so processes
    /// started from now on do not inherit the segment. A key is opened once per process: a
    /// second call fails with [`Error::NotInherited`].
    pub fn from_env(self, key: &str) -> Result<Queue, Error> {
        let parents = match std::env::var(inherit::role_var(key)) {
            Ok(name) => Some(Role::from_name(&name).ok_or(Error::NotInherited(inherit::role_var(key)))?),
            Err(_) => None,
        };
        let entry = match std::env::var(super::entry_var(key)) {
            Ok(v) => {
                let bad = || Error::NotInherited(super::entry_var(key));
                let (i, g) = v.split_once(',').ok_or_else(bad)?;
                Some((i.parse::<usize>().map_err(|_| bad())?, g.parse::<u32>().map_err(|_| bad())?))
            }
            Err(_) => None,
        };
        match entry {
            Some(id) => {
                // The descriptor holds the entry's lock: it becomes this handle's. On any error
                // below it is closed: once the parent has let go too, the entry is dead and reaped
                // like any other.
                let lock = inherit::take_inherited(key)?;
                let seg = Segment::open_inherited(lock.as_raw_fd())?;
                let g = format::validate(&seg, Kind::Queue)?;
                Queue::adopt(seg, g, lock, id, self.role, self.spin)
            }
            None => {
                // A parent that could make no entry for us: attach as any opener, through a
                // description of our own (the inherited one is left open, close-on-exec).
                let seg = Segment::open_inherited(inherit::inherited_cloexec(key)?)?;
                let g = format::validate(&seg, Kind::Queue)?;
                Queue::attach(seg, g, self.role.or(parents).unwrap_or_default(), self.spin)
            }
        }
    }
}
