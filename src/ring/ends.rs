//! A ring's ends: how many producers and consumers are attached, and from that, end of stream
//! and broken pipe.
//!
//! These counters live in each ring's control block ([`Ends`]) and are changed only here; the
//! loom models check them together with the doorbells.

use crate::ring::doorbell;
use crate::segment::layout::{Ends, RingCtrl, ENDS_CONSUMER_SEEN, ENDS_PERSISTENT, ENDS_PRODUCER_SEEN};
use crate::sys::atomic::Ordering;

/// Counts a new producer and/or consumer on `ring`.
pub(crate) fn attach(ring: &RingCtrl, producer: bool, consumer: bool) {
    let ends: &Ends = &ring.ends;
    if producer {
        ends.producers.fetch_add(1, Ordering::AcqRel);
        ends.flags.fetch_or(ENDS_PRODUCER_SEEN, Ordering::AcqRel);
    }
    if consumer {
        ends.consumers.fetch_add(1, Ordering::AcqRel);
        ends.flags.fetch_or(ENDS_CONSUMER_SEEN, Ordering::AcqRel);
    }
}

/// Attaches as the only producer or only consumer of `ring` (pipes). `false`: that end was
/// attached before (it may be in use, or closed: a closed pipe end is never reopened).
pub(crate) fn attach_exclusive(ring: &RingCtrl, producer: bool) -> bool {
    let ends: &Ends = &ring.ends;
    let (count, seen) =
        if producer { (&ends.producers, ENDS_PRODUCER_SEEN) } else { (&ends.consumers, ENDS_CONSUMER_SEEN) };
    // Count first, then mark seen: nobody may observe "seen and zero attached" for an end that is
    // only now being attached (that would be a false end of stream).
    count.fetch_add(1, Ordering::AcqRel);
    if ends.flags.fetch_or(seen, Ordering::AcqRel) & seen != 0 {
        count.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
}

/// Uncounts a producer (wakes consumers: they may now see end of stream) or a consumer (wakes
/// producers: they may now see a broken pipe).
pub(crate) fn detach(ring: &RingCtrl, producer: bool, consumer: bool) {
    let ends: &Ends = &ring.ends;
    if producer {
        // ORDERING: Release: every message this producer committed happens-before a consumer's
        // Acquire load that sees the count reach zero.
        ends.producers.fetch_sub(1, Ordering::Release);
        doorbell::ring_all(&ring.not_empty);
    }
    if consumer {
        ends.consumers.fetch_sub(1, Ordering::Release);
        doorbell::ring_all(&ring.not_full);
    }
}

/// End of stream: a producer was seen and none is attached now.
///
/// The flag is read *before* the count. An attach increments the count and then sets the flag, so
/// a reader that sees the flag also sees that increment; reading the count first could pair a zero
/// from before the first producer attached with a flag set just after it (a false end of stream).
/// Checked by the loom model `loom_attach_never_looks_like_end_of_stream`.
#[inline]
pub(crate) fn producers_gone(ring: &RingCtrl) -> bool {
    let ends: &Ends = &ring.ends;
    // ORDERING: Acquire on the flag pairs with the AcqRel `fetch_or` in `attach`; Acquire on the
    // count pairs with the Release decrement in `detach` (messages committed before it are seen).
    let flags = ends.flags.load(Ordering::Acquire);
    flags & (ENDS_PRODUCER_SEEN | ENDS_PERSISTENT) == ENDS_PRODUCER_SEEN && ends.producers.load(Ordering::Acquire) == 0
}

/// Broken pipe: a consumer was seen and none is attached now (flag first, as in `producers_gone`).
#[inline]
pub(crate) fn consumers_gone(ring: &RingCtrl) -> bool {
    let ends: &Ends = &ring.ends;
    let flags = ends.flags.load(Ordering::Acquire);
    flags & (ENDS_CONSUMER_SEEN | ENDS_PERSISTENT) == ENDS_CONSUMER_SEEN && ends.consumers.load(Ordering::Acquire) == 0
}
