//! Lock-free queues and pipes between processes, through shared memory.
//!
//! shmq gives Rust programs the model of Python's `multiprocessing.Queue` and `Pipe` at the speed
//! of the hardware: a message crosses from one process to another through a ring buffer in a
//! memory-mapped segment, with no lock and no system call on the fast path.
//!
//! - [`Queue`]: bounded multi-producer multi-consumer. Blocking `put`/`get` (with timeouts) sleep
//!   on a futex shared between processes; `try_put`/`try_get` never block.
//! - [`Connection`] ([`pipe()`], [`Pipe::builder`]): single-producer single-consumer, one-way or
//!   duplex, with `send`/`recv`/`poll` and end of file: the fastest path in the crate.
//! - Zero-copy both ways: [`Queue::reserve`] / [`Sender::reserve`] write in place, and
//!   [`Message`] / [`PipeMessage`] read in place; `bytemuck::Pod` values travel as their bytes.
//! - Named segments (`/name`, in `/dev/shm`) for unrelated processes; anonymous ones (memfd) for
//!   children ([`Queue::share_with`], [`Connection::share_with`]).
//!
//! # Quick start
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let name = format!("/shmq-doc-{}", std::process::id());
//! // process A
//! let q = shmq::Queue::create(&name, 1024, 256)?; // name, capacity, slot size (bytes)
//! q.put(b"hello")?;                               // blocks while full
//! // process B
//! let q2 = shmq::Queue::open(&name)?;
//! let msg = q2.get()?;                            // blocks while empty; read in place
//! assert_eq!(&*msg, b"hello");
//! # Ok(()) }
//! ```
//!
//! A pipe, Python style:
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut a, mut b) = shmq::pipe(true)?; // hand `b` to a child with `b.share_with(&mut cmd, "KEY")`
//! a.send(b"ping")?;
//! assert_eq!(&*b.recv()?, b"ping");
//! drop(a);
//! assert_eq!(b.recv().unwrap_err(), shmq::RecvError::Closed); // EOFError
//! # Ok(()) }
//! ```
//!
//! Shared memory is input from another process: opening validates the whole header against the
//! file, and every index and length read from the segment is checked before use. A misbehaving
//! peer can make operations fail with `Corrupt`, never make this process read out of bounds.
//! The layout and the protocols are described in `docs/DESIGN.md`.
#![warn(missing_docs)]
// Under loom only the ring algorithms are built; the segment-facing helpers go unused.
#![cfg_attr(loom, allow(dead_code))]

pub(crate) mod doorbell;
mod error;
pub(crate) mod futex;
pub mod layout;
pub(crate) mod mpmc;
pub(crate) mod ring;
pub(crate) mod spsc;
pub(crate) mod sync;

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(not(loom))]
mod attach;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(not(loom))]
mod inherit;
#[cfg(not(loom))]
pub mod inspect;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod queue;
#[cfg(not(loom))]
mod recover;
#[cfg(not(loom))]
pub(crate) mod segment;
#[cfg(all(feature = "serde", not(loom)))]
mod serde_msg;
#[cfg(not(loom))]
mod shm;
#[cfg(not(loom))]
mod worker;

#[cfg(not(loom))]
pub use attach::ParticipantInfo;
pub use error::{Error, JoinError, RecvError, SendError};
#[cfg(not(loom))]
pub use pipe::{
    channel, pipe, Connection, Handover, Pipe, PipeBuilder, PipeMessage, PipeReservation, Receiver, Sender,
};
#[cfg(not(loom))]
pub use queue::{Message, Queue, QueueBuilder, Reservation, Role};
#[cfg(not(loom))]
pub use recover::RecoveryStats;
#[cfg(not(loom))]
pub use segment::unlink;
#[cfg(not(loom))]
pub use worker::Worker;
