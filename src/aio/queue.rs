//! Awaiting a [`Queue`]: `put_async`, `get_async`, `reserve_async`, `join_async`, and the queue as
//! a [`Stream`] ([`QueueStream`]) and a [`Sink`] ([`QueueSink`]).

use super::park::{recv_ready, send_ready, Bell, Park};
use crate::queue::Reservation;
use crate::{JoinError, Message, Queue, RecvError, SendError};
use bytemuck::Pod;
use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Ways to hold a [`Queue`] that [`QueueStream`] and [`QueueSink`] accept: `Queue`, `&Queue`,
/// `Arc<Queue>`. Sealed: implemented by this crate only.
pub trait QueueHandle: sealed::Sealed {}

mod sealed {
    use crate::Queue;

    /// Every implementation hands out the same queue every time, and keeps it (and so its
    /// segment) alive while the implementer lives: the adapters' registrations rely on it.
    pub trait Sealed: Unpin {
        fn queue(&self) -> &Queue;
    }
}

impl QueueHandle for Queue {}
impl QueueHandle for &Queue {}
impl QueueHandle for Arc<Queue> {}

impl sealed::Sealed for Queue {
    fn queue(&self) -> &Queue {
        self
    }
}

impl sealed::Sealed for &Queue {
    fn queue(&self) -> &Queue {
        self
    }
}

impl sealed::Sealed for Arc<Queue> {
    fn queue(&self) -> &Queue {
        self
    }
}

/// Awaits `op` (a non-blocking call of `q`) on `bell` (one of `q`'s doorbells): the shared body of
/// every awaited queue call. The future owns its [`Park`] and borrows `q`, so the registration
/// drops before the queue can.
fn awaited<'q, T>(
    q: &'q Queue,
    bell: fn(&Queue) -> &crate::segment::layout::DoorbellWords,
    mut op: impl FnMut(&'q Queue) -> Option<T> + 'q,
) -> impl Future<Output = T> + 'q {
    let mut park = Park::default();
    let bell = Bell::of(bell(q));
    poll_fn(move |cx| {
        // SAFETY: `bell` lies in `q`'s segment, which stays mapped while `q` is borrowed: as long
        // as this future, which owns `park`, lives.
        unsafe { park.poll(cx, bell, || op(q)) }
    })
}

/// Awaited versions of the blocking calls (feature `async`). Each future makes the non-blocking
/// call when polled and, while it would block, leaves its task's `Waker` with this process's
/// waiter thread (see [`crate::aio`]); a peer's death reaches it as it reaches a blocking call.
impl Queue {
    /// Puts a message, awaiting room ([`Queue::put`], awaited).
    ///
    /// Cancel-safe: the message is put whole when the future completes with `Ok`, and not at all
    /// if the future is dropped before it completes.
    ///
    /// Errors: `Closed`, `TooLarge`, `WrongRole`, `Corrupt`, `Forked`.
    pub fn put_async<'q>(&'q self, msg: &'q [u8]) -> impl Future<Output = Result<(), SendError>> + 'q {
        awaited(self, Queue::not_full_bell, move |q| send_ready(q.try_put(msg)))
    }

    /// Puts a message that may be larger than a slot, awaiting room for all of it
    /// ([`Queue::put_large`], awaited). Cancel-safe as [`Queue::put_async`].
    pub fn put_large_async<'q>(&'q self, msg: &'q [u8]) -> impl Future<Output = Result<(), SendError>> + 'q {
        awaited(self, Queue::not_full_bell, move |q| send_ready(q.try_put_large(msg)))
    }

    /// Puts a `Pod` value's bytes, awaiting room. Cancel-safe as [`Queue::put_async`].
    pub fn put_value_async<'q, T: Pod>(&'q self, value: &'q T) -> impl Future<Output = Result<(), SendError>> + 'q {
        self.put_async(bytemuck::bytes_of(value))
    }

    /// Reserves a slot to write in place, awaiting room ([`Queue::reserve`], awaited).
    ///
    /// Cancel-safe: no slot is claimed until the future completes; a future dropped before then
    /// holds none.
    pub fn reserve_async(&self) -> impl Future<Output = Result<Reservation<'_>, SendError>> + '_ {
        awaited(self, Queue::not_full_bell, |q| send_ready(q.try_reserve()))
    }

    /// Takes the oldest message, awaiting one ([`Queue::get`], awaited). Resolves to `Closed` at
    /// end of stream, including when the last producer was killed (within tens of milliseconds,
    /// as for a blocking `get`).
    ///
    /// Cancel-safe: a message is taken out of the queue only in the poll that returns it, so a
    /// future dropped before it completes has taken nothing.
    ///
    /// Errors: `Closed`, `WrongRole`, `Corrupt`, `Forked`.
    pub fn get_async(&self) -> impl Future<Output = Result<Message, RecvError>> + '_ {
        awaited(self, Queue::not_empty_bell, |q| recv_ready(q.try_get()))
    }

    /// As [`Queue::get_async`], into `buf` (see [`Queue::get_into`]). Cancel-safe as
    /// `get_async` (`buf` is cleared and filled only in the poll that takes a message).
    pub fn get_into_async<'q>(&'q self, buf: &'q mut Vec<u8>) -> impl Future<Output = Result<usize, RecvError>> + 'q {
        awaited(self, Queue::not_empty_bell, move |q| recv_ready(q.try_get_into(buf)))
    }

    /// Takes a `Pod` value, awaiting one ([`Queue::get_value`], awaited). Cancel-safe as
    /// [`Queue::get_async`].
    pub fn get_value_async<T: Pod>(&self) -> impl Future<Output = Result<T, RecvError>> + '_ {
        awaited(self, Queue::not_empty_bell, |q| recv_ready(q.try_get_value::<T>()))
    }

    /// Awaits until every item put has been marked done ([`Queue::join`], awaited).
    ///
    /// Cancel-safe: it only watches the count; dropping it changes nothing.
    ///
    /// Errors: `NotJoinable`.
    pub fn join_async(&self) -> impl Future<Output = Result<(), JoinError>> + '_ {
        awaited(self, Queue::join_bell, Queue::try_join)
    }

    /// This queue's messages as a [`Stream`] (see [`QueueStream`]); `QueueStream::new(q)` takes
    /// the queue by value or in an `Arc` instead.
    pub fn stream(&self) -> QueueStream<&Queue> {
        QueueStream::new(self)
    }

    /// This queue as a [`Sink`] of messages of type `T` (see [`QueueSink`]); `QueueSink::new(q)`
    /// takes the queue by value or in an `Arc` instead.
    pub fn sink<T: AsRef<[u8]>>(&self) -> QueueSink<&Queue, T> {
        QueueSink::new(self)
    }
}

/// A queue's messages as a [`Stream`] (feature `async`): each item is an awaited
/// [`Queue::get`]. The stream ends at end of stream (`Closed`); any other error is its last item.
///
/// Cancel-safe: a message is taken only in the poll that yields it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use futures_util::StreamExt;
/// let q = shmq::Queue::anonymous(4, 64)?;
/// q.put(b"a")?;
/// q.put(b"b")?;
/// q.close(); // the only producer: end of stream after "b"
/// let got: Vec<_> = q.stream().map(|m| m.unwrap().to_vec()).collect().await;
/// assert_eq!(got, [b"a", b"b"]);
/// # Ok(()) })
/// # }
/// ```
pub struct QueueStream<Q: QueueHandle> {
    // Declared before `q`, so dropped first: its registration's bell lies in `q`'s segment.
    park: Park,
    done: bool,
    q: Q,
}

impl<Q: QueueHandle> QueueStream<Q> {
    /// A stream over `q` (`Queue`, `&Queue` or `Arc<Queue>`).
    pub fn new(q: Q) -> Self {
        QueueStream { park: Park::default(), done: false, q }
    }

    /// The queue.
    pub fn get_ref(&self) -> &Queue {
        sealed::Sealed::queue(&self.q)
    }

    /// The queue handle back.
    pub fn into_inner(self) -> Q {
        let QueueStream { park, done: _, q } = self;
        drop(park);
        q
    }
}

impl<Q: QueueHandle> Stream for QueueStream<Q> {
    type Item = Result<Message, RecvError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let q = sealed::Sealed::queue(&this.q);
        let bell = Bell::of(q.not_empty_bell());
        // SAFETY: `bell` lies in the segment of `this.q`, which keeps it mapped (`QueueHandle`)
        // and is dropped after `this.park` (field order; `into_inner` drops `park` first).
        let r = ready!(unsafe { this.park.poll(cx, bell, || recv_ready(q.try_get())) });
        this.done = r.is_err();
        Poll::Ready(match r {
            Err(RecvError::Closed) => None,
            r => Some(r),
        })
    }
}

impl<Q: QueueHandle> FusedStream for QueueStream<Q> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<Q: QueueHandle> fmt::Debug for QueueStream<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueStream").field("queue", self.get_ref()).field("done", &self.done).finish()
    }
}

/// A queue as a [`Sink`] of messages (feature `async`): each item (any `AsRef<[u8]>`) is put as
/// with an awaited [`Queue::put`].
///
/// `start_send` puts the item at once if there is room; otherwise the sink holds it, and
/// `poll_ready`, `poll_flush` and `poll_close` await room and put it. So a sink dropped while it
/// holds an item drops that item (flush first, as `SinkExt::send` does); nothing else is lost.
/// `poll_close` only flushes: the queue handle stays open (its consumers see end of stream when
/// it is closed or dropped, as usual). `start_send` without a successful `poll_ready` before it
/// (the `Sink` contract) while an item is held returns `Full` and drops the new item.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use futures_util::SinkExt;
/// let q = shmq::Queue::anonymous(4, 64)?;
/// let mut sink = q.sink();
/// sink.send(b"job".to_vec()).await?;
/// assert_eq!(&*q.get()?, b"job");
/// # Ok(()) })
/// # }
/// ```
pub struct QueueSink<Q: QueueHandle, T> {
    // Declared before `q`, so dropped first: its registration's bell lies in `q`'s segment.
    park: Park,
    /// An item accepted by `start_send` that did not fit yet.
    held: Option<T>,
    q: Q,
}

impl<Q: QueueHandle, T> QueueSink<Q, T> {
    /// A sink into `q` (`Queue`, `&Queue` or `Arc<Queue>`).
    pub fn new(q: Q) -> Self {
        QueueSink { park: Park::default(), held: None, q }
    }

    /// The queue.
    pub fn get_ref(&self) -> &Queue {
        sealed::Sealed::queue(&self.q)
    }

    /// The queue handle back, and the item the sink still held, if any (flush first to have
    /// none).
    pub fn into_inner(self) -> (Q, Option<T>) {
        let QueueSink { park, held, q } = self;
        drop(park);
        (q, held)
    }
}

impl<Q: QueueHandle, T: AsRef<[u8]> + Unpin> Sink<T> for QueueSink<Q, T> {
    type Error = SendError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_flush(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), SendError> {
        let this = self.get_mut();
        if this.held.is_some() {
            return Err(SendError::Full);
        }
        match sealed::Sealed::queue(&this.q).try_put_large(item.as_ref()) {
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
        let q = sealed::Sealed::queue(&this.q);
        let bell = Bell::of(q.not_full_bell());
        // SAFETY: as in `QueueStream::poll_next`: `this.q` keeps the segment mapped and drops
        // after `this.park`.
        let r = ready!(unsafe { this.park.poll(cx, bell, || send_ready(q.try_put_large(item.as_ref()))) });
        this.held = None;
        Poll::Ready(r)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_flush(cx)
    }
}

impl<Q: QueueHandle, T> fmt::Debug for QueueSink<Q, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueSink").field("queue", self.get_ref()).field("holds", &self.held.is_some()).finish()
    }
}
