//! `shmq get`: one message out of a queue, printed as text, raw bytes, or hex.

use super::{normalize, shown, timeout_of};
use clap::Args;
use shmq::{Queue, RecvError, Role};
use std::io::Write;

#[derive(Args)]
pub struct GetArgs {
    /// Segment name.
    name: String,
    /// Write the message's bytes to standard output unchanged (no newline).
    #[arg(long, conflicts_with = "hex")]
    raw: bool,
    /// Print the message as hex digits.
    #[arg(long)]
    hex: bool,
    /// Give up after this many seconds if the queue stays empty (0: do not wait).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
}

pub fn get(args: GetArgs) -> Result<(), String> {
    let name = normalize(&args.name);
    let timeout = timeout_of(args.timeout)?;
    let q = Queue::builder().role(Role::Consumer).open(&name).map_err(|e| format!("{}: {e}", shown(&name)))?;
    let r = match timeout {
        None => q.get(),
        Some(d) if d.is_zero() => q.try_get(),
        Some(d) => q.get_timeout(d),
    };
    let m = match r {
        Ok(m) => m,
        Err(RecvError::Closed) => {
            return Err(format!("{}: end of stream: every producer has gone and the queue is empty", shown(&name)))
        }
        Err(e) => return Err(format!("{}: {e}", shown(&name))),
    };
    let mut out = std::io::stdout().lock();
    let written = if args.raw {
        out.write_all(&m)
    } else if args.hex {
        let hex: String = m.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{hex}")
    } else {
        // Text only when it is text: binary bytes would be mangled or drive the terminal.
        match std::str::from_utf8(&m) {
            Ok(text) if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => writeln!(out, "{text}"),
            _ => {
                return Err(format!(
                    "{}: the message ({} bytes, taken from the queue) is not plain text; it was printed as hex on \
                     standard error; use --raw or --hex",
                    shown(&name),
                    m.len()
                ))
                .inspect_err(|_| eprintln!("{}", m.iter().map(|b| format!("{b:02x}")).collect::<String>()))
            }
        }
    };
    written.map_err(|e| format!("writing standard output: {e}"))
}
