//! `shmq stat`: one segment's header, counters, participants and slots.

use super::{normalize, shown};
use shmq::inspect::{self, Kind};

/// The roles in an entry's role bits (two per ring). `rings` comes from the segment's header,
/// which may be corrupt: no segment has more than two rings, so no more are looked at.
fn roles_text(bits: u32, rings: u32) -> String {
    let rings = rings.clamp(1, 2);
    let mut parts = Vec::new();
    for r in 0..rings {
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

pub fn stat(name: &str, slots: Option<u64>) -> Result<(), String> {
    let name = normalize(name);
    let i = inspect::inspect(&name).map_err(|e| format!("{}: {e}", shown(&name)))?;
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<18} {v}\n"));
    line("name", shown(&i.name));
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
        let ended = |n: u32, e: bool| if e { format!("{n} (ended)") } else { n.to_string() };
        line(&format!("{p}producers"), ended(ring.producers, ring.producers_ended));
        line(&format!("{p}consumers"), ended(ring.consumers, ring.consumers_ended));
        line(&format!("{p}flags"), ring.flags_text());
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
        let rings = inspect::slots(&name, max).map_err(|e| format!("{}: reading slots: {e}", shown(&name)))?;
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
        Some(p) => Err(format!("{}: {p}", shown(&name))),
    }
}

#[cfg(test)]
mod tests {
    use super::roles_text;

    #[test]
    fn a_corrupt_ring_count_names_at_most_two_rings() {
        assert_eq!(roles_text(0b0110, 2), "ring0:consumer,ring1:producer");
        assert_eq!(roles_text(u32::MAX, u32::MAX), "ring0:producer+consumer,ring1:producer+consumer");
        assert_eq!(roles_text(0b01, 0), "producer");
    }
}
