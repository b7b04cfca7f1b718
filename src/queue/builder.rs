//! Options for creating or opening a queue.

use super::{Queue, Role, DEFAULT_SPIN};
use crate::ring::mem::RingMem;
use crate::ring::mpmc::Mpmc;
use crate::segment::format::{self, Place};
use crate::segment::geometry::Geometry;
use crate::segment::layout::{Kind, ENDS_PERSISTENT, FLAG_JOINABLE};
use crate::segment::Segment;
use crate::sys::inherit;
use crate::Error;
use std::sync::atomic::Ordering;

/// Options for creating or opening a [`Queue`] (see [`Queue::builder`]).
#[derive(Clone, Debug)]
pub struct QueueBuilder {
    capacity: u64,
    slot_size: u64,
    mode: u32,
    unlink_on_drop: bool,
    role: Role,
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
            unlink_on_drop: true,
            role: Role::Both,
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

    /// Whether the creator removes the name when its handle is dropped. Default `true`.
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.unlink_on_drop = yes;
        self
    }

    /// Which ends this handle uses. Default [`Role::Both`].
    pub fn role(mut self, role: Role) -> Self {
        self.role = role;
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
        if self.persistent {
            ring.mem.ctrl().ends.flags.store(ENDS_PERSISTENT, Ordering::Relaxed);
        }
        seg.publish();
        let q = Queue::attach(seg, g, self.role, self.spin)?;
        // Named last, once ready and with our liveness lock held (nothing for anonymous queues).
        q.seg.link()?;
        Ok(q)
    }

    /// Opens an existing named queue.
    pub fn open(self, name: &str) -> Result<Queue, Error> {
        let seg = Segment::open_named(name)?;
        let g = format::validate(&seg, Kind::Queue)?;
        Queue::attach(seg, g, self.role, self.spin)
    }

    /// Opens the queue a parent shared under `key` with [`Queue::share_with`].
    pub fn open_inherited(self, key: &str) -> Result<Queue, Error> {
        let seg = Segment::open_inherited(inherit::inherited_fd(key)?)?;
        let g = format::validate(&seg, Kind::Queue)?;
        Queue::attach(seg, g, self.role, self.spin)
    }
}
