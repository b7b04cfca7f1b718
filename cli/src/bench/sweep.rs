//! `shmq bench --sweep`: MPMC throughput as the producers × consumers grow. Each cell runs the
//! shmq queue with P producer and C consumer processes, then crossbeam's `ArrayQueue` with the
//! same numbers of threads, for one short run each (8-byte messages unless `--size` says 64 or
//! 1024, `--capacity` slots, every message counted), and the matrices of M msg/s and of their
//! ratio are printed (and written as JSON).
//!
//! Placement: in each cell the producers and then the consumers take the cores this process may
//! use in order, one each, so on a machine with at least P + C cores every process (or thread)
//! has a core of its own; beyond that they wrap around and share.

use super::report::{json_f64, json_str, si, OutFile};
use super::{baselines, harness, shmq_rows, Ctx, Measured, RowError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt::Write as _;
use std::io::IsTerminal;

/// One measurement of a cell: messages received per second, or why there is none.
type Rate = Result<(u64, f64), String>;

struct Cell {
    producers: usize,
    consumers: usize,
    shmq: Rate,
    crossbeam: Rate,
}

impl Cell {
    fn ratio(&self) -> Option<f64> {
        match (&self.shmq, &self.crossbeam) {
            (Ok((_, s)), Ok((_, c))) if *c > 0.0 => Some(s / c),
            _ => None,
        }
    }
}

fn rate(m: Result<Measured, RowError>) -> Rate {
    match m {
        Ok(Measured::Throughput { messages, elapsed, .. }) => {
            Ok((messages, messages as f64 / elapsed.as_secs_f64().max(1e-9)))
        }
        Ok(Measured::Latency(_)) => Err("measured latency, not throughput".into()),
        Err(RowError::Skipped(s) | RowError::Failed(s)) => Err(s),
    }
}

/// Runs every cell from 1 × 1 to `max` × `max` (each run lasts `ctx.duration`).
pub fn run(ctx: &Ctx, max: usize, size: usize, json_out: Option<OutFile>) -> Result<(), String> {
    let cores = harness::allowed_cores();
    if cores.is_empty() {
        return Err("no core is available to this process".into());
    }
    let core_of = |k: usize| cores[k % cores.len()];
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some((max * max) as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed:>4} {msg}").expect("valid template"));
    let mut cells = Vec::new();
    for producers in 1..=max {
        for consumers in 1..=max {
            pb.set_message(format!("{producers} producers x {consumers} consumers"));
            // The two in a row, so that their ratio compares like with like.
            let shmq = rate(shmq_rows::queue_throughput_on(ctx, size, producers, consumers, &core_of));
            let crossbeam = rate(match size {
                64 => baselines::crossbeam_mpmc::<64>(ctx, producers, consumers, &core_of),
                1024 => baselines::crossbeam_mpmc::<1024>(ctx, producers, consumers, &core_of),
                _ => baselines::crossbeam_mpmc::<8>(ctx, producers, consumers, &core_of),
            });
            cells.push(Cell { producers, consumers, shmq, crossbeam });
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    print!("{}", table(&cells, max, size, ctx, &cores));
    if let Some(out) = json_out {
        out.write(&json(&cells, max, size, ctx, &cores))?;
    }
    let failed = cells.iter().filter(|c| c.shmq.is_err() || c.crossbeam.is_err()).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} sweep cells failed"))
    }
}

/// `[0, 1, 2, 3, 6]` as `0-3,6`.
fn ranges(cores: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut k = 0;
    while k < cores.len() {
        let mut j = k;
        while j + 1 < cores.len() && cores[j + 1] == cores[j] + 1 {
            j += 1;
        }
        out.push(if j == k { cores[k].to_string() } else { format!("{}-{}", cores[k], cores[j]) });
        k = j + 1;
    }
    out.join(",")
}

fn table(cells: &[Cell], max: usize, size: usize, ctx: &Ctx, cores: &[usize]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "MPMC throughput sweep: {size}-byte messages through {} slots, {:?} per run, every message counted",
        ctx.capacity, ctx.duration
    );
    let _ = writeln!(
        o,
        "P producers, then C consumers, one per core of the {} allowed ({}) in order; cells with P + C > {} share cores",
        cores.len(),
        ranges(cores),
        cores.len()
    );
    let matrix = |o: &mut String, title: &str, value: &dyn Fn(&Cell) -> String| {
        let _ = writeln!(o, "\n{title}");
        let _ = write!(o, "{:>5}", "P\\C");
        for c in 1..=max {
            let _ = write!(o, "  {c:>8}");
        }
        let _ = writeln!(o);
        for p in 1..=max {
            let _ = write!(o, "{p:>5}");
            for cell in cells.iter().filter(|c| c.producers == p) {
                let _ = write!(o, "  {:>8}", value(cell));
            }
            let _ = writeln!(o);
        }
    };
    let mmsgs = |r: &Rate| match r {
        Ok((_, v)) => format!("{:.2}", v / 1e6),
        Err(_) => "FAILED".into(),
    };
    matrix(&mut o, "shmq queue, P producer and C consumer processes (M msg/s)", &|c| mmsgs(&c.shmq));
    matrix(&mut o, "crossbeam ArrayQueue, P producer and C consumer threads (M msg/s)", &|c| mmsgs(&c.crossbeam));
    matrix(&mut o, "shmq / crossbeam", &|c| c.ratio().map_or("-".into(), |x| format!("{x:.2}x")));
    let errors: Vec<String> = cells
        .iter()
        .flat_map(|c| {
            [("shmq", &c.shmq), ("crossbeam", &c.crossbeam)].into_iter().filter_map(move |(what, r)| {
                r.as_ref().err().map(|e| format!("{} x {} {what}: FAILED: {e}", c.producers, c.consumers))
            })
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(o);
        for e in errors {
            let _ = writeln!(o, "{e}");
        }
    }
    if let Some(best) =
        cells.iter().filter_map(|c| c.shmq.as_ref().ok().map(|r| (c, r.1))).max_by(|a, b| a.1.total_cmp(&b.1))
    {
        let _ =
            writeln!(o, "\nshmq's best cell: {} x {} at {}", best.0.producers, best.0.consumers, si(best.1, "msg/s"));
    }
    o
}

fn json(cells: &[Cell], max: usize, size: usize, ctx: &Ctx, cores: &[usize]) -> String {
    let mut o = String::new();
    let cores: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(o, "{{");
    let _ = writeln!(
        o,
        "  \"sweep\": true,\n  \"max\": {max},\n  \"cell_ms\": {},\n  \"msg_size\": {size},\n  \"capacity\": {},\n  \"cores\": [{}],",
        ctx.duration.as_millis(),
        ctx.capacity,
        cores.join(", ")
    );
    let _ = writeln!(o, "  \"cells\": [");
    for (k, c) in cells.iter().enumerate() {
        let side = |name: &str, r: &Rate| {
            format!(
                "\"{name}_messages\": {}, \"{name}_msgs_per_sec\": {}, \"{name}_error\": {}",
                r.as_ref().map_or("null".into(), |r| r.0.to_string()),
                json_f64(r.as_ref().ok().map(|r| r.1)),
                r.as_ref().err().map_or("null".into(), |e| json_str(e))
            )
        };
        let comma = if k + 1 < cells.len() { "," } else { "" };
        let _ = writeln!(
            o,
            "    {{\"producers\": {}, \"consumers\": {}, {}, {}, \"ratio\": {}}}{comma}",
            c.producers,
            c.consumers,
            side("shmq", &c.shmq),
            side("crossbeam", &c.crossbeam),
            json_f64(c.ratio())
        );
    }
    let _ = writeln!(o, "  ]\n}}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists_read_as_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[0, 2, 3]), "0,2-3");
    }
}
