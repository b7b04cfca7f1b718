//! `ls`, `stat`, `rm`, `create`, `put`, `get`: the segment-level commands.

use clap::Args;
use shmq::inspect::{self, FileKind, Inspection};
use shmq::layout::{Kind, ENDS_CONSUMER_SEEN, ENDS_PRODUCER_SEEN};
use shmq::{Queue, RecvError, Role};
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

fn timeout_of(secs: Option<f64>) -> Result<Option<Duration>, String> {
    match secs {
        None => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| format!("invalid timeout {s}: expected a number of seconds >= 0")),
    }
}

// ----- ls -----

pub fn ls() -> Result<(), String> {
    let names = inspect::list().map_err(|e| format!("cannot read /dev/shm: {e}"))?;
    let mut rows = vec![["NAME", "KIND", "CAPACITY", "SLOT", "LEN", "ATTACHED", "ALIVE", "STATUS"].map(String::from)];
    for name in names {
        rows.push(match inspect::inspect(&name) {
            Ok(i) => ls_row(&i),
            Err(e) => {
                let mut r: [String; 8] = Default::default();
                r[0] = name;
                r[7] = e.to_string();
                r
            }
        });
    }
    print_table(&rows);
    Ok(())
}

fn ls_row(i: &Inspection) -> [String; 8] {
    let h = i.header.as_ref();
    let kind = h.and_then(|h| h.kind()).map_or("?", |k| match (k, h.map(|h| h.ring_count)) {
        (Kind::Pipe, Some(2)) => "pipe(duplex)",
        (k, _) => k.name(),
    });
    let len: Option<u64> = (!i.rings.is_empty()).then(|| i.rings.iter().map(|r| r.len).sum());
    let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    [
        i.name.clone(),
        kind.into(),
        opt(h.map(|h| h.capacity)),
        opt(h.map(|h| h.slot_size)),
        opt(len),
        i.participants.len().to_string(),
        i.alive().to_string(),
        i.problem.clone().unwrap_or_else(|| "ok".into()),
    ]
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
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

// ----- stat -----

fn roles_text(bits: u32, rings: u32) -> String {
    let mut parts = Vec::new();
    for r in 0..rings.max(1) {
        let b = bits >> (2 * r);
        let s = match (b & 1 != 0, b & 2 != 0) {
            (true, true) => "producer+consumer",
            (true, false) => "producer",
            (false, true) => "consumer",
            (false, false) => continue,
        };
        parts.push(if rings > 1 { format!("ring{r}:{s}") } else { s.into() });
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

fn flags_text(flags: u32) -> String {
    let mut v = Vec::new();
    if flags & ENDS_PRODUCER_SEEN != 0 {
        v.push("producer-seen");
    }
    if flags & ENDS_CONSUMER_SEEN != 0 {
        v.push("consumer-seen");
    }
    let rest = flags & !(ENDS_PRODUCER_SEEN | ENDS_CONSUMER_SEEN);
    let mut s = v.join("|");
    if rest != 0 {
        s = format!("{s}{}{rest:#x}", if s.is_empty() { "" } else { "|" });
    }
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

pub fn stat(name: &str, slots: Option<u64>) -> Result<(), String> {
    let name = normalize(name);
    let i = inspect::inspect(&name).map_err(|e| format!("{name}: {e}"))?;
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<18} {v}\n"));
    line("name", i.name.clone());
    line("file", format!("{} bytes, mode {:o}, uid {}", i.file_size, i.mode, i.uid));
    if let Some(h) = &i.header {
        let kind = h.kind().map_or(format!("unknown ({})", h.kind), |k| k.name().into());
        line("kind", kind);
        line("layout version", h.version.to_string());
        line("ready", if h.ready { "yes" } else { "no" }.into());
        line("rings", h.ring_count.to_string());
        line("capacity", h.capacity.to_string());
        line("slot size", format!("{} bytes", h.slot_size));
        line("slot stride", format!("{} bytes", h.slot_stride));
        line("total size", format!("{} bytes", h.total_size));
        line("creator pid", h.creator_pid.to_string());
        line("join unfinished", h.join_unfinished.to_string());
        line("join waiters", h.join_waiters.to_string());
    }
    let rings = i.header.as_ref().map_or(1, |h| h.ring_count);
    for (r, ring) in i.rings.iter().enumerate() {
        let p = if i.rings.len() > 1 { format!("ring {r} ") } else { String::new() };
        line(&format!("{p}len"), ring.len.to_string());
        line(&format!("{p}head"), format!("{:#x}", ring.head));
        line(&format!("{p}tail"), format!("{:#x}", ring.tail));
        line(&format!("{p}not_empty"), format!("{} waiters, seq {}", ring.not_empty.waiters, ring.not_empty.seq));
        line(&format!("{p}not_full"), format!("{} waiters, seq {}", ring.not_full.waiters, ring.not_full.seq));
        line(&format!("{p}producers"), ring.producers.to_string());
        line(&format!("{p}consumers"), ring.consumers.to_string());
        line(&format!("{p}flags"), flags_text(ring.flags));
    }
    line("participants", format!("{} attached, {} alive ({} lock(s) held)", i.participants.len(), i.alive(), i.live));
    for p in &i.participants {
        line(
            &format!("  [{}]", p.index),
            format!("pid {} {} {}", p.pid, roles_text(p.roles, rings), if p.alive { "alive" } else { "DEAD" }),
        );
    }
    match &i.problem {
        None => line("validates", "yes".into()),
        Some(p) => line("validates", format!("NO: {p}")),
    }
    if slots.is_some() && (i.problem.is_some() || i.header.is_none()) {
        line("slots", "not shown: the segment does not validate".into());
    }
    if let (Some(max), None, Some(h)) = (slots, &i.problem, &i.header) {
        let rings = inspect::slots(&name, max).map_err(|e| format!("{name}: reading slots: {e}"))?;
        let one_lap = h.capacity.next_power_of_two();
        for (r, ring) in rings.iter().enumerate() {
            let p = if rings.len() > 1 { format!("ring {r} ") } else { String::new() };
            for (idx, s) in ring.iter().enumerate() {
                let text = match h.kind() {
                    Some(Kind::Queue) => s.queue_text(one_lap),
                    _ => s.pipe_text(),
                };
                line(&format!("{p}slot {idx}"), text);
            }
            if (ring.len() as u64) < h.capacity {
                line(&format!("{p}slots"), format!("first {} of {} shown", ring.len(), h.capacity));
            }
        }
    }
    print!("{o}");
    match i.problem {
        None => Ok(()),
        Some(p) => Err(format!("{name}: {p}")),
    }
}

// ----- rm -----

#[derive(Args)]
pub struct RmArgs {
    /// Segment names (`/name` or `name`).
    names: Vec<String>,
    /// Remove every shmq segment that has no live participant.
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
                    Ok(()) => println!("removed {name}"),
                    Err(e) => {
                        eprintln!("shmq: {name}: {e}");
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
    let p = inspect::probe(name).map_err(|e| format!("{name}: {e}"))?;
    if !force {
        if p.kind == FileKind::Foreign {
            return Err(format!("{name}: not a shmq segment (bad magic number); refusing without --force"));
        }
        if p.live > 0 {
            return Err(format!("{name}: {} live participant(s) attached; refusing without --force", p.live));
        }
    }
    inspect::unlink(name).map_err(|e| format!("{name}: {e}"))?;
    println!("removed {name}");
    Ok(())
}

// ----- create, put, get -----

#[derive(Args)]
pub struct CreateArgs {
    /// Segment name (`/name` or `name`).
    name: String,
    /// Messages the queue holds.
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Largest message in bytes.
    #[arg(long, default_value_t = 256)]
    slot_size: usize,
    /// Permission bits, in octal.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    mode: u32,
    /// Give the queue end of stream (`get` reports "closed" once every producer that attached has
    /// gone). By default a queue made here is persistent, like a broker's: clients come and go.
    #[arg(long)]
    end_of_stream: bool,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("invalid mode {s:?}: expected octal permission bits like 600"))
}

pub fn create(args: CreateArgs) -> Result<(), String> {
    let name = normalize(&args.name);
    // Persistent unless asked otherwise: `shmq put` / `shmq get` clients come and go, and with end
    // of stream the first consumer to leave would make every later `put` fail as "closed".
    let q = Queue::builder()
        .capacity(args.capacity)
        .slot_size(args.slot_size)
        .mode(args.mode)
        .persistent(!args.end_of_stream)
        .role(Role::Producer)
        .unlink_on_drop(false)
        .create(&name)
        .map_err(|e| format!("{name}: {e}"))?;
    println!("created {name}: queue, capacity {}, slot size {} bytes", q.capacity(), q.slot_size());
    Ok(())
}

pub fn put(name: &str, msg: &str, timeout: Option<f64>) -> Result<(), String> {
    let name = normalize(name);
    let timeout = timeout_of(timeout)?;
    let q = Queue::builder().role(Role::Producer).open(&name).map_err(|e| format!("{name}: {e}"))?;
    let r = match timeout {
        None => q.put(msg.as_bytes()),
        Some(d) if d.is_zero() => q.try_put(msg.as_bytes()),
        Some(d) => q.put_timeout(msg.as_bytes(), d),
    };
    r.map_err(|e| format!("{name}: {e}"))
}

pub fn get(name: &str, timeout: Option<f64>) -> Result<(), String> {
    let name = normalize(name);
    let timeout = timeout_of(timeout)?;
    let q = Queue::builder().role(Role::Consumer).open(&name).map_err(|e| format!("{name}: {e}"))?;
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
            Err(format!("{name}: queue is empty and closed (every producer that attached has gone)"))
        }
        Err(e) => Err(format!("{name}: {e}")),
    }
}
