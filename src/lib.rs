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

// The layers, lowest first; a module imports only from the layers below it.
/// The public handles.
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod queue;
/// The ring algorithms (SPSC, MPMC) over memory they are handed, and their doorbells.
mod ring;
/// A mapped, validated segment: layout, geometry, header format, participants, recovery.
mod segment;
/// Operating-system calls: futex, clock, shm files and memfds, OFD locks, membarrier.
mod sys;
#[cfg(not(loom))]
mod worker;

mod error;
#[cfg(all(feature = "serde", not(loom)))]
mod serde_msg;

#[cfg(all(feature = "fuzzing", not(loom)))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(all(feature = "inspect", not(loom)))]
pub mod inspect;

pub use error::{Error, JoinError, RecvError, SendError};
#[cfg(not(loom))]
pub use pipe::{
    channel, pipe, Connection, Handover, Pipe, PipeBuilder, PipeMessage, PipeReservation, Receiver, Sender,
};
#[cfg(not(loom))]
pub use queue::{Message, Queue, QueueBuilder, Reservation, Role};
#[cfg(not(loom))]
pub use segment::participants::ParticipantInfo;
#[cfg(not(loom))]
pub use segment::recover::RecoveryStats;
#[cfg(not(loom))]
pub use sys::shm::unlink;
#[cfg(not(loom))]
pub use worker::Worker;

/// The version of the shared-memory layout this build reads and writes. Processes built with
/// different layout versions refuse each other's segments ([`Error::VersionMismatch`]).
pub const LAYOUT_VERSION: u32 = segment::layout::LAYOUT_VERSION;
