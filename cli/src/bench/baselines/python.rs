//! Python's multiprocessing, when `python3` is present: latency rows and the seed demo.

#[allow(unused_imports)]
use super::*;

// ----- python multiprocessing -----

pub(super) const PYTHON: &str = r#"
import json, os, sys, time
import multiprocessing as mp

def pin(core):
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass

def echo_pipe(conn, n, core):
    pin(core)
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())

def echo_queue(qin, qout, n, core):
    pin(core)
    for _ in range(n):
        qout.put(qin.get())

def main():
    mode = sys.argv[1]
    rounds, warmup, core_a, core_b = (int(x) for x in sys.argv[2:6])
    total = rounds + warmup
    pin(core_a)
    msg = b"\0" * 8
    if mode == "pipe":
        here, there = mp.Pipe()
        peer = mp.Process(target=echo_pipe, args=(there, total, core_b), daemon=True)
        send, recv = here.send_bytes, here.recv_bytes
    else:
        qab, qba = mp.Queue(), mp.Queue()
        peer = mp.Process(target=echo_queue, args=(qab, qba, total, core_b), daemon=True)
        send, recv = qab.put, qba.get
    peer.start()
    now = time.perf_counter_ns
    samples = []
    for i in range(total):
        t0 = now()
        send(msg)
        recv()
        t1 = now()
        if i >= warmup:
            samples.append(t1 - t0)
    peer.join(5)
    json.dump({"samples": samples}, sys.stdout)

if __name__ == "__main__":
    main()
"#;

/// `mode`: "pipe" (`multiprocessing.Pipe`) or "queue" (two `multiprocessing.Queue`s).
pub fn python_row(ctx: &Ctx, mode: &str) -> Result<Measured, RowError> {
    let args = [mode.to_string(), ctx.rounds.to_string(), ctx.warmup.to_string()];
    let text = run_python(ctx, PYTHON, &args)?;
    let samples = parse_samples(&text).ok_or_else(|| RowError::Failed("python3 printed no samples".into()))?;
    let mut h = harness::new_histogram();
    for s in samples {
        h.saturating_record(s.max(1));
    }
    Ok(Measured::Latency(h))
}

/// The seed demo in Python (`seed_demo.py`): the work of the `seed-demo-shmq` row, done with
/// `multiprocessing.Queue(maxsize=3)`. Context switches: python's and its children's (all
/// waited for by python before it exits, so all in our RUSAGE_CHILDREN once we have waited).
pub fn python_seed_demo(ctx: &Ctx) -> Result<Measured, RowError> {
    let total = ctx.seed_messages;
    let before = harness::context_switches(libc::RUSAGE_CHILDREN);
    let text = run_python(ctx, include_str!("../seed_demo.py"), &[total.to_string()])?;
    let switches = harness::context_switches(libc::RUSAGE_CHILDREN).saturating_sub(before);
    let field = |name: &str| {
        let mut words = text.split_whitespace();
        words.find(|w| *w == name).and_then(|_| words.next()).and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(received), Some(lost), Some(duplicated), Some(elapsed_ns)) =
        (field("received"), field("lost"), field("duplicated"), field("elapsed_ns"))
    else {
        return Err(RowError::Failed(format!("python3 printed {:?}", text.trim())));
    };
    if received != total || lost != 0 || duplicated != 0 {
        return Err(RowError::Failed(format!(
            "{total} messages: python counted {received}; {lost} lost, {duplicated} duplicated"
        )));
    }
    Ok(Measured::Throughput {
        size: 8,
        messages: total,
        elapsed: Duration::from_nanos(elapsed_ns),
        context_switches: Some(switches),
    })
}

/// Runs `python3 -c script args... core_a core_b` in a process group of its own (which the
/// watchdog kills whole) and returns what it printed. No python3: the row is skipped.
pub(super) fn run_python(ctx: &Ctx, script: &str, args: &[String]) -> Result<String, RowError> {
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .arg(ctx.cores[0].to_string())
        .arg(ctx.cores[1].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(RowError::Skipped("python3 not found".into())),
        Err(e) => return Err(RowError::Failed(format!("spawning python3: {e}"))),
    };
    let pid = child.id() as i32;
    let dog = Watchdog::arm(ctx.row_timeout, vec![Victim::Group(pid)], None);
    // Collects stdout and stderr until python exits (or the watchdog kills its group).
    let out = child.wait_with_output();
    let fired = dog.disarm();
    let out = out.map_err(|e| RowError::Failed(format!("waiting for python3: {e}")))?;
    if fired {
        return Err(RowError::Failed(format!("timed out after {:?}", ctx.row_timeout)));
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_owned();
        return Err(RowError::Failed(format!("python3 failed: {last}")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The numbers of `{"samples": [n, n, ...]}`.
pub(super) fn parse_samples(json: &str) -> Option<Vec<u64>> {
    let start = json.find('[')? + 1;
    let end = start + json[start..].find(']')?;
    let body = json[start..end].trim();
    if body.is_empty() {
        return None;
    }
    body.split(',').map(|s| s.trim().parse().ok()).collect()
}
