//! The segment layer: a mapped segment whose header was validated, its participants, and crash
//! recovery of the participant table.
//!
//! - [`layout`]: the `repr(C)` types of the shared memory (header, participant table, ring
//!   control block, slot header) and their constants.
//! - [`geometry`]: a segment's sizes and offsets, computed with checked arithmetic, and the
//!   validation of a header read from a peer.
//! - [`format`](mod@format): writing a new header and validating an opened one.
//! - [`table`]: a participant entry's states and the transitions between them.
//! - [`participants`]: registering a handle (an entry and its liveness lock).
//! - [`tasks`]: the task accounting of joinable queues (`unfinished`, per-entry counters).
//! - [`recover`]: reaping the entries of dead processes.
//!
//! This layer knows files, mappings and the header; it knows no ring algorithm (what a dead
//! participant held in the rings is repaired through [`recover::RingRepair`]).

#[cfg(not(loom))]
pub(crate) mod format;
pub(crate) mod geometry;
pub(crate) mod layout;
#[cfg(not(loom))]
pub(crate) mod participants;
#[cfg(not(loom))]
pub(crate) mod recover;
pub(crate) mod table;
pub(crate) mod tasks;

#[cfg(not(loom))]
mod mapping;
#[cfg(not(loom))]
pub(crate) use mapping::Segment;
