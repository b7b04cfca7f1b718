//! A sequence of queue operations applied to a real anonymous queue and to a model, compared after
//! every step: returned bytes, order, errors and `len`.
//!
//! The model follows positions, as the ring does: a reservation holds its position, so messages
//! committed after it stay invisible until it is committed or abandoned; a slot is busy from its
//! claim until it is read and its message guard dropped (owned gets free it at once), or until
//! its claim is abandoned; an abandoned position still counts in `len` until the read position
//! passes it (an abandon moves the read position past the abandoned positions it stands on), and
//! `len`, as the ring reports it, never exceeds the capacity. A put finds the queue full while the
//! slot one lap back is busy. Nothing here blocks.

use arbitrary::{Arbitrary, Unstructured};
use shmq::queue::{InPlace, Reservation};
use shmq::{Queue, RecvError, SendError};
use std::collections::{BTreeSet, VecDeque};

#[derive(Arbitrary, Debug)]
enum Op {
    TryPut { len: u8, fill: u8 },
    TryPutLarge { len: u8, fill: u8 },
    TryGet,
    GetAndHold,
    DropGuard(u8),
    Reserve,
    Commit { which: u8, len: u8, fill: u8 },
    Abandon(u8),
    Close,
    PutValue(u32),
    GetValue,
    Len,
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    slot_size: u8,
    ops: Vec<Op>,
}

#[derive(Debug)]
enum Entry {
    Pending,
    Committed(Vec<u8>),
    Abandoned,
    /// The first position of a message spanning `.1` positions (`put_large`).
    Group(Vec<u8>, u64),
    /// A later position of a group.
    Cont,
}

struct Model {
    cap: u64,
    slot: usize,
    /// Positions `head..tail`, oldest first.
    entries: VecDeque<Entry>,
    head: u64,
    tail: u64,
    /// Positions whose slot is not free yet.
    busy: BTreeSet<u64>,
    closed: bool,
}

impl Model {
    fn full(&self) -> bool {
        self.tail >= self.cap && self.busy.contains(&(self.tail - self.cap))
    }

    fn claim_write(&mut self, len: usize) -> Result<u64, SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if len > self.slot {
            return Err(SendError::TooLarge { len, max: self.slot });
        }
        if self.full() {
            return Err(SendError::Full);
        }
        let pos = self.tail;
        self.tail += 1;
        self.busy.insert(pos);
        self.entries.push_back(Entry::Pending);
        Ok(pos)
    }

    /// `try_put_large`, as the ring does it: refuse if the group's last slot is still busy a lap
    /// back; claim the first position like any put; claim the rest in order, and on a busy one
    /// abandon what was claimed and start over at the new tail.
    fn put_group(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() <= self.slot {
            let pos = self.claim_write(msg.len())?;
            self.set(pos, Entry::Committed(msg.to_vec()));
            return Ok(());
        }
        let max = self.slot * self.cap as usize;
        if msg.len() > max {
            return Err(SendError::TooLarge { len: msg.len(), max });
        }
        if self.closed {
            return Err(SendError::Closed);
        }
        let k = msg.len().div_ceil(self.slot) as u64;
        loop {
            let last = self.tail + k - 1;
            if (last >= self.cap && self.busy.contains(&(last - self.cap))) || self.full() {
                return Err(SendError::Full);
            }
            let start = self.tail;
            let mut claimed = 0;
            while claimed < k {
                let p = self.tail;
                if p >= self.cap && self.busy.contains(&(p - self.cap)) {
                    break;
                }
                self.tail += 1;
                self.busy.insert(p);
                self.entries.push_back(Entry::Pending);
                claimed += 1;
            }
            if claimed == k {
                self.set(start, Entry::Group(msg.to_vec(), k));
                for p in start + 1..start + k {
                    self.set(p, Entry::Cont);
                }
                return Ok(());
            }
            for p in start..start + claimed {
                self.abandon(p);
            }
        }
    }

    /// A write claim given up: its slot is free at once; the read position moves past every
    /// abandoned position it stands on.
    fn abandon(&mut self, pos: u64) {
        self.set(pos, Entry::Abandoned);
        self.busy.remove(&pos);
        while matches!(self.entries.front(), Some(Entry::Abandoned)) {
            self.entries.pop_front();
            self.head += 1;
        }
    }

    fn set(&mut self, pos: u64, e: Entry) {
        let i = (pos - self.head) as usize;
        assert!(matches!(self.entries[i], Entry::Pending));
        self.entries[i] = e;
    }

    /// The first position, the number of positions and the bytes of the next message, retiring
    /// abandoned positions on the way.
    fn claim_read(&mut self) -> Result<(u64, u64, Vec<u8>), RecvError> {
        loop {
            match self.entries.front() {
                Some(Entry::Abandoned) => {}
                Some(Entry::Committed(_)) => {
                    let Some(Entry::Committed(bytes)) = self.entries.pop_front() else { unreachable!() };
                    self.head += 1;
                    return Ok((self.head - 1, 1, bytes));
                }
                Some(Entry::Group(..)) => {
                    // Copied out, but every slot stays busy until the guard drops.
                    let Some(Entry::Group(bytes, k)) = self.entries.pop_front() else { unreachable!() };
                    for _ in 1..k {
                        assert!(matches!(self.entries.pop_front(), Some(Entry::Cont)));
                    }
                    self.head += k;
                    return Ok((self.head - k, k, bytes));
                }
                Some(Entry::Cont) => unreachable!("a continuation is consumed with its group"),
                Some(Entry::Pending) | None if self.closed => return Err(RecvError::Closed),
                Some(Entry::Pending) | None => return Err(RecvError::Empty),
            }
            self.entries.pop_front();
            self.head += 1;
        }
    }

    /// A message's guard dropped: its `k` positions from `pos` are free again.
    fn free(&mut self, pos: u64, k: u64) {
        for p in pos..pos + k {
            self.busy.remove(&p);
        }
    }

    /// Positions between the read and write positions, clamped to the capacity as the ring's
    /// `len` is: abandoned positions the read position has not passed yet free their slots, so
    /// the span can exceed the capacity while at most `cap` slots hold messages. Those at the
    /// read position are not counted: the ring's `len` helps its read hint past them first.
    fn len(&self) -> usize {
        let abandoned = self.entries.iter().take_while(|e| matches!(e, Entry::Abandoned)).count() as u64;
        (self.tail - self.head - abandoned).min(self.cap) as usize
    }
}

fn fill_bytes(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let cap = input.capacity as u64 % 4 + 1;
    // Mostly tiny slots (messages span several), a quarter of them long enough for the receive's
    // block copy (64-byte blocks, then words and bytes) and its spare buffers.
    let slot = match input.slot_size {
        s @ 0..192 => s as usize % 16 + 1,
        s => 56 + (s as usize - 192) * 3,
    };
    let q =
        Queue::builder().capacity(cap as usize).slot_size(slot).spin(0).create_anonymous().expect("anonymous queue");
    let mut m = Model { cap, slot, entries: VecDeque::new(), head: 0, tail: 0, busy: BTreeSet::new(), closed: false };
    // Declared after `q`, so dropped before it.
    let mut guards: Vec<(InPlace<'_>, Vec<u8>, u64, u64)> = Vec::new();
    let mut reservations: Vec<(Reservation<'_>, u64)> = Vec::new();

    for op in input.ops.iter().take(200) {
        match *op {
            Op::TryPut { len, fill } => {
                let msg = fill_bytes(len as usize % (slot + 2), fill);
                let want = m.claim_write(msg.len()).map(|pos| {
                    m.set(pos, Entry::Committed(msg.clone()));
                });
                assert_eq!(q.try_put(&msg), want, "try_put of {} bytes", msg.len());
            }
            Op::TryPutLarge { len, fill } => {
                let msg = fill_bytes(len as usize % (slot * cap as usize + 2), fill);
                let want = m.put_group(&msg);
                assert_eq!(q.try_put_large(&msg), want, "try_put_large of {} bytes", msg.len());
            }
            Op::PutValue(v) => {
                let want = m.claim_write(4).map(|pos| {
                    m.set(pos, Entry::Committed(v.to_ne_bytes().to_vec()));
                });
                assert_eq!(q.try_put_value(&v), want, "try_put_value");
            }
            Op::TryGet => {
                // An owned get: the slot is free again when it returns.
                let want = m.claim_read();
                match (q.try_get(), want) {
                    (Ok(msg), Ok((pos, k, bytes))) => {
                        assert_eq!(&*msg, &bytes[..], "message bytes");
                        m.free(pos, k);
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w, "try_get error"),
                    (got, want) => panic!("try_get: got {got:?}, model says {want:?}"),
                }
            }
            Op::GetAndHold => {
                // An in-place get: the slot stays taken until the guard drops.
                let want = m.claim_read();
                match (q.try_get_in_place(), want) {
                    (Ok(msg), Ok((pos, k, bytes))) => {
                        assert_eq!(&*msg, &bytes[..], "message bytes");
                        guards.push((msg, bytes, pos, k));
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w, "try_get_in_place error"),
                    (got, want) => panic!("try_get_in_place: got {got:?}, model says {want:?}"),
                }
            }
            Op::GetValue => {
                let want = m.claim_read().map(|(pos, k, bytes)| {
                    m.free(pos, k);
                    match <[u8; 4]>::try_from(&bytes[..]) {
                        Ok(b) => Ok(u32::from_ne_bytes(b)),
                        Err(_) => Err(RecvError::SizeMismatch { len: bytes.len(), expected: 4 }),
                    }
                });
                let want = want.and_then(|r| r);
                assert_eq!(q.try_get_value::<u32>(), want, "try_get_value");
            }
            Op::DropGuard(i) => {
                if !guards.is_empty() {
                    let (msg, bytes, pos, k) = guards.remove(i as usize % guards.len());
                    assert_eq!(&*msg, &bytes[..], "a held message changed");
                    drop(msg);
                    m.free(pos, k);
                }
            }
            Op::Reserve => {
                let want = m.claim_write(0);
                match (q.try_reserve(), want) {
                    (Ok(mut r), Ok(pos)) => {
                        assert_eq!(r.buf().len(), slot, "a reservation is a whole slot");
                        reservations.push((r, pos));
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w, "try_reserve error"),
                    (got, want) => panic!("try_reserve: got {:?}, model says {want:?}", got.map(|_| ())),
                }
            }
            Op::Commit { which, len, fill } => {
                if !reservations.is_empty() {
                    let (mut r, pos) = reservations.remove(which as usize % reservations.len());
                    let len = len as usize % (slot + 2);
                    let bytes = fill_bytes(slot, fill);
                    r.buf().copy_from_slice(&bytes);
                    let want = if len > slot {
                        m.abandon(pos);
                        Err(SendError::TooLarge { len, max: slot })
                    } else {
                        m.set(pos, Entry::Committed(bytes[..len].to_vec()));
                        Ok(())
                    };
                    assert_eq!(r.commit(len), want, "commit of {len} bytes");
                }
            }
            Op::Abandon(i) => {
                if !reservations.is_empty() {
                    let (r, pos) = reservations.remove(i as usize % reservations.len());
                    drop(r);
                    m.abandon(pos);
                }
            }
            Op::Close => {
                q.close();
                m.closed = true;
            }
            Op::Len => {
                assert_eq!(q.is_empty(), m.len() == 0);
                assert_eq!(q.is_full(), m.len() == cap as usize);
            }
        }
        assert_eq!(q.len(), m.len(), "len after {op:?}");
        assert!(q.len() <= cap as usize);
    }
}
