//! The participant table: a handle's entry and its liveness lock.
//!
//! Registration claims a free entry (`FREE → CLAIMED` by CAS), takes an OFD lock on the entry's
//! byte through a private file description, then publishes `ACTIVE`. Detaching clears the entry's
//! role bits (whoever clears a bit uncounts it, so a role is uncounted exactly once, by its owner
//! or by the reaper of a dead owner), frees the entry, and only then drops the lock: an active
//! entry without its lock means the process died. `recover` builds on that.
//!
//! Only write locks count as alive (`sys::lock`): a process that may only read the file can take
//! read locks, which neither fake a live participant nor keep a dead one from being reaped; they
//! can keep a registration from taking its lock, which is reported as `LockedByReader`.
//!
//! A registration remembers the process that made it. A child forked from that process shares
//! the entry and its lock (the same open file description) but does not own them: in the child,
//! dropping roles and releasing the entry do nothing to the table.
//!
//! Handing an entry to a child (pipes) moves the lock's open file description, not the lock: the
//! parent marks the entry `HANDOVER` and lets the child inherit the very description that holds
//! the lock, so the lock is held without a gap while the parent or the child has it open. The
//! child adopts the entry (`HANDOVER → ACTIVE`) and keeps the description as its own lock; a child
//! that dies before adopting closes it, and once the parent has closed its copy too the kernel
//! drops the lock and the entry is dead like any other.

use crate::segment::geometry::Geometry;
use crate::segment::layout::{Header, Participant, MAX_PARTICIPANTS};
use crate::segment::layout::{PARTICIPANT_ACTIVE, PARTICIPANT_CLAIMED, PARTICIPANT_FREE, PARTICIPANT_HANDOVER};
use crate::segment::recover::{self, RingRepair};
use crate::segment::Segment;
use crate::sys::lock::{byte_is_locked, try_lock_byte};
use crate::sys::{clock, fork, membarrier};
use crate::Error;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;

/// A handle's entry in the participant table.
pub(crate) struct Registration {
    index: usize,
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

impl Registration {
    /// Claims a table entry for this process with the given role bits. If the table is full,
    /// reaps dead participants once and tries again.
    ///
    /// `LockedByReader` if entries were free but read locks (which only a process that may read
    /// the file can hold) kept us from taking their liveness locks.
    pub fn new(seg: &Segment, g: &Geometry, roles: u32, rings: &dyn RingRepair) -> Result<Registration, Error> {
        membarrier::register();
        let pid = fork::pid();
        let lock = seg.reopen()?;
        let mut none = match Self::claim(seg, &lock, roles)? {
            Ok(index) => return Ok(Registration { index, lock: Some(lock), pid }),
            Err(none) => none,
        };
        if recover::reap_dead(seg, g, None, rings) > 0 {
            match Self::claim(seg, &lock, roles)? {
                Ok(index) => return Ok(Registration { index, lock: Some(lock), pid }),
                Err(n) => none = n,
            }
        }
        if none.read_locked > 0 {
            return Err(Error::LockedByReader);
        }
        Err(Error::TooManyParticipants)
    }

    fn claim(seg: &Segment, lock: &File, roles: u32) -> Result<Result<usize, NoEntry>, Error> {
        let mut none = NoEntry { read_locked: 0 };
        for (index, p) in seg.header().participants.iter().enumerate() {
            if p.state.load(Ordering::Relaxed) != PARTICIPANT_FREE {
                continue;
            }
            if p.state
                .compare_exchange(PARTICIPANT_FREE, PARTICIPANT_CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // A previous owner that just freed the entry may still hold the lock for an instant;
            // a reader may hold a read lock on it for as long as it likes.
            if !try_lock_byte(lock, Participant::lock_offset(index))? {
                p.state.store(PARTICIPANT_FREE, Ordering::Release);
                if !byte_is_locked(lock, Participant::lock_offset(index)).unwrap_or(true) {
                    none.read_locked += 1;
                }
                continue;
            }
            p.detail.store(std::process::id(), Ordering::Relaxed);
            p.roles.store(roles, Ordering::Relaxed);
            p.generation.fetch_add(1, Ordering::Relaxed);
            // ORDERING: Release, so a reader that sees ACTIVE sees pid and roles.
            p.state.store(PARTICIPANT_ACTIVE, Ordering::Release);
            return Ok(Ok(index));
        }
        Ok(Err(none))
    }

    /// Takes over entry `index` that a parent handed to this process (see `pipe::Handover`).
    ///
    /// `lock` is the inherited open file description through which the parent locked the entry's
    /// byte; it stays this entry's lock. The entry must still be in handover with the same
    /// generation, and only one adopter wins it (the same command may have been spawned twice).
    pub fn adopt(seg: &Segment, lock: File, index: usize, generation: u32) -> Result<Registration, Error> {
        membarrier::register();
        let pid = fork::pid();
        let gone = || Error::NotInherited("the handed-over end was taken, released or reaped".into());
        let p = seg.header().participants.get(index).ok_or_else(gone)?;
        // The lock is this description's already, and locking again through the same description
        // changes nothing; a refusal means another description holds it: not the entry we were
        // handed. From here the lock is ours, so nobody can reap the entry under us.
        if !try_lock_byte(&lock, Participant::lock_offset(index))? {
            return Err(gone());
        }
        if p.generation.load(Ordering::Relaxed) != generation {
            return Err(gone());
        }
        // ORDERING: Acquire pairs with the Release store of HANDOVER in `hand_over` (the child
        // started after it, which orders it anyway); Release publishes the adoption to readers of
        // the state.
        if p.state
            .compare_exchange(PARTICIPANT_HANDOVER, PARTICIPANT_ACTIVE, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(gone());
        }
        p.detail.store(pid, Ordering::Relaxed);
        Ok(Registration { index, lock: Some(lock), pid })
    }

    /// Table index and generation, for handing the entry to a child.
    pub fn id(&self, header: &Header) -> (usize, u32) {
        (self.index, header.participants[self.index].generation.load(Ordering::Relaxed))
    }

    /// Whether this process was forked from the one that registered (a system call: for drops
    /// and other rare paths).
    pub fn forked(&self) -> bool {
        fork::forked(self.pid)
    }

    /// Marks the entry as handed over and returns the descriptor of its lock's open file
    /// description, for a child to inherit. The entry stays alive while any process holds that
    /// description: this one until [`Registration::let_go`], the child from its start.
    pub fn hand_over(&self, header: &Header) -> RawFd {
        let lock = self.lock.as_ref().expect("an attached entry holds its lock");
        let p = &header.participants[self.index];
        p.detail.store((clock::now() / 1_000_000_000) as u32, Ordering::Relaxed);
        // ORDERING: Release, pairs with the Acquire CAS in `adopt`.
        p.state.store(PARTICIPANT_HANDOVER, Ordering::Release);
        lock.as_raw_fd()
    }

    /// Closes this process's descriptor of a handed-over entry's lock; the entry is the child's,
    /// alive for as long as the child (or anyone it passed the description to) holds it.
    pub fn let_go(&mut self) {
        drop(self.lock.take());
    }

    /// The owner tag this handle puts in the claims it makes (never 0).
    pub fn owner(&self) -> u16 {
        self.index as u16 + 1
    }

    /// The entry's index in the table.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Clears role `bits` of this entry; returns those that were set (and so must be uncounted).
    /// In a forked child, clears nothing and returns 0: the roles are the parent's.
    pub fn drop_roles(&self, header: &Header, bits: u32) -> u32 {
        if self.forked() {
            return 0;
        }
        header.participants[self.index].roles.fetch_and(!bits, Ordering::AcqRel) & bits
    }

    /// Frees the entry, then drops the liveness lock. The caller has dropped its roles. In a
    /// forked child, only closes this process's descriptor of the lock (the parent's description
    /// keeps it), and the entry stays the parent's.
    pub fn release(&mut self, header: &Header) {
        if let Some(lock) = self.lock.take() {
            if self.forked() {
                return;
            }
            let p = &header.participants[self.index];
            p.state.store(PARTICIPANT_FREE, Ordering::Release);
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
