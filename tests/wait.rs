//! `shmq::wait`: waiting on several queues and pipes at once.

use shmq::{channel, wait, Queue, Role, Waitable};
use std::time::{Duration, Instant};

#[test]
fn wait_returns_the_ready_ones_at_once_and_empty_on_timeout() {
    let q = Queue::anonymous(4, 16).unwrap();
    let (mut tx, rx) = channel(4, 16).unwrap();
    let t = Instant::now();
    assert!(wait(&[&q, &rx], Some(Duration::from_millis(30))).is_empty());
    assert!(t.elapsed() >= Duration::from_millis(30));
    q.put(b"job").unwrap();
    tx.send(b"ctl").unwrap();
    assert_eq!(wait(&[&q, &rx], None), [0, 1]);
}

#[test]
fn a_sleeping_wait_wakes_for_a_message_on_any_of_many() {
    let pipes: Vec<_> = (0..20).map(|_| channel(2, 8).unwrap()).collect();
    let (mut senders, receivers): (Vec<_>, Vec<_>) = pipes.into_iter().unzip();
    let objects: Vec<&dyn Waitable> = receivers.iter().map(|r| r as &dyn Waitable).collect();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        senders[17].send(b"x").unwrap();
        senders
    });
    let t = Instant::now();
    assert_eq!(wait(&objects, Some(Duration::from_secs(20))), [17]);
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(sender.join().unwrap());
}

#[test]
fn end_of_stream_is_ready_too() {
    let c = Queue::builder().capacity(2).slot_size(8).role(Role::Consumer).create_anonymous().unwrap();
    let name = format!("/shmq-test-{}-wait-eos", std::process::id());
    let q = Queue::builder().capacity(2).slot_size(8).role(Role::Consumer).unlink_on_drop(true).create(&name).unwrap();
    let p = Queue::builder().role(Role::Producer).open(&name).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        drop(p);
    });
    assert_eq!(wait(&[&c, &q], Some(Duration::from_secs(20))), [1]);
    assert_eq!(q.try_get().unwrap_err(), shmq::RecvError::Closed);
    t.join().unwrap();
}

/// Regression (found in review): a one-slot queue whose only message is still held in place has
/// nothing to read, yet `wait` said it was ready on every call (the head's slot holds the earlier
/// lap), so a loop of `wait` and `try_get` spun on the core.
#[test]
fn a_message_held_in_place_does_not_make_its_queue_ready() {
    let q = Queue::anonymous(1, 8).unwrap();
    q.put(b"a").unwrap();
    let held = q.get_in_place().unwrap();
    let t = Instant::now();
    assert!(wait(&[&q], Some(Duration::from_millis(30))).is_empty());
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert_eq!(q.try_get().unwrap_err(), shmq::RecvError::Empty);
    drop(held);
    q.put(b"b").unwrap();
    assert_eq!(wait(&[&q], Some(Duration::from_secs(20))), [0]);
    assert_eq!(&*q.try_get().unwrap(), b"b");
}

/// This thread's CPU time (user + system).
fn thread_cpu() -> Duration {
    // SAFETY: `getrusage` fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let t = |v: libc::timeval| Duration::from_secs(v.tv_sec as u64) + Duration::from_micros(v.tv_usec as u64);
    t(u.ru_utime) + t(u.ru_stime)
}

/// Regression: with nothing to sleep on (no objects, or only ends that cannot receive), `wait`
/// returned from each empty `futex_waitv` at once and spun on the core until its deadline.
#[test]
fn regression_a_wait_with_nothing_to_sleep_on_sleeps() {
    let (tx, _rx) = shmq::PipeBuilder::new().duplex(false).capacity(4).slot_size(16).create_anonymous().unwrap();
    for objects in [&[][..], &[&tx as &dyn Waitable][..]] {
        let (t, cpu) = (Instant::now(), thread_cpu());
        assert!(wait(objects, Some(Duration::from_millis(300))).is_empty());
        let (wall, used) = (t.elapsed(), thread_cpu() - cpu);
        assert!(wall >= Duration::from_millis(300));
        assert!(used < wall / 2, "spun: {used:?} of CPU in {wall:?}");
    }
}

/// Regression: a queue's readiness came from the hints, so a hostile tail hint ahead of the head
/// made `wait` report an empty queue ready for ever (and the documented "wait, then try_get"
/// loop spin). Readiness now comes from the stamp at the head.
#[cfg(feature = "fuzzing")]
#[test]
fn regression_a_hostile_tail_hint_does_not_make_an_empty_queue_ready() {
    let q = Queue::builder().capacity(8).slot_size(16).role(Role::Consumer).create_anonymous().unwrap();
    let seg = shmq::fuzzing::queue_segment(&q);
    let (ring_offset, _, _) = shmq::fuzzing::ring_layout(&seg.to_vec()).unwrap();
    seg.write(ring_offset, &3u64.to_le_bytes()); // tail hint: three positions past an empty head
    let t = Instant::now();
    assert!(wait(&[&q], Some(Duration::from_millis(100))).is_empty(), "nothing to receive");
    assert!(t.elapsed() >= Duration::from_millis(100));
}
