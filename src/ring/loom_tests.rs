//! Loom models of the ring algorithms, the doorbell, end of stream, the participant table and
//! the task accounting of joinable queues, on heap memory.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --lib loom`
//! (see `.ci/loom`). Each model is tiny on purpose (capacity 1–2, 2–3 threads, a few
//! operations): loom explores every interleaving, and reports a deadlock if a sleeper is never
//! woken, which is how a lost wake-up shows up here.
//!
//! Payloads are modelled by one loom `UnsafeCell` per slot beside the heap ring, so loom also
//! checks that the slot-published and slot-released sync points order the payload accesses: a
//! write and a read of the same slot that are not ordered by happens-before make loom fail.
//!
//! A killed process is modelled with `sys::crash::die_after(k)`: the thread stops at its `k`th
//! crash point (every shared write that recovery must complete or undo has one), leaving memory as
//! a SIGKILL would. The models that kill run once for every `k` up to past the last point, and
//! then let a reaper (the code recovery runs) finish the job, checking the counts after.

use crate::error::{RecvError, SendError};
use crate::ring::doorbell;
use crate::ring::ends::{self, Ended, Refused};
use crate::ring::mem::HeapRing;
use crate::ring::mpmc::Mpmc;
use crate::ring::spsc;
use crate::ring::TableMembers;
use crate::segment::layout::{Participant, RingCtrl, ROLE_CONSUMER, ROLE_PRODUCER};
use crate::sys::crash;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// One modelled payload per slot.
struct Payloads(Vec<UnsafeCell<u64>>);

// SAFETY: each cell is accessed only by the thread that holds the slot's claim (MPMC) or owns the
// slot's side of the counters (SPSC); loom's UnsafeCell checks exactly that in every execution.
unsafe impl Sync for Payloads {}

impl Payloads {
    fn new(n: u64) -> Self {
        Payloads((0..n).map(|_| UnsafeCell::new(0)).collect())
    }

    fn write(&self, idx: u64, v: u64) {
        // SAFETY: the caller owns slot `idx` (a write claim, or an unpublished SPSC slot); loom
        // reports any access to it that is not ordered after the previous reader's release.
        self.0[idx as usize].with_mut(|p| unsafe { *p = v });
    }

    fn read(&self, idx: u64) -> u64 {
        // SAFETY: the caller owns slot `idx` (a read claim, or a published, unreleased SPSC
        // slot); loom reports it if the producer's write does not happen-before this read.
        self.0[idx as usize].with(|p| unsafe { *p })
    }
}

// ----- a participant table on the heap -----

/// Entries whose role bits the count words cache (see `ends`).
struct Table(Vec<Participant>);

impl Table {
    fn new(n: usize) -> Table {
        Table((0..n).map(|_| Participant::default()).collect())
    }

    /// Entry `e` joins `bits` on the single ring `ctrl` (a live handle's attach).
    fn join(&self, ctrl: &RingCtrl, e: usize, bits: u32) -> Result<(), Refused> {
        ends::join(&[ctrl], &self.0[e].roles, bits, &TableMembers(&self.0), ends::Sync::Join).expect("alive")
    }

    /// As `join`, exclusively (a pipe end).
    fn join_exclusive(&self, ctrl: &RingCtrl, e: usize, bits: u32) -> Result<(), Refused> {
        ends::join(&[ctrl], &self.0[e].roles, bits, &TableMembers(&self.0), ends::Sync::JoinExclusive).expect("alive")
    }

    /// Entry `e` leaves `bits` (a live handle's close or drop).
    fn leave(&self, ctrl: &RingCtrl, e: usize, bits: u32) {
        ends::leave(&[ctrl], &self.0[e].roles, bits, &TableMembers(&self.0)).expect("alive")
    }

    /// A reaper's part for dead entry `e`: its bits cleared, every side recounted.
    fn reap_roles(&self, ctrl: &RingCtrl, e: usize) {
        self.0[e].roles.store(0, loom::sync::atomic::Ordering::Release);
        ends::resync(&[ctrl], &TableMembers(&self.0)).expect("alive");
    }

    /// Entries holding `bit`.
    fn holding(&self, bit: u32) -> u32 {
        use ends::Members;
        TableMembers(&self.0).holding(bit)
    }
}

const P: u32 = ROLE_PRODUCER;
const C: u32 = ROLE_CONSUMER;

// ----- MPMC -----

struct Q {
    heap: HeapRing,
    m: Mpmc,
    data: Payloads,
}

impl Q {
    fn new(cap: u64) -> Arc<Q> {
        let heap = HeapRing::new(cap, 8);
        let m = Mpmc::new(heap.mem);
        m.init();
        Arc::new(Q { heap, m, data: Payloads::new(cap) })
    }

    fn ctrl(&self) -> &RingCtrl {
        self.heap.ctrl()
    }

    fn try_put(&self, v: u64) -> Result<(), SendError> {
        let c = self.m.try_claim_write(1, true)?;
        self.data.write(c.idx, v);
        self.m.commit(c, 8);
        Ok(())
    }

    fn try_get(&self) -> Result<u64, RecvError> {
        let c = self.m.try_claim_read(2)?;
        assert_eq!(self.m.claimed_len(c), Ok(8));
        let v = self.data.read(c.idx);
        self.m.release(c);
        Ok(v)
    }

    fn put_spinning(&self, v: u64) {
        while let Err(e) = self.try_put(v) {
            assert_eq!(e, SendError::Full);
            thread::yield_now();
        }
    }

    fn get_spinning(&self) -> u64 {
        loop {
            match self.try_get() {
                Ok(v) => return v,
                Err(e) => assert_eq!(e, RecvError::Empty),
            }
            thread::yield_now();
        }
    }

    /// `put`, sleeping on the `not_full` doorbell while the ring is full.
    fn put_blocking(&self, v: u64) {
        let c = doorbell::block_on(&self.ctrl().not_full, None, 0, || self.m.try_claim_write(1, false).ok(), || {})
            .expect("no deadline");
        self.data.write(c.idx, v);
        self.m.commit(c, 8);
    }

    /// `get` as `Queue::get` does it: sleep while empty; `Closed` once every producer has gone
    /// and a last look finds nothing.
    fn get_blocking(&self) -> Result<u64, RecvError> {
        let attempt = || match self.m.try_claim_read(2) {
            Err(RecvError::Empty) if ends::producers_gone(self.ctrl()) => match self.m.try_claim_read(2) {
                Err(RecvError::Empty) => Some(Err(RecvError::Closed)),
                r => Some(r),
            },
            Err(RecvError::Empty) => None,
            r => Some(r),
        };
        let c = doorbell::block_on(&self.ctrl().not_empty, None, 0, attempt, || {}).expect("no deadline")?;
        let v = self.data.read(c.idx);
        self.m.release(c);
        Ok(v)
    }
}

#[test]
fn loom_mpmc_put_get_across_a_lap_boundary() {
    loom::model(|| {
        let q = Q::new(1);
        let p = {
            let q = q.clone();
            thread::spawn(move || {
                q.put_spinning(1);
                q.put_spinning(2);
            })
        };
        assert_eq!(q.get_spinning(), 1);
        assert_eq!(q.get_spinning(), 2);
        p.join().unwrap();
        assert_eq!(q.try_get(), Err(RecvError::Empty));
        assert_eq!(q.m.len(), 0);
    });
}

#[test]
fn loom_mpmc_two_producers_race_for_the_last_slot() {
    loom::model(|| {
        let q = Q::new(2);
        q.try_put(10).unwrap();
        let spawn = |v| {
            let q = q.clone();
            thread::spawn(move || q.try_put(v))
        };
        let (a, b) = (spawn(11), spawn(12));
        let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
        let winner = match (ra, rb) {
            (Ok(()), Err(SendError::Full)) => 11,
            (Err(SendError::Full), Ok(())) => 12,
            other => panic!("exactly one producer must win: {other:?}"),
        };
        assert_eq!(q.try_get(), Ok(10));
        assert_eq!(q.try_get(), Ok(winner));
        assert_eq!(q.try_get(), Err(RecvError::Empty));
    });
}

#[test]
fn loom_mpmc_two_consumers_for_one_item() {
    loom::model(|| {
        let q = Q::new(1);
        q.try_put(7).unwrap();
        let spawn = || {
            let q = q.clone();
            thread::spawn(move || q.try_get())
        };
        let (a, b) = (spawn(), spawn());
        match (a.join().unwrap(), b.join().unwrap()) {
            (Ok(7), Err(RecvError::Empty)) | (Err(RecvError::Empty), Ok(7)) => {}
            other => panic!("exactly one consumer must get the item: {other:?}"),
        }
        // The slot was released: a full lap later it is writable again.
        q.try_put(8).unwrap();
        assert_eq!(q.try_get(), Ok(8));
    });
}

#[test]
fn loom_mpmc_abandoned_reservation_is_skipped() {
    loom::model(|| {
        let q = Q::new(2);
        let abandoner = {
            let q = q.clone();
            thread::spawn(move || {
                let c = q.m.try_claim_write(1, true).unwrap();
                q.m.abandon(c);
            })
        };
        let producer = {
            let q = q.clone();
            thread::spawn(move || q.try_put(7).unwrap())
        };
        assert_eq!(q.get_spinning(), 7);
        abandoner.join().unwrap();
        producer.join().unwrap();
        // Whether the consumer retired the SKIPPED slot already or retires it now, the ring is
        // empty and both slots are usable again.
        assert_eq!(q.try_get(), Err(RecvError::Empty));
        q.try_put(8).unwrap();
        q.try_put(9).unwrap();
        assert_eq!(q.try_put(10), Err(SendError::Full));
        assert_eq!(q.try_get(), Ok(8));
        assert_eq!(q.try_get(), Ok(9));
    });
}

/// A slot freed by an abandoned write while the read hint stands before it, then claimed and
/// abandoned again a lap on, two laps ahead of the hint: the consumer, racing the abandons' walk
/// of the hint, still gets every message, in order, and the hint ends at the tail.
#[test]
fn loom_mpmc_slot_lapped_by_abandons_behind_the_head() {
    loom::model(|| {
        let q = Q::new(2);
        q.try_put(1).unwrap(); // position 0
        let c1 = q.m.try_claim_write(1, true).unwrap(); // position 1
        let writer = {
            let q = q.clone();
            thread::spawn(move || {
                q.m.abandon(c1);
                q.put_spinning(2); // position 2, once 1 is read
                let c3 = q.m.try_claim_write(1, true).unwrap(); // position 3: the slot of 1
                q.m.abandon(c3);
            })
        };
        assert_eq!(q.get_spinning(), 1);
        assert_eq!(q.get_spinning(), 2);
        writer.join().unwrap();
        assert_eq!(q.try_get(), Err(RecvError::Empty));
        assert_eq!(q.m.len(), 0);
    });
}

/// Two consumers take one message each from a two-slot ring; the first claimer's store of the
/// read hint can land after the second claimer has moved it further, setting it back. Neither
/// finds the ring empty, each message is read exactly once, and the ring afterwards counts, puts
/// and gets as if nothing had happened.
#[test]
fn loom_mpmc_a_late_hint_store_sets_the_head_back_harmlessly() {
    loom::model(|| {
        let q = Q::new(2);
        q.try_put(1).unwrap();
        q.try_put(2).unwrap();
        let consumer = {
            let q = q.clone();
            thread::spawn(move || q.try_get())
        };
        let mine = q.try_get();
        let theirs = consumer.join().unwrap();
        let mut got = [mine.unwrap(), theirs.unwrap()];
        got.sort();
        assert_eq!(got, [1, 2]);
        assert_eq!(q.m.len(), 0);
        q.try_put(3).unwrap();
        q.try_put(4).unwrap();
        assert_eq!(q.m.len(), 2);
        assert_eq!(q.try_get(), Ok(3));
        assert_eq!(q.try_get(), Ok(4));
        assert_eq!(q.try_get(), Err(RecvError::Empty));
    });
}

/// Two producers put one message each into a two-slot ring; a producer's late store of the
/// write hint can set it back behind the other's claim. Neither finds the ring full, the
/// consumer reads both, and the ring afterwards counts, puts and gets as if nothing had
/// happened.
#[test]
fn loom_mpmc_a_late_hint_store_sets_the_tail_back_harmlessly() {
    loom::model(|| {
        let q = Q::new(2);
        let producer = {
            let q = q.clone();
            thread::spawn(move || q.try_put(2))
        };
        q.try_put(1).unwrap();
        producer.join().unwrap().unwrap();
        assert_eq!(q.m.len(), 2);
        let mut got = [q.try_get().unwrap(), q.try_get().unwrap()];
        got.sort();
        assert_eq!(got, [1, 2]);
        assert_eq!(q.m.len(), 0);
        q.try_put(3).unwrap();
        assert_eq!(q.try_get(), Ok(3));
        assert_eq!(q.try_get(), Err(RecvError::Empty));
    });
}

#[test]
fn loom_mpmc_sleeping_consumer_is_woken_by_commit() {
    loom::model(|| {
        let q = Q::new(1);
        let c = {
            let q = q.clone();
            thread::spawn(move || {
                let claim = doorbell::block_on(&q.ctrl().not_empty, None, 0, || q.m.try_claim_read(2).ok(), || {})
                    .expect("no deadline");
                let v = q.data.read(claim.idx);
                q.m.release(claim);
                v
            })
        };
        q.try_put(5).unwrap();
        assert_eq!(c.join().unwrap(), 5);
    });
}

#[test]
fn loom_mpmc_sleeping_producer_is_woken_by_release() {
    loom::model(|| {
        let q = Q::new(1);
        q.try_put(1).unwrap();
        let p = {
            let q = q.clone();
            thread::spawn(move || q.put_blocking(2))
        };
        assert_eq!(q.try_get(), Ok(1));
        p.join().unwrap();
        assert_eq!(q.try_get(), Ok(2));
    });
}

#[test]
fn loom_mpmc_sleeping_consumer_sees_end_of_stream_after_the_last_message() {
    loom::model(|| {
        let q = Q::new(1);
        let t = Arc::new(Table::new(2));
        t.join(q.ctrl(), 0, P).unwrap();
        t.join(q.ctrl(), 1, C).unwrap();
        let p = {
            let (q, t) = (q.clone(), t.clone());
            thread::spawn(move || {
                q.try_put(3).unwrap();
                t.leave(q.ctrl(), 0, P);
            })
        };
        assert_eq!(q.get_blocking(), Ok(3));
        assert_eq!(q.get_blocking(), Err(RecvError::Closed));
        p.join().unwrap();
    });
}

#[test]
fn loom_mpmc_sleeping_producer_sees_consumers_gone() {
    loom::model(|| {
        let q = Q::new(1);
        let t = Table::new(2);
        t.join(q.ctrl(), 0, P).unwrap();
        t.join(q.ctrl(), 1, C).unwrap();
        q.try_put(1).unwrap();
        let p = {
            let q = q.clone();
            thread::spawn(move || {
                doorbell::block_on(
                    &q.ctrl().not_full,
                    None,
                    0,
                    || {
                        if ends::consumers_gone(q.ctrl()) {
                            return Some(Err(SendError::Closed));
                        }
                        match q.m.try_claim_write(1, true) {
                            Err(SendError::Full) => None,
                            r => Some(r),
                        }
                    },
                    || {},
                )
                .expect("no deadline")
                .map(|c| q.m.abandon(c))
            })
        };
        t.leave(q.ctrl(), 1, C);
        assert_eq!(p.join().unwrap(), Err(SendError::Closed));
    });
}

// ----- SPSC -----

struct Pipe {
    heap: HeapRing,
    data: Payloads,
}

impl Pipe {
    fn new(cap: u64) -> Arc<Pipe> {
        Arc::new(Pipe { heap: HeapRing::new(cap, 8), data: Payloads::new(cap) })
    }

    fn ctrl(&self) -> &RingCtrl {
        self.heap.ctrl()
    }

    fn ends(&self) -> (spsc::Producer, spsc::Consumer) {
        (spsc::Producer::new(self.heap.mem).unwrap(), spsc::Consumer::new(self.heap.mem).unwrap())
    }
}

fn try_send(pipe: &Pipe, p: &mut spsc::Producer, v: u64) -> bool {
    if p.room().unwrap() == 0 {
        return false;
    }
    pipe.data.write(p.slot(0), v);
    p.set_len(0, 8);
    p.publish(1);
    true
}

fn try_recv(pipe: &Pipe, c: &mut spsc::Consumer) -> Option<u64> {
    if c.available().unwrap() == 0 {
        return None;
    }
    let (idx, len, _) = c.peek(0).unwrap();
    assert_eq!(len, 8);
    let v = pipe.data.read(idx);
    c.release(1);
    Some(v)
}

/// Sends `n` values through a pipe of `cap` slots, both sides spinning on their cached counters.
fn spsc_in_order(cap: u64, n: u64) {
    loom::model(move || {
        let pipe = Pipe::new(cap);
        let (mut p, mut c) = pipe.ends();
        let tx = {
            let pipe = pipe.clone();
            thread::spawn(move || {
                for v in 0..n {
                    while !try_send(&pipe, &mut p, v) {
                        thread::yield_now();
                    }
                }
            })
        };
        for v in 0..n {
            loop {
                if let Some(got) = try_recv(&pipe, &mut c) {
                    assert_eq!(got, v);
                    break;
                }
                thread::yield_now();
            }
        }
        tx.join().unwrap();
        assert_eq!(try_recv(&pipe, &mut c), None);
    });
}

#[test]
fn loom_spsc_publish_and_consume_with_cached_indices() {
    spsc_in_order(2, 2);
}

#[test]
fn loom_spsc_wraps_around_capacity_1() {
    spsc_in_order(1, 3);
}

#[test]
fn loom_spsc_wraps_around_capacity_2() {
    spsc_in_order(2, 3);
}

#[test]
fn loom_spsc_sleeping_consumer_is_woken_by_publish() {
    loom::model(|| {
        let pipe = Pipe::new(1);
        let (mut p, mut c) = pipe.ends();
        let rx = {
            let pipe = pipe.clone();
            thread::spawn(move || {
                let bell = &pipe.ctrl().not_empty;
                doorbell::block_on(bell, None, 0, || try_recv(&pipe, &mut c), || {}).unwrap()
            })
        };
        assert!(try_send(&pipe, &mut p, 4));
        assert_eq!(rx.join().unwrap(), 4);
    });
}

#[test]
fn loom_spsc_sleeping_producer_is_woken_by_release() {
    loom::model(|| {
        let pipe = Pipe::new(1);
        let (mut p, mut c) = pipe.ends();
        assert!(try_send(&pipe, &mut p, 1));
        let tx = {
            let pipe = pipe.clone();
            thread::spawn(move || {
                let bell = &pipe.ctrl().not_full;
                doorbell::block_on(bell, None, 0, || try_send(&pipe, &mut p, 2).then_some(()), || {}).unwrap()
            })
        };
        assert_eq!(try_recv(&pipe, &mut c), Some(1));
        tx.join().unwrap();
        assert_eq!(try_recv(&pipe, &mut c), Some(2));
    });
}

#[test]
fn loom_spsc_sleeping_receiver_sees_end_of_file() {
    loom::model(|| {
        let pipe = Pipe::new(1);
        let t = Arc::new(Table::new(2));
        t.join_exclusive(pipe.ctrl(), 0, P).unwrap();
        t.join_exclusive(pipe.ctrl(), 1, C).unwrap();
        let (mut p, mut c) = pipe.ends();
        let tx = {
            let (pipe, t) = (pipe.clone(), t.clone());
            thread::spawn(move || {
                assert!(try_send(&pipe, &mut p, 9));
                t.leave(pipe.ctrl(), 0, P);
            })
        };
        // As `Receiver::wait_msg`: a message, or end of file once the producer has gone.
        let mut recv = || {
            doorbell::block_on(
                &pipe.ctrl().not_empty,
                None,
                0,
                || match try_recv(&pipe, &mut c) {
                    Some(v) => Some(Some(v)),
                    None if ends::producers_gone(pipe.ctrl()) => Some(try_recv(&pipe, &mut c)),
                    None => None,
                },
                || {},
            )
            .unwrap()
        };
        assert_eq!(recv(), Some(9));
        assert_eq!(recv(), None, "end of file");
        tx.join().unwrap();
    });
}

/// Sleeping on the doorbells rather than spinning keeps loom's search finite.
#[test]
fn loom_mpmc_two_producers_one_consumer_every_value_once() {
    loom::model(|| {
        let q = Q::new(1);
        let spawn = |v| {
            let q = q.clone();
            thread::spawn(move || q.put_blocking(v))
        };
        let (a, b) = (spawn(1), spawn(2));
        let mut got = [q.get_blocking().unwrap(), q.get_blocking().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(q.try_get(), Err(RecvError::Empty));
    });
}

// ----- MPMC: messages spanning several slots (`put_large`) -----

fn try_put_group(q: &Q, vals: [u64; 2]) -> Result<(), SendError> {
    let c = q.m.try_claim_group(1, 2)?;
    q.data.write(c.idx, vals[0]);
    q.data.write(q.m.next_claim(c).idx, vals[1]);
    q.m.commit_group(c, |_| 8);
    Ok(())
}

/// Takes a message and every slot of it, as `Queue::assemble` does: read, then free, slot by slot.
fn try_get_all(q: &Q) -> Result<Vec<u64>, RecvError> {
    let c = q.m.try_claim_read(2)?;
    let mut out = Vec::new();
    let mut cur = crate::ring::mpmc::Claim { count: 1, ..c };
    for j in 0..c.count {
        if j > 0 {
            cur = crate::ring::mpmc::Claim { count: 1, ..q.m.next_claim(cur) };
        }
        out.push(q.data.read(cur.idx));
        q.m.release(cur);
    }
    Ok(out)
}

/// A two-slot message and a single one race for a ring of 3; one consumer gets both, the group
/// whole and in order (a partial group claim that loses a position is given up and retried).
#[test]
fn loom_mpmc_group_and_single_arrive_whole() {
    loom::model(|| {
        let q = Q::new(3);
        let a = {
            let q = q.clone();
            thread::spawn(move || {
                while let Err(e) = try_put_group(&q, [10, 11]) {
                    assert_eq!(e, SendError::Full);
                    thread::yield_now();
                }
            })
        };
        let b = {
            let q = q.clone();
            thread::spawn(move || q.put_spinning(20))
        };
        let mut got = Vec::new();
        while got.len() < 2 {
            match try_get_all(&q) {
                Ok(v) => got.push(v),
                Err(e) => {
                    assert_eq!(e, RecvError::Empty);
                    thread::yield_now();
                }
            }
        }
        a.join().unwrap();
        b.join().unwrap();
        got.sort();
        assert_eq!(got, vec![vec![10, 11], vec![20]]);
    });
}

/// A reader took a two-slot message's first slot and died before its continuation. Recovery
/// (retiring the continuation itself) races with a live consumer (which may retire it as an
/// orphan, or pass it while the first slot still looks taken): either way both slots come back,
/// and the next lap is neither wedged nor double-freed.
#[test]
fn loom_mpmc_dead_readers_continuation_is_retired_once() {
    use crate::ring::mpmc::{stamp, unpack, READING};
    loom::model(|| {
        let q = Q::new(2);
        try_put_group(&q, [10, 11]).unwrap();
        let first = &q.heap.hdrs()[0].stamp;
        let (_, _, p) = unpack(first.load(loom::sync::atomic::Ordering::Relaxed));
        first.store(stamp(READING, 7, p), loom::sync::atomic::Ordering::Relaxed);
        let reaper = {
            let q = q.clone();
            thread::spawn(move || assert_eq!(q.m.repair_owner(7), (0, 1)))
        };
        assert_eq!(try_get_all(&q), Err(RecvError::Empty));
        reaper.join().unwrap();
        q.try_put(1).unwrap();
        q.try_put(2).unwrap();
        assert_eq!(q.try_put(3), Err(SendError::Full));
        assert_eq!(q.try_get(), Ok(1));
        assert_eq!(q.try_get(), Ok(2));
    });
}

// ----- attaching: counts that survive a kill -----

/// A consumer checking for end of stream while the first producer attaches never sees it ended.
#[test]
fn loom_attach_never_looks_like_end_of_stream() {
    loom::model(|| {
        let q = Q::new(1);
        let t = Arc::new(Table::new(1));
        let p = {
            let (q, t) = (q.clone(), t.clone());
            thread::spawn(move || t.join(q.ctrl(), 0, P).unwrap())
        };
        assert!(!ends::producers_gone(q.ctrl()));
        assert!(!ends::consumers_gone(q.ctrl()));
        p.join().unwrap();
        assert!(!ends::producers_gone(q.ctrl()));
        assert_eq!(ends::producer_count(q.ctrl()), 1);
    });
}

/// End of stream is final: a producer attaching while the last one leaves either joins before the
/// end (and the stream goes on until it leaves too) or is refused; once a consumer has seen the
/// end, no producer is ever counted again.
#[test]
fn loom_end_of_stream_is_final_when_a_producer_races_the_last_one_out() {
    loom::model(|| {
        let q = Q::new(1);
        let t = Arc::new(Table::new(2));
        t.join(q.ctrl(), 0, P).unwrap();
        let leaving = {
            let (q, t) = (q.clone(), t.clone());
            thread::spawn(move || t.leave(q.ctrl(), 0, P))
        };
        let joining = {
            let (q, t) = (q.clone(), t.clone());
            thread::spawn(move || t.join(q.ctrl(), 1, P).is_ok())
        };
        let seen_end_early = ends::producers_gone(q.ctrl());
        leaving.join().unwrap();
        let joined = joining.join().unwrap();
        if seen_end_early {
            assert!(!joined, "a producer joined after a consumer saw the end");
        }
        assert_eq!(ends::producers_gone(q.ctrl()), !joined);
        assert_eq!(ends::producer_count(q.ctrl()), joined as u32);
        assert_eq!(t.holding(P), joined as u32, "a refused joiner leaves no bit behind");
        if joined {
            t.leave(q.ctrl(), 1, P);
            assert!(ends::producers_gone(q.ctrl()));
        }
        assert!(t.join(q.ctrl(), 0, P).is_err(), "an ended side takes no producer");
    });
}

/// A queue (`ENDS_NEED_WITNESS`): the last producer leaving ends the stream only while a consumer
/// is attached to see it. Racing a consumer that attaches, either the consumer sees the end (and
/// it is final) or the queue lies dormant and the consumer waits for a new producer.
#[test]
fn loom_a_queue_ends_only_before_a_witness() {
    use crate::segment::layout::ENDS_NEED_WITNESS;
    loom::model(|| {
        let q = Q::new(1);
        q.ctrl().ends.flags.store(ENDS_NEED_WITNESS, crate::sys::atomic::Ordering::Relaxed);
        let t = Arc::new(Table::new(2));
        t.join(q.ctrl(), 0, P | C).unwrap(); // one handle with both roles
        let leaving = {
            let (q, t) = (q.clone(), t.clone());
            thread::spawn(move || t.leave(q.ctrl(), 0, P | C))
        };
        let consumer = t.join(q.ctrl(), 1, C);
        leaving.join().unwrap();
        assert!(consumer.is_ok(), "the consumer side never ended: it had no witness");
        if ends::producers_gone(q.ctrl()) {
            assert!(t.join(q.ctrl(), 0, P).is_err(), "ended is final");
        } else {
            t.join(q.ctrl(), 0, P).unwrap();
        }
    });
}

/// Crash points a join or leave passes, at most, in the models below (each side's sync may retry).
const ROLE_STEPS: usize = 7;

/// Checks that one side's count word agrees with the table (or has ended with nobody holding).
fn counts_agree(q: &Q, t: &Table) {
    for (bit, gone, count) in [
        (P, ends::producers_gone(q.ctrl()), ends::producer_count(q.ctrl())),
        (C, ends::consumers_gone(q.ctrl()), ends::consumer_count(q.ctrl())),
    ] {
        if gone {
            assert_eq!(t.holding(bit), 0, "an ended side with a holder");
        } else {
            assert_eq!(count, t.holding(bit), "role {bit}: the count word disagrees with the table");
        }
    }
}

/// Regression (role counts drifted after an unlucky kill): a handle killed at any step of its
/// attach (`k` = the crash point it dies at), while another attaches and leaves; its reaper then
/// clears its bits and recounts. Whatever the step, the counts equal the table's bits: never a
/// role subtracted that was never added, nor one counted twice.
#[test]
fn loom_counts_survive_a_kill_at_any_step_of_an_attach() {
    for k in 0..ROLE_STEPS {
        loom::model(move || {
            let q = Q::new(1);
            let t = Arc::new(Table::new(3));
            t.join(q.ctrl(), 0, C).unwrap(); // a witness, alive throughout
            let dying = {
                let (q, t) = (q.clone(), t.clone());
                thread::spawn(move || {
                    crash::die_after(Some(k));
                    let _ = ends::join(&[q.ctrl()], &t.0[1].roles, P | C, &TableMembers(&t.0), ends::Sync::Join);
                    crash::die_after(None);
                })
            };
            let other = {
                let (q, t) = (q.clone(), t.clone());
                thread::spawn(move || {
                    if t.join(q.ctrl(), 2, P).is_ok() {
                        t.leave(q.ctrl(), 2, P);
                    }
                })
            };
            dying.join().unwrap();
            other.join().unwrap();
            t.reap_roles(q.ctrl(), 1);
            counts_agree(&q, &t);
            assert_eq!(ends::consumer_count(q.ctrl()), 1, "the witness is counted once");
        });
    }
}

/// The same for a kill at any step of a leave (a close, or the first half of a drop), with a
/// reaper that itself runs concurrently with a live handle's attach.
#[test]
fn loom_counts_survive_a_kill_at_any_step_of_a_leave() {
    for k in 0..ROLE_STEPS {
        loom::model(move || {
            let q = Q::new(1);
            let t = Arc::new(Table::new(3));
            t.join(q.ctrl(), 0, C).unwrap();
            t.join(q.ctrl(), 1, P | C).unwrap();
            let dying = {
                let (q, t) = (q.clone(), t.clone());
                thread::spawn(move || {
                    crash::die_after(Some(k));
                    let _ = ends::leave(&[q.ctrl()], &t.0[1].roles, P | C, &TableMembers(&t.0));
                    crash::die_after(None);
                })
            };
            dying.join().unwrap();
            let other = {
                let (q, t) = (q.clone(), t.clone());
                thread::spawn(move || t.join(q.ctrl(), 2, P).is_ok())
            };
            t.reap_roles(q.ctrl(), 1);
            let joined = other.join().unwrap();
            counts_agree(&q, &t);
            assert_eq!(ends::consumer_count(q.ctrl()), 1);
            // The dead handle was the only producer, and a consumer saw it go (or a newcomer
            // joined first): either way the stream ended exactly when nobody produced.
            assert_eq!(ends::producers_gone(q.ctrl()), !joined);
        });
    }
}

// ----- the participant table: reapers and registrations -----

mod table_models {
    use super::*;
    use crate::segment::layout::{entry_word, PARTICIPANT_ACTIVE, PARTICIPANT_FREE};
    use crate::segment::table::{self, Won};
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// The liveness locks of a table's entries (an OFD byte lock each).
    struct Locks(Vec<AtomicBool>);

    impl Locks {
        fn new(held: &[bool]) -> Locks {
            Locks(held.iter().map(|&h| AtomicBool::new(h)).collect())
        }
        fn held(&self, i: usize) -> bool {
            self.0[i].load(Ordering::SeqCst)
        }
        fn take(&self, i: usize) -> bool {
            self.0[i].compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        }
        fn give(&self, i: usize) {
            self.0[i].store(false, Ordering::SeqCst);
        }
    }

    /// Entries `live` attached (generation 1) by live processes (whose locks the caller holds).
    fn attached(t: &Table, live: &[usize]) {
        for &i in live {
            t.0[i].state.0.store(entry_word(1, PARTICIPANT_ACTIVE), Ordering::SeqCst);
        }
    }

    /// A reaper with entry `me` (alive: its lock is held) reaps entry `dead` if it looks dead, as
    /// `recover::reap` does: probe the lock, win, clear the roles and recount, free. Returns the
    /// generation it reaped.
    fn reap(q: &Q, t: &Table, locks: &Locks, me: usize, dead: usize) -> Result<Option<u32>, crash::Died> {
        let p = &t.0[dead];
        let seen = table::load(p);
        if seen.1 == PARTICIPANT_FREE || locks.held(dead) {
            return Ok(None);
        }
        let mark = table::reaper_mark(me, table::load(&t.0[me]).0);
        let Some(w) = table::win(p, seen, mark, &t.0, &|r| locks.held(r))? else { return Ok(None) };
        crash::point("reap.roles")?;
        p.roles.store(0, Ordering::Release);
        ends::resync(&[q.ctrl()], &TableMembers(&t.0))?;
        assert!(table::finish(p, w)?, "a won entry is ours to free");
        Ok(Some(w.generation))
    }

    /// A registration as `Registration::new` makes it, into entry `i` only: the lock first, then
    /// the claim, then the roles (a consumer: the dead producer's reaper may end the stream, which
    /// refuses producers from then on). Returns the generation it got.
    fn register(q: &Q, t: &Table, locks: &Locks, i: usize) -> Option<u32> {
        for _ in 0..2 {
            if t.0[i].state.load(Ordering::Relaxed) == PARTICIPANT_FREE && locks.take(i) {
                if let Some(g) = table::claim(&t.0[i], 42).unwrap() {
                    assert!(table::activate(&t.0[i], g, 42).unwrap());
                    t.join(q.ctrl(), i, C).unwrap();
                    return Some(g);
                }
                locks.give(i);
            }
            thread::yield_now();
        }
        None
    }

    /// Regression (a reaper could reap a live participant): two reapers race to reap a dead
    /// entry while a newcomer registers into it as soon as it is free. The newcomer is never
    /// reaped (its roles stay counted), and the dead entry is reaped by one reaper only.
    #[test]
    fn loom_two_reapers_race_a_registration_into_the_same_entry() {
        loom::model(|| {
            let q = Q::new(1);
            let t = Arc::new(Table::new(4));
            let locks = Arc::new(Locks::new(&[true, true, true, false]));
            attached(&t, &[0, 1, 2]);
            t.join(q.ctrl(), 2, C).unwrap(); // a live consumer
                                             // Entry 3: a dead producer, generation 5.
            t.0[3].state.0.store(entry_word(5, PARTICIPANT_ACTIVE), Ordering::SeqCst);
            t.join(q.ctrl(), 3, P).unwrap();
            let reaped = Arc::new(AtomicUsize::new(0));
            let reaper = |me: usize| {
                let (q, t, locks, reaped) = (q.clone(), t.clone(), locks.clone(), reaped.clone());
                thread::spawn(move || {
                    if let Some(g) = reap(&q, &t, &locks, me, 3).unwrap() {
                        assert_eq!(g, 5, "a reaper reaped the live newcomer");
                        reaped.fetch_add(1, Ordering::SeqCst);
                    }
                })
            };
            let (r0, r1) = (reaper(0), reaper(1));
            let newcomer = register(&q, &t, &locks, 3);
            r0.join().unwrap();
            r1.join().unwrap();
            assert!(reaped.load(Ordering::SeqCst) <= 1, "two reapers repaired one entry");
            if let Some(g) = newcomer {
                assert_eq!(g, 6);
                assert!(table::is_active(&t.0[3], 6), "the newcomer's entry was taken from it");
                assert_eq!(ends::consumer_count(q.ctrl()), 2, "the newcomer's role was uncounted");
            }
            counts_agree(&q, &t);
        });
    }

    /// A reaper killed at any step (with an entry of its own, whose lock dies with it) leaves
    /// the dead entry to the next survivor, which finishes the job — even once a newcomer has
    /// registered into the dead reaper's entry: the entry is freed once and the counts agree with
    /// the table.
    #[test]
    fn loom_a_reaper_killed_at_any_step_is_taken_over() {
        for k in 0..6 {
            loom::model(move || {
                let q = Q::new(1);
                let t = Arc::new(Table::new(4));
                let locks = Arc::new(Locks::new(&[true, true, true, false]));
                attached(&t, &[0, 1, 2]);
                t.join(q.ctrl(), 2, C).unwrap();
                t.0[3].state.0.store(entry_word(5, PARTICIPANT_ACTIVE), Ordering::SeqCst);
                t.join(q.ctrl(), 3, P).unwrap();
                let first = {
                    let (q, t, locks) = (q.clone(), t.clone(), locks.clone());
                    thread::spawn(move || {
                        crash::die_after(Some(k));
                        let r = reap(&q, &t, &locks, 0, 3);
                        crash::die_after(None);
                        if r.is_err() {
                            locks.give(0); // its process died: the kernel drops its lock
                        }
                        r.ok().flatten()
                    })
                };
                let second = {
                    let (q, t, locks) = (q.clone(), t.clone(), locks.clone());
                    thread::spawn(move || reap(&q, &t, &locks, 1, 3).unwrap())
                };
                let (a, b) = (first.join().unwrap(), second.join().unwrap());
                assert!(a.is_none() || b.is_none(), "reaped twice");
                if !locks.held(0) {
                    // The first reaper died; a newcomer registers into its entry. Its mark, if it
                    // left one, names the old generation: a dead reaper.
                    t.0[0].state.0.store(entry_word(2, PARTICIPANT_ACTIVE), Ordering::SeqCst);
                    assert!(locks.take(0));
                }
                // Whatever happened, a survivor that looks now finishes it.
                let again = reap(&q, &t, &locks, 1, 3).unwrap();
                assert!(a.or(b).or(again).is_some(), "never reaped");
                assert_eq!(t.0[3].state.load(Ordering::SeqCst), PARTICIPANT_FREE);
                counts_agree(&q, &t);
                assert!(ends::producers_gone(q.ctrl()), "its producer role was uncounted: end of stream");
            });
        }
    }

    /// A reaper without an entry (a registration that found the table full) holds the dead
    /// entry's lock while it reaps; killed at any step, the lock goes with it and another
    /// survivor takes over.
    #[test]
    fn loom_a_reaper_without_an_entry_killed_at_any_step_is_taken_over() {
        for k in 0..6 {
            loom::model(move || {
                let q = Q::new(1);
                let t = Arc::new(Table::new(3));
                let locks = Arc::new(Locks::new(&[true, true, false]));
                attached(&t, &[0, 1]);
                t.join(q.ctrl(), 1, C).unwrap();
                t.0[2].state.0.store(entry_word(5, PARTICIPANT_ACTIVE), Ordering::SeqCst);
                t.join(q.ctrl(), 2, P).unwrap();
                let first = {
                    let (q, t, locks) = (q.clone(), t.clone(), locks.clone());
                    thread::spawn(move || {
                        if !locks.take(2) {
                            return;
                        }
                        crash::die_after(Some(k));
                        let p = &t.0[2];
                        let seen = table::load(p);
                        let r = (|| -> Result<(), crash::Died> {
                            let Some(w) = table::win(p, seen, table::NO_ENTRY, &t.0, &|r| locks.held(r))? else {
                                return Ok(());
                            };
                            crash::point("reap.roles")?;
                            p.roles.store(0, Ordering::Release);
                            ends::resync(&[q.ctrl()], &TableMembers(&t.0))?;
                            table::finish(p, w).map(|_| ())
                        })();
                        crash::die_after(None);
                        let _ = r;
                        locks.give(2); // done, or dead: either way the lock is given back
                    })
                };
                first.join().unwrap();
                let again = {
                    let (q, t, locks) = (q.clone(), t.clone(), locks.clone());
                    thread::spawn(move || reap(&q, &t, &locks, 0, 2).unwrap())
                };
                again.join().unwrap();
                assert_eq!(t.0[2].state.load(Ordering::SeqCst), PARTICIPANT_FREE);
                counts_agree(&q, &t);
                let _: Option<Won> = None;
            });
        }
    }
}

// ----- joinable queues: tasks through every crash window -----

mod task_models {
    use super::*;
    use crate::segment::layout::JoinState;
    use crate::segment::tasks::{Ledger, NotDone, Slots};
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Mutex;

    impl Slots for Mpmc {
        fn unpublished(&self, owner: u16, pos: u64) -> bool {
            Mpmc::unpublished(self, owner, pos)
        }
        fn held(&self, owner: u16, idx: u64) -> bool {
            self.held_by(owner, idx)
        }
    }

    struct Tasks {
        q: Arc<Q>,
        t: Table,
        join: JoinState,
        /// Entries whose process has died.
        dead: Vec<AtomicBool>,
        /// One reaper at a time per entry (the reaper's mark in production, see `table`); a
        /// guard dropped by a dying thread is the mark of a dead reaper.
        reaping: Vec<Mutex<()>>,
    }

    impl Tasks {
        fn new(cap: u64, entries: usize) -> Arc<Tasks> {
            Arc::new(Tasks {
                q: Q::new(cap),
                t: Table::new(entries),
                join: JoinState::default(),
                dead: (0..entries).map(|_| AtomicBool::new(false)).collect(),
                reaping: (0..entries).map(|_| Mutex::new(())).collect(),
            })
        }

        fn ledger(&self) -> Ledger<'_> {
            Ledger { join: &self.join, table: &self.t.0 }
        }

        fn unfinished(&self) -> u64 {
            self.join.unfinished.load(Ordering::SeqCst)
        }

        /// How a live operation waits for another entry's: yield; a dead holder is reaped, as
        /// `recover::Stall` does (here only the part that finishes its operation).
        fn stall(&self, holder: usize) -> bool {
            if self.dead[holder].load(Ordering::SeqCst) {
                if let Ok(_reaper) = self.reaping[holder].try_lock() {
                    let _ = self.ledger().finish_op(holder);
                }
            }
            thread::yield_now();
            true
        }

        /// A joinable put by entry `e` (owner `e + 1`), as `Queue::commit_counted` makes it.
        fn put(&self, e: usize, v: u64) -> Result<(), crash::Died> {
            let c = self.q.m.try_claim_write(e as u16 + 1, true).expect("room");
            self.q.data.write(c.idx, v);
            self.ledger().count_put(e, c.pos, &mut |h| self.stall(h))?.expect("a live holder always finishes");
            crash::point("queue.publish")?;
            self.q.m.commit(c, 8);
            self.ledger().published(e)
        }

        /// A get by entry `e`: claim, then (in place) maybe `task_done` while holding, then the
        /// journaled release as `ReadClaim::release_counted` makes it, then maybe `task_done`.
        fn get_and_done(&self, e: usize, done_while_holding: bool) -> Result<Result<(), NotDone>, crash::Died> {
            let c = loop {
                match self.q.m.try_claim_read(e as u16 + 1) {
                    Ok(c) => break c,
                    Err(_) => thread::yield_now(),
                }
            };
            let _ = self.q.data.read(c.idx);
            let mut done = None;
            if done_while_holding {
                done = Some(self.ledger().done(e, &mut |h| self.stall(h))?);
            }
            let takes = &self.t.0[e].takes;
            Ledger::begin_release(takes, c.idx)?;
            crash::point("release")?;
            self.q.m.release(c);
            Ledger::end_release(takes)?;
            if done.is_none() {
                done = Some(self.ledger().done(e, &mut |h| self.stall(h))?);
            }
            Ok(done.expect("set above").map(|_| ()))
        }

        /// Recovery of dead entry `e`, as `recover::reap` runs it. Returns the tasks it marked
        /// done.
        fn reap(&self, e: usize) -> u64 {
            let _reaper = self.reaping[e].lock().unwrap();
            let l = self.ledger();
            l.finish_op(e).unwrap();
            l.settle_before_repair(e, e as u16 + 1, &self.q.m, &mut |h| self.stall(h)).unwrap();
            let owner = e as u16 + 1;
            self.q.m.repair_owners(&|o| o == owner, Some(&|_| &self.t.0[e].takes)).unwrap();
            l.settle_after_repair(e, &mut |h| self.stall(h)).unwrap()
        }
    }

    /// Crash points of one put or one get-and-done, at most (with retries of a CAS or two).
    const TASK_STEPS: usize = 9;

    /// Regression (a producer killed after counting its task but before publishing it left
    /// `join` waiting forever): a joinable put killed at any step, while a consumer marks an
    /// earlier task done. Once the dead producer is reaped, `unfinished` is exactly the tasks
    /// published and not done: the dead put counts if and only if it was published.
    #[test]
    fn loom_a_put_killed_at_any_step_is_counted_once_or_not_at_all() {
        for k in 0..TASK_STEPS {
            loom::model(move || {
                let s = Tasks::new(2, 2);
                s.put(1, 7).unwrap(); // an earlier task, by the consumer's entry
                let producer = {
                    let s = s.clone();
                    thread::spawn(move || {
                        crash::die_after(Some(k));
                        let r = s.put(0, 8);
                        crash::die_after(None);
                        s.dead[0].store(r.is_err(), Ordering::SeqCst);
                    })
                };
                let consumer = {
                    let s = s.clone();
                    thread::spawn(move || s.get_and_done(1, false).unwrap())
                };
                producer.join().unwrap();
                assert_eq!(consumer.join().unwrap(), Ok(()), "one task was there to mark done");
                s.dead[0].store(true, Ordering::SeqCst);
                assert_eq!(s.reap(0), 0, "a producer holds no taken tasks");
                // What is left in the ring is exactly what is unfinished.
                let mut left = 0;
                while s.q.try_get().is_ok() {
                    left += 1;
                }
                assert_eq!(s.unfinished(), left, "unfinished does not match the tasks published");
            });
        }
    }

    /// Regression (`task_done` while still holding the message, then a kill, counted the task
    /// twice; a worker killed after taking a job and before `task_done` left `join` waiting
    /// forever): a consumer killed at any step of taking a task and marking it done, in place or
    /// after a get. Once it is reaped, the task is done exactly once: by its `task_done`, or by
    /// recovery (a lost task). `unfinished` ends at 0 and never went below.
    #[test]
    fn loom_a_consumer_killed_at_any_step_has_its_task_done_exactly_once() {
        for in_place in [true, false] {
            for k in 0..TASK_STEPS {
                loom::model(move || {
                    let s = Tasks::new(1, 2);
                    s.put(0, 7).unwrap();
                    let consumer = {
                        let s = s.clone();
                        thread::spawn(move || {
                            crash::die_after(Some(k));
                            let r = s.get_and_done(1, in_place);
                            crash::die_after(None);
                            if let Ok(done) = r {
                                assert_eq!(done, Ok(()), "the task was there to mark done");
                            }
                            r.is_ok()
                        })
                    };
                    // A live `join` of the producer meanwhile never sees the count go wrong.
                    let watcher = {
                        let s = s.clone();
                        thread::spawn(move || assert!(s.unfinished() <= 1))
                    };
                    let finished = consumer.join().unwrap();
                    watcher.join().unwrap();
                    s.dead[1].store(!finished, Ordering::SeqCst);
                    let lost = if finished { 0 } else { s.reap(1) };
                    assert_eq!(s.unfinished(), 0, "the task is not done exactly once");
                    let dones = s.t.0[1].dones.load(Ordering::SeqCst);
                    assert_eq!(dones, 1, "marked done once, by the consumer or by recovery ({lost} lost)");
                    // The slot was freed either way: the ring takes two more.
                    s.q.try_put(1).unwrap();
                    assert_eq!(s.q.try_put(2), Err(SendError::Full));
                });
            }
        }
    }

    /// A reaper killed at any step of recovering a dead consumer (which held a task in place) is
    /// taken over by the next one, which finishes without marking anything twice, while a live
    /// producer puts another task.
    #[test]
    fn loom_a_reaper_of_a_consumer_killed_at_any_step_is_taken_over() {
        for k in 0..TASK_STEPS {
            loom::model(move || {
                let s = Tasks::new(2, 2);
                s.put(0, 7).unwrap();
                let _held = s.q.m.try_claim_read(2).unwrap(); // entry 1 holds the task, and dies
                s.dead[1].store(true, Ordering::SeqCst);
                let first = {
                    let s = s.clone();
                    thread::spawn(move || {
                        let _reaper = s.reaping[1].lock().unwrap();
                        crash::die_after(Some(k));
                        let l = s.ledger();
                        let r = (|| -> Result<(), crash::Died> {
                            l.finish_op(1)?;
                            l.settle_before_repair(1, 2, &s.q.m, &mut |h| s.stall(h))?;
                            s.q.m.repair_owners(&|o| o == 2, Some(&|_| &s.t.0[1].takes))?;
                            l.settle_after_repair(1, &mut |h| s.stall(h)).map(|_| ())
                        })();
                        crash::die_after(None);
                        let _ = r;
                    })
                };
                let other = {
                    let s = s.clone();
                    thread::spawn(move || s.put(0, 9).unwrap())
                };
                first.join().unwrap();
                other.join().unwrap();
                s.reap(1);
                assert_eq!(s.unfinished(), 1, "only the live producer's new task is left");
                assert_eq!(s.t.0[1].dones.load(Ordering::SeqCst), 1, "marked done twice, or not at all");
                let _ = Ended::Producers;
            });
        }
    }
}

// ----- one-pass put and take (`Mpmc::put_now`, `Mpmc::take_now`, `spsc::Consumer::take_now`) -----

/// A one-pass take of an 8-byte value (through the ring's own payload memory).
fn take_value(took: crate::ring::took::Took) -> Option<u64> {
    match took {
        crate::ring::took::Took::Message(m) => Some(m.to_value::<u64>().expect("8 bytes")),
        _ => None,
    }
}

#[test]
fn loom_mpmc_one_pass_put_and_take_across_a_lap_boundary() {
    loom::model(|| {
        let q = Q::new(1);
        let p = {
            let q = q.clone();
            thread::spawn(move || {
                for v in 1..=2u64 {
                    while !q.m.put_now(1, &v.to_ne_bytes()) {
                        thread::yield_now();
                    }
                }
            })
        };
        for v in 1..=2u64 {
            loop {
                if let Some(got) = take_value(q.m.take_now(2)) {
                    assert_eq!(got, v);
                    break;
                }
                thread::yield_now();
            }
        }
        p.join().unwrap();
        assert!(matches!(q.m.take_now(2), crate::ring::took::Took::Empty));
        assert_eq!(q.m.len(), 0);
    });
}

#[test]
fn loom_mpmc_one_pass_puts_race_for_the_last_slot_and_takes_race_for_it() {
    loom::model(|| {
        let q = Q::new(2);
        assert!(q.m.put_now(1, &10u64.to_ne_bytes()));
        let put = |v: u64| {
            let q = q.clone();
            thread::spawn(move || q.m.put_now(1, &v.to_ne_bytes()))
        };
        let (a, b) = (put(11), put(12));
        let winner = match (a.join().unwrap(), b.join().unwrap()) {
            (true, false) => 11,
            (false, true) => 12,
            other => panic!("exactly one producer must win: {other:?}"),
        };
        assert_eq!(take_value(q.m.take_now(2)), Some(10));
        let take = || {
            let q = q.clone();
            thread::spawn(move || take_value(q.m.take_now(2)))
        };
        let (a, b) = (take(), take());
        match (a.join().unwrap(), b.join().unwrap()) {
            (Some(v), None) | (None, Some(v)) => assert_eq!(v, winner),
            other => panic!("exactly one consumer must take the message: {other:?}"),
        }
        assert!(matches!(q.m.take_now(2), crate::ring::took::Took::Empty));
    });
}

#[test]
fn loom_spsc_one_pass_take_in_order_across_a_wrap() {
    loom::model(|| {
        let pipe = Pipe::new(1);
        let (mut p, mut c) = pipe.ends();
        let tx = thread::spawn(move || {
            for v in 0..2u64 {
                while p.room().unwrap() == 0 {
                    thread::yield_now();
                }
                p.write(0, &v.to_ne_bytes());
                p.set_len(0, 8);
                p.publish(1);
            }
        });
        for v in 0..2u64 {
            loop {
                if let Some(got) = take_value(c.take_now()) {
                    assert_eq!(got, v);
                    break;
                }
                thread::yield_now();
            }
        }
        tx.join().unwrap();
        assert!(matches!(c.take_now(), crate::ring::took::Took::Empty));
    });
}
