//! [`Took`]: what a one-pass receive found.

use crate::{Message, RecvError};

/// What a one-pass receive (`Mpmc::take_now`, `spsc::Consumer::take_now`) did: the common
/// receive (a message of one slot, ready now) claims, copies out and frees the slot in one go,
/// and leaves everything else to the general receive path of the handle.
pub(crate) enum Took {
    /// Took the message.
    Message(Message),
    /// Claimed a message whose length is corrupt: its slot is freed, and this is the error.
    Corrupt(RecvError),
    /// Nothing published: empty, unless the caller has more to say (end of stream, a dead peer).
    Empty,
    /// Not the common case (a message of several slots, a stale hint, a lost race, a hostile
    /// value): nothing was taken; the general path decides.
    Other,
}
