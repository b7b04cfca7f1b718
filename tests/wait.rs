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
