//! The rows that measure shmq itself: queue and pipe round trips (spinning, blocking and
//! awaited), queue throughput from N producer processes to M consumer processes, and the seed
//! demo.

#[allow(unused_imports)]
use super::harness::{self, spin_until, time_rounds, ChildSpec, Deadline, Peer, Victim, Watchdog};
use super::{ChildArgs, Ctx, Measured, RowError};
use shmq::{Connection, Handover, Message, PipeBuilder, Queue, RecvError, Role, SendError};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Slots per direction for the latency rows.
const PINGPONG_CAPACITY: usize = 64;
/// Slot size for the latency rows (messages are 8 bytes).
const PINGPONG_SLOT: usize = 64;
/// Slots of the seed demo's results queue (the consumers hand every job back on it).
const RESULTS_CAPACITY: usize = 1024;
/// How long one blocking wait lasts before side A looks at the abort flag again.
const SLICE: Duration = Duration::from_millis(100);

/// Spin rows busy-poll with `try_*`; block rows use the blocking calls with `spin(0)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Spin,
    Block,
}

impl Mode {
    /// Spin rows never block (only `try_*` calls), so they keep the default spin setting.
    fn builder(self) -> shmq::QueueBuilder {
        match self {
            Mode::Spin => Queue::builder(),
            Mode::Block => Queue::builder().spin(0),
        }
    }

    /// Spin budget for the pipe's blocking calls (the spin rows only use `try_*`).
    fn pipe_spin(self) -> u32 {
        match self {
            Mode::Spin => 4096,
            Mode::Block => 0,
        }
    }

    fn of_row(row: &str) -> Mode {
        if row.ends_with("-block") {
            Mode::Block
        } else {
            Mode::Spin
        }
    }
}

fn err(what: &str) -> impl Fn(shmq::Error) -> RowError + '_ {
    move |e| RowError::Failed(format!("{what}: {e}"))
}

mod awaited;
mod latency;
mod seed_demo;
mod throughput;

pub use awaited::*;
pub use latency::*;
pub use seed_demo::*;
pub use throughput::*;

/// Runs side B of a shmq row; `None` if the row is not one of these.
pub fn child(a: &ChildArgs, dl: Deadline) -> Option<Result<(), String>> {
    Some(match a.row.as_str() {
        "shmq-queue-spin" | "shmq-queue-block" => queue_latency_child(a, dl),
        "shmq-queue-tput" | "shmq-pipe-tput" => throughput_child(a),
        "shmq-pipe-spin" | "shmq-pipe-block" => pipe_latency_child(a, dl),
        "shmq-queue-async" => queue_latency_async_child(a, dl),
        "shmq-pipe-async" => pipe_latency_async_child(a, dl),
        "seed-demo-shmq" => seed_demo_child(a),
        _ => return None,
    })
}
