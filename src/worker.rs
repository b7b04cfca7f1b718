//! Starting worker processes that inherit queues and pipes (Python's `Process(target, args=(q,))`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let jobs = shmq::Queue::anonymous(1024, 256)?;
//! let mut workers = Vec::new();
//! for _ in 0..10 {
//!     workers.push(shmq::Worker::this_program()?.arg("worker").queue("JOBS", &jobs).spawn()?);
//! }
//! // in the worker: let jobs = shmq::Queue::from_env("JOBS")?;
//! # Ok(()) }
//! ```

use crate::pipe::{Connection, Handover};
use crate::queue::Queue;
use std::ffi::OsStr;
use std::io;
use std::process::{Child, Command};

/// A child process to be started with queues and pipes handed to it.
///
/// Each shared object travels as an inherited descriptor named by a key; the child opens it with
/// [`Queue::from_env`] / [`Connection::from_env`] (or [`QueueBuilder::open_inherited`](crate::QueueBuilder::open_inherited)).
pub struct Worker {
    cmd: Command,
    handovers: Vec<Handover>,
}

impl Worker {
    /// A worker running `program`.
    pub fn new(program: impl AsRef<OsStr>) -> Worker {
        Worker { cmd: Command::new(program), handovers: Vec::new() }
    }

    /// A worker running this same executable again (the usual way to start workers from Rust).
    pub fn this_program() -> io::Result<Worker> {
        Ok(Worker::new(std::env::current_exe()?))
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Worker {
        self.cmd.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Worker {
        self.cmd.args(args);
        self
    }

    /// The underlying command, for anything else (environment, standard streams, ...).
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Hands the worker a queue under `key` (the queue stays usable here too).
    pub fn queue(mut self, key: &str, queue: &Queue) -> Worker {
        queue.share_with(&mut self.cmd, key);
        self
    }

    /// Hands the worker a pipe end under `key` (the end moves to the worker). Should the worker
    /// die, even before it takes the end, the peer sees end of file or a broken pipe as for any
    /// dead peer (see [`Connection::share_with`]), as it does if the worker cannot be spawned.
    pub fn pipe(mut self, key: &str, end: Connection) -> Worker {
        let h = end.share_with(&mut self.cmd, key);
        self.handovers.push(h);
        self
    }

    /// Starts the worker.
    pub fn spawn(mut self) -> io::Result<Child> {
        let child = self.cmd.spawn();
        drop(std::mem::take(&mut self.handovers)); // the child has its own descriptors now
        child
    }
}
