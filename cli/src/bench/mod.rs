//! `shmq bench`: round-trip latency and throughput of shmq against its limits and its peers,
//! all measured in one run on two pinned cores, so that every number has a same-run baseline.
//!
//! Latency rows: `atomic-limit` and `futex-limit` (what the hardware and the kernel allow),
//! `pipe(2)`, `socketpair`, `eventfd`, `posix-mq`, the shmq rows (spinning, blocking, and awaited
//! on tokio current-thread runtimes), tokio's in-process `mpsc` channel, and Python's
//! multiprocessing. Each shmq row reports its p50 as a ratio to the limit of its kind (spinning
//! rows to `atomic-limit`, blocking and awaited rows to `futex-limit`), and the limit's p50 beside
//! it. Throughput rows: shmq 1→1 over three message sizes, N→M processes, and in-process
//! crossbeam/rtrb between two threads; the seed demo (10 producer and 10 consumer processes on a
//! queue of capacity 3) in shmq and in Python's multiprocessing, with their ratio.
//!
//! `--sweep` (module `sweep`) replaces the rows with a producers × consumers matrix of MPMC
//! throughput, shmq processes beside crossbeam threads.

mod baselines;
mod harness;
mod report;
mod shmq_rows;
mod sweep;

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::{Kind, RowResult};
use shmq_rows::Mode;
use std::io::IsTerminal;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The two cores to pin side A (the bench, and producers) and side B (the peer) to.
    #[arg(long, default_value = "0,1", value_parser = parse_cores)]
    cores: Cores,
    /// A short run (under a minute): fewer round trips, shorter throughput runs.
    #[arg(long)]
    quick: bool,
    /// Rows to run: names, name prefixes (`shmq-queue`), `latency` or `throughput`.
    #[arg(long, value_delimiter = ',', value_name = "ROWS")]
    rows: Vec<String>,
    /// List the rows and exit.
    #[arg(long)]
    list: bool,
    /// Round trips measured per latency row (after warm-up), at least 1. Default: 20000 quick,
    /// 200000 full.
    #[arg(long, value_parser = parse_rounds)]
    rounds: Option<u64>,
    /// Producer processes of the N→M throughput row.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Consumer processes of the N→M throughput row.
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Messages in all of each seed-demo row (10 producers share them; at most 10^8). Default:
    /// 20000 quick, 100000 full.
    #[arg(long, value_name = "N", value_parser = parse_seed_messages)]
    seed_messages: Option<u64>,
    /// Slots of the ring in every throughput row and sweep cell (the shmq queue and pipe,
    /// crossbeam's `ArrayQueue`, rtrb). How the ring sits in the caches moves these rows:
    /// compare capacities on your own machine.
    #[arg(long, value_name = "SLOTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    capacity: u32,
    /// Kill a row's processes and report it failed after this many seconds.
    /// Default: 20 quick, 180 full.
    #[arg(long, value_name = "SECS")]
    row_timeout: Option<u64>,
    /// Write every row as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the latency distributions as an SVG to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Instead of the rows: MPMC throughput of the shmq queue with P producer × C consumer
    /// processes, beside crossbeam's ArrayQueue with as many threads, for P and C from 1 to
    /// --max (one core each where there are enough). Not part of --quick.
    #[arg(long, conflicts_with_all = [
        "rows", "list", "plot", "quick", "cores", "rounds", "producers", "consumers", "seed_messages",
    ])]
    sweep: bool,
    /// With --sweep: the largest number of producers and of consumers.
    #[arg(long, value_name = "N", default_value_t = 8, requires = "sweep",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    max: u16,
    /// With --sweep: how long each shmq and each crossbeam run of a cell lasts, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200, requires = "sweep",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    cell_ms: u64,
    /// With --sweep: the message size in bytes (the throughput rows' sizes).
    #[arg(long, value_name = "BYTES", default_value_t = 8, requires = "sweep", value_parser = parse_sweep_size)]
    size: usize,
}

fn parse_sweep_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (8 | 64 | 1024)) => Ok(n),
        _ => Err(format!("{s:?} is not one of the sizes 8, 64, 1024")),
    }
}

#[derive(Clone, Copy, Debug)]
struct Cores([usize; 2]);

fn parse_cores(s: &str) -> Result<Cores, String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|c| c.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected two core numbers like 0,1, got {s:?}"))?;
    match v[..] {
        [a, b] => Ok(Cores([a, b])),
        _ => Err(format!("expected two core numbers like 0,1, got {s:?}")),
    }
}

fn parse_rounds(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (it is the number of round trips measured per latency row)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a number of round trips, got {s:?}")),
    }
}

fn parse_seed_messages(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        // Each row keeps a counter per message (a byte), so a bound keeps that small.
        Ok(n) if n > 100_000_000 => Err("must be at most 100000000".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a number of messages, got {s:?}")),
    }
}

/// Arguments of `shmq __bench-child` (side B of one row).
#[derive(Args, Debug)]
pub struct ChildArgs {
    /// Row name.
    row: String,
    #[arg(long)]
    core: usize,
    /// Round trips to answer (warm-up included).
    #[arg(long, default_value_t = 0)]
    rounds: u64,
    /// Message size.
    #[arg(long, default_value_t = 8)]
    size: usize,
    /// How long a throughput producer produces.
    #[arg(long, default_value_t = 0)]
    duration_ms: u64,
    /// The child gives up after this long.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// Inherited descriptors.
    #[arg(long, value_delimiter = ',')]
    fds: Vec<RawFd>,
    /// Throughput role: producer or consumer.
    #[arg(long)]
    role: Option<String>,
    /// Which producer this is (seed demo).
    #[arg(long, default_value_t = 0)]
    id: u64,
}

impl ChildArgs {
    fn fd(&self, i: usize) -> Result<RawFd, String> {
        self.fds.get(i).copied().ok_or_else(|| format!("row {} needs inherited descriptor #{i}", self.row))
    }
}

/// What every row is run with.
pub struct Ctx {
    cores: [usize; 2],
    warmup: u64,
    rounds: u64,
    /// Length of one throughput run.
    duration: Duration,
    /// A row that takes longer is killed and reported as failed.
    row_timeout: Duration,
    /// Messages in all of each seed-demo row.
    seed_messages: u64,
    /// Slots of the ring in each throughput row.
    capacity: usize,
}

impl Ctx {
    /// Side B of a latency row: the second core, every round trip, a little longer to live.
    fn child_spec(&self, row: &str) -> harness::ChildSpec {
        let mut s = harness::ChildSpec::new(row, self.cores[1], self.row_timeout + Duration::from_secs(5));
        s.rounds = self.warmup + self.rounds;
        s
    }
}

/// What a row measured.
pub enum Measured {
    Latency(Histogram<u64>),
    Throughput {
        size: usize,
        messages: u64,
        elapsed: Duration,
        /// Context switches of every process of the row, where the row counts them.
        context_switches: Option<u64>,
    },
}

/// Why a row has no measurement.
pub enum RowError {
    /// Not applicable here (python3 missing, API not in this build).
    Skipped(String),
    /// It broke (child died, timed out, counts did not match).
    Failed(String),
}

/// Which limit a latency row is compared with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Limit {
    /// Busy-polling rows, against `atomic-limit`.
    Spin,
    /// Sleeping rows, against `futex-limit`.
    Block,
}

type RunFn = Box<dyn Fn(&Ctx) -> Result<Measured, RowError>>;

struct Row {
    name: String,
    kind: Kind,
    limit: Option<Limit>,
    /// A throughput row's baseline: the row (of this run) its rate is divided by.
    baseline: Option<&'static str>,
    run: RunFn,
}

fn row(name: &str, kind: Kind, limit: Option<Limit>, run: RunFn) -> Row {
    Row { name: name.into(), kind, limit, baseline: None, run }
}

fn all_rows(producers: usize, consumers: usize) -> Vec<Row> {
    use Kind::{Latency as L, Throughput as T};
    let mut v = vec![
        row("atomic-limit", L, None, Box::new(baselines::atomic_limit)),
        row("futex-limit", L, None, Box::new(baselines::futex_limit)),
        row("pipe(2)", L, None, Box::new(baselines::pipe2_row)),
        row("socketpair", L, None, Box::new(baselines::socketpair_row)),
        row("eventfd", L, None, Box::new(baselines::eventfd_row)),
        row("posix-mq", L, None, Box::new(baselines::posix_mq_row)),
        row("shmq-queue-spin", L, Some(Limit::Spin), Box::new(|c| shmq_rows::queue_latency(c, Mode::Spin))),
        row("shmq-queue-block", L, Some(Limit::Block), Box::new(|c| shmq_rows::queue_latency(c, Mode::Block))),
        row("shmq-pipe-spin", L, Some(Limit::Spin), Box::new(|c| shmq_rows::pipe_latency(c, Mode::Spin))),
        row("shmq-pipe-block", L, Some(Limit::Block), Box::new(|c| shmq_rows::pipe_latency(c, Mode::Block))),
        row("shmq-queue-async", L, Some(Limit::Block), Box::new(shmq_rows::queue_latency_async)),
        row("shmq-pipe-async", L, Some(Limit::Block), Box::new(shmq_rows::pipe_latency_async)),
        row("tokio-mpsc", L, None, Box::new(baselines::tokio_mpsc_row)),
        row("python-mp-pipe", L, None, Box::new(|c| baselines::python_row(c, "pipe"))),
        row("python-mp-queue", L, None, Box::new(|c| baselines::python_row(c, "queue"))),
    ];
    #[cfg(feature = "ipc-channel")]
    v.push(row("ipc-channel", L, None, Box::new(baselines::ipc_channel_row)));
    #[cfg(feature = "iceoryx2")]
    v.push(row("iceoryx2", L, None, Box::new(baselines::iceoryx2_row)));
    for size in [8, 64, 1024] {
        v.push(row(
            &format!("shmq-queue-1to1-{size}"),
            T,
            None,
            Box::new(move |c| shmq_rows::queue_throughput(c, size, 1, 1)),
        ));
    }
    for size in [8, 64, 1024] {
        v.push(row(&format!("shmq-pipe-1to1-{size}"), T, None, Box::new(move |c| shmq_rows::pipe_throughput(c, size))));
    }
    v.push(row(
        &format!("shmq-queue-{producers}to{consumers}-8"),
        T,
        None,
        Box::new(move |c| shmq_rows::queue_throughput(c, 8, producers, consumers)),
    ));
    v.push(row("crossbeam-arrayqueue-8", T, None, Box::new(baselines::crossbeam_row::<8>)));
    v.push(row("crossbeam-arrayqueue-64", T, None, Box::new(baselines::crossbeam_row::<64>)));
    v.push(row("crossbeam-arrayqueue-1024", T, None, Box::new(baselines::crossbeam_row::<1024>)));
    v.push(row("rtrb-8", T, None, Box::new(baselines::rtrb_row::<8>)));
    v.push(row("rtrb-64", T, None, Box::new(baselines::rtrb_row::<64>)));
    v.push(row("rtrb-1024", T, None, Box::new(baselines::rtrb_row::<1024>)));
    // The seed demo in shmq, then the same work in Python; `--rows seed-demo` selects both.
    let mut seed = row("seed-demo-shmq", T, None, Box::new(shmq_rows::seed_demo));
    seed.baseline = Some("seed-demo-python");
    v.push(seed);
    v.push(row("seed-demo-python", T, None, Box::new(baselines::python_seed_demo)));
    v
}

/// Whether selector `sel` picks row `r`: its name, a `-`-separated prefix of it, or its kind.
fn selects(sel: &str, r: &Row) -> bool {
    sel == "all"
        || sel == r.name
        || r.name.strip_prefix(sel).is_some_and(|rest| rest.starts_with('-'))
        || (sel == "latency" && r.kind == Kind::Latency)
        || (sel == "throughput" && r.kind == Kind::Throughput)
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    if args.producers == 0 || args.consumers == 0 {
        return Err("--producers and --consumers must be at least 1".into());
    }
    if args.sweep {
        return run_sweep(&args);
    }
    let mut rows = all_rows(args.producers, args.consumers);
    if args.list {
        for r in &rows {
            println!("{:<28} {}", r.name, r.kind.name());
        }
        return Ok(());
    }
    if !args.rows.is_empty() {
        if let Some(bad) = args.rows.iter().find(|s| !rows.iter().any(|r| selects(s, r))) {
            return Err(format!("no bench row matches {bad:?} (see `shmq bench --list`)"));
        }
        rows.retain(|r| args.rows.iter().any(|s| selects(s, r)));
    }

    let cores = args.cores.0;
    let allowed = harness::allowed_cores();
    if let Some(c) = cores.iter().find(|c| !allowed.contains(c)) {
        return Err(format!("core {c} is not available to this process (allowed: {allowed:?})"));
    }
    if cores[0] == cores[1] {
        eprintln!("shmq: warning: both sides share core {}; spinning rows will crawl", cores[0]);
    }
    harness::pin_to(cores[0]).map_err(|e| format!("pinning to core {}: {e}", cores[0]))?;
    // Refuse unwritable output paths now, not after the rows have run.
    if args.plot.is_some() && !rows.iter().any(|r| r.kind == Kind::Latency) {
        return Err("--plot draws latency rows, and none of the selected rows is one".into());
    }
    let json_out = args.json.as_deref().map(|p| report::OutFile::open(p, "--json")).transpose()?;
    let plot_out = match args.plot.as_deref().map(|p| report::OutFile::open(p, "--plot")).transpose() {
        Ok(p) => p,
        Err(e) => {
            if let Some(j) = json_out {
                j.discard();
            }
            return Err(e);
        }
    };

    let ctx = Ctx {
        cores,
        warmup: if args.quick { 2_000 } else { 20_000 },
        rounds: args.rounds.unwrap_or(if args.quick { 20_000 } else { 200_000 }),
        duration: Duration::from_millis(if args.quick { 250 } else { 2_000 }),
        row_timeout: Duration::from_secs(args.row_timeout.unwrap_or(if args.quick { 20 } else { 180 }).max(1)),
        seed_messages: args.seed_messages.unwrap_or(if args.quick { 20_000 } else { 100_000 }),
        capacity: args.capacity as usize,
    };

    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(rows.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed:>4} {msg}").expect("valid template"));
    let mut results = Vec::new();
    for r in &rows {
        pb.set_message(r.name.clone());
        // Re-measure the row's limit right before it, so the ratio compares like with like even if
        // the host moves the two cores between rows.
        let adjacent = r.limit.and_then(|l| {
            let run: fn(&Ctx) -> Result<Measured, RowError> = match l {
                Limit::Spin => baselines::atomic_limit,
                Limit::Block => baselines::futex_limit,
            };
            match run(&ctx) {
                Ok(Measured::Latency(h)) => Some(h.value_at_quantile(0.5)),
                _ => None,
            }
        });
        let outcome = (r.run)(&ctx);
        let mut result = RowResult::new(&r.name, r.kind, r.limit, outcome);
        result.adjacent_limit = adjacent;
        result.baseline = r.baseline;
        results.push(result);
        pb.inc(1);
    }
    pb.finish_and_clear();
    report::add_ratios(&mut results);

    let meta = report::Meta {
        cores,
        quick: args.quick,
        rounds: ctx.rounds,
        warmup: ctx.warmup,
        duration: ctx.duration,
        seed_messages: ctx.seed_messages,
        capacity: ctx.capacity,
    };
    print!("{}", report::table(&results, &meta));
    if let Some(out) = json_out {
        out.write(&report::json(&results, &meta))?;
    }
    if let Some(out) = plot_out {
        match report::plot(&results) {
            Ok(svg) => out.write(&svg)?,
            Err(e) => {
                out.discard();
                return Err(format!("plotting: {e}"));
            }
        }
    }
    let failed: Vec<&str> = results.iter().filter(|r| r.failed()).map(|r| r.name.as_str()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("bench rows failed: {}", failed.join(", ")))
    }
}

/// `shmq bench --sweep`.
fn run_sweep(args: &BenchArgs) -> Result<(), String> {
    let ctx = Ctx {
        // Each child's core is set per cell; these are unused.
        cores: args.cores.0,
        warmup: 0,
        rounds: 0,
        duration: Duration::from_millis(args.cell_ms),
        row_timeout: Duration::from_secs(args.row_timeout.unwrap_or(20).max(1)),
        seed_messages: 0,
        capacity: args.capacity as usize,
    };
    let json_out = args.json.as_deref().map(|p| report::OutFile::open(p, "--json")).transpose()?;
    sweep::run(&ctx, usize::from(args.max), args.size, json_out)
}

/// `shmq __bench-child`: side B of one row.
pub fn child(args: ChildArgs) -> Result<(), String> {
    harness::pin_to(args.core).map_err(|e| format!("pinning to core {}: {e}", args.core))?;
    let dl = harness::Deadline::after(Duration::from_millis(args.timeout_ms));
    baselines::child(&args, dl)
        .or_else(|| shmq_rows::child(&args, dl))
        .unwrap_or_else(|| Err(format!("unknown bench row {:?}", args.row)))
        .map_err(|e| format!("bench child {}: {e}", args.row))
}
