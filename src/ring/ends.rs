//! A ring's ends: how many producers and consumers are attached, and from that, end of stream
//! and broken pipe.
//!
//! Each side's count word ([`Ends::producers`], [`Ends::consumers`]) is
//! `{ ended: 1 (bit 31), count: 31 }`. A detach that takes the count from 1 to 0 sets `ended`
//! in the same atomic step; from then on the word stays `{ ended, 0 }`: an attach of that side is
//! refused, so end of stream (and broken pipe) is final once anybody has seen it. Except:
//! - a ring created [`ENDS_PERSISTENT`] never ends;
//! - a queue's ring ([`ENDS_NEED_WITNESS`]) ends a side only while the other side has someone
//!   attached to see it. A queue that everybody has left lies dormant (a named queue persists
//!   with its messages), and new handles attach as to a fresh one. A handle with both roles is
//!   no witness of its own leaving.
//!
//! A side that never had anyone attached is not ended: consumers that open before the first
//! producer wait for it.
//!
//! These counters live in each ring's control block and are changed only here; the loom models
//! check them together with the doorbells.

use crate::ring::doorbell;
use crate::segment::layout::{
    Ends, RingCtrl, ENDS_CONSUMER_SEEN, ENDS_NEED_WITNESS, ENDS_PERSISTENT, ENDS_PRODUCER_SEEN,
};
use crate::sys::atomic::{AtomicU32, Ordering};

/// The `ended` bit of a count word.
pub(crate) const ENDED: u32 = 1 << 31;
/// The count bits of a count word.
const COUNT: u32 = ENDED - 1;

/// Which side of a ring refused an attach because it has ended for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every producer has gone: end of stream.
    Producers,
    /// Every consumer has gone: broken pipe.
    Consumers,
}

/// Adds one to a count word unless it has ended (or, `exclusive`, unless anyone is attached).
fn count_in(word: &AtomicU32, exclusive: bool) -> bool {
    // ORDERING: AcqRel, pairs with the Release update in `count_out` (an attacher that is refused
    // sees what the last one to leave did).
    word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| match c {
        _ if c & ENDED != 0 => None,
        _ if exclusive && c != 0 => None,
        _ => Some((c + 1).min(COUNT)),
    })
    .is_ok()
}

/// Takes one from a count word; the last one out ends the side when `end` says so.
fn count_out(word: &AtomicU32, end: impl Fn() -> bool) {
    // ORDERING: Release: every message this side committed (or every slot it released)
    // happens-before an Acquire load that sees the count reach zero (`producers_gone`).
    let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
        let n = (c & COUNT).saturating_sub(1);
        Some(if n == 0 && end() { ENDED } else { (c & ENDED) | n })
    });
}

/// Whether a side whose last handle is leaving ends, given the other side's count word and
/// whether the leaving handle is also counted there (it is no witness of its own leaving).
fn ends_now(ends: &Ends, other: &AtomicU32, self_in_other: bool) -> bool {
    let flags = ends.flags.load(Ordering::Relaxed);
    let witnesses = (other.load(Ordering::Acquire) & COUNT).saturating_sub(self_in_other as u32);
    flags & ENDS_PERSISTENT == 0 && (flags & ENDS_NEED_WITNESS == 0 || witnesses != 0)
}

/// Counts a new producer and/or consumer on `ring`; refused (nothing counted) if a side it joins
/// has ended.
pub(crate) fn attach(ring: &RingCtrl, producer: bool, consumer: bool) -> Result<(), Ended> {
    let ends: &Ends = &ring.ends;
    if consumer {
        if !count_in(&ends.consumers, false) {
            return Err(Ended::Consumers);
        }
        ends.flags.fetch_or(ENDS_CONSUMER_SEEN, Ordering::Relaxed);
    }
    if producer {
        if !count_in(&ends.producers, false) {
            if consumer {
                detach(ring, false, true);
            }
            return Err(Ended::Producers);
        }
        ends.flags.fetch_or(ENDS_PRODUCER_SEEN, Ordering::Relaxed);
    }
    Ok(())
}

/// Attaches as the only producer or only consumer of `ring` (pipes). `false`: that end is
/// attached, or was and has closed (a closed pipe end is never reopened).
pub(crate) fn attach_exclusive(ring: &RingCtrl, producer: bool) -> bool {
    let ends: &Ends = &ring.ends;
    let (word, seen) =
        if producer { (&ends.producers, ENDS_PRODUCER_SEEN) } else { (&ends.consumers, ENDS_CONSUMER_SEEN) };
    if !count_in(word, true) {
        return false;
    }
    ends.flags.fetch_or(seen, Ordering::Relaxed);
    true
}

/// Uncounts a producer (wakes consumers: they may now see end of stream) or a consumer (wakes
/// producers: they may now see a broken pipe).
pub(crate) fn detach(ring: &RingCtrl, producer: bool, consumer: bool) {
    let ends: &Ends = &ring.ends;
    // A handle with both roles is no witness of its own leaving: its consumer role goes first,
    // not counting its own producer role, and its producer role then finds it gone.
    if consumer {
        count_out(&ends.consumers, || ends_now(ends, &ends.producers, producer));
        doorbell::ring_all(&ring.not_full);
    }
    if producer {
        count_out(&ends.producers, || ends_now(ends, &ends.consumers, false));
        doorbell::ring_all(&ring.not_empty);
    }
}

/// End of stream: every producer has gone, for good.
#[inline]
pub(crate) fn producers_gone(ring: &RingCtrl) -> bool {
    // ORDERING: Acquire, pairs with the Release update in `count_out`: the messages the last
    // producer committed are visible to a consumer that sees the side ended.
    ring.ends.producers.load(Ordering::Acquire) & ENDED != 0
}

/// Broken pipe: every consumer has gone, for good.
#[inline]
pub(crate) fn consumers_gone(ring: &RingCtrl) -> bool {
    ring.ends.consumers.load(Ordering::Acquire) & ENDED != 0
}

/// Attached producers (the count bits of the word).
pub(crate) fn producer_count(ring: &RingCtrl) -> u32 {
    ring.ends.producers.load(Ordering::Acquire) & COUNT
}

/// Attached consumers (the count bits of the word).
pub(crate) fn consumer_count(ring: &RingCtrl) -> u32 {
    ring.ends.consumers.load(Ordering::Acquire) & COUNT
}
