//! Crash points: the places in the shared-memory protocols where a kill is worth testing.
//!
//! Every write to shared state that recovery must be able to complete or undo is preceded by
//! [`point`]`("name")`. What it does depends on the build:
//!
//! - a normal build: nothing (`Ok(())`, inlined away; [`Died`] has no value, so the callers'
//!   error paths vanish too);
//! - feature `fuzzing`: the kill-at-every-step tests' hook. `SHMQ_DIE_AT=name:n` makes the process
//!   SIGKILL itself just before the `n`th time it reaches point `name` (from 1), so that a test can
//!   kill a child between any two of its shared writes, as frc971's queue tests do;
//!   `SHMQ_DIE_AT=trace` prints `shmq-step name` on standard output at every point, which is how
//!   such a test learns the points an operation passes;
//! - loom models: `die_after` makes the calling thread "die" at its `n`th point from then on:
//!   [`point`] returns `Err(Died)`, which the protocols pass up with `?`, leaving shared memory as a
//!   killed process would.

/// A point reached where the process was to die (loom models only; elsewhere it has no value).
#[cfg(loom)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Died;

/// A point reached where the process was to die (loom models only; elsewhere it has no value).
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Died {}

/// The value of a protocol step outside loom, where no point returns `Died`.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn alive<T>(r: Result<T, Died>) -> T {
    match r {
        Ok(v) => v,
        Err(d) => match d {},
    }
}

/// Crash point `name` (see the module docs).
#[cfg(all(not(loom), not(feature = "fuzzing")))]
#[inline(always)]
pub(crate) fn point(_name: &'static str) -> Result<(), Died> {
    Ok(())
}

/// Crash point `name` (see the module docs).
#[cfg(all(not(loom), feature = "fuzzing"))]
#[inline]
pub(crate) fn point(name: &'static str) -> Result<(), Died> {
    hook::point(name);
    Ok(())
}

#[cfg(all(not(loom), feature = "fuzzing"))]
mod hook {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// What `SHMQ_DIE_AT` asks for.
    enum Plan {
        Nothing,
        Trace,
        DieAt { name: String, n: u64 },
    }

    static PLAN: OnceLock<Plan> = OnceLock::new();
    /// Times the planned point was reached.
    static HITS: AtomicU64 = AtomicU64::new(0);

    fn plan() -> &'static Plan {
        PLAN.get_or_init(|| match std::env::var("SHMQ_DIE_AT") {
            Ok(v) if v == "trace" => Plan::Trace,
            Ok(v) => match v.rsplit_once(':').map(|(name, n)| (name, n.parse::<u64>())) {
                Some((name, Ok(n))) if n > 0 => Plan::DieAt { name: name.into(), n },
                _ => Plan::Nothing,
            },
            Err(_) => Plan::Nothing,
        })
    }

    pub(super) fn point(name: &'static str) {
        match plan() {
            Plan::Nothing => {}
            Plan::Trace => {
                use std::io::Write;
                let _ = writeln!(std::io::stdout().lock(), "shmq-step {name}");
            }
            Plan::DieAt { name: want, n } => {
                if want == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
                    // SAFETY: kill(2) on our own pid with SIGKILL; integers only. It does not
                    // return: the kernel tears the process down at once.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                    unreachable!("SIGKILL was not delivered");
                }
            }
        }
    }
}

#[cfg(loom)]
loom::thread_local! {
    /// Points this (loom) thread may still pass before it dies (`None`: it never dies).
    static LEFT: std::cell::Cell<Option<usize>> = std::cell::Cell::new(None);
}

/// Crash point `name` (see the module docs).
#[cfg(loom)]
pub(crate) fn point(_name: &'static str) -> Result<(), Died> {
    LEFT.with(|left| match left.get() {
        Some(0) => Err(Died),
        Some(n) => {
            left.set(Some(n - 1));
            Ok(())
        }
        None => Ok(()),
    })
}

/// Makes the calling thread die at its `n`th crash point from now (0: the next one); `None`:
/// never.
#[cfg(loom)]
pub(crate) fn die_after(n: Option<usize>) {
    LEFT.with(|left| left.set(n));
}
