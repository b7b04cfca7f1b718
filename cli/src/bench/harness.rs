//! The machinery every row shares: core pinning, the peer child process, the watchdog that keeps
//! a row bounded in time, the round-trip timer, and spin waits that can be aborted.
//!
//! Process model: the bench process is side A (it sends, and times each round trip). For each
//! row it re-executes itself as `shmq __bench-child <row> ...` for side B, handing it descriptors
//! (kept open across `exec`) and pinning it to the other core. A [`Watchdog`] kills the child and
//! unblocks side A if a row overruns; children also die with their parent (`PR_SET_PDEATHSIG`)
//! and give up on their own after `--timeout-ms`.
//!
//! Awaited rows run their rounds in one future on a tokio current-thread [`runtime`], raced
//! against the watchdog by [`abortable`], which the watchdog wakes through a [`TaskWaker`].

use hdrhistogram::Histogram;
// Core pinning, shared with the library's examples.
#[path = "../../../examples/common/pin.rs"]
mod pin;
pub use pin::{allowed_cores, pin_to};
use std::future::{poll_fn, Future};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a child row needs to be told.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Row name (the child dispatches on it).
    pub row: String,
    /// Core to pin the child to.
    pub core: usize,
    /// Round trips (warm-up included) for latency rows.
    pub rounds: u64,
    /// Message size.
    pub size: usize,
    /// How long a throughput producer keeps producing.
    pub duration: Duration,
    /// The child gives up on its own after this long.
    pub timeout: Duration,
    /// Descriptors the child inherits; their numbers are passed with `--fds`.
    pub fds: Vec<RawFd>,
    /// Extra role argument (throughput rows: `producer` / `consumer`).
    pub role: Option<String>,
    /// Which producer this is (seed demo).
    pub id: u64,
}

impl ChildSpec {
    pub fn new(row: &str, core: usize, timeout: Duration) -> Self {
        ChildSpec {
            row: row.into(),
            core,
            rounds: 0,
            size: 8,
            duration: Duration::ZERO,
            timeout,
            fds: Vec::new(),
            role: None,
            id: 0,
        }
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "__bench-child".to_string(),
            self.row.clone(),
            format!("--core={}", self.core),
            format!("--rounds={}", self.rounds),
            format!("--size={}", self.size),
            format!("--duration-ms={}", self.duration.as_millis()),
            format!("--timeout-ms={}", self.timeout.as_millis()),
            format!("--id={}", self.id),
        ];
        if !self.fds.is_empty() {
            let fds: Vec<String> = self.fds.iter().map(|f| f.to_string()).collect();
            a.push(format!("--fds={}", fds.join(",")));
        }
        if let Some(r) = &self.role {
            a.push(format!("--role={r}"));
        }
        a
    }
}

/// A running peer process with its stdin (for "go") and stdout (for "ready"/"done" lines).
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Peer {
    /// Re-executes this binary as the child side of `spec.row`. `share` may add inherited
    /// segments to the command (`Queue::share_with`).
    pub fn spawn(spec: &ChildSpec, share: impl FnOnce(&mut Command)) -> io::Result<Peer> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args(spec.args()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        share(&mut cmd);
        let fds = spec.fds.clone();
        // SAFETY: the closure runs in the child between fork and exec and calls only fcntl and
        // prctl, which are async-signal-safe; it iterates a Vec it owns without allocating.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // Die with the bench process, whatever happens to it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        Ok(Peer::of(cmd.spawn()?))
    }

    /// As [`Peer::spawn`], started as a [`shmq::Worker`] (which ties its life to this thread's
    /// with `PR_SET_PDEATHSIG`, as `spawn` does): `hand` gives it its queues with `Worker::queue`, and
    /// the child opens them with `Queue::from_env`. `spec.fds` must be empty.
    pub fn spawn_worker(spec: &ChildSpec, hand: impl FnOnce(shmq::Worker) -> shmq::Worker) -> io::Result<Peer> {
        assert!(spec.fds.is_empty(), "a worker inherits queues, not descriptors");
        let mut w = shmq::Worker::this_program()?.args(spec.args());
        w.command().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // The Peer kills and reaps it if dropped while it runs, as the WorkerProcess would have.
        Ok(Peer::of(hand(w).spawn()?.into_child()))
    }

    fn of(mut child: Child) -> Peer {
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Peer { child, stdin, out }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads the next line the child prints (EOF: the child is gone).
    pub fn line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match self.out.read_line(&mut s) {
            Ok(0) => Err(format!("child {} exited early", self.pid())),
            Ok(_) => Ok(s.trim_end().to_owned()),
            Err(e) => Err(format!("reading from child {}: {e}", self.pid())),
        }
    }

    /// Waits for the child to print `want` (e.g. "ready").
    pub fn expect(&mut self, want: &str) -> Result<(), String> {
        let got = self.line()?;
        if got == want {
            Ok(())
        } else {
            Err(format!("child {} said {got:?}, expected {want:?}", self.pid()))
        }
    }

    /// Tells the child to start.
    pub fn go(&mut self) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("child stdin closed")?;
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).map_err(|e| format!("signalling child: {e}"))
    }

    /// Waits (at most `grace`) for the child to exit, killing it after that. An unsuccessful
    /// exit is an error carrying what the child wrote to stderr.
    pub fn finish(mut self, grace: Duration) -> Result<(), String> {
        drop(self.stdin.take());
        let start = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if start.elapsed() < grace => std::thread::sleep(Duration::from_millis(1)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("child failed ({s}): {}", err.trim())),
            None => Err(format!("child did not exit within {grace:?}; killed")),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A peer dropped on an error path must not outlive the row.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whom the watchdog kills.
#[derive(Clone, Copy, Debug)]
pub enum Victim {
    /// One process we started.
    Pid(i32),
    /// The process group led by a process we started (python and its helpers).
    Group(i32),
}

/// Bounds a row in time: after `timeout` it sets the abort flag, kills the row's children and
/// runs an optional action that unblocks side A (e.g. writes to the eventfd it reads).
///
/// Disarm it before reaping the children, so that it never signals a reused process id.
pub struct Watchdog {
    abort: Arc<AtomicBool>,
    cancel: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(timeout: Duration, victims: Vec<Victim>, unblock: Option<Box<dyn FnOnce() + Send>>) -> Watchdog {
        let abort = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let flag = abort.clone();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                flag.store(true, Ordering::SeqCst);
                for v in victims {
                    // SAFETY: kill has no memory arguments; the ids are of processes this bench
                    // started and has not reaped yet (the watchdog is disarmed before reaping).
                    unsafe {
                        match v {
                            Victim::Pid(p) => libc::kill(p, libc::SIGKILL),
                            Victim::Group(g) => libc::kill(-g, libc::SIGKILL),
                        };
                    }
                }
                if let Some(f) = unblock {
                    f();
                }
            }
        });
        Watchdog { abort, cancel: Some(tx), thread: Some(thread) }
    }

    /// Set once the row has overrun.
    pub fn flag(&self) -> &AtomicBool {
        &self.abort
    }

    /// Stops the watchdog; returns whether it had fired.
    pub fn disarm(mut self) -> bool {
        self.stop();
        self.abort.load(Ordering::SeqCst)
    }

    fn stop(&mut self) {
        drop(self.cancel.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Context switches, voluntary and involuntary, of this process (`libc::RUSAGE_SELF`: every
/// thread, live or exited) or of its children that have been waited for (`RUSAGE_CHILDREN`:
/// with their own waited-for descendants) so far.
pub fn context_switches(who: libc::c_int) -> u64 {
    // SAFETY: rusage is plain old data; all-zero is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; `who` is RUSAGE_SELF or RUSAGE_CHILDREN.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0;
    }
    (ru.ru_nvcsw + ru.ru_nivcsw) as u64
}

/// A latency histogram in nanoseconds, 1 ns to 60 s, three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs `warmup + rounds` round trips and records the last `rounds` of them.
///
/// One clock read per round: each sample is the time from the end of the previous round trip
/// to the end of this one, so the recording itself is counted once, as in any real loop.
pub fn time_rounds(
    warmup: u64,
    rounds: u64,
    mut round: impl FnMut(u64) -> Result<(), String>,
) -> Result<Histogram<u64>, String> {
    let mut h = new_histogram();
    let mut prev = Instant::now();
    for i in 0..warmup + rounds {
        round(i)?;
        let now = Instant::now();
        if i >= warmup {
            h.saturating_record(now.duration_since(prev).as_nanos() as u64);
        }
        prev = now;
    }
    Ok(h)
}

/// As [`time_rounds`], for rounds that are awaited (on the caller's runtime).
pub async fn time_rounds_async(
    warmup: u64,
    rounds: u64,
    mut round: impl AsyncFnMut(u64) -> Result<(), String>,
) -> Result<Histogram<u64>, String> {
    let mut h = new_histogram();
    let mut prev = Instant::now();
    for i in 0..warmup + rounds {
        round(i).await?;
        let now = Instant::now();
        if i >= warmup {
            h.saturating_record(now.duration_since(prev).as_nanos() as u64);
        }
        prev = now;
    }
    Ok(h)
}

/// The runtime of an awaited row's side: tokio's current-thread scheduler with the IO and time
/// drivers on, as in a server (and in `examples/async_pingpong.rs`), so that a wake-up from
/// another thread reaches the sleeping runtime through the driver.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("tokio runtime: {e}"))
}

/// The waker of the task that awaits a row's rounds, for the watchdog to wake it (see
/// [`abortable`]).
#[derive(Clone, Default)]
pub struct TaskWaker(Arc<Mutex<Option<Waker>>>);

impl TaskWaker {
    /// The watchdog's `unblock` action: wakes the task, which then sees the abort flag.
    pub fn unblock(&self) -> Box<dyn FnOnce() + Send> {
        let slot = self.0.clone();
        Box::new(move || {
            if let Some(w) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
                w.wake();
            }
        })
    }
}

/// Awaits `fut`, or fails with [`ABORTED`] once `abort` is set (the watchdog sets it, then wakes
/// `task`). Costs a load of the flag per wake-up of the task, and a lock only when the task's
/// waker changes (once, under `block_on`).
pub async fn abortable<T>(
    abort: &AtomicBool,
    task: &TaskWaker,
    fut: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let mut fut = std::pin::pin!(fut);
    let mut known: Option<Waker> = None;
    poll_fn(|cx| {
        if let Poll::Ready(r) = fut.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if known.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            known = Some(cx.waker().clone());
            *task.0.lock().unwrap_or_else(PoisonError::into_inner) = known.clone();
        }
        // After the waker is left: a watchdog that took none had set the flag before.
        if abort.load(Ordering::SeqCst) {
            Poll::Ready(Err(ABORTED.into()))
        } else {
            Poll::Pending
        }
    })
    .await
}

pub const ABORTED: &str = "aborted: the row ran past its timeout";

/// Busy-waits until `ready()`; fails once `abort` is set (checked every 1024 tries).
///
/// No `pause` instruction: every spin row (the atomic limit included) polls the same way, so
/// their ratio compares the protocols, not the polling.
#[inline]
pub fn spin_until(abort: &AtomicBool, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let mut n = 0u32;
    loop {
        if ready() {
            return Ok(());
        }
        n = n.wrapping_add(1);
        if n % 1024 == 0 && abort.load(Ordering::Relaxed) {
            return Err(ABORTED.into());
        }
    }
}

/// A child's own time limit.
#[derive(Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(d: Duration) -> Deadline {
        Deadline(Instant::now() + d)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }

    pub fn left(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// As [`spin_until`], for a child: fails once the deadline has passed.
    #[inline]
    pub fn spin_until(&self, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let mut n = 0u32;
        loop {
            if ready() {
                return Ok(());
            }
            n = n.wrapping_add(1);
            if n % 4096 == 0 && self.passed() {
                return Err("child timed out".into());
            }
        }
    }
}

/// Child side of the start handshake: says "ready" and waits for "go" on stdin.
pub fn child_ready_go() -> Result<(), String> {
    println!("ready");
    io::stdout().flush().map_err(|e| e.to_string())?;
    let mut s = String::new();
    io::stdin().read_line(&mut s).map_err(|e| format!("waiting for go: {e}"))?;
    if s.trim() == "go" {
        Ok(())
    } else {
        Err(format!("expected go, got {s:?}"))
    }
}
