//! The segment-level commands, one file each: `ls`, `stat`, `rm`, `create`, `put`, `get`.

pub mod create;
pub mod get;
pub mod ls;
pub mod put;
pub mod rm;
pub mod stat;

use std::io::Write;
use std::time::Duration;

/// Accepts `name` or `/name`.
pub fn normalize(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

pub fn timeout_of(secs: Option<f64>) -> Result<Option<Duration>, String> {
    match secs {
        None => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| format!("invalid timeout {s}: expected a number of seconds >= 0")),
    }
}

/// Prints rows as columns aligned to their widest cell.
pub fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in rows {
        let mut line = String::new();
        for (k, (w, c)) in width.iter().zip(r).enumerate() {
            if k + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
