//! The seed demo: 10 producer processes and 10 consumer processes share one queue of capacity 3.
//! Consumers hand every message they get back to the parent over a second queue; the parent
//! checks that each message arrived exactly once.
//!
//! ```text
//! cargo run --release --example seed_demo [-- MESSAGES_PER_PRODUCER]
//! ```

use shmq::{Queue, RecvError, Role};
use std::process::{Child, Command};
use std::time::Instant;

const PRODUCERS: u64 = 10;
const CONSUMERS: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("producer") => return producer(args[2].parse()?, args[3].parse()?),
        Some("consumer") => return consumer(),
        _ => {}
    }
    let per_producer: u64 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(10_000);

    // Our producer role keeps the job stream open until every producer child has finished.
    let jobs = Queue::builder().capacity(3).slot_size(8).role(Role::Producer).create_anonymous()?;
    let results = Queue::builder().capacity(1024).slot_size(8).role(Role::Consumer).create_anonymous()?;
    let spawn = |args: &[String]| -> std::io::Result<Child> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(args);
        // Each handover holds what the child inherits until it has been spawned.
        let _jobs = jobs.share_with(&mut cmd, "JOBS", Role::Both);
        let _results = results.share_with(&mut cmd, "RESULTS", Role::Both);
        cmd.spawn()
    };

    let start = Instant::now();
    let consumers = (0..CONSUMERS).map(|_| spawn(&["consumer".into()])).collect::<Result<Vec<_>, _>>()?;
    let producers = (0..PRODUCERS)
        .map(|id| spawn(&["producer".into(), id.to_string(), per_producer.to_string()]))
        .collect::<Result<Vec<_>, _>>()?;

    let mut seen = vec![0u8; (PRODUCERS * per_producer) as usize];
    std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let closer = s.spawn(|| -> std::io::Result<()> {
            for mut p in producers {
                p.wait()?;
            }
            jobs.close(); // Python: p.join() for the producers, then q.close()
            Ok(())
        });
        // Collect until every consumer has gone (end of stream on the results queue).
        loop {
            match results.get_value::<u64>() {
                Ok(v) => {
                    let (id, i) = (v >> 32, v & 0xffff_ffff);
                    if id < PRODUCERS && i < per_producer {
                        let slot = &mut seen[(id * per_producer + i) as usize];
                        *slot = slot.saturating_add(1);
                    }
                }
                Err(RecvError::Closed) => break,
                Err(e) => return Err(e.into()),
            }
        }
        closer.join().expect("closer thread")?;
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    for mut c in consumers {
        c.wait()?;
    }
    let elapsed = start.elapsed();

    let sent = PRODUCERS * per_producer;
    let received: u64 = seen.iter().map(|&c| c as u64).sum();
    let lost = seen.iter().filter(|&&c| c == 0).count();
    let duplicated = seen.iter().filter(|&&c| c > 1).count();
    println!(
        "{PRODUCERS} producers, {CONSUMERS} consumers, capacity 3: {:.0} messages/s",
        sent as f64 / elapsed.as_secs_f64()
    );
    println!("ok: {sent} sent, {received} received, {lost} lost, {duplicated} duplicated");
    if lost != 0 || duplicated != 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn producer(id: u64, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let jobs = Queue::builder().role(Role::Producer).from_env("JOBS")?;
    for i in 0..n {
        jobs.put_value(&((id << 32) | i))?;
    }
    Ok(())
}

fn consumer() -> Result<(), Box<dyn std::error::Error>> {
    let jobs = Queue::builder().role(Role::Consumer).from_env("JOBS")?;
    let results = Queue::builder().role(Role::Producer).from_env("RESULTS")?;
    loop {
        match jobs.get_value::<u64>() {
            Ok(v) => results.put_value(&v)?,
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
