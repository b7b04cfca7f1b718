//! Starting worker processes that inherit queues and pipes (Python's `Process(target, args=(q,))`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmq::{Queue, Role, Worker};
//! let jobs = Queue::builder().capacity(64).slot_size(256).joinable(true).create_anonymous()?;
//! let mut workers = Vec::new();
//! for _ in 0..4 {
//!     // The child runs this program with the argument "worker" and opens the queue with
//!     // `Queue::from_env("JOBS")`, as a consumer: the role is the parent's choice.
//!     workers.push(Worker::this_program()?.arg("worker").queue("JOBS", &jobs, Role::Consumer).spawn()?);
//! }
//! for n in 0..100u32 {
//!     jobs.put_value(&n)?;
//! }
//! jobs.join()?; // every job marked done
//! drop(jobs); // the only producer leaves: the workers see end of stream and exit
//! for w in workers {
//!     w.join()?;
//! }
//! # Ok(()) }
//! ```
//!
//! Workers die with their parent by default: each gets SIGKILL when the thread that spawned it
//! exits, and a [`WorkerProcess`] dropped while its worker runs kills and reaps it. A worker
//! that must outlive its parent (Python's `daemon=False` with the parent's exit waiting is the
//! opposite default) is started with [`Worker::outlive_parent`].

use crate::pipe::{Connection, Handover};
use crate::queue::{Queue, Role};
use crate::sys::process;
use std::ffi::OsStr;
use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child process to be started with queues and pipes handed to it.
///
/// Each shared object travels as an inherited descriptor named by a key; the child opens it with
/// [`Queue::from_env`] / [`Connection::from_env`] (or the builders' `from_env`).
pub struct Worker {
    cmd: Command,
    handovers: Vec<Handover>,
    outlive_parent: bool,
}

impl Worker {
    /// A worker running `program`.
    pub fn new(program: impl AsRef<OsStr>) -> Worker {
        Worker { cmd: Command::new(program), handovers: Vec::new(), outlive_parent: false }
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

    /// Hands the worker a queue under `key` (the queue stays usable here too) with the role its
    /// `Queue::from_env(key)` takes, counted from this call (see [`Queue::share_with`]): a
    /// `close` right after the spawn does not end the stream under a worker that has not opened
    /// the queue yet. End of stream counts producers, so a worker that only gets is a
    /// [`Role::Consumer`]. Should the worker die, even before it opens the queue, or never start,
    /// its role is uncounted as for any dead peer.
    pub fn queue(mut self, key: &str, queue: &Queue, role: Role) -> Worker {
        let h = queue.share_with(&mut self.cmd, key, role);
        self.handovers.push(h);
        self
    }

    /// Hands the worker a pipe end under `key` (the end moves to the worker). Should the worker
    /// die, even before it takes the end, the peer sees end of file or a broken pipe as for any
    /// dead peer (see [`Connection::hand_over`]), as it does if the worker cannot be spawned.
    pub fn pipe(mut self, key: &str, end: Connection) -> Worker {
        let h = end.hand_over(&mut self.cmd, key);
        self.handovers.push(h);
        self
    }

    /// Hands the worker the sending half of a pipe under `key` (it takes it with
    /// [`Sender::from_env`](crate::Sender::from_env)). `InvalidArgument` while the other half of a
    /// split duplex end is still in use.
    pub fn sender(mut self, key: &str, tx: crate::Sender) -> Result<Worker, crate::Error> {
        let h = tx.hand_over(&mut self.cmd, key)?;
        self.handovers.push(h);
        Ok(self)
    }

    /// Hands the worker the receiving half of a pipe under `key` (it takes it with
    /// [`Receiver::from_env`](crate::Receiver::from_env)).
    pub fn receiver(mut self, key: &str, rx: crate::Receiver) -> Result<Worker, crate::Error> {
        let h = rx.hand_over(&mut self.cmd, key)?;
        self.handovers.push(h);
        Ok(self)
    }

    /// Whether the worker keeps running when its parent exits or drops its [`WorkerProcess`].
    /// Default `false`: the worker gets SIGKILL when the thread that spawned it exits, and is
    /// killed when its `WorkerProcess` is dropped while it runs.
    pub fn outlive_parent(mut self, yes: bool) -> Worker {
        self.outlive_parent = yes;
        self
    }

    /// Starts the worker.
    pub fn spawn(mut self) -> io::Result<WorkerProcess> {
        if !self.outlive_parent {
            process::die_with_parent(&mut self.cmd);
        }
        let child = self.cmd.spawn();
        drop(std::mem::take(&mut self.handovers)); // the child has its own descriptors now
        Ok(WorkerProcess { child: Some(child?), kill_on_drop: !self.outlive_parent, status: None })
    }
}

/// A started worker (Python's `Process` after `start()`): wait for it, ask whether it runs,
/// stop it. Dropped while the worker runs, it kills and reaps it (unless started with
/// [`Worker::outlive_parent`]).
pub struct WorkerProcess {
    /// Always `Some` until `into_child` takes it.
    child: Option<Child>,
    kill_on_drop: bool,
    status: Option<ExitStatus>,
}

impl WorkerProcess {
    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    fn child(&self) -> &Child {
        self.child.as_ref().expect("present until into_child")
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("present until into_child")
    }

    /// Waits for the worker to exit (Python's `join()`).
    pub fn join(mut self) -> io::Result<ExitStatus> {
        self.wait()
    }

    fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.child_mut().wait()?;
        self.status = Some(s);
        Ok(s)
    }

    /// Waits at most `timeout` for the worker to exit (Python's `join(timeout)`); `None` if it
    /// still runs.
    pub fn join_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        // `None`: a timeout too long to add to the clock, which waits as long as the worker runs.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The worker's exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child_mut().try_wait()?;
        }
        Ok(self.status)
    }

    /// Whether the worker still runs (Python's `is_alive()`).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Asks the worker to stop with SIGTERM (Python's `terminate()`); [`WorkerProcess::join`]
    /// then waits for it. A worker that has exited is left alone.
    pub fn terminate(&mut self) -> io::Result<()> {
        self.stop(libc::SIGTERM)
    }

    /// Stops the worker with SIGKILL (Python's `kill()`). Queues and pipes it was attached to
    /// recover what it held, as for any killed process.
    pub fn kill(&mut self) -> io::Result<()> {
        self.stop(libc::SIGKILL)
    }

    fn stop(&mut self, sig: libc::c_int) -> io::Result<()> {
        // Not yet reaped (checked), so the pid still names our child.
        if self.try_wait()?.is_none() {
            process::signal(self.child().id(), sig)?;
        }
        Ok(())
    }

    /// The worker's process handle, for anything else; it is no longer killed on drop.
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("present until into_child")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.child.is_some() && self.kill_on_drop && self.status.is_none() && self.kill().is_ok() {
            let _ = self.wait();
        }
    }
}
