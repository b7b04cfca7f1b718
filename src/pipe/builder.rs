//! Options for creating or opening a pipe.

use super::Connection;
use crate::queue::DEFAULT_SPIN;
use crate::segment::format::{self, Place};
use crate::segment::geometry::Geometry;
use crate::segment::layout::{Kind, FLAG_SEQUENTIAL};
use crate::segment::Segment;
use crate::Error;
use std::sync::Arc;

/// Options for creating or opening a pipe: `PipeBuilder::new().capacity(64).create_anonymous()`.
#[derive(Clone, Debug)]
pub struct PipeBuilder {
    capacity: u64,
    slot_size: u64,
    mode: u32,
    unlink_on_drop: bool,
    spin: u32,
    duplex: bool,
    sequential: bool,
}

impl Default for PipeBuilder {
    fn default() -> Self {
        PipeBuilder {
            capacity: 1024,
            slot_size: 256,
            mode: 0o600,
            unlink_on_drop: false,
            spin: DEFAULT_SPIN,
            duplex: true,
            sequential: false,
        }
    }
}

impl PipeBuilder {
    /// The default options: duplex, 1024 messages of up to 256 bytes each way.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages each ring holds (1..=2^24). Default 1024.
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
    /// pipe persists until it is removed with [`shmq::unlink`](crate::unlink) (or `shmq rm`).
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.unlink_on_drop = yes;
        self
    }

    /// Busy-poll iterations before a blocking call sleeps on the futex (0: sleep at once).
    pub fn spin(mut self, iterations: u32) -> Self {
        self.spin = iterations;
        self
    }

    /// Two rings (both ends send and receive) or one. Default duplex.
    pub fn duplex(mut self, duplex: bool) -> Self {
        self.duplex = duplex;
        self
    }

    /// Visit the ring's slots in sequence instead of the default scattered (bit-reversed) order
    /// (power-of-two capacities only; others always go in sequence). The default keeps each
    /// side's hardware prefetcher out of the lines the other side is writing, which is what
    /// round trips and one-message-at-a-time streams want; streaming *batches* of small messages
    /// (`send_batch` / `recv_batch`) through a ring wants the prefetcher, and runs faster in
    /// sequence (`docs/EXPERIMENTS.md`, "The pipe's slot order", has the figures). Recorded in
    /// the segment: openers follow the creator's choice.
    pub fn sequential(mut self, yes: bool) -> Self {
        self.sequential = yes;
        self
    }

    fn make(&self, place: Place<'_>) -> Result<(Arc<Segment>, Geometry), Error> {
        let rings = if self.duplex { 2 } else { 1 };
        let mut g = Geometry::new(Kind::Pipe, rings, self.capacity, self.slot_size).map_err(Error::InvalidArgument)?;
        g.flags = if self.sequential { FLAG_SEQUENTIAL } else { 0 };
        let seg = format::create(place, &g)?;
        seg.publish(); // zeroed rings are the initial state: empty, nobody attached
        Ok((Arc::new(seg), g))
    }

    /// Creates an anonymous pipe and returns both ends; hand one to a child with
    /// [`Connection::hand_over`]. A one-way pipe's ends come as `(sending, receiving)`, in the
    /// order of [`channel`](crate::channel).
    pub fn create_anonymous(self) -> Result<(Connection, Connection), Error> {
        let (seg, g) = self.make(Place::Anonymous)?;
        let end0 = Connection::attach(seg.clone(), g, 0, self.spin)?;
        let end1 = Connection::attach(seg, g, 1, self.spin)?;
        Ok(if self.duplex { (end0, end1) } else { (end1, end0) })
    }

    /// Takes the end a parent handed over with [`Connection::hand_over`] under `key`, with these
    /// options' spin budget (the pipe's sizes are the creator's).
    pub fn from_env(self, key: &str) -> Result<Connection, Error> {
        Connection::from_env_with(key, self.spin)
    }

    /// Creates a named pipe and returns end 0; the peer opens end 1 with [`PipeBuilder::open`].
    /// One-way pipes: end 0 receives.
    ///
    /// Every page is reserved: a pipe that does not fit fails here with [`Error::NoSpace`]
    /// (never later with `SIGBUS`). The name appears only once the pipe is complete and end 0
    /// attached, so a creator killed midway leaves nothing behind.
    pub fn create(self, name: &str) -> Result<Connection, Error> {
        let place = Place::Named { name, mode: self.mode, unlink_on_drop: self.unlink_on_drop };
        let (seg, g) = self.make(place)?;
        let end = Connection::attach(seg.clone(), g, 0, self.spin)?;
        // Named last, once ready and with end 0's liveness lock held.
        seg.link()?;
        Ok(end)
    }

    /// Opens end 1 of a named pipe. One-way pipes: end 1 sends.
    pub fn open(self, name: &str) -> Result<Connection, Error> {
        let seg = Segment::open_named(name)?;
        let g = format::validate(&seg, Kind::Pipe)?;
        Connection::attach(Arc::new(seg), g, 1, self.spin)
    }
}
