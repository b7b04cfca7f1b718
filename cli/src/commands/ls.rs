//! `shmq ls`: the segments in /dev/shm.

use super::{print_table, shown};
use shmq::inspect::{self, Inspection, Kind};

pub fn ls() -> Result<(), String> {
    let names = inspect::list().map_err(|e| format!("cannot read /dev/shm: {e}"))?;
    let mut rows = vec![["NAME", "KIND", "CAPACITY", "SLOT", "LEN", "ATTACHED", "ALIVE", "STATUS"].map(String::from)];
    for name in names {
        rows.push(match inspect::inspect(&name) {
            Ok(i) => ls_row(&i),
            Err(e) => {
                let mut r: [String; 8] = Default::default();
                r[0] = shown(&name);
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
        shown(&i.name),
        kind.into(),
        opt(h.map(|h| h.capacity)),
        opt(h.map(|h| h.slot_size)),
        opt(len),
        i.participants.len().to_string(),
        i.alive().to_string(),
        i.problem.clone().unwrap_or_else(|| "ok".into()),
    ]
}
