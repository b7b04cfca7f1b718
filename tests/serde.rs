//! serde messages (feature `serde`).
#![cfg(feature = "serde")]

use serde::{Deserialize, Serialize};
use shmq::{Queue, RecvError, SendError};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u32,
    name: String,
    args: Vec<i64>,
    urgent: Option<bool>,
}

#[test]
fn any_serde_value_round_trips_through_a_queue_and_a_pipe() {
    let q = Queue::anonymous(4, 128).unwrap();
    let job = Job { id: 7, name: "resize".into(), args: vec![-1, 2, 300], urgent: Some(true) };
    q.put_serde(&job).unwrap();
    assert_eq!(q.get_serde::<Job>().unwrap(), job);

    let (mut a, mut b) = shmq::pipe().unwrap();
    a.send_serde(&("tuple", 3u8)).unwrap();
    assert_eq!(b.recv_serde::<(String, u8)>().unwrap(), ("tuple".to_string(), 3));
}

#[test]
fn too_large_and_undecodable_are_typed_errors() {
    let q = Queue::anonymous(4, 16).unwrap();
    let big = Job { id: 1, name: "x".repeat(100), args: vec![], urgent: None };
    assert!(matches!(q.put_serde(&big), Err(SendError::TooLarge { max: 16, .. })));
    assert_eq!(q.try_get().unwrap_err(), RecvError::Empty, "nothing half-sent");
    q.put(&[0xff, 0xff, 0xff]).unwrap();
    assert!(matches!(q.get_serde::<Job>(), Err(RecvError::Decode(_))));
}

#[test]
fn a_value_with_bytes_left_over_is_refused_not_truncated() {
    let q = Queue::anonymous(4, 64).unwrap();
    // A (u8, u8) encodes as two bytes; read as a u8 one byte would be left over.
    q.put_serde(&(7u8, 9u8)).unwrap();
    assert!(matches!(q.get_serde::<u8>(), Err(RecvError::Decode(why)) if why.contains("left over")));
}

#[test]
fn put_serde_says_too_large_at_once_even_on_a_full_queue() {
    let q = Queue::anonymous(1, 16).unwrap();
    q.put(b"fills it").unwrap();
    let big = Job { id: 1, name: "x".repeat(100), args: vec![], urgent: None };
    let t = std::time::Instant::now();
    assert!(matches!(q.put_serde(&big), Err(SendError::TooLarge { max: 16, .. })));
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "it waited for room first");
    assert_eq!(q.len(), 1, "no slot was taken or abandoned");
}

#[test]
fn send_serde_splits_a_value_larger_than_a_slot_as_send_does() {
    let (mut tx, mut rx) = shmq::channel(16, 16).unwrap();
    let big = Job { id: 2, name: "y".repeat(100), args: vec![1, 2, 3], urgent: Some(false) };
    tx.send_serde(&big).unwrap();
    assert_eq!(rx.recv_serde::<Job>().unwrap(), big);
}
