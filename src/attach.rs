//! Attaching a handle to a segment: a participant-table entry with a liveness lock, and the
//! producer/consumer counts that give end of stream and broken pipe.
//!
//! Registration claims a free entry (`FREE → CLAIMED` by CAS), takes an OFD lock on the entry's
//! byte through a private file description, then publishes `ACTIVE`. Detaching frees the entry
//! *before* the lock is dropped, so nobody ever sees an active entry without its lock unless its
//! process died: that is the signal crash recovery builds on.

use crate::layout::{Header, Participant};
use crate::layout::{MAX_PARTICIPANTS, PARTICIPANT_ACTIVE, PARTICIPANT_CLAIMED, PARTICIPANT_FREE};
use crate::segment::{byte_is_locked, try_lock_byte, Segment};
use crate::Error;
// The end-of-stream counters live in `ring` so that loom models can check them.
pub(crate) use crate::ring::{attach, attach_exclusive, consumers_gone, detach, producers_gone};
use std::fs::File;
use std::sync::atomic::Ordering;

/// A handle's entry in the participant table.
pub(crate) struct Registration {
    index: usize,
    /// A private file description holding the liveness lock; closing it releases the lock.
    lock: Option<File>,
}

impl Registration {
    /// Claims a table entry for this process with the given role bits.
    pub fn new(seg: &Segment, roles: u32) -> Result<Registration, Error> {
        let lock = seg.reopen()?;
        let table = &seg.header().participants;
        for (index, p) in table.iter().enumerate() {
            if p.state.load(Ordering::Relaxed) != PARTICIPANT_FREE {
                continue;
            }
            if p.state
                .compare_exchange(
                    PARTICIPANT_FREE,
                    PARTICIPANT_CLAIMED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            // A previous owner that just freed the entry may still hold the lock for an instant.
            if !try_lock_byte(&lock, Participant::lock_offset(index))? {
                p.state.store(PARTICIPANT_FREE, Ordering::Release);
                continue;
            }
            p.pid.store(std::process::id(), Ordering::Relaxed);
            p.roles.store(roles, Ordering::Relaxed);
            p.generation.fetch_add(1, Ordering::Relaxed);
            // ORDERING: Release, so a reader that sees ACTIVE sees pid and roles.
            p.state.store(PARTICIPANT_ACTIVE, Ordering::Release);
            return Ok(Registration {
                index,
                lock: Some(lock),
            });
        }
        Err(Error::TooManyParticipants)
    }

    /// Takes over entry `index` that a parent handed to this process (see `pipe::Handover`).
    ///
    /// The entry must still be active with the same generation; its liveness lock passes to us as
    /// soon as the parent lets it go (waited for a bounded time).
    pub fn adopt(seg: &Segment, index: usize, generation: u32) -> Result<Registration, Error> {
        let p = seg
            .header()
            .participants
            .get(index)
            .ok_or(Error::NotInherited("participant index out of range".into()))?;
        let lock = seg.reopen()?;
        let start = std::time::Instant::now();
        loop {
            if p.state.load(Ordering::Acquire) != PARTICIPANT_ACTIVE
                || p.generation.load(Ordering::Relaxed) != generation
            {
                return Err(Error::NotInherited(
                    "the handed-over pipe end was released".into(),
                ));
            }
            if try_lock_byte(&lock, Participant::lock_offset(index))? {
                p.pid.store(std::process::id(), Ordering::Relaxed);
                return Ok(Registration {
                    index,
                    lock: Some(lock),
                });
            }
            if start.elapsed() > crate::segment::READY_TIMEOUT {
                return Err(Error::NotReady);
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Table index and generation, for handing the entry to a child.
    pub fn id(&self, header: &Header) -> (usize, u32) {
        (
            self.index,
            header.participants[self.index]
                .generation
                .load(Ordering::Relaxed),
        )
    }

    /// Lets the liveness lock go but leaves the entry active, for a child to adopt.
    pub fn hand_over(&mut self) {
        self.lock = None;
    }

    /// The owner tag this handle puts in the claims it makes (never 0).
    pub fn owner(&self) -> u16 {
        self.index as u16 + 1
    }

    /// Updates the role bits shown for this entry.
    pub fn set_roles(&self, header: &Header, roles: u32) {
        header.participants[self.index]
            .roles
            .store(roles, Ordering::Relaxed);
    }

    /// Frees the entry, then drops the liveness lock.
    pub fn release(&mut self, header: &Header) {
        if let Some(lock) = self.lock.take() {
            let p = &header.participants[self.index];
            p.roles.store(0, Ordering::Relaxed);
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
                pid: p.pid.load(Ordering::Relaxed),
                roles: p.roles.load(Ordering::Relaxed),
                alive: byte_is_locked(probe, Participant::lock_offset(index)).unwrap_or(true),
            })
        })
        .collect()
}
