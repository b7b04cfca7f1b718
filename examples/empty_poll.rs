//! Polls an empty queue and an empty pipe, round after round: the cost of a poll that finds
//! nothing, for instruction counts.
//!
//! ```text
//! cargo build --release --example empty_poll
//! valgrind --tool=callgrind target/release/examples/empty_poll 100000
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let q = shmq::Queue::anonymous(64, 64)?;
    let (_tx, mut rx) = shmq::channel(64, 64)?;
    let mut empty = 0u64;
    for _ in 0..rounds {
        empty += u64::from(matches!(q.try_get(), Err(shmq::RecvError::Empty)));
        empty += u64::from(matches!(rx.try_recv(), Err(shmq::RecvError::Empty)));
    }
    println!("{rounds} rounds, {empty} empty polls");
    Ok(())
}
