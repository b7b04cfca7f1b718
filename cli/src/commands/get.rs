//! `shmq get`: one message out of a queue.

use super::{normalize, shown, timeout_of};
use shmq::{Queue, RecvError, Role};
use std::io::Write;

pub fn get(name: &str, timeout: Option<f64>) -> Result<(), String> {
    let name = normalize(name);
    let timeout = timeout_of(timeout)?;
    let q = Queue::builder().role(Role::Consumer).open(&name).map_err(|e| format!("{}: {e}", shown(&name)))?;
    let r = match timeout {
        None => q.get(),
        Some(d) if d.is_zero() => q.try_get(),
        Some(d) => q.get_timeout(d),
    };
    match r {
        Ok(m) => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", String::from_utf8_lossy(&m)).map_err(|e| e.to_string())
        }
        Err(RecvError::Closed) => {
            Err(format!("{}: queue is empty and closed (every producer that attached has gone)", shown(&name)))
        }
        Err(e) => Err(format!("{}: {e}", shown(&name))),
    }
}
