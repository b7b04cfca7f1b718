//! Waiting on several queues and pipes at once ([`wait`]: Python's
//! `multiprocessing.connection.wait`).

use crate::pipe::{Connection, Receiver};
use crate::queue::Queue;
use crate::ring::doorbell;
use crate::segment::layout::DoorbellWords;
use crate::sys::clock;
use std::time::Duration;

/// Something [`wait`] can wait on: a [`Queue`], a pipe [`Receiver`], or a [`Connection`] that
/// receives. Sealed: implemented by this crate only.
pub trait Waitable: sealed::Sealed {}

mod sealed {
    use super::DoorbellWords;

    pub trait Sealed {
        /// Whether a receive would not wait now: a message, end of stream, or an error to report.
        fn ready(&self) -> bool;
        /// The doorbell a receiver sleeps on (`None`: never ready, as a send-only end).
        fn bell(&self) -> Option<&DoorbellWords>;
        /// Repairs what dead peers left, so that their death becomes visible.
        fn recover(&self);
    }
}

impl Waitable for Queue {}
impl Waitable for Receiver {}
impl Waitable for Connection {}

impl sealed::Sealed for Queue {
    fn ready(&self) -> bool {
        self.receive_ready()
    }
    fn bell(&self) -> Option<&DoorbellWords> {
        Some(self.not_empty_bell())
    }
    fn recover(&self) {
        Queue::recover(self);
    }
}

impl sealed::Sealed for Receiver {
    fn ready(&self) -> bool {
        self.receive_ready()
    }
    fn bell(&self) -> Option<&DoorbellWords> {
        Some(self.not_empty_bell())
    }
    fn recover(&self) {
        Receiver::recover(self);
    }
}

impl sealed::Sealed for Connection {
    fn ready(&self) -> bool {
        self.receiving().is_some_and(Receiver::receive_ready)
    }
    fn bell(&self) -> Option<&DoorbellWords> {
        self.receiving().map(Receiver::not_empty_bell)
    }
    fn recover(&self) {
        if let Some(rx) = self.receiving() {
            rx.recover();
        }
    }
}

/// Waits until at least one of `objects` has something to receive (a message, end of stream or
/// end of file, or an error to report) or `timeout` passes (`None`: no limit), and returns the
/// indices of those that are ready, in order: empty on timeout (Python's
/// `multiprocessing.connection.wait`).
///
/// Readiness is a hint: another consumer of the same queue can take the message first, so
/// receive with the `try_*` calls and wait again on `Empty`. One `futex_waitv` sleeps on every
/// doorbell at once (up to 128 objects; Linux 5.16 and later, else 1 ms polling); a peer that
/// dies is detected as in blocking calls.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let jobs = shmq::Queue::anonymous(4, 64)?;
/// let (mut tx, rx) = shmq::channel(4, 64)?;
/// tx.send(b"control")?;
/// let ready = shmq::wait(&[&jobs, &rx], Some(Duration::from_secs(1)));
/// assert_eq!(ready, [1]);
/// # Ok(()) }
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Vec<usize> {
    let ready = || {
        let r: Vec<usize> = objects.iter().enumerate().filter(|(_, o)| o.ready()).map(|(i, _)| i).collect();
        (!r.is_empty()).then_some(r)
    };
    let bells: Vec<&DoorbellWords> = objects.iter().filter_map(|o| o.bell()).collect();
    let deadline = timeout.map(clock::deadline_after);
    let recover = || {
        for o in objects {
            o.recover();
        }
    };
    doorbell::block_on_any(&bells, deadline, ready, recover).unwrap_or_default()
}
