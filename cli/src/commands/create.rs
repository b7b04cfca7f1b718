//! `shmq create`: a named queue that outlives the command.

use super::{normalize, shown};
use clap::Args;
use shmq::{Queue, Role};

#[derive(Args)]
pub struct CreateArgs {
    /// Segment name (`/name` or `name`).
    name: String,
    /// Messages the queue holds.
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Largest message in bytes.
    #[arg(long, default_value_t = 256)]
    slot_size: usize,
    /// Permission bits, in octal.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    mode: u32,
    /// Give the queue end of stream (`get` reports "closed" once every producer that attached has
    /// gone). By default a queue made here is persistent, like a broker's: clients come and go.
    #[arg(long)]
    end_of_stream: bool,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("invalid mode {s:?}: expected octal permission bits like 600"))
}

pub fn create(args: CreateArgs) -> Result<(), String> {
    let name = normalize(&args.name);
    // Persistent unless asked otherwise: `shmq put` / `shmq get` clients come and go, and with end
    // of stream the first consumer to leave would make every later `put` fail as "closed".
    let q = Queue::builder()
        .capacity(args.capacity)
        .slot_size(args.slot_size)
        .mode(args.mode)
        .persistent(!args.end_of_stream)
        .role(Role::Producer)
        .unlink_on_drop(false)
        .create(&name)
        .map_err(|e| format!("{}: {e}", shown(&name)))?;
    println!("created {}: queue, capacity {}, slot size {} bytes", shown(&name), q.capacity(), q.slot_size());
    Ok(())
}
