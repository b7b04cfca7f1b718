//! One end of a pipe (Python's `Connection`): its halves, and handing it to a child.

use super::{rings_of, End, InPlace, Receiver, Reservation, Sender};
use crate::queue::DEFAULT_SPIN;
use crate::ring::doorbell::IdleCheck;
use crate::ring::mem::RingMem;
use crate::ring::spsc::{self, Corrupt};
use crate::ring::SegmentRings;
use crate::segment::format;
use crate::segment::geometry::Geometry;
use crate::segment::layout::{Kind, ROLE_CONSUMER, ROLE_PRODUCER};
use crate::segment::participants::Registration;
use crate::segment::Segment;
use crate::sys::inherit;
use crate::Message;
use crate::{Error, RecvError, SendError};
use bytemuck::Pod;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One end of a pipe: sends, receives, or both (duplex). Python's `Connection`.
///
/// `Send`, not `Sync` (split it into its halves to use them from two threads):
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<shmq::Connection>();
/// ```
/// The halves can move to other threads:
/// ```
/// fn sent_to_another_thread<T: Send>() {}
/// sent_to_another_thread::<shmq::Connection>();
/// sent_to_another_thread::<shmq::Sender>();
/// sent_to_another_thread::<shmq::Receiver>();
/// ```
pub struct Connection {
    tx: Option<Sender>,
    rx: Option<Receiver>,
    end: Arc<End>,
}

/// This process's hold on what it handed to a child (a pipe end, or a queue's entry for the
/// child): keeps the descriptor the child inherits open until the child has been spawned. Drop it
/// right after `spawn` (see [`Connection::hand_over`], [`Queue::share_with`]): while it lives,
/// the end or the child's queue roles count as attached even if the child has died.
///
/// [`Queue::share_with`]: crate::Queue::share_with
#[must_use = "the child inherits a descriptor this holds: keep it until the command has been spawned"]
pub struct Handover {
    _hold: Hold,
}

/// What a [`Handover`] keeps open.
enum Hold {
    /// A pipe end (its entry's lock is the end's registration's).
    End(#[allow(dead_code)] Arc<End>),
    /// The description holding the lock of a queue entry made for the child (or the segment's).
    Lock(#[allow(dead_code)] std::fs::File),
    Nothing,
}

impl Handover {
    /// A hold on the description `lock`.
    pub(crate) fn holding(lock: std::fs::File) -> Handover {
        Handover { _hold: Hold::Lock(lock) }
    }

    /// A hold on nothing (there was nothing to hand over).
    pub(crate) fn nothing() -> Handover {
        Handover { _hold: Hold::Nothing }
    }
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handover").finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn attach(seg: Arc<Segment>, geometry: Geometry, end: u32, spin: u32) -> Result<Connection, Error> {
        let (tx_ring, rx_ring) = rings_of(&geometry, end);
        let roles = tx_ring.map_or(0, |r| ROLE_PRODUCER << (2 * r)) | rx_ring.map_or(0, |r| ROLE_CONSUMER << (2 * r));
        let reg = Registration::new(&seg, &geometry, &SegmentRings::new(&seg, &geometry))?;
        let end = End::new(seg, reg, geometry, end);
        // Both ring ends exclusively, or neither: a refused join leaves no role held or counted
        // (and the entry is freed when `end` drops).
        if end.join(roles).is_err() {
            return Err(Error::AlreadyAttached);
        }
        Connection::build(end, spin)
    }

    fn build(end: Arc<End>, spin: u32) -> Result<Connection, Error> {
        let (tx_ring, rx_ring) = rings_of(&end.geometry, end.end);
        let corrupt = |c: Corrupt| Error::Corrupt(c.0);
        let tx = match tx_ring {
            Some(r) => Some(Sender {
                ring: spsc::Producer::new(RingMem::in_segment(&end.seg, &end.geometry, r)).map_err(corrupt)?,
                end: end.clone(),
                spin,
                dead: None,
                handed_over: false,
                role: ROLE_PRODUCER << (2 * r),
                idle: IdleCheck::new(),
                _not_sync: PhantomData,
            }),
            None => None,
        };
        let rx = match rx_ring {
            Some(r) => Some(Receiver {
                ring: spsc::Consumer::new(RingMem::in_segment(&end.seg, &end.geometry, r)).map_err(corrupt)?,
                end: end.clone(),
                spin,
                dead: None,
                handed_over: false,
                role: ROLE_CONSUMER << (2 * r),
                idle: IdleCheck::new(),
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
    /// while the end changes hands. What keeps it attached is one open file description, which
    /// holds the end's liveness lock and which the child inherits: the end counts as alive while
    /// this process holds the [`Handover`] or any process holds that descriptor. That is the
    /// child from its start, whether or not it ever calls `from_env`, and any process the child
    /// starts before calling `from_env` (which marks the descriptor close-on-exec).
    ///
    /// So a child that dies, even before taking the end, is seen as soon as any dead peer: the
    /// peer's calls report end of file or a broken pipe within tens of milliseconds of the death,
    /// once the `Handover` has been dropped. There is no grace period. A child that keeps running
    /// without taking the end keeps it open, as it would an inherited pipe descriptor; an end
    /// whose command is never spawned is closed when the `Handover` is dropped.
    pub fn hand_over(mut self, cmd: &mut Command, key: &str) -> Handover {
        if let Some(tx) = &mut self.tx {
            tx.handed_over = true;
        }
        if let Some(rx) = &mut self.rx {
            rx.handed_over = true;
        }
        self.end.handed_over.store(true, Ordering::Relaxed);
        let reg = self.end.reg.lock().unwrap_or_else(|e| e.into_inner());
        let (index, generation) = reg.id();
        // The child inherits the description of the entry's liveness lock; this process keeps its
        // own copy open (in the `Handover`) until `cmd` has been spawned.
        let fd = reg.hand_over(self.end.seg.header());
        drop(reg);
        inherit::share_fd(cmd, fd, key);
        cmd.env(format!("{}_END", inherit::env_var(key)), format!("{},{},{}", self.end.end, index, generation));
        Handover { _hold: Hold::End(self.end.clone()) }
    }

    /// Takes the end a parent handed over with [`Connection::hand_over`] under `key`.
    ///
    /// The inherited descriptor becomes this end's own (it holds the end's liveness lock) and is
    /// marked close-on-exec, so processes started from now on do not inherit it; until this call
    /// any process this one starts inherits it and keeps the end alive while it runs. An end is
    /// taken once: a second call for the same key, or another child spawned from the same
    /// command, fails with [`Error::NotInherited`].
    pub fn from_env(key: &str) -> Result<Connection, Error> {
        Self::from_env_with(key, DEFAULT_SPIN)
    }

    /// As [`Connection::from_env`], with a spin budget for blocking calls.
    pub(super) fn from_env_with(key: &str, spin: u32) -> Result<Connection, Error> {
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
        // On any error below `lock` is closed: once the parent has let go too, the end is dead.
        let lock = inherit::take_inherited(key)?;
        let seg = Segment::open_inherited(lock.as_raw_fd())?;
        let geometry = format::validate(&seg, Kind::Pipe)?;
        let reg = Registration::adopt(&seg, lock, index, generation)?;
        Connection::build(End::new(Arc::new(seg), reg, geometry, end), spin)
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

    /// See [`Sender::try_send_value`].
    pub fn try_send_value<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.tx()?.try_send_value(value)
    }

    /// See [`Sender::send_value_timeout`].
    pub fn send_value_timeout<T: Pod>(&mut self, value: &T, timeout: Duration) -> Result<(), SendError> {
        self.tx()?.send_value_timeout(value, timeout)
    }

    /// See [`Sender::send_batch`].
    pub fn send_batch<'m>(&mut self, msgs: impl IntoIterator<Item = &'m [u8]>) -> Result<usize, SendError> {
        self.tx()?.send_batch(msgs)
    }

    /// See [`Sender::reserve`].
    pub fn reserve(&mut self) -> Result<Reservation<'_>, SendError> {
        self.tx()?.reserve()
    }

    /// See [`Sender::try_reserve`].
    pub fn try_reserve(&mut self) -> Result<Reservation<'_>, SendError> {
        self.tx()?.try_reserve()
    }

    /// See [`Sender::send_with`].
    pub fn send_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> Result<(), SendError> {
        self.tx()?.send_with(write)
    }

    /// See [`Receiver::recv`]. `WrongRole` on the sending end of a one-way pipe.
    #[inline]
    pub fn recv(&mut self) -> Result<Message, RecvError> {
        self.rx()?.recv()
    }

    /// See [`Receiver::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        self.rx()?.recv_timeout(timeout)
    }

    /// See [`Receiver::try_recv`].
    #[inline]
    pub fn try_recv(&mut self) -> Result<Message, RecvError> {
        self.rx()?.try_recv()
    }

    /// See [`Receiver::recv_into`].
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.rx()?.recv_into(buf)
    }

    /// See [`Receiver::try_recv_into`].
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.rx()?.try_recv_into(buf)
    }

    /// See [`Receiver::recv_in_place`].
    #[inline]
    pub fn recv_in_place(&mut self) -> Result<InPlace<'_>, RecvError> {
        self.rx()?.recv_in_place()
    }

    /// See [`Receiver::try_recv_in_place`].
    #[inline]
    pub fn try_recv_in_place(&mut self) -> Result<InPlace<'_>, RecvError> {
        self.rx()?.try_recv_in_place()
    }

    /// See [`Receiver::recv_value`].
    pub fn recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        self.rx()?.recv_value()
    }

    /// See [`Receiver::try_recv_value`].
    pub fn try_recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        self.rx()?.try_recv_value()
    }

    /// See [`Receiver::recv_value_timeout`].
    pub fn recv_value_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T, RecvError> {
        self.rx()?.recv_value_timeout(timeout)
    }

    /// See [`Receiver::recv_batch`].
    pub fn recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        self.rx()?.recv_batch(max, f)
    }

    /// See [`Receiver::iter`]; empty on a send-only end.
    pub fn iter(&mut self) -> impl Iterator<Item = Message> + '_ {
        self.rx.as_mut().into_iter().flat_map(Receiver::iter)
    }

    /// See [`Receiver::try_iter`]; empty on a send-only end.
    pub fn try_iter(&mut self) -> impl Iterator<Item = Message> + '_ {
        self.rx.as_mut().into_iter().flat_map(Receiver::try_iter)
    }

    /// See [`Receiver::poll`]. Always `false` on a send-only end.
    pub fn poll(&mut self, timeout: Option<Duration>) -> bool {
        self.rx.as_mut().is_some_and(|rx| rx.poll(timeout))
    }

    /// Closes this end: the peer sees end of file after draining, and a broken pipe on send.
    pub fn close(self) {}

    /// Reaps dead participants now: if the peer died, end of file (after draining) and a broken
    /// pipe follow at once. Returns how many were reaped.
    ///
    /// Calls do this by themselves: every call that is about to report nothing to do (`Empty`,
    /// `Full`, `Timeout`, a batch of 0, `poll` false) or to sleep looks if its half has not looked
    /// for 10 ms, and then re-checks. So whatever way a program waits, a dead peer is reported
    /// within tens of milliseconds of its death. Call this to do it at once, or to learn how many
    /// were reaped.
    pub fn recover(&self) -> usize {
        self.end.recover()
    }

    /// The sending half, if this end sends.
    pub fn sender(&mut self) -> Option<&mut Sender> {
        self.tx.as_mut()
    }

    /// The receiving half, if this end receives (shared).
    pub(crate) fn receiving(&self) -> Option<&Receiver> {
        self.rx.as_ref()
    }

    /// The receiving half, if this end receives.
    pub fn receiver(&mut self) -> Option<&mut Receiver> {
        self.rx.as_mut()
    }

    /// Splits the end into its halves (to use them from two threads).
    pub fn split(self) -> (Option<Sender>, Option<Receiver>) {
        let Connection { tx, rx, end: _ } = self;
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
    #[cfg(feature = "fuzzing")]
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

impl Connection {
    /// The end of a lone half, to hand it over as a whole end. Refused while the end's other half
    /// (of a duplex end that was split) is still in use, since an end changes hands whole.
    fn of_half(tx: Option<Sender>, rx: Option<Receiver>) -> Result<Connection, Error> {
        let end = match (&tx, &rx) {
            (Some(t), _) => t.end.clone(),
            (_, Some(r)) => r.end.clone(),
            _ => unreachable!("one half is given"),
        };
        // This clone and the half's own reference; any other is the other half (or a `Handover`).
        if Arc::strong_count(&end) > 2 {
            return Err(Error::InvalidArgument("the other half of this duplex pipe end is still in use"));
        }
        Ok(Connection { tx, rx, end })
    }
}

impl Sender {
    /// Gives this sending half to a child spawned from `cmd`, which takes it with
    /// [`Sender::from_env`]`(key)`; drop the returned [`Handover`] once `cmd` has been spawned (see
    /// [`Connection::hand_over`]). `InvalidArgument` while the receiving half of the same duplex
    /// end is still in use: an end changes hands whole.
    pub fn hand_over(self, cmd: &mut Command, key: &str) -> Result<Handover, Error> {
        Ok(Connection::of_half(Some(self), None)?.hand_over(cmd, key))
    }

    /// Takes the sending half a parent handed over under `key` ([`Sender::hand_over`], or a
    /// send-only end's [`Connection::hand_over`]).
    pub fn from_env(key: &str) -> Result<Sender, Error> {
        Connection::from_env(key)?.into_sender().ok_or_else(|| Error::NotInherited(format!("{key}: not a sending end")))
    }
}

impl Receiver {
    /// Gives this receiving half to a child spawned from `cmd`, which takes it with
    /// [`Receiver::from_env`]`(key)` (see [`Sender::hand_over`]).
    pub fn hand_over(self, cmd: &mut Command, key: &str) -> Result<Handover, Error> {
        Ok(Connection::of_half(None, Some(self))?.hand_over(cmd, key))
    }

    /// Takes the receiving half a parent handed over under `key`.
    pub fn from_env(key: &str) -> Result<Receiver, Error> {
        Connection::from_env(key)?
            .into_receiver()
            .ok_or_else(|| Error::NotInherited(format!("{key}: not a receiving end")))
    }
}
