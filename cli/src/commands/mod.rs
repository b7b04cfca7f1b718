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

/// A segment name as printed: control characters and backslashes escaped (`\n`, `\u{1b}`), so a
/// hostile file name can neither drive the terminal nor forge a line of output.
pub fn shown(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let escape = c.is_control() || c == '\\';
            let one = (!escape).then_some(c).into_iter();
            one.chain(escape.then(|| c.escape_default()).into_iter().flatten())
        })
        .collect()
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
