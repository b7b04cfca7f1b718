//! `shmq put`: one message into a queue.

use super::{normalize, shown, timeout_of};
use shmq::{Queue, Role};

pub fn put(name: &str, msg: &str, timeout: Option<f64>) -> Result<(), String> {
    let name = normalize(name);
    let timeout = timeout_of(timeout)?;
    let q = Queue::builder().role(Role::Producer).open(&name).map_err(|e| format!("{}: {e}", shown(&name)))?;
    let r = match timeout {
        None => q.put(msg.as_bytes()),
        Some(d) if d.is_zero() => q.try_put(msg.as_bytes()),
        Some(d) => q.put_timeout(msg.as_bytes(), d),
    };
    r.map_err(|e| format!("{}: {e}", shown(&name)))
}
