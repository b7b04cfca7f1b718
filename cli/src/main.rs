//! `shmq`: inspect, poke and benchmark shared-memory queues from the shell.
//!
//! Exit codes: 0 success, 1 the operation failed (not found, corrupt, refused, timed out),
//! 2 bad usage (from clap).

mod bench;
mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "shmq", version, about = "Shared-memory queues: inspect, poke and benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure round-trip latency and throughput against baselines, in one run.
    Bench(bench::BenchArgs),
    /// List shmq segments in /dev/shm.
    Ls,
    /// Show a segment's header, live counters and participants, and whether it validates.
    Stat {
        /// Segment name (`/name` or `name`).
        name: String,
        /// Also show each slot's header (state, owner, position, length).
        #[arg(long)]
        slots: bool,
        /// With --slots: at most this many slots per ring.
        #[arg(long, value_name = "N", default_value_t = 256, requires = "slots")]
        max_slots: u64,
    },
    /// Remove segments (refuses one with a live participant unless --force).
    Rm(commands::rm::RmArgs),
    /// Create a named queue that outlives this command.
    Create(commands::create::CreateArgs),
    /// Put one message into a queue: text, a file's bytes, or hex.
    Put(commands::put::PutArgs),
    /// Take one message from a queue and print it: as text, raw bytes, or hex.
    Get(commands::get::GetArgs),
    /// The peer side of one benchmark row (run by `shmq bench`).
    #[command(name = "__bench-child", hide = true)]
    BenchChild(bench::ChildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::BenchChild(args) => bench::child(args),
        Command::Ls => commands::ls::ls(),
        Command::Stat { name, slots, max_slots } => commands::stat::stat(&name, slots.then_some(max_slots)),
        Command::Rm(args) => commands::rm::rm(args),
        Command::Create(args) => commands::create::create(args),
        Command::Put(args) => commands::put::put(args),
        Command::Get(args) => commands::get::get(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("shmq: {msg}");
            ExitCode::FAILURE
        }
    }
}
