//! shmq
#![warn(missing_docs)]

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
mod pipe;
#[cfg(not(loom))]
mod queue;
#[cfg(not(loom))]
pub(crate) mod segment;
#[cfg(not(loom))]
mod shm;

#[cfg(not(loom))]
pub use attach::ParticipantInfo;
pub use error::{Error, RecvError, SendError};
#[cfg(not(loom))]
pub use pipe::{
    channel, pipe, Connection, Handover, Pipe, PipeBuilder, PipeMessage, PipeReservation, Receiver,
    Sender,
};
#[cfg(not(loom))]
pub use queue::{Message, Queue, QueueBuilder, Reservation, Role};
#[cfg(not(loom))]
pub use segment::unlink;
