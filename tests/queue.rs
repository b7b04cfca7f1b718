//! The queue in one process: API behaviour, typed errors, threads.

use shmq::{Error, Queue, RecvError, Role, SendError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::unique;

#[test]
fn named_queue_round_trip_between_two_handles() {
    let name = unique("roundtrip");
    let a = Queue::builder().capacity(8).slot_size(64).unlink_on_drop(true).create(&name).unwrap();
    let b = Queue::open(&name).unwrap();
    a.put(b"hello").unwrap();
    let msg = b.get().unwrap();
    assert_eq!(&*msg, b"hello");
    drop(msg);
    assert!(a.is_empty());
    drop((a, b));
    assert!(matches!(Queue::open(&name), Err(Error::NotFound(_))), "creator unlinks on drop");
}

#[test]
fn fourth_put_on_capacity_three_is_full() {
    let q = Queue::anonymous(3, 16).unwrap();
    for i in 0..3u8 {
        q.try_put(&[i]).unwrap();
    }
    assert!(q.is_full());
    assert_eq!(q.len(), 3);
    assert_eq!(q.try_put(b"x"), Err(SendError::Full));
    let t = Instant::now();
    assert_eq!(q.put_timeout(b"x", Duration::from_millis(50)), Err(SendError::Timeout));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert_eq!(&*q.get().unwrap(), &[0]);
    q.try_put(b"x").unwrap();
}

#[test]
fn get_timeout_on_empty_returns_after_about_the_timeout() {
    let q = Queue::anonymous(4, 16).unwrap();
    assert_eq!(q.try_get().unwrap_err(), RecvError::Empty);
    let t = Instant::now();
    assert_eq!(q.get_timeout(Duration::from_millis(80)).unwrap_err(), RecvError::Timeout);
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(80) && e < Duration::from_secs(5), "{e:?}");
}

#[test]
fn oversize_message_is_a_typed_error_and_nothing_is_lost() {
    let q = Queue::anonymous(2, 8).unwrap();
    q.put(b"12345678").unwrap();
    assert_eq!(q.try_put(b"123456789"), Err(SendError::TooLarge { len: 9, max: 8 }));
    assert_eq!(q.len(), 1);
    assert_eq!(&*q.get().unwrap(), b"12345678");
}

#[test]
fn pod_values_travel_without_serialisation() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Tick {
        id: u64,
        px: f64,
        qty: u32,
        side: u32,
    }
    let q = Queue::anonymous(4, 64).unwrap();
    let t = Tick { id: 7, px: 101.25, qty: 3, side: 1 };
    q.put_value(&t).unwrap();
    q.put_value(&t).unwrap();
    {
        let m = q.get_in_place().unwrap();
        assert_eq!(m.as_value::<Tick>(), Some(&t), "payloads are aligned for a Pod view");
    }
    assert_eq!(q.get_value::<Tick>().unwrap(), t);
    q.put_value(&1u8).unwrap();
    assert_eq!(q.get_value::<u64>(), Err(RecvError::SizeMismatch { len: 1, expected: 8 }));
}

#[test]
fn reserve_commit_writes_in_place_and_drop_gives_the_slot_up() {
    // An abandoned slot stays taken until a consumer passes it, so give it room: capacity 3.
    let q = Queue::anonymous(3, 32).unwrap();
    {
        let mut r = q.reserve().unwrap();
        r.buf()[..3].copy_from_slice(b"abc");
        r.commit(3).unwrap();
    }
    drop(q.reserve().unwrap()); // abandoned: consumers skip it
    q.put_with(|buf| {
        buf[..2].copy_from_slice(b"xy");
        2
    })
    .unwrap();
    assert_eq!(&*q.get().unwrap(), b"abc");
    assert_eq!(&*q.get().unwrap(), b"xy");
    assert_eq!(q.try_get().unwrap_err(), RecvError::Empty);
    let r = q.reserve().unwrap();
    assert_eq!(r.commit(33), Err(SendError::TooLarge { len: 33, max: 32 }));
    assert_eq!(q.try_get().unwrap_err(), RecvError::Empty);
}

/// Found by the `queue_ops` fuzzer: reservations abandoned behind the read position free their
/// slot for later laps; the messages written between stay readable, in order.
#[test]
fn messages_behind_a_slot_lapped_by_abandoned_reservations_are_kept() {
    let q = Queue::builder().capacity(4).slot_size(8).spin(0).create_anonymous().unwrap();
    q.try_put(b"X").unwrap();
    let r1 = q.try_reserve().unwrap();
    q.try_put(b"A").unwrap();
    q.try_put(b"B").unwrap();
    drop(r1);
    assert_eq!(&*q.try_get().unwrap(), b"X");
    let r4 = q.try_reserve().unwrap();
    drop(q.try_reserve().unwrap()); // the slot r1 had, one lap on, abandoned again
    assert_eq!(&*q.try_get().unwrap(), b"A");
    assert_eq!(&*q.try_get().unwrap(), b"B");
    assert_eq!(q.try_get().unwrap_err(), RecvError::Empty);
    let mut r4 = r4;
    r4.buf()[0] = b'C';
    r4.commit(1).unwrap();
    assert_eq!(&*q.try_get().unwrap(), b"C");
    // The abandoned position counts in `len` until a get moves the read position past it.
    assert_eq!(q.try_get().unwrap_err(), RecvError::Empty);
    assert_eq!(q.len(), 0);
}

#[test]
fn roles_are_enforced_and_end_of_stream_follows_the_producers() {
    let name = unique("roles");
    let owner =
        Queue::builder().capacity(4).slot_size(8).role(Role::Consumer).unlink_on_drop(true).create(&name).unwrap();
    let p = Queue::builder().role(Role::Producer).open(&name).unwrap();
    assert_eq!(owner.try_put(b"x"), Err(SendError::WrongRole));
    assert_eq!(p.try_get().unwrap_err(), RecvError::WrongRole);
    p.put(b"last").unwrap();
    p.close();
    assert_eq!(p.try_put(b"x"), Err(SendError::Closed), "a closed handle says closed, not wrong role");
    assert_eq!(&*owner.get().unwrap(), b"last", "drained before end of stream");
    assert_eq!(owner.get().unwrap_err(), RecvError::Closed);
    assert_eq!(owner.get_timeout(Duration::from_secs(5)).unwrap_err(), RecvError::Closed);
}

#[test]
fn end_of_stream_is_final_no_producer_joins_an_ended_queue() {
    let name = unique("final");
    let c = Queue::builder().capacity(4).slot_size(8).role(Role::Consumer).unlink_on_drop(true).create(&name).unwrap();
    let p = Queue::builder().role(Role::Producer).open(&name).unwrap();
    p.put(b"one").unwrap();
    drop(p);
    assert_eq!(&*c.get().unwrap(), b"one");
    assert_eq!(c.try_get().unwrap_err(), RecvError::Closed);
    match Queue::builder().role(Role::Producer).open(&name) {
        Err(shmq::Error::Closed(why)) => assert!(why.contains("end of stream"), "{why}"),
        other => panic!("a producer joined an ended queue: {other:?}"),
    }
    assert_eq!(c.try_get().unwrap_err(), RecvError::Closed, "still ended");
    // A consumer may still open it (and sees the end at once).
    let late = Queue::builder().role(Role::Consumer).open(&name).unwrap();
    assert_eq!(late.try_get().unwrap_err(), RecvError::Closed);
}

#[test]
fn a_persistent_queue_never_ends() {
    let name = unique("persistent");
    let c = Queue::builder()
        .capacity(4)
        .slot_size(8)
        .role(Role::Consumer)
        .persistent(true)
        .unlink_on_drop(true)
        .create(&name)
        .unwrap();
    drop(Queue::builder().role(Role::Producer).open(&name).unwrap());
    assert_eq!(c.try_get().unwrap_err(), RecvError::Empty);
    let p = Queue::builder().role(Role::Producer).open(&name).unwrap();
    p.put(b"again").unwrap();
    assert_eq!(&*c.get().unwrap(), b"again");
}

#[test]
fn put_reports_closed_once_every_consumer_is_gone() {
    let name = unique("broken");
    let p = Queue::builder().capacity(4).slot_size(8).role(Role::Producer).unlink_on_drop(true).create(&name).unwrap();
    p.put(b"early").unwrap(); // no consumer yet: that is not a broken pipe
    let c = Queue::builder().role(Role::Consumer).open(&name).unwrap();
    assert_eq!(&*c.get().unwrap(), b"early");
    drop(c);
    assert_eq!(p.put(b"x"), Err(SendError::Closed));
}

#[test]
fn blocked_get_wakes_on_close_from_another_thread() {
    let q = Queue::anonymous(4, 8).unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(|| q.get().map(|m| m.to_vec()));
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert_eq!(h.join().unwrap(), Err(RecvError::Closed));
    });
}

#[test]
fn threads_share_one_handle_and_count_every_message() {
    let q = Queue::anonymous(3, 8).unwrap();
    const P: u64 = 3;
    const N: u64 = 20_000;
    let got = AtomicUsize::new(0);
    let sum = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for p in 0..P {
            let q = &q;
            s.spawn(move || {
                for i in 0..N {
                    q.put_value(&(p * N + i)).unwrap();
                }
            });
        }
        for _ in 0..P {
            s.spawn(|| {
                while got.load(Ordering::Relaxed) < (P * N) as usize {
                    if let Ok(v) = q.get_timeout(Duration::from_millis(10)) {
                        sum.fetch_add(u64::from_ne_bytes((*v).try_into().unwrap()) as usize, Ordering::Relaxed);
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let n = P * N;
    assert_eq!(got.into_inner() as u64, n);
    assert_eq!(sum.into_inner() as u64, n * (n - 1) / 2);
}

#[test]
fn bad_parameters_and_names_are_typed_errors() {
    assert!(matches!(Queue::anonymous(0, 8), Err(Error::InvalidArgument(_))));
    assert!(matches!(Queue::anonymous(8, 0), Err(Error::InvalidArgument(_))));
    for bad in ["jobs", "/a/b", "/", ""] {
        assert!(matches!(Queue::create(bad, 1, 1), Err(Error::InvalidName(_))), "{bad}");
        assert!(matches!(Queue::open(bad), Err(Error::InvalidName(_))), "{bad}");
    }
    assert!(matches!(Queue::open("/shmq-test-does-not-exist"), Err(Error::NotFound(_))));
    let name = unique("exists");
    let _q = Queue::builder().capacity(1).slot_size(1).unlink_on_drop(true).create(&name).unwrap();
    assert!(matches!(
        Queue::builder().capacity(1).slot_size(1).unlink_on_drop(true).create(&name),
        Err(Error::AlreadyExists(_))
    ));
}

#[test]
fn joinable_queue_join_waits_for_every_task_done() {
    let q = Queue::builder().capacity(8).slot_size(8).joinable(true).create_anonymous().unwrap();
    assert_eq!(q.join_timeout(Duration::from_millis(1)), Ok(()), "nothing put: nothing to wait for");
    for i in 0..5u8 {
        q.put(&[i]).unwrap();
    }
    assert_eq!(q.unfinished_tasks(), 5);
    assert_eq!(q.join_timeout(Duration::from_millis(30)), Err(shmq::JoinError::Timeout));
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..5 {
                drop(q.get().unwrap());
                std::thread::sleep(Duration::from_millis(2));
                q.task_done().unwrap();
            }
        });
        q.join().unwrap();
        assert_eq!(q.unfinished_tasks(), 0);
    });
    assert_eq!(q.task_done(), Err(shmq::JoinError::TooManyTaskDone), "Python's ValueError");
}

#[test]
fn task_done_on_a_plain_queue_is_a_typed_error() {
    let q = Queue::anonymous(2, 8).unwrap();
    assert_eq!(q.task_done(), Err(shmq::JoinError::NotJoinable));
    assert_eq!(q.join(), Err(shmq::JoinError::NotJoinable));
}

#[test]
fn persistent_queue_has_no_end_of_stream() {
    let name = unique("persistent");
    let q = Queue::builder()
        .capacity(4)
        .slot_size(8)
        .persistent(true)
        .role(Role::Consumer)
        .unlink_on_drop(true)
        .create(&name)
        .unwrap();
    drop(Queue::builder().role(Role::Producer).open(&name).unwrap().put(b"a"));
    assert_eq!(&*q.get().unwrap(), b"a");
    assert_eq!(q.get_timeout(Duration::from_millis(20)).unwrap_err(), RecvError::Timeout, "no Closed");
    let p = Queue::builder().role(Role::Producer).open(&name).unwrap();
    drop(q);
    p.try_put(b"fine").unwrap();
}

#[test]
fn handles_are_send_and_sync_where_promised() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Queue>();
    send::<shmq::Sender>();
    send::<shmq::Receiver>();
    send::<shmq::Connection>();
}

fn large_msg(id: u32, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(id) as u8).collect();
    if len >= 4 {
        v[..4].copy_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn messages_larger_than_a_slot_claim_consecutive_slots() {
    let q = Queue::anonymous(4, 8).unwrap();
    assert_eq!(q.try_put(&[0; 9]), Err(SendError::TooLarge { len: 9, max: 8 }), "plain put stays one slot");
    q.put(b"small").unwrap();
    let big = large_msg(7, 20); // 3 slots
    q.put_large(&big).unwrap();
    assert_eq!(q.len(), 4);
    assert_eq!(q.try_put_large(&large_msg(8, 9)), Err(SendError::Full));
    assert_eq!(q.put_large_timeout(&large_msg(8, 9), Duration::from_millis(20)), Err(SendError::Timeout));
    assert_eq!(q.try_put_large(&[0; 33]), Err(SendError::TooLarge { len: 33, max: 32 }));
    assert_eq!(&*q.get().unwrap(), b"small", "order kept");
    assert_eq!(&*q.get().unwrap(), &big[..], "delivered whole");
    assert!(q.is_empty());
    let whole = large_msg(9, 32);
    q.try_put_large(&whole).unwrap(); // the whole ring, wrapping around its end
    assert_eq!(&*q.get().unwrap(), &whole[..]);
    q.put_large(b"two slots").unwrap(); // 9 bytes
    assert_eq!(&*q.get().unwrap(), b"two slots");
}

#[test]
fn threads_mix_large_and_small_messages_and_each_arrives_once_and_whole() {
    let q = Queue::anonymous(6, 16).unwrap();
    const P: u32 = 3;
    const N: u32 = 3_000;
    let got = AtomicUsize::new(0);
    let seen: Vec<AtomicUsize> = (0..P * N).map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|s| {
        for p in 0..P {
            let q = &q;
            s.spawn(move || {
                for i in 0..N {
                    let id = p * N + i;
                    let len = 4 + (id as usize * 7) % 60; // 1 to 4 slots
                    q.put_large(&large_msg(id, len)).unwrap();
                }
            });
        }
        for _ in 0..P {
            s.spawn(|| {
                while got.load(Ordering::Relaxed) < (P * N) as usize {
                    if let Ok(m) = q.get_timeout(Duration::from_millis(10)) {
                        let id = u32::from_le_bytes(m[..4].try_into().unwrap());
                        assert_eq!(&*m, &large_msg(id, 4 + (id as usize * 7) % 60)[..], "message {id} intact");
                        seen[id as usize].fetch_add(1, Ordering::Relaxed);
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1), "every message exactly once");
}

#[test]
fn held_messages_take_no_room_a_queue_of_n_takes_n_puts() {
    // Capacity 3: put 3, hold the first, get the other two; the queue is empty and takes 3 more.
    let q = Queue::anonymous(3, 8).unwrap();
    for m in [b"a", b"b", b"c"] {
        q.put(m).unwrap();
    }
    let held = q.get().unwrap();
    let others = [q.get().unwrap(), q.get().unwrap()];
    assert_eq!(q.len(), 0);
    assert!(!q.is_full());
    for m in [b"d", b"e", b"f"] {
        q.try_put(m).expect("a queue of 3 takes 3 puts while messages are held");
    }
    assert!(q.is_full());
    assert_eq!(q.try_put(b"g"), Err(SendError::Full));
    assert_eq!((&*held, &*others[0], &*others[1]), (&b"a"[..], &b"b"[..], &b"c"[..]));
}

#[test]
fn not_full_means_an_uncontended_try_put_succeeds() {
    let q = Queue::anonymous(4, 8).unwrap();
    let mut kept = Vec::new();
    for round in 0..40u64 {
        while !q.is_full() {
            q.try_put(&round.to_le_bytes()).expect("is_full() was false");
        }
        assert_eq!(q.len(), 4);
        // Take some out (keeping a few), so the ring goes round at every offset.
        for _ in 0..=(round % 4) {
            kept.push(q.try_get().unwrap());
        }
        assert_eq!(q.len(), 4 - (round as usize % 4 + 1));
    }
    assert!(kept.len() > 40);
}

#[test]
fn get_into_reuses_the_callers_buffer_and_in_place_reads_hold_the_slot() {
    let q = Queue::anonymous(2, 64).unwrap();
    let mut buf = Vec::with_capacity(64);
    q.put(b"first").unwrap();
    assert_eq!(q.get_into(&mut buf).unwrap(), 5);
    assert_eq!(buf, b"first");
    q.put(&[1u8; 64]).unwrap();
    assert_eq!(q.try_get_into(&mut buf).unwrap(), 64);
    assert_eq!(buf, [1u8; 64]);
    assert_eq!(q.try_get_into(&mut buf).unwrap_err(), RecvError::Empty);
    // In place: the slot stays taken until the guard drops.
    q.put(b"x").unwrap();
    let guard = q.get_in_place().unwrap();
    q.try_put(b"y").unwrap();
    assert_eq!(q.try_put(b"z"), Err(SendError::Full), "the held slot comes round again");
    assert_eq!(&*guard, b"x");
    drop(guard);
    q.try_put(b"z").unwrap();
}

#[test]
fn for_msg_in_the_queue_runs_until_end_of_stream() {
    let name = unique("iter");
    let c = Queue::builder().capacity(8).slot_size(8).role(Role::Consumer).unlink_on_drop(true).create(&name).unwrap();
    let p = Queue::builder().role(Role::Producer).open(&name).unwrap();
    for i in 0..5u8 {
        p.put(&[i]).unwrap();
    }
    assert_eq!(c.try_iter().count(), 5, "try_iter stops when empty");
    for i in 5..8u8 {
        p.put(&[i]).unwrap();
    }
    drop(p);
    let got: Vec<u8> = (&c).into_iter().map(|m| m[0]).collect();
    assert_eq!(got, [5, 6, 7], "iter ends at end of stream");
}

#[test]
fn an_abandoned_reservation_never_counts_as_a_message() {
    // Capacity 1: a dropped reservation must leave an empty queue, not a full one.
    let q = Queue::anonymous(1, 8).unwrap();
    drop(q.reserve().unwrap());
    assert_eq!(q.len(), 0);
    assert!(q.is_empty() && !q.is_full());
    q.try_put(b"next").expect("room after an abandoned claim");
    assert_eq!(&*q.get().unwrap(), b"next");
    // A reservation refused as too large is abandoned the same way.
    let r = q.reserve().unwrap();
    assert!(r.commit(9).is_err());
    assert_eq!(q.len(), 0);
    q.try_put(b"again").unwrap();
}

#[test]
fn errors_say_what_happened_and_name_the_way_out() {
    // `put` after `close()` on a handle with both roles: closed, not "wrong role".
    let q = Queue::anonymous(4, 16).unwrap();
    q.close();
    assert_eq!(q.try_put(b"x"), Err(SendError::Closed));
    assert_eq!(q.put_timeout(b"x", Duration::from_millis(10)), Err(SendError::Closed));

    // `put_large` names the most it carries: every slot of the ring, not one slot.
    let q = Queue::anonymous(4, 16).unwrap();
    let err = q.try_put_large(&[0; 65]).unwrap_err();
    assert_eq!(err, SendError::TooLarge { len: 65, max: 64 });
    assert_eq!(err.to_string(), "message of 65 bytes is larger than the 64 bytes this call can carry");
    assert_eq!(
        q.try_put(&[0; 17]).unwrap_err().to_string(),
        "message of 17 bytes is larger than the 16 bytes this call can carry"
    );

    // A restarted producer on a queue whose consumers have gone is told how to avoid it.
    let name = unique("restarted");
    let p = Queue::builder().capacity(4).slot_size(8).role(Role::Producer).create(&name).unwrap();
    let c = Queue::builder().role(Role::Consumer).open(&name).unwrap();
    drop(c);
    assert_eq!(p.try_put(b"x"), Err(SendError::Closed), "broken pipe");
    drop(p);
    let restarted = Queue::builder().role(Role::Producer).open(&name).unwrap();
    let err = restarted.try_put(b"x").unwrap_err();
    assert_eq!(err, SendError::Closed);
    assert!(err.to_string().contains("broken pipe") && err.to_string().contains("persistent"), "{err}");
    // Joining the side that ended is refused, with the same way out.
    match Queue::builder().role(Role::Consumer).open(&name) {
        Err(Error::Closed(why)) => assert!(why.contains("broken pipe") && why.contains("persistent"), "{why}"),
        other => panic!("a consumer joined an ended side: {other:?}"),
    }
    // A name taken already says what to do.
    let taken = Queue::builder().capacity(4).slot_size(8).create(&name).unwrap_err();
    drop(restarted);
    shmq::unlink(&name).unwrap();
    assert!(taken.to_string().contains("open_or_create"), "{taken}");
}

#[test]
fn put_value_timeout_waits_for_room_then_times_out() {
    let q = Queue::anonymous(1, 8).unwrap();
    q.put_value_timeout(&1u64, Duration::from_millis(10)).unwrap();
    assert_eq!(q.put_value_timeout(&2u64, Duration::from_millis(10)), Err(SendError::Timeout));
    assert_eq!(q.get_value::<u64>(), Ok(1));
}

/// Regression (found by the `open_segment` fuzz target): a joinable queue's task count word
/// tagged by a hostile peer as held by an operation in flight made `try_put` and `task_done`
/// wait for ever. A tag naming the caller's own entry is refused at once, one naming a live
/// participant after a bounded wait; nothing is published or counted.
#[cfg(feature = "fuzzing")]
#[test]
fn regression_a_task_count_held_for_ever_is_reported_not_waited_on() {
    const UNFINISHED: usize = 128; // the header's second line: `join.unfinished`
    let tag = |index: u64| ((index + 1) << 15 | 1) << 40;
    let name = unique("stuck-count");
    let q = Queue::builder().capacity(4).slot_size(8).joinable(true).unlink_on_drop(true).create(&name).unwrap();
    q.put(b"one").unwrap();
    let seg = shmq::fuzzing::queue_segment(&q);
    let word = || u64::from_le_bytes(std::array::from_fn(|i| seg.read(UNFINISHED + i)));
    assert_eq!(word(), 1, "the count word is where the test writes");

    // Our own entry (the creator's is entry 0): no operation of ours is in flight.
    seg.write(UNFINISHED, &(tag(0) | 1).to_le_bytes());
    let t = Instant::now();
    assert!(matches!(q.try_put(b"two"), Err(SendError::Corrupt(_))));
    assert!(matches!(q.task_done(), Err(shmq::JoinError::Corrupt(_))));
    assert!(t.elapsed() < Duration::from_secs(1), "refused at once");

    // Another live participant's entry (a second handle, entry 1), held for ever.
    let other = Queue::builder().role(Role::Consumer).open(&name).unwrap();
    seg.write(UNFINISHED, &(tag(1) | 1).to_le_bytes());
    let t = Instant::now();
    assert!(matches!(q.try_put(b"two"), Err(SendError::Corrupt(_))));
    assert!(t.elapsed() < Duration::from_secs(30), "a bounded wait");

    // Nothing was published or counted: put back a sane word and the queue works on.
    seg.write(UNFINISHED, &1u64.to_le_bytes());
    assert_eq!(&*q.get().unwrap(), b"one");
    assert_eq!(q.try_get().unwrap_err(), RecvError::Empty, "the refused puts left no message");
    q.task_done().unwrap();
    q.join().unwrap();
    drop(other);
}

/// Offsets in a segment for the tests that play a hostile peer: the participant table, its
/// entries' size, and `takes`/`dones` in an entry.
#[cfg(feature = "fuzzing")]
const TABLE: usize = 384;
#[cfg(feature = "fuzzing")]
const ENTRY: usize = 48;

#[cfg(feature = "fuzzing")]
fn write_u64(seg: &shmq::fuzzing::SegmentBytes<'_>, off: usize, v: u64) {
    seg.write(off, &v.to_le_bytes());
}

/// Regression: a release journal left in the receiving handle's own entry (which only another
/// thread of the same handle, mid-release, may have there) made every counted release of a
/// joinable queue spin for ever, `try_get` included. It is waited on briefly, then written over.
#[cfg(feature = "fuzzing")]
#[test]
fn regression_a_release_journal_left_by_a_peer_does_not_wedge_receives() {
    let q = Queue::builder().capacity(4).slot_size(64).joinable(true).create_anonymous().unwrap();
    q.put(b"job").unwrap();
    let seg = shmq::fuzzing::queue_segment(&q);
    let me = 0; // the creator's entry
    write_u64(&seg, TABLE + ENTRY * me + 24, 1 << 39); // takes = { journal: slot 0, count: 0 }
    let t = Instant::now();
    assert_eq!(&*q.try_get().unwrap(), b"job");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    q.task_done().unwrap();
    q.join_timeout(Duration::from_secs(5)).unwrap();
}

/// Regression: the task counters in the caller's own entry at `u64::MAX` (a peer may write
/// them) overflowed in `task_done` and in a counted release (a panic where overflow checks are
/// on, inside the read claim's drop). Counting wraps, as it does without the checks.
#[cfg(feature = "fuzzing")]
#[test]
fn regression_task_counters_at_their_maximum_do_not_panic() {
    let q = Queue::builder().capacity(4).slot_size(64).joinable(true).create_anonymous().unwrap();
    let seg = shmq::fuzzing::queue_segment(&q);
    let me = 0; // the creator's entry
    q.put(b"one").unwrap();
    write_u64(&seg, TABLE + ENTRY * me + 24, u64::MAX); // takes: a journal and a full count
    let t = Instant::now();
    assert_eq!(&*q.try_get().unwrap(), b"one");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    write_u64(&seg, TABLE + ENTRY * me + 32, u64::MAX); // dones
    let _ = q.task_done(); // counted or refused, but answered
    q.put(b"two").unwrap();
    assert_eq!(&*q.try_get().unwrap(), b"two", "the queue works on");
}

/// Regression: recovery waited out the task count's bound once per dead entry (2 s each, up to
/// 255 of them in one `try_get`) when a hostile tag held the count. One bound now serves a whole
/// recovery pass.
#[cfg(feature = "fuzzing")]
#[test]
fn regression_recovery_waits_out_a_held_count_once_per_pass() {
    let q = Queue::builder().capacity(4).slot_size(64).joinable(true).create_anonymous().unwrap();
    let seg = shmq::fuzzing::queue_segment(&q);
    let me = 0;
    // Five entries that look attached (generation 1, ACTIVE) with a task taken and not done, and
    // whose locks nobody holds: dead participants for recovery to settle.
    for i in 1..=5 {
        let b = TABLE + ENTRY * i;
        write_u64(&seg, b, (1 << 32) | 2);
        write_u64(&seg, b + 24, 1);
        write_u64(&seg, b + 32, 0);
    }
    // The count held by an operation of our own entry, which no thread of ours is running.
    write_u64(&seg, 128, ((((me as u64) + 1) << 15 | 1) << 40) | 1);
    let t = Instant::now();
    let _ = q.try_get();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}: one bound per pass, not one per entry", t.elapsed());
}

/// Regression: a dead producer's entry left `REAPING` with a reaper mark naming the consumer's
/// own entry (which no pass of the consumer was running) was never reaped: every recovery took
/// the mark for a live reaper's, and `get` waited for ever instead of reporting end of stream.
#[cfg(feature = "fuzzing")]
#[test]
fn regression_a_stale_reaper_mark_naming_us_does_not_keep_a_dead_entry() {
    let q = Queue::builder().capacity(4).slot_size(64).role(Role::Consumer).create_anonymous().unwrap();
    let seg = shmq::fuzzing::queue_segment(&q);
    let read_u64 = |off: usize| u64::from_le_bytes(std::array::from_fn(|i| seg.read(off + i)));
    let me = 0;
    let my_generation = (read_u64(TABLE + ENTRY * me) >> 32) as u32;
    let (ring_offset, _, _) = shmq::fuzzing::ring_layout(&seg.to_vec()).unwrap();
    let ends = ring_offset + 4 * 128;
    // What a producer that attached and then died leaves (its role bit and the count), with the
    // entry in the middle of a reap marked as ours.
    let d = 1;
    seg.write(TABLE + ENTRY * d + 12, &1u32.to_le_bytes()); // roles: producer of ring 0
    write_u64(&seg, ends, (7 << 32) | 1); // producers: { version 7, count 1 }
    let flags = u32::from_le_bytes(std::array::from_fn(|i| seg.read(ends + 16 + i)));
    seg.write(ends + 16, &(flags | 1).to_le_bytes()); // a producer was attached
    write_u64(&seg, TABLE + ENTRY * d, (1 << 32) | 4); // { generation 1, REAPING }
    let mark = (1u32 << 31) | ((my_generation & 0x7fff) << 16) | me as u32;
    seg.write(TABLE + ENTRY * d + 8, &mark.to_le_bytes());
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap_err(), RecvError::Closed);
}
