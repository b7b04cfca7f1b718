//! Lock-free queues and pipes between processes, through shared memory.
//!
//! shmq gives Rust programs the model of Python's `multiprocessing.Queue` and `Pipe` at the speed
//! of the hardware: a message crosses from one process to another through a ring buffer in a
//! memory-mapped segment, with no lock and no system call on the fast path.
//!
//! - [`Queue`] ([`queue`]): bounded multi-producer multi-consumer. Blocking `put`/`get` (with
//!   timeouts) sleep on a futex shared between processes; `try_put`/`try_get` never block.
//! - [`Connection`] ([`pipe()`], [`channel`], [`PipeBuilder`]; module [`pipe`](mod@pipe)):
//!   single-producer single-consumer, one-way or duplex, with `send`/`recv`/`poll` and end of
//!   file: the fastest path in the crate.
//! - Receives return an owned [`Message`]: its slot is free again before the call returns, so a
//!   consumer busy with a message never takes room from producers. `*_into` fills a buffer of
//!   the caller's, `*_value` reads a `bytemuck::Pod` value; `get_in_place`/`recv_in_place` read
//!   without a copy, holding the slot, and `reserve` writes in place.
//! - Named segments (`/name`, in `/dev/shm`) for unrelated processes; anonymous ones (memfd) for
//!   children ([`Queue::share_with`], [`Connection::hand_over`], [`Worker`]).
//! - End of stream and broken pipe are counted from the handles attached with each role, and are
//!   final once reached; a killed process is detected through a lock the kernel releases, and
//!   what it held is repaired by the survivors.
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
//! let msg = q2.get()?;                            // blocks while empty; an owned copy
//! assert_eq!(&*msg, b"hello");
//! shmq::unlink(&name)?; // a named queue persists until it is removed
//! # Ok(()) }
//! ```
//!
//! A pipe, Python style:
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut a, mut b) = shmq::pipe()?; // hand `b` to a child with `b.hand_over(&mut cmd, "KEY")`
//! a.send(b"ping")?;
//! assert_eq!(&*b.recv()?, b"ping");
//! drop(a);
//! assert_eq!(b.recv().unwrap_err(), shmq::RecvError::Closed); // EOFError
//! # Ok(()) }
//! ```
//!
//! Shared memory is input from another process: opening validates the whole header against the
//! file, every index and length read from the segment is checked before use, and owned receives
//! copy the bytes out before anything looks at them. A misbehaving peer can make operations fail
//! with `Corrupt`, never make this process read out of bounds. The layout and the protocols are
//! described in `docs/DESIGN.md`.
#![warn(missing_docs)]
// Under loom only the ring algorithms are built; the segment-facing helpers go unused.
#![cfg_attr(loom, allow(dead_code))]

// The layers, lowest first (a module imports only from the layers below it):
//   sys      operating-system calls: futex, clock, shm files and memfds, OFD locks, membarrier
//   segment  a mapped, validated segment: layout, geometry, header format, participants, recovery
//   ring     the ring algorithms (SPSC, MPMC) over memory they are handed, and their doorbells
//   queue, pipe, message, worker   the public handles
//   aio      awaiting the handles (feature `async`): the waiter thread and the futures
#[cfg(all(feature = "async", not(loom)))]
pub mod aio;
mod error;
#[cfg(all(feature = "fuzzing", not(loom)))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(all(feature = "inspect", not(loom)))]
pub mod inspect;
mod message;
#[cfg(not(loom))]
pub mod pipe;
#[cfg(not(loom))]
pub mod queue;
mod ring;
mod segment;
#[cfg(all(feature = "serde", not(loom)))]
mod serde_msg;
mod sys;
#[cfg(not(loom))]
mod wait;
#[cfg(not(loom))]
mod worker;

#[cfg(all(feature = "async", not(loom)))]
pub use aio::{PipeSink, PipeStream, QueueSink, QueueStream};
/// `Pod` values travel as their bytes (`put_value`, `get_value`, ...); derive `Pod` and `Zeroable`
/// with this crate's re-export, so that the versions match.
pub use bytemuck;
pub use error::{Error, JoinError, RecvError, SendError};
pub use message::{Message, INLINE_BYTES};
#[cfg(not(loom))]
pub use pipe::{channel, pipe, Connection, Handover, PipeBuilder, Receiver, Sender};
#[cfg(not(loom))]
pub use queue::{Queue, QueueBuilder, Role};
#[cfg(not(loom))]
pub use segment::participants::ParticipantInfo;
#[cfg(not(loom))]
pub use segment::recover::RecoveryStats;
#[cfg(not(loom))]
pub use sys::shm::unlink;
#[cfg(not(loom))]
pub use wait::{wait, Waitable};
#[cfg(not(loom))]
pub use worker::{Worker, WorkerProcess};

/// The README's examples, run as doctests (those with child processes re-run the doctest binary).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

/// The version of the shared-memory layout this build reads and writes. Processes built with
/// different layout versions refuse each other's segments ([`Error::VersionMismatch`]).
pub const LAYOUT_VERSION: u32 = segment::layout::LAYOUT_VERSION;
