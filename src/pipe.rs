//! The public pipe handles: [`Connection`] (Python's `multiprocessing.connection.Connection`),
//! and its halves [`Sender`] and [`Receiver`].
//!
//! A pipe segment holds one SPSC ring (one-way) or two (duplex). End 0 receives on ring 0 (and
//! sends on ring 1 when duplex); end 1 sends on ring 0 (and receives on ring 1). One sender and
//! one receiver per ring are enforced: attaching to a ring end that was ever attached is refused
//! with [`Error::AlreadyAttached`], and the handles are `Send` but not `Sync` or `Clone`.

use crate::attach::{self, Registration};
use crate::doorbell;
use crate::futex;
use crate::inherit;
use crate::layout::{Geometry, Kind, FLAG_SEQUENTIAL, ROLE_CONSUMER, ROLE_PRODUCER};
use crate::queue::DEFAULT_SPIN;
use crate::recover;
use crate::ring::{self, RingMem};
use crate::segment::Segment;
use crate::shm::{self, Place};
use crate::spsc::{self, Corrupt};
use crate::{Error, RecvError, SendError};
use bytemuck::Pod;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Options for creating or opening a pipe (see [`Pipe::builder`]).
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

/// Entry point for pipes: [`Pipe::builder`].
pub struct Pipe;

impl Pipe {
    /// Options for creating or opening a pipe.
    pub fn builder() -> PipeBuilder {
        PipeBuilder {
            capacity: 1024,
            slot_size: 256,
            mode: 0o600,
            unlink_on_drop: true,
            spin: DEFAULT_SPIN,
            duplex: true,
            sequential: false,
        }
    }
}

/// An anonymous pipe with the default sizes (1024 messages of up to 256 bytes each way).
///
/// `duplex`: both ends send and receive. One-way (`false`): the first end only receives and the
/// second only sends, in Python's order (`rx, tx = Pipe(duplex=False)`).
pub fn pipe(duplex: bool) -> Result<(Connection, Connection), Error> {
    Pipe::builder().duplex(duplex).create_anonymous()
}

/// A one-way anonymous pipe split at compile time into its two halves.
pub fn channel(capacity: usize, slot_size: usize) -> Result<(Sender, Receiver), Error> {
    let (rx, tx) = Pipe::builder().duplex(false).capacity(capacity).slot_size(slot_size).create_anonymous()?;
    Ok((tx.into_sender().expect("end 1 sends"), rx.into_receiver().expect("end 0 receives")))
}

impl PipeBuilder {
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
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Whether the creator removes the name when its handle is dropped. Default `true`.
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
    /// (`send_batch` / `recv_batch`) through a ring wants the prefetcher: 8-byte batches
    /// measured ~1.35× and 64-byte batches through 2 MiB of slots ~1.8× as fast in sequence
    /// (`docs/BENCHMARKS.md`). Recorded in the segment: openers
    /// follow the creator's choice.
    pub fn sequential(mut self, yes: bool) -> Self {
        self.sequential = yes;
        self
    }

    fn make(&self, place: Place<'_>) -> Result<(Arc<Segment>, Geometry), Error> {
        let rings = if self.duplex { 2 } else { 1 };
        let mut g = Geometry::new(Kind::Pipe, rings, self.capacity, self.slot_size).map_err(Error::InvalidArgument)?;
        g.flags = if self.sequential { FLAG_SEQUENTIAL } else { 0 };
        let seg = shm::create(place, &g)?;
        seg.publish(); // zeroed rings are the initial state: empty, nobody attached
        Ok((Arc::new(seg), g))
    }

    /// Creates an anonymous pipe and returns both ends; hand one to a child with
    /// [`Connection::share_with`].
    pub fn create_anonymous(self) -> Result<(Connection, Connection), Error> {
        let (seg, g) = self.make(Place::Anonymous)?;
        Ok((Connection::attach(seg.clone(), g, 0, self.spin)?, Connection::attach(seg, g, 1, self.spin)?))
    }

    /// Creates a named pipe and returns end 0; the peer opens end 1 with [`PipeBuilder::open`].
    /// One-way pipes: end 0 receives.
    pub fn create(self, name: &str) -> Result<Connection, Error> {
        let place = Place::Named { name, mode: self.mode, unlink_on_drop: self.unlink_on_drop };
        let (seg, g) = self.make(place)?;
        Connection::attach(seg, g, 0, self.spin)
    }

    /// Opens end 1 of a named pipe. One-way pipes: end 1 sends.
    pub fn open(self, name: &str) -> Result<Connection, Error> {
        let seg = Segment::open_named(name)?;
        let g = shm::validate(&seg, Kind::Pipe)?;
        Connection::attach(Arc::new(seg), g, 1, self.spin)
    }
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
    /// Reaps dead participants (the peer, when it died) so that end of file or broken pipe follows.
    fn recover(&self) -> usize {
        let me = self.reg.lock().unwrap_or_else(|e| e.into_inner()).index();
        recover::reap_dead(&self.seg, &self.geometry, Some(me))
    }

    /// Uncounts this end's role `bits` on their rings, once (the reaper of a dead end does the same).
    fn detach(&self, bits: u32) {
        let cleared = self.reg.lock().unwrap_or_else(|e| e.into_inner()).drop_roles(self.seg.header(), bits);
        attach::detach_bits(&self.seg, &self.geometry, cleared);
    }
}

impl Drop for End {
    #[inline]
    fn drop(&mut self) {
        let reg = self.reg.get_mut().unwrap_or_else(|e| e.into_inner());
        if self.handed_over.load(Ordering::Relaxed) {
            reg.hand_over(self.seg.header());
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

fn deadline_after(d: Duration) -> Option<u64> {
    Some(futex::now().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64))
}

/// The sending half of a pipe end. `Send`, not `Sync`: one thread sends at a time.
pub struct Sender {
    end: Arc<End>,
    ring: spsc::Producer,
    spin: u32,
    /// Set once the far side was seen gone, or corruption was seen: sticky.
    dead: Option<SendError>,
    handed_over: bool,
    /// This half's role bit in the participant entry.
    role: u32,
    _not_sync: PhantomData<Cell<()>>,
}

/// The receiving half of a pipe end. `Send`, not `Sync`: one thread receives at a time.
pub struct Receiver {
    end: Arc<End>,
    ring: spsc::Consumer,
    spin: u32,
    dead: Option<RecvError>,
    handed_over: bool,
    /// This half's role bit in the participant entry.
    role: u32,
    _not_sync: PhantomData<Cell<()>>,
}

impl Sender {
    fn mem(&self) -> &RingMem {
        &self.ring.mem
    }

    /// Waits until `need` slots are free.
    #[inline]
    fn wait_room(&mut self, need: u64, deadline: Option<Option<u64>>) -> Result<(), SendError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let ring = &mut self.ring;
        let attempt = |ring: &mut spsc::Producer| {
            if attach::consumers_gone(ring.mem.ctrl()) {
                return Some(Err(SendError::Closed));
            }
            match ring.room_for(need) {
                Ok(n) if n < need => None,
                Ok(_) => Some(Ok(())),
                Err(s) => Some(Err(corrupt_send(s))),
            }
        };
        let r = match deadline {
            None => attempt(ring).unwrap_or(Err(SendError::Full)),
            Some(d) => {
                let mem = ring.mem; // a copy of the pointers, so the bell does not borrow `ring`
                let bell = &mem.ctrl().not_full;
                let end = &self.end;
                doorbell::block_on(
                    bell,
                    d,
                    self.spin,
                    || attempt(ring),
                    || {
                        end.recover();
                    },
                )
                .unwrap_or(Err(SendError::Timeout))
            }
        };
        if let Err(e @ (SendError::Closed | SendError::Corrupt(_))) = &r {
            self.dead = Some(e.clone());
        }
        r
    }

    #[inline]
    fn send_in(&mut self, msg: &[u8], deadline: Option<Option<u64>>) -> Result<(), SendError> {
        let max = self.end.geometry.slot_size as usize;
        if msg.len() > max {
            return self.send_large(msg, deadline);
        }
        self.wait_room(1, deadline)?;
        self.publish_one(msg);
        Ok(())
    }

    /// Writes `msg` (at most a slot) into the next slot and publishes it; there is room.
    #[inline]
    fn publish_one(&mut self, msg: &[u8]) {
        let idx = self.ring.slot(0);
        // SAFETY: slot `idx` is unpublished, so only we access it; msg.len() <= slot_size (both
        // callers check), the payload region's size; `msg` is our own memory, not the slot.
        unsafe { ring::copy_to(msg, self.mem().payload(idx)) };
        self.ring.set_len(0, msg.len() as u32);
        self.ring.publish(1);
    }

    /// A message larger than a slot: consecutive slots, each but the last flagged "more", all
    /// published by one release store, so the receiver sees the whole message or none of it.
    fn send_large(&mut self, msg: &[u8], deadline: Option<Option<u64>>) -> Result<(), SendError> {
        let slot = self.end.geometry.slot_size as usize;
        let capacity = self.end.geometry.capacity;
        let k = msg.len().div_ceil(slot) as u64;
        if k > capacity {
            return Err(SendError::TooLarge { len: msg.len(), max: slot * capacity as usize });
        }
        self.wait_room(k, deadline)?;
        for (i, chunk) in msg.chunks(slot).enumerate() {
            let idx = self.ring.slot(i as u64);
            // SAFETY: the k slots after the tail are free (waited for above) and unpublished, so
            // only we access them; each chunk is at most slot_size bytes, the payload's size.
            unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), self.mem().payload(idx), chunk.len()) };
            self.ring.set_fragment(i as u64, chunk.len() as u32, (i as u64) + 1 < k);
        }
        self.ring.publish(k);
        Ok(())
    }

    /// Sends a message, blocking while the pipe is full.
    ///
    /// A message larger than a slot is split across consecutive slots (at most the capacity) and
    /// reassembled by the receiver, at the cost of one copy on receipt and 16 bytes per extra slot.
    ///
    /// Errors: `Closed` (the receiver has gone: broken pipe), `TooLarge` (larger than
    /// `slot_size * capacity`), `Corrupt`.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if self.send_now(msg) {
            return Ok(());
        }
        self.send_in(msg, Some(None))
    }

    /// Sends a message, blocking at most `timeout` while the pipe is full.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_in(msg, Some(deadline_after(timeout)))
    }

    /// Sends a message if there is room now (`Full` otherwise).
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if self.send_now(msg) {
            return Ok(());
        }
        self.send_in(msg, None)
    }

    /// The fast path of every send, inlined into the caller: a message that fits one slot, with
    /// room cached or in the consumer's counter, on a healthy pipe whose receiver is there. Says
    /// whether it sent; if not, the general path (which waits, splits or reports) runs instead.
    #[inline]
    fn send_now(&mut self, msg: &[u8]) -> bool {
        if msg.len() > self.end.geometry.slot_size as usize
            || self.dead.is_some()
            || attach::consumers_gone(self.ring.mem.ctrl())
            || !matches!(self.ring.room(), Ok(n) if n > 0)
        {
            return false;
        }
        self.publish_one(msg);
        true
    }

    /// Sends a `Pod` value's bytes, blocking while the pipe is full.
    pub fn send_value<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.send(bytemuck::bytes_of(value))
    }

    /// Sends as many of `msgs` as fit now, publishing them together (one release store and one
    /// doorbell check for the batch). Returns how many were sent: at least one if there was room,
    /// possibly fewer than the free slots (the receiver's position is read from a cache when it
    /// shows room). Stops before the first message larger than a slot (send those with `send`).
    pub fn send_batch<'m>(&mut self, msgs: impl IntoIterator<Item = &'m [u8]>) -> Result<usize, SendError> {
        let room = match self.wait_room(1, None) {
            Ok(()) => self.ring.room().map_err(corrupt_send)?,
            Err(SendError::Full) => return Ok(0),
            Err(e) => return Err(e),
        };
        let max = self.end.geometry.slot_size as usize;
        let mut n = 0u64;
        for msg in msgs.into_iter() {
            if n == room || msg.len() > max {
                break;
            }
            let idx = self.ring.slot(n);
            // SAFETY: as in `send_in`: an unpublished slot, a checked length, our own source.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.mem().payload(idx), msg.len()) };
            self.ring.set_len(n, msg.len() as u32);
            n += 1;
        }
        if n > 0 {
            self.ring.publish(n);
        }
        Ok(n as usize)
    }

    /// Reserves the next slot to write a message in place, blocking while the pipe is full.
    /// Nothing is sent unless [`PipeReservation::commit`] is called.
    pub fn reserve(&mut self) -> Result<PipeReservation<'_>, SendError> {
        self.wait_room(1, Some(None))?;
        Ok(PipeReservation { tx: self })
    }

    /// Slot size in bytes.
    pub fn slot_size(&self) -> usize {
        self.end.geometry.slot_size as usize
    }
}

/// A slot reserved on a [`Sender`] for writing in place.
pub struct PipeReservation<'a> {
    tx: &'a mut Sender,
}

impl PipeReservation<'_> {
    /// The whole slot (`slot_size` bytes; contents unspecified).
    pub fn buf(&mut self) -> &mut [u8] {
        let idx = self.tx.ring.slot(0);
        // SAFETY: the slot is unpublished and `&mut self` is the only way to reach it.
        unsafe { std::slice::from_raw_parts_mut(self.tx.mem().payload(idx), self.tx.slot_size()) }
    }

    /// Sends the first `len` bytes of [`PipeReservation::buf`].
    pub fn commit(self, len: usize) -> Result<(), SendError> {
        let max = self.tx.slot_size();
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        self.tx.ring.set_len(0, len as u32);
        self.tx.ring.publish(1);
        Ok(())
    }
}

impl Drop for Sender {
    #[inline]
    fn drop(&mut self) {
        if !self.handed_over {
            self.end.detach(self.role);
        }
    }
}

impl Receiver {
    fn mem(&self) -> &RingMem {
        &self.ring.mem
    }

    /// Waits until a message is readable. `Ok(n)`: n messages ready.
    #[inline]
    fn wait_msg(&mut self, deadline: Option<Option<u64>>) -> Result<u64, RecvError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let ring = &mut self.ring;
        let attempt = |ring: &mut spsc::Consumer| match ring.available() {
            Ok(0) if attach::producers_gone(ring.mem.ctrl()) => match ring.available() {
                Ok(0) => Some(Err(RecvError::Closed)),
                Ok(n) => Some(Ok(n)),
                Err(s) => Some(Err(corrupt_recv(s))),
            },
            Ok(0) => None,
            Ok(n) => Some(Ok(n)),
            Err(s) => Some(Err(corrupt_recv(s))),
        };
        let r = match deadline {
            None => attempt(ring).unwrap_or(Err(RecvError::Empty)),
            Some(d) => {
                let mem = ring.mem; // a copy of the pointers, so the bell does not borrow `ring`
                let bell = &mem.ctrl().not_empty;
                let end = &self.end;
                doorbell::block_on(
                    bell,
                    d,
                    self.spin,
                    || attempt(ring),
                    || {
                        end.recover();
                    },
                )
                .unwrap_or(Err(RecvError::Timeout))
            }
        };
        if let Err(e @ RecvError::Corrupt(_)) = &r {
            self.dead = Some(e.clone());
        }
        r
    }

    #[inline]
    fn recv_in(&mut self, deadline: Option<Option<u64>>) -> Result<PipeMessage<'_>, RecvError> {
        self.wait_msg(deadline)?;
        match self.assemble() {
            Ok(body) => Ok(PipeMessage { rx: self, body }),
            Err(s) => {
                let e = corrupt_recv(s);
                self.dead = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The next message: in place when it fits one slot, else a copy of its fragments.
    #[inline]
    fn assemble(&self) -> Result<Body, Corrupt> {
        let (idx, len, more) = self.ring.peek(0)?;
        if !more {
            return Ok(Body { idx, len, owned: std::mem::ManuallyDrop::new(None), count: 1 });
        }
        let mut body = Vec::with_capacity(len * 2);
        let mut n = 0;
        loop {
            // Fragments are published together, last stamp first: once the first is seen, a
            // later one without its stamp is not "still coming", it is corruption.
            if n > 0 && !self.ring.published(n) {
                return Err(Corrupt("a fragmented message was not published whole"));
            }
            let (idx, len, more) = self.ring.peek(n)?;
            // SAFETY: slot n is published and unreleased (n < available), so the sender does not
            // write it; `len` was checked against the slot size.
            body.extend_from_slice(unsafe { std::slice::from_raw_parts(self.mem().payload(idx), len) });
            n += 1;
            if !more {
                return Ok(Body { idx, len: body.len(), owned: std::mem::ManuallyDrop::new(Some(body)), count: n });
            }
        }
    }

    /// Receives the next message, blocking while the pipe is empty. The bytes are read in place;
    /// the slot goes back to the sender when the guard is dropped.
    ///
    /// Errors: `Closed` (end of file: the sender has gone and the pipe is drained), `Corrupt`.
    #[inline]
    pub fn recv(&mut self) -> Result<PipeMessage<'_>, RecvError> {
        if let Now::Ready(body) = self.now() {
            return Ok(PipeMessage { rx: self, body });
        }
        self.recv_in(Some(None))
    }

    /// Receives the next message, blocking at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<PipeMessage<'_>, RecvError> {
        self.recv_in(Some(deadline_after(timeout)))
    }

    /// Receives the next message if there is one now (`Empty` otherwise).
    #[inline]
    pub fn try_recv(&mut self) -> Result<PipeMessage<'_>, RecvError> {
        match self.now() {
            Now::Ready(body) => Ok(PipeMessage { rx: self, body }),
            Now::Empty => Err(RecvError::Empty),
            Now::Other => self.recv_in(None),
        }
    }

    /// The fast path of every receive, inlined into the caller: on a healthy pipe, the next
    /// message if it fits one slot, or "empty" while the sender is there. Anything else
    /// (fragments, end of stream, corruption) goes the general way, which checks again.
    #[inline]
    fn now(&mut self) -> Now {
        if self.dead.is_some() {
            return Now::Other;
        }
        match self.ring.available() {
            Ok(0) if attach::producers_gone(self.ring.mem.ctrl()) => Now::Other,
            Ok(0) => Now::Empty,
            Ok(_) => match self.ring.peek(0) {
                Ok((idx, len, false)) => {
                    Now::Ready(Body { idx, len, owned: std::mem::ManuallyDrop::new(None), count: 1 })
                }
                _ => Now::Other,
            },
            Err(_) => Now::Other,
        }
    }

    /// Receives a `Pod` value (copied out, any alignment), blocking while the pipe is empty. A
    /// message of another size is consumed and reported as `SizeMismatch`.
    pub fn recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        let m = self.recv()?;
        if m.len() != std::mem::size_of::<T>() {
            return Err(RecvError::SizeMismatch { len: m.len(), expected: std::mem::size_of::<T>() });
        }
        Ok(bytemuck::pod_read_unaligned(&m))
    }

    /// Python's `poll`: whether a message (or end of file) is ready, waiting up to `timeout`
    /// (`None`: wait until one is). Corruption counts as ready: the next `recv` reports it.
    pub fn poll(&mut self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map_or(Some(None), |t| if t.is_zero() { None } else { Some(deadline_after(t)) });
        !matches!(self.wait_msg(deadline), Err(RecvError::Empty | RecvError::Timeout))
    }

    /// Reads the messages ready now (at most `max`), calling `f` on each in order, and frees them
    /// together (one release store for the batch). Returns how many were read: at least one if
    /// any was ready, possibly fewer than all of them (the sender's position is read from a cache
    /// when it shows messages). `Empty` if none, `Closed` at end of file. A message that spans
    /// several slots is delivered alone, reassembled.
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        self.wait_msg(None)?;
        let mut n = self.ring.available_all().map_err(corrupt_recv)?.min(max as u64);
        if n > 0 && matches!(self.ring.peek(0), Ok((_, _, true))) {
            // A message spanning several slots: deliver it alone, reassembled.
            f(&self.recv_in(None)?);
            return Ok(1);
        }
        for i in 0..n {
            let (idx, len) = match self.ring.peek(i) {
                Ok((_, _, true)) => {
                    n = i; // stop before a fragmented message
                    break;
                }
                Ok((idx, len, false)) => (idx, len),
                Err(s) => {
                    self.ring.release(i);
                    let e = corrupt_recv(s);
                    self.dead = Some(e.clone()); // sticky, as in `recv`
                    return Err(e);
                }
            };
            // SAFETY: message i is published and unreleased: the sender does not touch it; `len`
            // was checked against the slot size.
            f(unsafe { std::slice::from_raw_parts(self.mem().payload(idx), len) });
        }
        if n > 0 {
            self.ring.release(n);
        }
        Ok(n as usize)
    }
}

impl Drop for Receiver {
    #[inline]
    fn drop(&mut self) {
        if !self.handed_over {
            self.end.detach(self.role);
        }
    }
}

/// A message received in place. Dereferences to its bytes; frees the slot when dropped.
///
/// A message that spanned several slots is reassembled into an owned buffer instead.
pub struct PipeMessage<'a> {
    rx: &'a mut Receiver,
    body: Body,
}

/// What a receive finds without waiting (see `Receiver::now`).
enum Now {
    Ready(Body),
    Empty,
    Other,
}

/// Where a received message's bytes are.
struct Body {
    /// Its (last) slot.
    idx: u64,
    /// Its length.
    len: usize,
    /// The reassembled bytes of a message that spanned several slots (dropped by hand, out of
    /// line, so that dropping a message in place inlines to the release alone).
    owned: std::mem::ManuallyDrop<Option<Vec<u8>>>,
    /// Slots to release when done.
    count: u64,
}

impl PipeMessage<'_> {
    /// A `Pod` view of the bytes, if size and alignment fit (payloads are 16-byte aligned).
    pub fn as_value<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }
}

impl std::ops::Deref for PipeMessage<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        if let Some(v) = &*self.body.owned {
            return v;
        }
        // SAFETY: the message is published and not released until this guard drops, so the
        // sender does not write it; `len` was read once and checked against the slot size.
        unsafe { std::slice::from_raw_parts(self.rx.mem().payload(self.body.idx), self.body.len) }
    }
}

impl Drop for PipeMessage<'_> {
    #[inline]
    fn drop(&mut self) {
        self.rx.ring.release(self.body.count);
        if self.body.owned.is_some() {
            drop_owned(&mut self.body.owned);
        }
    }
}

/// Frees a reassembled message's buffer, out of line (leaves `None`, so it is idempotent).
#[cold]
#[inline(never)]
fn drop_owned(owned: &mut Option<Vec<u8>>) {
    drop(owned.take());
}

impl fmt::Debug for PipeMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeMessage").field("len", &self.body.len).finish()
    }
}

/// One end of a pipe: sends, receives, or both (duplex). Python's `Connection`.
pub struct Connection {
    tx: Option<Sender>,
    rx: Option<Receiver>,
    end: Arc<End>,
}

/// Keeps a handed-over end's segment open until the child has been spawned; drop it after
/// `spawn` (see [`Connection::share_with`]).
pub struct Handover {
    _end: Arc<End>,
}

impl Connection {
    pub(crate) fn attach(seg: Arc<Segment>, geometry: Geometry, end: u32, spin: u32) -> Result<Connection, Error> {
        let (tx_ring, rx_ring) = rings_of(&geometry, end);
        let roles = tx_ring.map_or(0, |r| ROLE_PRODUCER << (2 * r)) | rx_ring.map_or(0, |r| ROLE_CONSUMER << (2 * r));
        let reg = Registration::new(&seg, &geometry, roles)?;
        let end =
            Arc::new(End { seg, reg: std::sync::Mutex::new(reg), geometry, end, handed_over: AtomicBool::new(false) });
        // Claim each ring end exclusively; undo the first if the second is taken.
        let mut claimed = Vec::new();
        for (ring, producer) in [(tx_ring, true), (rx_ring, false)] {
            if let Some(r) = ring {
                let ctrl = shm::ring_mem(&end.seg, &geometry, r);
                if !attach::attach_exclusive(ctrl.ctrl(), producer) {
                    for (r, p) in claimed {
                        attach::detach(shm::ring_mem(&end.seg, &geometry, r).ctrl(), p, !p);
                    }
                    return Err(Error::AlreadyAttached);
                }
                claimed.push((r, producer));
            }
        }
        Connection::build(end, spin, false)
    }

    fn build(end: Arc<End>, spin: u32, _adopted: bool) -> Result<Connection, Error> {
        let (tx_ring, rx_ring) = rings_of(&end.geometry, end.end);
        let corrupt = |c: Corrupt| Error::Corrupt(c.0);
        let tx = match tx_ring {
            Some(r) => Some(Sender {
                ring: spsc::Producer::new(shm::ring_mem(&end.seg, &end.geometry, r)).map_err(corrupt)?,
                end: end.clone(),
                spin,
                dead: None,
                handed_over: false,
                role: ROLE_PRODUCER << (2 * r),
                _not_sync: PhantomData,
            }),
            None => None,
        };
        let rx = match rx_ring {
            Some(r) => Some(Receiver {
                ring: spsc::Consumer::new(shm::ring_mem(&end.seg, &end.geometry, r)).map_err(corrupt)?,
                end: end.clone(),
                spin,
                dead: None,
                handed_over: false,
                role: ROLE_CONSUMER << (2 * r),
                _not_sync: PhantomData,
            }),
            None => None,
        };
        Ok(Connection { tx, rx, end })
    }

    /// Gives this end to a child process spawned from `cmd`, which takes it with
    /// [`Connection::from_env`]`(key)`. Drop the returned [`Handover`] once `cmd` has been spawned.
    ///
    /// The end stays attached throughout: the peer sees neither end of file nor a broken pipe
    /// while the end changes hands.
    pub fn share_with(mut self, cmd: &mut Command, key: &str) -> Handover {
        if let Some(tx) = &mut self.tx {
            tx.handed_over = true;
        }
        if let Some(rx) = &mut self.rx {
            rx.handed_over = true;
        }
        self.end.handed_over.store(true, Ordering::Relaxed);
        let (index, generation) = self.end.reg.lock().unwrap_or_else(|e| e.into_inner()).id(self.end.seg.header());
        let fd = self.end.seg.file().as_raw_fd();
        inherit::share_fd(cmd, fd, key);
        cmd.env(format!("{}_END", inherit::env_var(key)), format!("{},{},{}", self.end.end, index, generation));
        Handover { _end: self.end.clone() }
    }

    /// Takes the end a parent handed over with [`Connection::share_with`] under `key`.
    pub fn from_env(key: &str) -> Result<Connection, Error> {
        Self::from_env_with(key, DEFAULT_SPIN)
    }

    /// As [`Connection::from_env`], with a spin budget for blocking calls.
    pub fn from_env_with(key: &str, spin: u32) -> Result<Connection, Error> {
        let fd = inherit::inherited_fd(key)?;
        let var = format!("{}_END", inherit::env_var(key));
        let bad = || Error::NotInherited(var.clone());
        let v = std::env::var(&var).map_err(|_| bad())?;
        let mut it = v.split(',').map(|x| x.parse::<u64>());
        let (end, index, generation) = match (it.next(), it.next(), it.next()) {
            (Some(Ok(e)), Some(Ok(i)), Some(Ok(g))) if e < 2 && g <= u32::MAX as u64 => {
                (e as u32, i as usize, g as u32)
            }
            _ => return Err(bad()),
        };
        let seg = Segment::open_inherited(fd)?;
        let geometry = shm::validate(&seg, Kind::Pipe)?;
        let reg = Registration::adopt(&seg, index, generation)?;
        let end = Arc::new(End {
            seg: Arc::new(seg),
            reg: std::sync::Mutex::new(reg),
            geometry,
            end,
            handed_over: AtomicBool::new(false),
        });
        Connection::build(end, spin, true)
    }

    #[inline]
    fn tx(&mut self) -> Result<&mut Sender, SendError> {
        self.tx.as_mut().ok_or(SendError::WrongRole)
    }

    #[inline]
    fn rx(&mut self) -> Result<&mut Receiver, RecvError> {
        self.rx.as_mut().ok_or(RecvError::WrongRole)
    }

    /// See [`Sender::send`]. `WrongRole` on the receiving end of a one-way pipe.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.tx()?.send(msg)
    }

    /// See [`Sender::send_timeout`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.tx()?.send_timeout(msg, timeout)
    }

    /// See [`Sender::try_send`].
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.tx()?.try_send(msg)
    }

    /// See [`Sender::send_value`].
    pub fn send_value<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.tx()?.send_value(value)
    }

    /// See [`Receiver::recv`]. `WrongRole` on the sending end of a one-way pipe.
    #[inline]
    pub fn recv(&mut self) -> Result<PipeMessage<'_>, RecvError> {
        self.rx()?.recv()
    }

    /// See [`Receiver::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<PipeMessage<'_>, RecvError> {
        self.rx()?.recv_timeout(timeout)
    }

    /// See [`Receiver::try_recv`].
    #[inline]
    pub fn try_recv(&mut self) -> Result<PipeMessage<'_>, RecvError> {
        self.rx()?.try_recv()
    }

    /// See [`Receiver::recv_value`].
    pub fn recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        self.rx()?.recv_value()
    }

    /// See [`Receiver::poll`]. Always `false` on a send-only end.
    pub fn poll(&mut self, timeout: Option<Duration>) -> bool {
        self.rx.as_mut().is_some_and(|rx| rx.poll(timeout))
    }

    /// Closes this end: the peer sees end of file after draining, and a broken pipe on send.
    pub fn close(self) {}

    /// The sending half, if this end sends.
    pub fn sender(&mut self) -> Option<&mut Sender> {
        self.tx.as_mut()
    }

    /// The receiving half, if this end receives.
    pub fn receiver(&mut self) -> Option<&mut Receiver> {
        self.rx.as_mut()
    }

    /// Splits the end into its halves (to use them from two threads).
    pub fn split(self) -> (Option<Sender>, Option<Receiver>) {
        let mut me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never used or dropped again; each field is moved out exactly once.
        let (tx, rx, end) = unsafe { (std::ptr::read(&me.tx), std::ptr::read(&me.rx), std::ptr::read(&me.end)) };
        let _ = &mut me;
        drop(end);
        (tx, rx)
    }

    /// The sending half of a send-only (or duplex) end.
    pub fn into_sender(self) -> Option<Sender> {
        self.split().0
    }

    /// The receiving half of a receive-only (or duplex) end.
    pub fn into_receiver(self) -> Option<Receiver> {
        self.split().1
    }

    /// The mapped segment (for `crate::fuzzing`).
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.end.seg
    }

    /// Which end this is (0 or 1).
    pub fn end(&self) -> u32 {
        self.end.end
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("end", &self.end.end)
            .field("sends", &self.tx.is_some())
            .field("receives", &self.rx.is_some())
            .finish()
    }
}
