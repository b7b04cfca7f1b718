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

    let (mut a, mut b) = shmq::pipe(true).unwrap();
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
