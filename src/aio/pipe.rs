//! Awaiting a pipe: `send_async`/`recv_async` on [`Sender`], [`Receiver`] and [`Connection`],
//! `reserve_async`, and a pipe as a [`Stream`] ([`PipeStream`]) or a [`Sink`] ([`PipeSink`]).

use super::park::{recv_ready, send_ready, Bell, Park};
use crate::pipe::Reservation;
use crate::segment::layout::DoorbellWords;
use crate::{Connection, Message, Receiver, RecvError, SendError, Sender};
use bytemuck::Pod;
use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Ways to hold a pipe's receiving half that [`PipeStream`] accepts: `Receiver`, `&mut Receiver`,
/// `Connection`, `&mut Connection`. Sealed: implemented by this crate only.
pub trait ReceiverHandle: sealed::Receiving {}

/// Ways to hold a pipe's sending half that [`PipeSink`] accepts: `Sender`, `&mut Sender`,
/// `Connection`, `&mut Connection`. Sealed: implemented by this crate only.
pub trait SenderHandle: sealed::Sending {}

mod sealed {
    use crate::{Connection, Receiver, RecvError, SendError, Sender};

    /// Every implementation hands out the same half every time, and keeps it (and so its
    /// segment) alive while the implementer lives: the adapters' registrations rely on it.
    pub trait Receiving: Unpin {
        fn rx(&mut self) -> Result<&mut Receiver, RecvError>;
    }

    /// As [`Receiving`], for the sending half.
    pub trait Sending: Unpin {
        fn tx(&mut self) -> Result<&mut Sender, SendError>;
    }

    impl Receiving for Receiver {
        fn rx(&mut self) -> Result<&mut Receiver, RecvError> {
            Ok(self)
        }
    }

    impl Receiving for &mut Receiver {
        fn rx(&mut self) -> Result<&mut Receiver, RecvError> {
            Ok(self)
        }
    }

    impl Receiving for Connection {
        fn rx(&mut self) -> Result<&mut Receiver, RecvError> {
            self.receiver().ok_or(RecvError::WrongRole)
        }
    }

    impl Receiving for &mut Connection {
        fn rx(&mut self) -> Result<&mut Receiver, RecvError> {
            self.receiver().ok_or(RecvError::WrongRole)
        }
    }

    impl Sending for Sender {
        fn tx(&mut self) -> Result<&mut Sender, SendError> {
            Ok(self)
        }
    }

    impl Sending for &mut Sender {
        fn tx(&mut self) -> Result<&mut Sender, SendError> {
            Ok(self)
        }
    }

    impl Sending for Connection {
        fn tx(&mut self) -> Result<&mut Sender, SendError> {
            self.sender().ok_or(SendError::WrongRole)
        }
    }

    impl Sending for &mut Connection {
        fn tx(&mut self) -> Result<&mut Sender, SendError> {
            self.sender().ok_or(SendError::WrongRole)
        }
    }
}

impl ReceiverHandle for Receiver {}
impl ReceiverHandle for &mut Receiver {}
impl ReceiverHandle for Connection {}
impl ReceiverHandle for &mut Connection {}
impl SenderHandle for Sender {}
impl SenderHandle for &mut Sender {}
impl SenderHandle for Connection {}
impl SenderHandle for &mut Connection {}

/// Awaits `op` (a non-blocking call of `h`) on the doorbell `bell(h)`: the shared body of every
/// awaited pipe call. The future owns its [`Park`] and borrows `h`, so the registration drops
/// before the half can.
fn awaited<'h, H, T>(
    h: &'h mut H,
    bell: fn(&H) -> &DoorbellWords,
    mut op: impl FnMut(&mut H) -> Option<T> + 'h,
) -> impl Future<Output = T> + 'h {
    let mut park = Park::default();
    let bell = Bell::of(bell(h));
    poll_fn(move |cx| {
        // SAFETY: `bell` lies in the segment of `h`, which stays mapped while `h` is borrowed: as
        // long as this future, which owns `park`, lives.
        unsafe { park.poll(cx, bell, || op(h)) }
    })
}

/// Awaited versions of the blocking calls (feature `async`); see [`crate::aio`].
impl Receiver {
    /// Receives the next message, awaiting one ([`Receiver::recv`], awaited). Resolves to
    /// `Closed` at end of file, including when the sender was killed (within tens of
    /// milliseconds, as for a blocking `recv`).
    ///
    /// Cancel-safe: a message leaves the pipe only in the poll that returns it, so a future
    /// dropped before it completes has taken nothing.
    ///
    /// Errors: `Closed`, `Corrupt`, `Forked`.
    pub fn recv_async(&mut self) -> impl Future<Output = Result<Message, RecvError>> + '_ {
        awaited(self, Receiver::not_empty_bell, |rx| recv_ready(rx.try_recv()))
    }

    /// As [`Receiver::recv_async`], into `buf` (see [`Receiver::recv_into`]). Cancel-safe as
    /// `recv_async`.
    pub fn recv_into_async<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl Future<Output = Result<usize, RecvError>> + 'a {
        awaited(self, Receiver::not_empty_bell, move |rx| recv_ready(rx.try_recv_into(buf)))
    }

    /// Receives a `Pod` value, awaiting one ([`Receiver::recv_value`], awaited). Cancel-safe as
    /// [`Receiver::recv_async`].
    pub fn recv_value_async<T: Pod>(&mut self) -> impl Future<Output = Result<T, RecvError>> + '_ {
        awaited(self, Receiver::not_empty_bell, |rx| recv_ready(rx.try_recv_value::<T>()))
    }

    /// This receiver's messages as a [`Stream`] (see [`PipeStream`]); `PipeStream::new(rx)` takes
    /// it by value instead.
    pub fn stream(&mut self) -> PipeStream<&mut Receiver> {
        PipeStream::new(self)
    }
}

/// Awaited versions of the blocking calls (feature `async`); see [`crate::aio`].
impl Sender {
    /// Sends a message, awaiting room ([`Sender::send`], awaited; a message larger than a slot
    /// awaits room for all its fragments).
    ///
    /// Cancel-safe: the message is sent whole when the future completes with `Ok`, and not at all
    /// if the future is dropped before it completes.
    ///
    /// Errors: `Closed` (broken pipe), `TooLarge`, `Corrupt`, `Forked`.
    pub fn send_async<'a>(&'a mut self, msg: &'a [u8]) -> impl Future<Output = Result<(), SendError>> + 'a {
        awaited(self, Sender::not_full_bell, move |tx| send_ready(tx.try_send(msg)))
    }

    /// Sends a `Pod` value's bytes, awaiting room. Cancel-safe as [`Sender::send_async`].
    pub fn send_value_async<'a, T: Pod>(
        &'a mut self,
        value: &'a T,
    ) -> impl Future<Output = Result<(), SendError>> + 'a {
        self.send_async(bytemuck::bytes_of(value))
    }

    /// Reserves the next slot to write in place, awaiting room ([`Sender::reserve`], awaited).
    ///
    /// Cancel-safe: a reservation sends nothing until it is committed, and the future holds none
    /// before it completes.
    pub async fn reserve_async(&mut self) -> Result<Reservation<'_>, SendError> {
        // Room, once there, stays: this is the pipe's only sender. A reservation taken only to
        // see that there is room is dropped uncommitted, which sends nothing.
        awaited(self, Sender::not_full_bell, |tx| send_ready(tx.try_reserve().map(drop))).await?;
        self.try_reserve()
    }

    /// This sender as a [`Sink`] of messages of type `T` (see [`PipeSink`]); `PipeSink::new(tx)`
    /// takes it by value instead.
    pub fn sink<T: AsRef<[u8]>>(&mut self) -> PipeSink<&mut Sender, T> {
        PipeSink::new(self)
    }
}

/// Awaited versions of the blocking calls (feature `async`): those of the end's halves,
/// [`Sender`] and [`Receiver`]; `WrongRole` on an end that does not send, or receive.
impl Connection {
    /// See [`Sender::send_async`]. Cancel-safe.
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.sender().ok_or(SendError::WrongRole)?.send_async(msg).await
    }

    /// See [`Sender::send_value_async`]. Cancel-safe.
    pub async fn send_value_async<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.send_async(bytemuck::bytes_of(value)).await
    }

    /// See [`Sender::reserve_async`]. Cancel-safe.
    pub async fn reserve_async(&mut self) -> Result<Reservation<'_>, SendError> {
        self.sender().ok_or(SendError::WrongRole)?.reserve_async().await
    }

    /// See [`Receiver::recv_async`]. Cancel-safe.
    pub async fn recv_async(&mut self) -> Result<Message, RecvError> {
        self.receiver().ok_or(RecvError::WrongRole)?.recv_async().await
    }

    /// See [`Receiver::recv_into_async`]. Cancel-safe.
    pub async fn recv_into_async(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.receiver().ok_or(RecvError::WrongRole)?.recv_into_async(buf).await
    }

    /// See [`Receiver::recv_value_async`]. Cancel-safe.
    pub async fn recv_value_async<T: Pod>(&mut self) -> Result<T, RecvError> {
        self.receiver().ok_or(RecvError::WrongRole)?.recv_value_async().await
    }

    /// The messages this end receives as a [`Stream`] (see [`PipeStream`]).
    pub fn stream(&mut self) -> PipeStream<&mut Connection> {
        PipeStream::new(self)
    }

    /// This end as a [`Sink`] of messages of type `T` (see [`PipeSink`]).
    pub fn sink<T: AsRef<[u8]>>(&mut self) -> PipeSink<&mut Connection, T> {
        PipeSink::new(self)
    }
}

/// A pipe's messages as a [`Stream`] (feature `async`): each item is an awaited `recv`. The
/// stream ends at end of file (`Closed`, also when the sender was killed); any other error is its
/// last item.
///
/// Cancel-safe: a message leaves the pipe only in the poll that yields it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use futures_util::StreamExt;
/// let (mut tx, rx) = shmq::channel(4, 64)?;
/// tx.send(b"a")?;
/// drop(tx); // end of file after "a"
/// let got: Vec<_> = shmq::PipeStream::new(rx).map(|m| m.unwrap().to_vec()).collect().await;
/// assert_eq!(got, [b"a"]);
/// # Ok(()) })
/// # }
/// ```
pub struct PipeStream<R: ReceiverHandle> {
    // Declared before `rx`, so dropped first: its registration's bell lies in `rx`'s segment.
    park: Park,
    done: bool,
    rx: R,
}

impl<R: ReceiverHandle> PipeStream<R> {
    /// A stream over `rx` (`Receiver`, `&mut Receiver`, `Connection` or `&mut Connection`).
    pub fn new(rx: R) -> Self {
        PipeStream { park: Park::default(), done: false, rx }
    }

    /// The receiving handle back.
    pub fn into_inner(self) -> R {
        let PipeStream { park, done: _, rx } = self;
        drop(park);
        rx
    }
}

impl<R: ReceiverHandle> Stream for PipeStream<R> {
    type Item = Result<Message, RecvError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let r = match this.rx.rx() {
            Err(e) => Err(e),
            Ok(rx) => {
                let bell = Bell::of(rx.not_empty_bell());
                // SAFETY: `bell` lies in the segment of `this.rx`, which keeps it mapped
                // (`ReceiverHandle`) and is dropped after `this.park` (field order; `into_inner`
                // drops `park` first).
                ready!(unsafe { this.park.poll(cx, bell, || recv_ready(rx.try_recv())) })
            }
        };
        this.done = r.is_err();
        Poll::Ready(match r {
            Err(RecvError::Closed) => None,
            r => Some(r),
        })
    }
}

impl<R: ReceiverHandle> FusedStream for PipeStream<R> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<R: ReceiverHandle> fmt::Debug for PipeStream<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeStream").field("done", &self.done).finish()
    }
}

/// A pipe as a [`Sink`] of messages (feature `async`): each item (any `AsRef<[u8]>`) is sent as
/// with an awaited `send` (one larger than a slot in fragments).
///
/// `start_send` sends the item at once if there is room; otherwise the sink holds it, and
/// `poll_ready`, `poll_flush` and `poll_close` await room and send it. So a sink dropped while it
/// holds an item drops that item (flush first, as `SinkExt::send` does); nothing else is lost.
/// `poll_close` only flushes: the receiver sees end of file when the sending half is dropped.
/// `start_send` without a successful `poll_ready` before it (the `Sink` contract) while an item
/// is held returns `Full` and drops the new item.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use futures_util::SinkExt;
/// let (mut tx, mut rx) = shmq::channel(4, 64)?;
/// tx.sink().send(b"hello".to_vec()).await?;
/// assert_eq!(&*rx.recv()?, b"hello");
/// # Ok(()) })
/// # }
/// ```
pub struct PipeSink<S: SenderHandle, T> {
    // Declared before `tx`, so dropped first: its registration's bell lies in `tx`'s segment.
    park: Park,
    /// An item accepted by `start_send` that did not fit yet.
    held: Option<T>,
    tx: S,
}

impl<S: SenderHandle, T> PipeSink<S, T> {
    /// A sink into `tx` (`Sender`, `&mut Sender`, `Connection` or `&mut Connection`).
    pub fn new(tx: S) -> Self {
        PipeSink { park: Park::default(), held: None, tx }
    }

    /// The sending handle back, and the item the sink still held, if any (flush first to have
    /// none).
    pub fn into_inner(self) -> (S, Option<T>) {
        let PipeSink { park, held, tx } = self;
        drop(park);
        (tx, held)
    }
}

impl<S: SenderHandle, T: AsRef<[u8]> + Unpin> Sink<T> for PipeSink<S, T> {
    type Error = SendError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_flush(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), SendError> {
        let this = self.get_mut();
        if this.held.is_some() {
            return Err(SendError::Full);
        }
        match this.tx.tx()?.try_send(item.as_ref()) {
            Err(SendError::Full) => {
                this.held = Some(item);
                Ok(())
            }
            r => r,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let this = self.get_mut();
        let Some(item) = &this.held else { return Poll::Ready(Ok(())) };
        let r = match this.tx.tx() {
            Err(e) => Err(e),
            Ok(tx) => {
                let bell = Bell::of(tx.not_full_bell());
                // SAFETY: as in `PipeStream::poll_next`: `this.tx` keeps the segment mapped and
                // drops after `this.park`.
                ready!(unsafe { this.park.poll(cx, bell, || send_ready(tx.try_send(item.as_ref()))) })
            }
        };
        this.held = None;
        Poll::Ready(r)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_flush(cx)
    }
}

impl<S: SenderHandle, T> fmt::Debug for PipeSink<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeSink").field("holds", &self.held.is_some()).finish()
    }
}
