//! `shmq put`: one message into a queue, from text, a file (or standard input), or hex.

use super::{normalize, shown, timeout_of};
use clap::Args;
use shmq::{Queue, Role};
use std::io::Read;

#[derive(Args)]
pub struct PutArgs {
    /// Segment name.
    name: String,
    /// The message, as text (its UTF-8 bytes).
    #[arg(conflicts_with_all = ["file", "hex"], required_unless_present_any = ["file", "hex"])]
    msg: Option<String>,
    /// Take the message's bytes from this file (`-`: standard input), unchanged.
    #[arg(long, value_name = "PATH", conflicts_with = "hex")]
    file: Option<String>,
    /// Take the message's bytes from hex digits (`00ff7f`; spaces allowed).
    #[arg(long, value_name = "HEX")]
    hex: Option<String>,
    /// Give up after this many seconds if the queue stays full (0: do not wait).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
}

/// Bytes from hex digits, ignoring whitespace.
fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err("--hex: an odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|p| {
            let pair = std::str::from_utf8(p).map_err(|_| "--hex: not hex digits".to_string())?;
            u8::from_str_radix(pair, 16).map_err(|_| format!("--hex: {pair:?} is not a hex byte"))
        })
        .collect()
}

fn message(args: &PutArgs) -> Result<Vec<u8>, String> {
    match (&args.msg, &args.file, &args.hex) {
        (Some(m), _, _) => Ok(m.as_bytes().to_vec()),
        (_, Some(path), _) if path == "-" => {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v).map_err(|e| format!("reading standard input: {e}"))?;
            Ok(v)
        }
        (_, Some(path), _) => std::fs::read(path).map_err(|e| format!("reading {path}: {e}")),
        (_, _, Some(hex)) => from_hex(hex),
        _ => Err("put: give the message as text, --file or --hex".into()),
    }
}

pub fn put(args: PutArgs) -> Result<(), String> {
    let name = normalize(&args.name);
    let timeout = timeout_of(args.timeout)?;
    let msg = message(&args)?;
    let q = Queue::builder().role(Role::Producer).open(&name).map_err(|e| format!("{}: {e}", shown(&name)))?;
    let r = match timeout {
        None => q.put_large(&msg),
        Some(d) if d.is_zero() => q.try_put_large(&msg),
        Some(d) => q.put_large_timeout(&msg, d),
    };
    r.map_err(|e| format!("{}: {e}", shown(&name)))
}
