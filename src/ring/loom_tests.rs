//! Loom models of the ring algorithms, the doorbell and end of stream, on heap memory.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --lib loom`
//! (see `.ci/loom`). Each model is tiny on purpose (capacity 1–2, 2–3 threads, a few
//! operations): loom explores every interleaving, and reports a deadlock if a sleeper is never
//! woken, which is how a lost wake-up shows up here.
//!
//! Payloads are modelled by one loom `UnsafeCell` per slot beside the heap ring, so loom also
//! checks that the slot-published and slot-released sync points order the payload accesses: a
//! write and a read of the same slot that are not ordered by happens-before make loom fail.

use crate::error::{RecvError, SendError};
use crate::ring::doorbell;
use crate::ring::ends;
use crate::ring::mem::HeapRing;
use crate::ring::mpmc::Mpmc;
use crate::ring::spsc;
use crate::segment::layout::RingCtrl;
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
        &self.heap.ctrl
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
        ends::attach(q.ctrl(), true, false).unwrap();
        ends::attach(q.ctrl(), false, true).unwrap();
        let p = {
            let q = q.clone();
            thread::spawn(move || {
                q.try_put(3).unwrap();
                ends::detach(q.ctrl(), true, false);
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
        ends::attach(q.ctrl(), true, false).unwrap();
        ends::attach(q.ctrl(), false, true).unwrap();
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
        ends::detach(q.ctrl(), false, true);
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
        &self.heap.ctrl
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
        assert!(ends::attach_exclusive(pipe.ctrl(), true));
        assert!(ends::attach_exclusive(pipe.ctrl(), false));
        let (mut p, mut c) = pipe.ends();
        let tx = {
            let pipe = pipe.clone();
            thread::spawn(move || {
                assert!(try_send(&pipe, &mut p, 9));
                ends::detach(pipe.ctrl(), true, false);
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
        let first = &q.heap.hdrs[0].stamp;
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

// ----- attaching -----

/// A consumer checking for end of stream while the first producer attaches never sees it ended.
#[test]
fn loom_attach_never_looks_like_end_of_stream() {
    loom::model(|| {
        let q = Q::new(1);
        let p = {
            let q = q.clone();
            thread::spawn(move || ends::attach(q.ctrl(), true, false).unwrap())
        };
        assert!(!ends::producers_gone(q.ctrl()));
        assert!(!ends::consumers_gone(q.ctrl()));
        p.join().unwrap();
        assert!(!ends::producers_gone(q.ctrl()));
    });
}

/// End of stream is final: a producer attaching while the last one leaves either joins before the
/// end (and the stream goes on until it leaves too) or is refused; once a consumer has seen the
/// end, no producer is ever counted again.
#[test]
fn loom_end_of_stream_is_final_when_a_producer_races_the_last_one_out() {
    loom::model(|| {
        let q = Q::new(1);
        ends::attach(q.ctrl(), true, false).unwrap();
        let leaving = {
            let q = q.clone();
            thread::spawn(move || ends::detach(q.ctrl(), true, false))
        };
        let joining = {
            let q = q.clone();
            thread::spawn(move || ends::attach(q.ctrl(), true, false).is_ok())
        };
        let seen_end_early = ends::producers_gone(q.ctrl());
        leaving.join().unwrap();
        let joined = joining.join().unwrap();
        if seen_end_early {
            assert!(!joined, "a producer joined after a consumer saw the end");
        }
        assert_eq!(ends::producers_gone(q.ctrl()), !joined);
        assert_eq!(ends::producer_count(q.ctrl()), joined as u32);
        if joined {
            ends::detach(q.ctrl(), true, false);
            assert!(ends::producers_gone(q.ctrl()));
        }
        assert!(ends::attach(q.ctrl(), true, false).is_err(), "an ended side takes no producer");
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
        ends::attach(q.ctrl(), true, true).unwrap(); // one handle with both roles
        let leaving = {
            let q = q.clone();
            thread::spawn(move || ends::detach(q.ctrl(), true, true))
        };
        let consumer = ends::attach(q.ctrl(), false, true);
        leaving.join().unwrap();
        assert!(consumer.is_ok(), "the consumer side never ended: it had no witness");
        if ends::producers_gone(q.ctrl()) {
            assert!(ends::attach(q.ctrl(), true, false).is_err(), "ended is final");
        } else {
            ends::attach(q.ctrl(), true, false).unwrap();
        }
    });
}
