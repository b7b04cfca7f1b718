//! The single-producer single-consumer pipe: [`Connection`] (Python's
//! `multiprocessing.connection.Connection`), its halves [`Sender`] and [`Receiver`], its options
//! ([`PipeBuilder`]), and the in-place read and write guards ([`InPlace`], [`Reservation`]).
//!
//! A pipe segment holds one SPSC ring (one-way) or two (duplex). End 0 receives on ring 0 (and
//! sends on ring 1 when duplex); end 1 sends on ring 0 (and receives on ring 1). One sender and
//! one receiver per ring are enforced: attaching to a ring end that was ever attached is refused
//! with [`Error::AlreadyAttached`], and the handles are `Send` but not `Sync` or `Clone`.

mod builder;
mod connection;
mod receiver;
mod sender;

pub use builder::PipeBuilder;
pub use connection::{Connection, Handover};
pub use receiver::{InPlace, Iter, Receiver, TryIter};
pub use sender::{Reservation, Sender};

use crate::ring::doorbell::IdleCheck;
use crate::ring::spsc::Corrupt;
use crate::ring::SegmentRings;
use crate::segment::geometry::Geometry;
use crate::segment::participants::Registration;
use crate::segment::recover;
use crate::segment::Segment;
use crate::{Error, RecvError, SendError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A duplex anonymous pipe with the default sizes (1024 messages of up to 256 bytes each way):
/// both ends send and receive (Python's `Pipe()`). For a one-way pipe use [`channel`], or
/// [`PipeBuilder::duplex`]`(false)`.
pub fn pipe() -> Result<(Connection, Connection), Error> {
    PipeBuilder::new().create_anonymous()
}

/// A one-way anonymous pipe of `capacity` messages of up to `slot_size` bytes, as its two halves
/// `(Sender, Receiver)`. Either half can be handed to a child ([`Sender::hand_over`],
/// [`Receiver::hand_over`], [`Worker::sender`](crate::Worker::sender)).
pub fn channel(capacity: usize, slot_size: usize) -> Result<(Sender, Receiver), Error> {
    let (tx, rx) = PipeBuilder::new().duplex(false).capacity(capacity).slot_size(slot_size).create_anonymous()?;
    Ok((tx.into_sender().expect("end 1 sends"), rx.into_receiver().expect("end 0 receives")))
}

/// The rings an end sends on and receives from, if any.
fn rings_of(g: &Geometry, end: u32) -> (Option<u32>, Option<u32>) {
    match (g.ring_count, end) {
        (2, 0) => (Some(1), Some(0)),
        (2, _) => (Some(0), Some(1)),
        (_, 0) => (None, Some(0)),
        (_, _) => (Some(0), None),
    }
}

/// What one end holds: the segment and its participant entry.
struct End {
    seg: Arc<Segment>,
    reg: std::sync::Mutex<Registration>,
    geometry: Geometry,
    end: u32,
    handed_over: AtomicBool,
}

impl End {
    /// End `end` of the pipe in `seg`, held through the participant entry `reg`.
    fn new(seg: Arc<Segment>, reg: Registration, geometry: Geometry, end: u32) -> Arc<End> {
        Arc::new(End { seg, reg: std::sync::Mutex::new(reg), geometry, end, handed_over: AtomicBool::new(false) })
    }

    /// Reaps dead participants (the peer, when it died) so that end of file or broken pipe follows.
    fn recover(&self) -> usize {
        let me = self.reg.lock().unwrap_or_else(|e| e.into_inner()).index();
        recover::reap_dead(&self.seg, &self.geometry, Some(me), &SegmentRings::new(&self.seg, &self.geometry))
    }

    /// [`End::recover`] if the half whose clock is `idle` last looked
    /// [`CHECK_INTERVAL_NS`](crate::ring::doorbell::CHECK_INTERVAL_NS) ago or more; says whether it
    /// looked (then the caller re-checks its condition once). Runs only where a call is about to
    /// report nothing to do, or to sleep: a call that succeeds never reads the clock.
    #[cold]
    #[inline(never)]
    fn recover_if_due(&self, idle: &IdleCheck) -> bool {
        if !idle.due() {
            return false;
        }
        self.recover();
        true
    }

    /// Takes this end's role `bits` on their rings, exclusively (an end is attached once).
    fn join(&self, bits: u32) -> Result<(), crate::ring::ends::Refused> {
        let reg = self.reg.lock().unwrap_or_else(|e| e.into_inner());
        SegmentRings::new(&self.seg, &self.geometry).join(&reg, bits, crate::ring::ends::Sync::JoinExclusive)
    }

    /// Leaves this end's role `bits` on their rings, once: cleared in the entry, then recounted
    /// (the reaper of a dead end does the same).
    fn detach(&self, bits: u32) {
        let reg = self.reg.lock().unwrap_or_else(|e| e.into_inner());
        SegmentRings::new(&self.seg, &self.geometry).leave(&reg, bits);
    }
}

impl Drop for End {
    #[inline]
    fn drop(&mut self) {
        let reg = self.reg.get_mut().unwrap_or_else(|e| e.into_inner());
        if self.handed_over.load(Ordering::Relaxed) {
            reg.let_go(); // the child holds the entry's lock now (see `Connection::hand_over`)
        } else {
            reg.release(self.seg.header());
        }
    }
}

fn corrupt_send(c: Corrupt) -> SendError {
    SendError::Corrupt(c.0)
}

fn corrupt_recv(c: Corrupt) -> RecvError {
    RecvError::Corrupt(c.0)
}
