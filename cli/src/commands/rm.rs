//! `shmq rm`: remove segments.

use super::{normalize, shown};
use clap::Args;
use shmq::inspect::{self, FileKind};

#[derive(Args)]
pub struct RmArgs {
    /// Segment names (`/name` or `name`).
    names: Vec<String>,
    /// Remove every shmq segment that has no live participant (none attached, none being handed
    /// to a child). Where the system supports `O_TMPFILE`, a segment gets its name only once its
    /// creator has attached, so one being created is never seen here.
    #[arg(long)]
    stale: bool,
    /// With --stale: consider only segments whose name starts with this (`/name` or `name`).
    #[arg(long, requires = "stale")]
    prefix: Option<String>,
    /// Remove even if a participant is alive, or if the file is not a shmq segment.
    #[arg(long)]
    force: bool,
}

pub fn rm(args: RmArgs) -> Result<(), String> {
    if args.names.is_empty() && !args.stale {
        return Err("rm: name a segment, or pass --stale".into());
    }
    let mut failed = 0;
    for name in args.names.iter().map(|n| normalize(n)) {
        if let Err(e) = rm_one(&name, args.force) {
            eprintln!("shmq: {e}");
            failed += 1;
        }
    }
    if args.stale {
        let names = inspect::list().map_err(|e| format!("cannot read /dev/shm: {e}"))?;
        let prefix = args.prefix.as_deref().map(normalize).unwrap_or_default();
        for name in names.into_iter().filter(|n| n.starts_with(&prefix)) {
            match inspect::probe(&name) {
                Ok(p) if p.kind == FileKind::Shmq && p.live == 0 => match inspect::unlink(&name) {
                    Ok(()) => println!("removed {}", shown(&name)),
                    Err(e) => {
                        eprintln!("shmq: {}: {e}", shown(&name));
                        failed += 1;
                    }
                },
                _ => {}
            }
        }
    }
    if failed > 0 {
        Err(format!("rm: {failed} segment(s) not removed"))
    } else {
        Ok(())
    }
}

fn rm_one(name: &str, force: bool) -> Result<(), String> {
    let p = match inspect::probe(name) {
        Ok(p) => p,
        // Not a regular file we could open (a symbolic link, a FIFO, a directory, ...).
        Err(e) => return rm_other(name, force, &e.to_string()),
    };
    if !force {
        if p.kind == FileKind::Foreign {
            return Err(format!("{}: not a shmq segment (bad magic number); refusing without --force", shown(name)));
        }
        if p.live > 0 {
            return Err(format!("{}: {} live participant(s) attached; refusing without --force", shown(name), p.live));
        }
    }
    inspect::unlink(name).map_err(|e| format!("{}: {e}", shown(name)))?;
    println!("removed {}", shown(name));
    Ok(())
}

/// A name in /dev/shm that is not a regular file: says what it is, and with `--force` removes it
/// (a symbolic link itself, never its target; a directory only if empty).
fn rm_other(name: &str, force: bool, probe_error: &str) -> Result<(), String> {
    let rest = name.strip_prefix('/').unwrap_or(name);
    if rest.is_empty() || rest.contains('/') || rest == "." || rest == ".." {
        return Err(format!("{}: {probe_error}", shown(name)));
    }
    let path = std::path::Path::new("/dev/shm").join(rest);
    let md = std::fs::symlink_metadata(&path).map_err(|_| format!("{}: {probe_error}", shown(name)))?;
    let ft = md.file_type();
    let what = match () {
        _ if ft.is_symlink() => "a symbolic link",
        _ if ft.is_dir() => "a directory",
        _ if ft.is_file() => "a regular file",
        _ => "a special file (FIFO, socket or device)",
    };
    if !force {
        return Err(format!("{}: {what}, not a shmq segment; refusing without --force", shown(name)));
    }
    let removed = if ft.is_dir() { std::fs::remove_dir(&path) } else { std::fs::remove_file(&path) };
    removed.map_err(|e| format!("{}: {what}: {e}", shown(name)))?;
    println!("removed {}", shown(name));
    Ok(())
}
