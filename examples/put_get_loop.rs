//! One thread puts and gets 8-byte messages through a queue and a pipe, round after round: the
//! code path of a message without the cross-core transfer, for instruction counts.
//!
//! ```text
//! cargo build --release --example put_get_loop
//! valgrind --tool=callgrind target/release/examples/put_get_loop 100000
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let q = shmq::Queue::anonymous(64, 64)?;
    let (mut tx, mut rx) = shmq::channel(64, 64)?;
    let mut sum = 0u64;
    for i in 0..rounds {
        q.try_put(&i.to_le_bytes())?;
        sum = sum.wrapping_add(q.try_get()?[0] as u64);
        tx.try_send(&i.to_le_bytes())?;
        sum = sum.wrapping_add(rx.try_recv()?[0] as u64);
    }
    println!("{rounds} rounds, checksum {sum}");
    Ok(())
}
