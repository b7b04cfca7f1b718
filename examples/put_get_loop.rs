//! One thread puts and gets messages (8 bytes unless a size is given) through a queue and a
//! pipe, round after round: the code path of a message without the cross-core transfer, for
//! instruction counts.
//!
//! ```text
//! cargo build --release --example put_get_loop
//! valgrind --tool=callgrind target/release/examples/put_get_loop 100000 [SIZE]
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let size: usize = std::env::args().nth(2).map(|a| a.parse()).transpose()?.unwrap_or(8).max(8);
    let q = shmq::Queue::anonymous(64, size)?;
    let (mut tx, mut rx) = shmq::channel(64, size)?;
    let mut msg = vec![0u8; size];
    let mut sum = 0u64;
    for i in 0..rounds {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        q.try_put(&msg)?;
        sum = sum.wrapping_add(q.try_get()?[0] as u64);
        tx.try_send(&msg)?;
        sum = sum.wrapping_add(rx.try_recv()?[0] as u64);
    }
    println!("{rounds} rounds, checksum {sum}");
    Ok(())
}
