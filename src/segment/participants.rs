//! The participant table: a handle's entry and its liveness lock.
//!
//! Registration takes the liveness lock of a free entry's byte first (an OFD write lock through a
//! private file description), then claims the entry (`{ g, FREE } → { g + 1, CLAIMED }`), then
//! publishes it `ACTIVE`. Detaching frees the entry (`{ g, ACTIVE } → { g, FREE }`), and only then
//! drops the lock. So the lock is held whenever the entry is in use: an entry that is not free
//! while nobody holds its lock belongs to a dead process. `recover` builds on that (`table` has
//! the transitions).
//!
//! A handle's roles are bits of its entry (the truth that each ring's count words cache, see
//! `ring::ends`): a handle sets or clears them only while its entry is `ACTIVE` in its own
//! generation, so a handle whose entry was reaped from under it (possible only if it lost its
//! lock) leaves the table alone instead of changing a newcomer's entry.
//!
//! Only write locks count as alive (`sys::lock`): a process that may only read the file can take
//! read locks, which neither fake a live participant nor keep a dead one from being reaped; they
//! can keep a registration from taking its lock, which is reported as `LockedByReader`.
//!
//! A registration remembers the process that made it. A child forked from that process shares
//! the entry and its lock (the same open file description) but does not own them: in the child,
//! dropping roles and releasing the entry do nothing to the table.
//!
//! Handing an entry to a child (a pipe end, or a queue handle made for a child) moves the lock's
//! open file description, not the lock: the parent marks the entry `HANDOVER` and lets the child
//! inherit the very description that holds the lock, so the lock is held without a gap while the
//! parent or the child has it open. The child adopts the entry (`HANDOVER → ACTIVE`) and keeps the
//! description as its own lock; a child that dies before adopting closes it, and once the parent
//! has closed its copy too the kernel drops the lock and the entry is dead like any other.

use crate::segment::geometry::Geometry;
use crate::segment::layout::{Header, Participant, MAX_PARTICIPANTS, PARTICIPANT_ACTIVE, PARTICIPANT_FREE};
use crate::segment::recover::{self, RingRepair};
use crate::segment::table;
use crate::segment::Segment;
use crate::sys::crash::alive;
use crate::sys::lock::{byte_is_locked, try_lock_byte};
use crate::sys::{clock, fork, membarrier};
use crate::Error;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;

/// A handle's entry in the participant table.
pub(crate) struct Registration {
    index: usize,
    /// The entry's generation when this handle claimed (or adopted) it.
    generation: u32,
    /// A private file description holding the liveness lock; closing it releases the lock.
    lock: Option<File>,
    /// The process that registered (a forked child shares the entry but does not own it).
    pid: u32,
}

/// Why `claim` found no entry.
struct NoEntry {
    /// Free entries whose liveness byte only read locks kept us from locking.
    read_locked: usize,
}

fn changed() -> Error {
    Error::Corrupt("a participant entry changed while its lock was held")
}

impl Registration {
    /// Claims a table entry for this process, `ACTIVE` and with no roles (the caller joins its
    /// roles next). If the table is full, reaps dead participants once and tries again.
    ///
    /// `LockedByReader` if entries were free but read locks (which only a process that may read
    /// the file can hold) kept us from taking their liveness locks.
    pub fn new(seg: &Segment, g: &Geometry, rings: &dyn RingRepair) -> Result<Registration, Error> {
        membarrier::register();
        let pid = fork::pid();
        let mut lock = seg.reopen()?;
        let mut none = match Self::claim(seg, &mut lock, pid)? {
            Ok((index, generation)) => return Ok(Registration { index, generation, lock: Some(lock), pid }),
            Err(none) => none,
        };
        if recover::reap_dead(seg, g, None, rings) > 0 {
            match Self::claim(seg, &mut lock, pid)? {
                Ok((index, generation)) => return Ok(Registration { index, generation, lock: Some(lock), pid }),
                Err(n) => none = n,
            }
        }
        if none.read_locked > 0 {
            return Err(Error::LockedByReader);
        }
        Err(Error::TooManyParticipants)
    }

    fn claim(seg: &Segment, lock: &mut File, pid: u32) -> Result<Result<(usize, u32), NoEntry>, Error> {
        let mut none = NoEntry { read_locked: 0 };
        for (index, p) in seg.header().participants.iter().enumerate() {
            if p.state.load(Ordering::Relaxed) != PARTICIPANT_FREE {
                continue;
            }
            // The lock first: from here nobody else changes the entry. A previous owner that just
            // freed it may still hold the lock for an instant; a reader may hold a read lock on
            // it for as long as it likes.
            if !try_lock_byte(lock, Participant::lock_offset(index))? {
                if !byte_is_locked(lock, Participant::lock_offset(index)).unwrap_or(true) {
                    none.read_locked += 1;
                }
                continue;
            }
            match alive(table::claim(p, pid)) {
                Some(generation) => {
                    if !alive(table::activate(p, generation, pid)) {
                        return Err(changed());
                    }
                    return Ok(Ok((index, generation)));
                }
                None => {
                    // Not free after all (claimed by a process that died, or reaped and not yet
                    // freed): give its lock back. A lock belongs to a description, so a fresh one
                    // holds none.
                    *lock = seg.reopen()?;
                }
            }
        }
        Ok(Err(none))
    }

    /// Takes over entry `index` that a parent handed to this process (see `Handover`).
    ///
    /// `lock` is the inherited open file description through which the parent locked the entry's
    /// byte; it stays this entry's lock. The entry must still be in handover with the same
    /// generation, and only one adopter wins it (the same command may have been spawned twice).
    pub fn adopt(seg: &Segment, lock: File, index: usize, generation: u32) -> Result<Registration, Error> {
        membarrier::register();
        let pid = fork::pid();
        let gone = || Error::NotInherited("the handed-over entry was taken, released or reaped".into());
        let p = seg.header().participants.get(index).ok_or_else(gone)?;
        // The lock is this description's already, and locking again through the same description
        // changes nothing; a refusal means another description holds it: not the entry we were
        // handed. From here the lock is ours, so nobody else changes the entry.
        if !try_lock_byte(&lock, Participant::lock_offset(index))? {
            return Err(gone());
        }
        if !alive(table::adopt(p, generation, pid)) {
            return Err(gone());
        }
        Ok(Registration { index, generation, lock: Some(lock), pid })
    }

    /// Table index and generation, for handing the entry to a child.
    pub fn id(&self) -> (usize, u32) {
        (self.index, self.generation)
    }

    /// Whether this process was forked from the one that registered (a system call: for drops
    /// and other rare paths).
    pub fn forked(&self) -> bool {
        fork::forked(self.pid)
    }

    /// Marks the entry as handed over and returns the descriptor of its lock's open file
    /// description, for a child to inherit. The entry stays alive while any process holds that
    /// description: this one until [`Registration::let_go`] (or until the [`File`] of
    /// [`Registration::into_lock`] is closed), the child from its start.
    pub fn hand_over(&self, header: &Header) -> RawFd {
        let lock = self.lock.as_ref().expect("an attached entry holds its lock");
        let second = (clock::now() / 1_000_000_000) as u32;
        // `false`: the entry was reaped from under us; the child's adoption will fail.
        let _ = alive(table::hand_over(&header.participants[self.index], self.generation, second));
        lock.as_raw_fd()
    }

    /// Closes this process's descriptor of a handed-over entry's lock; the entry is the child's,
    /// alive for as long as the child (or anyone it passed the description to) holds it.
    pub fn let_go(&mut self) {
        drop(self.lock.take());
    }

    /// The open file description holding the lock of a handed-over entry, without freeing the
    /// entry: whoever holds it keeps the entry alive for the child.
    pub fn into_lock(mut self) -> File {
        self.lock.take().expect("an attached entry holds its lock")
    }

    /// The owner tag this handle puts in the claims it makes (never 0).
    pub fn owner(&self) -> u16 {
        self.index as u16 + 1
    }

    /// The entry's index in the table.
    pub fn index(&self) -> usize {
        self.index
    }

    /// This handle's entry.
    pub fn entry<'h>(&self, header: &'h Header) -> &'h Participant {
        &header.participants[self.index]
    }

    /// Whether the entry is still this handle's: attached, in its generation, and not a forked
    /// child's copy. A handle changes its roles only then: one whose entry was reaped from under
    /// it (possible only if it lost its lock) finds its reaper cleared and uncounted them.
    pub fn owns(&self, header: &Header) -> bool {
        table::is_active(self.entry(header), self.generation) && !self.forked()
    }

    /// Frees the entry, then drops the liveness lock. The caller has left its roles. In a forked
    /// child, only closes this process's descriptor of the lock (the parent's description keeps
    /// it), and the entry stays the parent's. An entry reaped from under this handle is left alone.
    pub fn release(&mut self, header: &Header) {
        if let Some(lock) = self.lock.take() {
            if self.forked() {
                return;
            }
            let _ = alive(table::free(self.entry(header), self.generation, PARTICIPANT_ACTIVE));
            drop(lock);
        }
    }
}

/// What `shmq ls` / `stat` show about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Index in the table.
    pub index: usize,
    /// Process id recorded at attach time.
    pub pid: u32,
    /// Role bits (producer = 1, consumer = 2, per ring `2 * ring`).
    pub roles: u32,
    /// Whether its liveness lock is held (the process is alive).
    pub alive: bool,
}

/// Lists active entries and whether each one's liveness lock is still held.
pub(crate) fn participants(seg: &Segment, probe: &File) -> Vec<ParticipantInfo> {
    let table = &seg.header().participants;
    (0..MAX_PARTICIPANTS)
        .filter_map(|index| {
            let p = &table[index];
            (p.state.load(Ordering::Acquire) == PARTICIPANT_ACTIVE).then(|| ParticipantInfo {
                index,
                pid: p.detail.load(Ordering::Relaxed),
                roles: p.roles.load(Ordering::Relaxed),
                alive: byte_is_locked(probe, Participant::lock_offset(index)).unwrap_or(true),
            })
        })
        .collect()
}
