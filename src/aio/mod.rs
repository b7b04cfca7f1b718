//! Awaiting queues and pipes from any executor (feature `async`).
//!
//! Every blocking call has an awaited twin on its handle: [`Queue::put_async`],
//! [`Queue::get_async`], [`Queue::reserve_async`], [`Queue::join_async`] (and `put_large_async`,
//! `put_value_async`, `get_into_async`, `get_value_async`); [`Sender::send_async`],
//! [`Sender::reserve_async`], [`Receiver::recv_async`] (and the `_value`/`_into` forms), and the
//! same on a [`Connection`]. Receiving handles are [`Stream`]s through [`QueueStream`] and
//! [`PipeStream`], sending ones [`Sink`]s through [`QueueSink`] and [`PipeSink`]
//! (`futures-core`/`futures-sink` traits, which tokio-stream, `futures` and most executors
//! speak).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let jobs = std::sync::Arc::new(shmq::Queue::anonymous(64, 256)?);
//! let worker = {
//!     let jobs = jobs.clone();
//!     tokio::spawn(async move {
//!         let mut n = 0;
//!         while let Ok(job) = jobs.get_async().await {
//!             n += job.len();
//!         }
//!         n // end of stream: every producer closed
//!     })
//! };
//! jobs.put_async(b"job 1").await?;
//! jobs.close();
//! assert_eq!(worker.await?, 5);
//! # Ok(()) })
//! # }
//! ```
//!
//! # How it waits
//! No executor is assumed, and nothing changes for calls that are not awaited. A future makes the
//! non-blocking call (`try_get`, `try_send`, ...) when polled. When that would block, it
//! registers with this process's **waiter thread** (one per process, started on first use, for
//! every awaited handle), announces itself on the doorbell as a blocking call would, so that
//! peers make the wake-up system call, tries once more, and leaves its task's `Waker` with the
//! thread. The thread sleeps in one `futex_waitv` on the doorbells of the waiting futures plus a
//! word of its own, and wakes the tasks whose doorbell rang; like a blocking sleeper, it passes
//! on a wake-up it has no task for, so blocking and awaiting consumers can share a queue.
//!
//! A dead peer rings no bell: the thread also wakes each waiting task at least every 25 ms, and
//! its re-poll looks for dead participants as a non-blocking call does, so a killed peer reaches
//! an awaiting task (end of stream, end of file, broken pipe) within the bound of a blocking
//! call: tens of milliseconds.
//!
//! **Cancellation.** Every future here is cancel-safe: an operation takes effect only in the poll
//! that completes the future, so dropping a pending future (a losing `select!` branch, a
//! timeout) loses no message and takes none, and it takes the future's registration and its
//! announcement on the doorbell with it. A sink that still holds an item when dropped drops that
//! item (see [`QueueSink`]).
//!
//! **Cost.** Nothing for calls that are not awaited, nor for awaited calls that need not wait.
//! The first wait of a process starts the thread. A wait costs a membarrier (as a blocking
//! call's sleep does) and, unless another task already waits on the same doorbell, one
//! `FUTEX_WAKE` to have the thread add it to its sleep; a wake-up costs the thread's wake and the
//! executor's. On a two-core VM an awaited round trip between two processes took about as long
//! as a blocking one (`examples/async_pingpong.rs`). More than 127 distinct doorbells awaited at
//! once are compared every millisecond instead of slept on.
//!
//! [`Queue`]: crate::Queue
//! [`Queue::put_async`]: crate::Queue::put_async
//! [`Queue::get_async`]: crate::Queue::get_async
//! [`Queue::reserve_async`]: crate::Queue::reserve_async
//! [`Queue::join_async`]: crate::Queue::join_async
//! [`Sender::send_async`]: crate::Sender::send_async
//! [`Sender::reserve_async`]: crate::Sender::reserve_async
//! [`Receiver::recv_async`]: crate::Receiver::recv_async
//! [`Connection`]: crate::Connection
//! [`Stream`]: futures_core::Stream
//! [`Sink`]: futures_sink::Sink

mod park;
mod pipe;
mod queue;
mod waiter;

pub use pipe::{PipeSink, PipeStream, ReceiverHandle, SenderHandle};
pub use queue::{QueueHandle, QueueSink, QueueStream};

/// Futures registered with this process's waiter thread now: those waiting for a doorbell (0
/// when none is, or no future ever waited). For tests and diagnostics: a future that completed
/// or was dropped is not counted.
pub fn registrations() -> usize {
    waiter::registrations()
}
