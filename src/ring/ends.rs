//! A ring's ends: how many producers and consumers are attached, and from that, end of stream
//! and broken pipe.
//!
//! # Counts that survive a kill
//! Who holds which role is recorded in one place only: the role bits of the participant table's
//! entries. Each side's count word ([`Ends::producers`], [`Ends::consumers`]) is a cache of those
//! bits, `{ version: 32, ended: 1 (bit 31), count: 31 }`, and is changed only by [`sync`]: read the
//! word, count the entries that hold the role now, CAS the word to `{ version + 1, that count }`.
//! Every change of an entry's role bits is followed by a `sync` of the sides it touched, made by
//! the handle that changed them or, if its process dies first, by the survivor that reaps its
//! entry (which clears the dead entry's bits and syncs every side). A `sync` recomputes instead of
//! adding or subtracting, so running it again, or after a kill at any instruction, or twice from
//! two processes, cannot count a role twice or lose one: the count word ends up equal to the
//! table once the last sync has landed.
//!
//! The version makes a CAS fail whenever any other sync landed since the word was read. So the
//! sync that lands last read the word after every earlier one had landed, and counted the table
//! after the role changes those earlier syncs were made for (their CAS is Release, our load of
//! the word Acquire): a sync that counted a stale table can only land if no other one landed in
//! between, and then the changes it missed are those of handles whose own sync is still to come.
//! A joining handle's attach returns only once its own sync has landed with its bit counted.
//!
//! # Ended
//! A sync that takes a count from above zero to zero sets `ended` in the same CAS when the side
//! ends (below); from then on the word stays `{ ended, 0 }`: a sync leaves it alone and a join of
//! that side is refused, so end of stream (and broken pipe) is final once anybody has seen it.
//! Except:
//! - a ring created [`ENDS_PERSISTENT`] never ends;
//! - a queue's ring ([`ENDS_NEED_WITNESS`]) ends a side only while an entry holds the other role
//!   to see it. A queue that everybody has left lies dormant (a named queue persists with its
//!   messages), and new handles attach as to a fresh one. A handle with both roles clears both
//!   bits before it syncs, so it is no witness of its own leaving.
//!
//! A side that never had anyone attached is not ended: consumers that open before the first
//! producer wait for it. Roles counted for a child that has not opened the queue yet (a handover,
//! [`Sync::Hold`]) keep a side from ending, but do not count as attached until the child confirms
//! them ([`confirm`]): a child that drops a role it was handed, or dies before opening, does not
//! end a side that nobody ever attached to for real (`ENDS_*_SEEN`).
//!
//! These words live in each ring's control block and are changed only here; the loom models check
//! them, with a killed handle and its reaper, together with the doorbells.

use crate::ring::doorbell;
use crate::segment::layout::{
    Ends, RingCtrl, ENDS_CONSUMER_SEEN, ENDS_NEED_WITNESS, ENDS_PERSISTENT, ENDS_PRODUCER_SEEN, ROLE_CONSUMER,
    ROLE_PRODUCER,
};
use crate::sys::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::sys::crash::{self, Died};

/// The `ended` bit of a count word (in its low 32 bits, as [`CountWord::load`] returns them).
///
/// [`CountWord::load`]: crate::segment::layout::CountWord::load
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

/// Why a join was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The side has ended for good.
    Ended(Ended),
    /// An exclusive side (a pipe end) is held by another handle.
    Taken,
}

/// The participant table, as [`sync`] sees it.
pub(crate) trait Members {
    /// How many entries hold role bit `bit` now.
    fn holding(&self, bit: u32) -> u32;
}

/// What a [`sync`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sync {
    /// A handle set its bit and joins: refused if the side has ended (nothing else changes).
    Join,
    /// As `Join`, and refused if anyone is counted already (pipe ends).
    JoinExclusive,
    /// As `Join`, for a role handed to a child that has not opened the queue yet: counted, but the
    /// side is not marked as seen (see [`confirm`]).
    Hold,
    /// Bits were cleared (a handle left, or a reaper cleared a dead entry's), or the word is to be
    /// brought in line: may end the side.
    Settle,
}

/// Role bit of ring `r`'s producers or consumers in an entry's `roles`.
#[inline]
pub(crate) fn role_bit(r: u32, producer: bool) -> u32 {
    (if producer { ROLE_PRODUCER } else { ROLE_CONSUMER }) << (2 * r)
}

#[inline]
fn pack(version: u32, low: u32) -> u64 {
    ((version as u64) << 32) | low as u64
}

/// Brings the count word of one side of ring `r` (`producer`, or the consumers) in line with the
/// table (see the module docs). `Err(Died)` only in loom models, at a crash point.
pub(crate) fn sync(
    ring: &RingCtrl,
    r: u32,
    producer: bool,
    members: &dyn Members,
    how: Sync,
) -> Result<Result<(), Refused>, Died> {
    let ends: &Ends = &ring.ends;
    let (word, seen): (&AtomicU64, u32) =
        if producer { (&ends.producers.0, ENDS_PRODUCER_SEEN) } else { (&ends.consumers.0, ENDS_CONSUMER_SEEN) };
    let side = if producer { Ended::Producers } else { Ended::Consumers };
    if how == Sync::Join || how == Sync::JoinExclusive {
        // Before our CAS, which publishes it (Release) to every sync that comes after, in
        // particular the one that takes the count back to zero and decides whether the side ends.
        // A refused join sets it harmlessly: the side has ended, or someone else was counted.
        ends.flags.fetch_or(seen, Ordering::Relaxed);
    }
    loop {
        // ORDERING: Acquire, pairs with the Release CAS below (another sync's): the role changes
        // that sync was made for happen before our count of the table.
        let w = word.load(Ordering::Acquire);
        let (version, low) = ((w >> 32) as u32, w as u32);
        if low & ENDED != 0 {
            return Ok(if how == Sync::Settle { Ok(()) } else { Err(Refused::Ended(side)) });
        }
        if how == Sync::JoinExclusive && low & COUNT != 0 {
            return Ok(Err(Refused::Taken));
        }
        let n = members.holding(role_bit(r, producer)).min(COUNT);
        // ORDERING: Relaxed: a join set `seen` before its CAS, which our Acquire load of the word
        // (or of a later one) orders before this load.
        let end = how == Sync::Settle
            && n == 0
            && low & COUNT != 0
            && ends.flags.load(Ordering::Relaxed) & seen != 0
            && ends_now(ends, members.holding(role_bit(r, !producer)));
        let new = pack(version.wrapping_add(1), if end { ENDED } else { n });
        crash::point("ends.sync")?;
        // ORDERING: Release, pairs with the Acquire load above (the next sync's) and with the
        // Acquire loads of `producers_gone` / `consumers_gone`: every message this side committed
        // (or every slot it released) before leaving happens-before a load that sees it ended.
        if word.compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            if end {
                // Sleepers on the other side may now see end of stream or a broken pipe.
                doorbell::ring_all(if producer { &ring.not_empty } else { &ring.not_full });
            }
            return Ok(Ok(()));
        }
    }
}

/// The sides `(ring, producer?)` that role `bits` name, of `rings` rings.
fn sides(rings: usize, bits: u32) -> impl Iterator<Item = (u32, bool)> {
    (0..rings as u32).flat_map(|r| [(r, true), (r, false)]).filter(move |&(r, p)| bits & role_bit(r, p) != 0)
}

/// Gives an entry role `bits` (per ring `r`: producer `1 << 2r`, consumer `2 << 2r`) on `rings`:
/// sets them in its role word `roles`, then counts them on each side (`how`: `Join`,
/// `JoinExclusive` or `Hold`). Refused if a side has ended (or, `JoinExclusive`, is held by
/// another entry): then none of `bits` is left set or counted.
pub(crate) fn join(
    rings: &[&RingCtrl],
    roles: &AtomicU32,
    bits: u32,
    members: &dyn Members,
    how: Sync,
) -> Result<Result<(), Refused>, Died> {
    crash::point("roles.set")?;
    // ORDERING: AcqRel: Release, pairs with the Acquire load in a count word's sync (via the
    // Release CAS that follows, ours or another's): the sync that counts this bit sees it.
    roles.fetch_or(bits, Ordering::AcqRel);
    for (r, p) in sides(rings.len(), bits) {
        if let Err(refused) = sync(rings[r as usize], r, p, members, how)? {
            // Every side of `bits`, not only those synced: another entry's sync may have counted
            // our bit meanwhile.
            leave(rings, roles, bits, members)?;
            return Ok(Err(refused));
        }
    }
    Ok(Ok(()))
}

/// Takes role `bits` from an entry: clears them in its role word `roles`, then recounts each side
/// it held (which may end it).
pub(crate) fn leave(rings: &[&RingCtrl], roles: &AtomicU32, bits: u32, members: &dyn Members) -> Result<(), Died> {
    crash::point("roles.clear")?;
    // ORDERING: AcqRel, as in `join`.
    let cleared = roles.fetch_and(!bits, Ordering::AcqRel) & bits;
    for (r, p) in sides(rings.len(), cleared) {
        sync(rings[r as usize], r, p, members, Sync::Settle)?.ok();
    }
    Ok(())
}

/// Marks the sides of role `bits`, counted by a [`Sync::Hold`] join, as attached for real: the
/// child they were handed to has opened the queue and keeps them.
pub(crate) fn confirm(rings: &[&RingCtrl], bits: u32) {
    for (r, p) in sides(rings.len(), bits) {
        let seen = if p { ENDS_PRODUCER_SEEN } else { ENDS_CONSUMER_SEEN };
        // ORDERING: Relaxed: published by this entry's next sync (its leave), as in `sync`.
        rings[r as usize].ends.flags.fetch_or(seen, Ordering::Relaxed);
    }
}

/// Brings every side of `rings` in line with the table (what a reaper does after clearing dead
/// entries' bits: whatever their owners had or had not synced before dying).
pub(crate) fn resync(rings: &[&RingCtrl], members: &dyn Members) -> Result<(), Died> {
    for (r, p) in sides(rings.len(), u32::MAX) {
        sync(rings[r as usize], r, p, members, Sync::Settle)?.ok();
    }
    Ok(())
}

/// Whether a side whose last holder has left ends, given how many entries hold the other role.
fn ends_now(ends: &Ends, witnesses: u32) -> bool {
    let flags = ends.flags.load(Ordering::Relaxed);
    flags & ENDS_PERSISTENT == 0 && (flags & ENDS_NEED_WITNESS == 0 || witnesses != 0)
}

/// End of stream: every producer has gone, for good.
#[inline]
pub(crate) fn producers_gone(ring: &RingCtrl) -> bool {
    // ORDERING: Acquire, pairs with the Release CAS in `sync`: the messages the last producer
    // committed are visible to a consumer that sees the side ended.
    ring.ends.producers.load(Ordering::Acquire) & ENDED != 0
}

/// Broken pipe: every consumer has gone, for good.
#[inline]
pub(crate) fn consumers_gone(ring: &RingCtrl) -> bool {
    // ORDERING: Acquire, as in `producers_gone`.
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
