//! Error types.
//!
//! Opening or creating a segment fails with [`Error`]. Moving a message fails with [`SendError`]
//! (put/send side) or [`RecvError`] (get/recv side); each operation's docs say which variants it
//! can return. None of them loses a message: a failed send leaves the caller's bytes untouched, and
//! a failed receive has taken nothing out of the ring.

use std::io;

/// Why a segment could not be created, opened or attached to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is not of the form `/name` (one leading slash, no other slash, 1..=250 bytes).
    #[error("invalid segment name {0:?}: expected \"/name\" with no other '/', at most 250 bytes")]
    InvalidName(String),
    /// No segment of that name exists.
    #[error("no shmq segment named {0:?} (create it first, or open it with open_or_create, or with open_timeout to wait for its creator)")]
    NotFound(String),
    /// A segment of that name already exists (names are created exclusively).
    #[error("a segment named {0:?} already exists (open it, create it with open_or_create, or remove a leftover with `shmq rm`)")]
    AlreadyExists(String),
    /// The operating system refused access to the segment.
    #[error("permission denied for segment {0:?}")]
    PermissionDenied(String),
    /// The file is not a shmq segment (or is one from an unrelated program).
    #[error("not a shmq segment (bad magic number)")]
    BadMagic,
    /// The segment was made by an incompatible version of shmq.
    #[error("segment layout version {found} is not supported (this build speaks {expected})")]
    VersionMismatch {
        /// Version found in the segment.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// The segment is a valid shmq segment of another kind (a pipe opened as a queue, say).
    #[error("segment is a {found}, expected a {expected}")]
    WrongKind {
        /// What the segment holds.
        found: &'static str,
        /// What the caller asked for.
        expected: &'static str,
    },
    /// The header's sizes disagree with each other or with the real size of the file.
    #[error("segment size mismatch: {0}")]
    SizeMismatch(String),
    /// The header holds a value outside what shmq ever writes.
    #[error("corrupt segment header: {0}")]
    Corrupt(&'static str),
    /// The creator did not finish building the segment in time.
    #[error("segment is not ready (its creator did not finish initialising it in time)")]
    NotReady,
    /// An argument is out of range (capacity 0, slot size too large, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// Every entry of the segment's participant table is in use.
    #[error("too many processes attached to this segment")]
    TooManyParticipants,
    /// The pipe end is already attached to another handle (one producer, one consumer).
    #[error("this end of the pipe is already attached")]
    AlreadyAttached,
    /// The queue or pipe has ended for good: every producer (end of stream) or every consumer
    /// (broken pipe) has gone, and an ended side is never joined again. Create a new queue, or
    /// create this one `persistent` if processes come and go on it.
    #[error("{0}")]
    Closed(&'static str),
    /// No inherited segment was found in the environment under that key.
    #[error("no inherited segment in environment variable {0}")]
    NotInherited(String),
    /// The segment does not fit: the file system behind it (the tmpfs of `/dev/shm` for named
    /// segments), or the memory that backs it, has less room than it needs. Checked before
    /// anything is allocated, and again when its pages are reserved at creation.
    #[error("no space for a segment of {needed} bytes ({free} bytes free)")]
    NoSpace {
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes free where it would live (as the file system or the kernel reports them).
        free: u64,
    },
    /// An inherited anonymous segment (a memfd) is not sealed against shrinking and growing, so
    /// the process that made it could truncate it under us.
    #[error("the inherited segment is a memfd not sealed against shrinking and growing")]
    NotSealed,
    /// Another process holds read locks on the participant table's liveness bytes, so no entry
    /// can be taken. Only a process that may read the file can do this (the library refuses to
    /// create segments that other users may read without writing; see `docs/DESIGN.md`).
    #[error("cannot attach: another process holds read locks on the segment's liveness bytes")]
    LockedByReader,
    /// This process has as many named segments mapped as the `SIGBUS` guard can watch.
    #[error("too many named segments mapped in this process (at most {0})")]
    TooManySegments(usize),
    /// Any other operating-system error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a message could not be put into a queue or sent through a pipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No room now: the ring is full (`try_*` calls only).
    #[error("the ring is full")]
    Full,
    /// The ring stayed full until the deadline (`*_timeout` only).
    #[error("timed out waiting for room")]
    Timeout,
    /// Nobody will ever receive: every consumer has gone (broken pipe), or this handle was
    /// closed for sending.
    #[error(
        "closed: every receiver has gone (broken pipe, final; queues created persistent never end), or this handle was closed for sending"
    )]
    Closed,
    /// The message is larger than the call can carry (a slot, or for calls that split messages,
    /// every slot of the ring).
    #[error("message of {len} bytes is larger than the {max} bytes this call can carry")]
    TooLarge {
        /// Length of the rejected message.
        len: usize,
        /// The most this call carries.
        max: usize,
    },
    /// This handle was opened without the producer role.
    #[error("this handle cannot send (it was opened to receive only)")]
    WrongRole,
    /// The value could not be encoded (`put_serde` / `send_serde`).
    #[error("could not encode the message: {0}")]
    Encode(String),
    /// Another process broke the ring's invariants (or truncated the segment's file); the handle
    /// stops using the segment.
    #[error("the shared ring is corrupt: {0}")]
    Corrupt(&'static str),
    /// The handle was inherited through `fork()`: it belongs to the parent process, and this
    /// process may neither use nor detach it (reported where a send cannot complete at once; see
    /// `docs/DESIGN.md`). Open the segment again in the child instead.
    #[error("this handle belongs to the process this one was forked from")]
    Forked,
}

/// Why a message could not be taken from a queue or received from a pipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing to receive now: the ring is empty (`try_*` calls only).
    #[error("the ring is empty")]
    Empty,
    /// The ring stayed empty until the deadline (`*_timeout` only).
    #[error("timed out waiting for a message")]
    Timeout,
    /// End of stream (end of file for a pipe): every sender has gone and everything they sent
    /// has been received. Final: it never turns back into messages.
    #[error(
        "end of stream: every sender has gone and everything sent was received (final; queues created persistent never end)"
    )]
    Closed,
    /// The value asked for has a different size from the message (typed receive only).
    #[error("message of {len} bytes cannot be read as a value of {expected} bytes")]
    SizeMismatch {
        /// Length of the message (it was consumed).
        len: usize,
        /// Size of the requested type.
        expected: usize,
    },
    /// This handle was opened without the consumer role.
    #[error("this handle cannot receive (it was opened to send only)")]
    WrongRole,
    /// The message could not be decoded as the requested type (`get_serde` / `recv_serde`); the
    /// message was consumed.
    #[error("could not decode the message: {0}")]
    Decode(String),
    /// Another process broke the ring's invariants (or truncated the segment's file); the handle
    /// stops using the segment.
    #[error("the shared ring is corrupt: {0}")]
    Corrupt(&'static str),
    /// The handle was inherited through `fork()`: it belongs to the parent process, and this
    /// process may neither use nor detach it (reported where a receive cannot complete at once;
    /// see `docs/DESIGN.md`). Open the segment again in the child instead.
    #[error("this handle belongs to the process this one was forked from")]
    Forked,
}

/// Why `task_done` or `join` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The queue was not created joinable (`QueueBuilder::joinable`).
    #[error("the queue is not joinable")]
    NotJoinable,
    /// `task_done` was called more times than items were put (Python's `ValueError`).
    #[error("task_done() called more times than there were items")]
    TooManyTaskDone,
    /// Unfinished tasks remained at the deadline (`join_timeout`).
    #[error("timed out waiting for every task to be done")]
    Timeout,
    /// Another process broke the task count's invariants; nothing was changed.
    #[error("the shared task count is corrupt: {0}")]
    Corrupt(&'static str),
}
