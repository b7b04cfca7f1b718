//! Turning measurements into the aligned table, the JSON file and the SVG plot.

use super::{Limit, Measured, RowError};
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Latency,
    Throughput,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Latency => "latency",
            Kind::Throughput => "throughput",
        }
    }
}

/// Round-trip percentiles in nanoseconds, and the curve the plot draws.
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// Mean round trip: finer than the percentiles where the clock ticks coarsely (the mean of
    /// many samples taken at random clock phases is not quantised), but pulled up by the tail.
    pub mean: f64,
    pub samples: u64,
    /// `(quantile, ns)` points from 0 up to 1.
    pub curve: Vec<(f64, u64)>,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let curve = h.iter_quantiles(4).map(|v| (v.quantile_iterated_to(), v.value_iterated_to())).collect();
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
            samples: h.len(),
            curve,
        }
    }
}

pub struct Throughput {
    pub size: usize,
    pub messages: u64,
    pub elapsed: Duration,
    /// Context switches (voluntary and involuntary) of every process of the row, start-up
    /// included, where the row counts them.
    pub context_switches: Option<u64>,
}

impl Throughput {
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn bytes_per_sec(&self) -> f64 {
        self.msgs_per_sec() * self.size as f64
    }

    pub fn switches_per_msg(&self) -> Option<f64> {
        self.context_switches.map(|c| c as f64 / self.messages.max(1) as f64)
    }
}

pub struct RowResult {
    pub name: String,
    pub kind: Kind,
    pub limit: Option<Limit>,
    pub latency: Option<Latency>,
    pub throughput: Option<Throughput>,
    /// p50 over `ratio_base`: the p50 of the limit of the same kind, measured in this run.
    pub ratio: Option<f64>,
    /// The limit's p50 that `ratio` was computed from: the adjacent measurement if there is one,
    /// else the limit's own row in this run.
    pub ratio_base: Option<u64>,
    /// p50 of the limit re-measured just before this row (the host may move the cores between
    /// rows, so the adjacent measurement is the fairer baseline).
    pub adjacent_limit: Option<u64>,
    /// A throughput row's baseline row, and this row's rate over the baseline's, where both ran.
    pub baseline: Option<&'static str>,
    pub baseline_ratio: Option<f64>,
    pub skipped: Option<String>,
    pub error: Option<String>,
}

impl RowResult {
    pub fn new(name: &str, kind: Kind, limit: Option<Limit>, outcome: Result<Measured, RowError>) -> Self {
        let mut r = RowResult {
            name: name.into(),
            kind,
            limit,
            latency: None,
            throughput: None,
            ratio: None,
            ratio_base: None,
            adjacent_limit: None,
            baseline: None,
            baseline_ratio: None,
            skipped: None,
            error: None,
        };
        match outcome {
            Ok(Measured::Latency(h)) => r.latency = Some(Latency::of(&h)),
            Ok(Measured::Throughput { size, messages, elapsed, context_switches }) => {
                r.throughput = Some(Throughput { size, messages, elapsed, context_switches })
            }
            Err(RowError::Skipped(s)) => r.skipped = Some(s),
            Err(RowError::Failed(s)) => r.error = Some(s),
        }
        r
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    fn limit_row(&self) -> Option<&'static str> {
        self.limit.map(|l| match l {
            Limit::Spin => "atomic-limit",
            Limit::Block => "futex-limit",
        })
    }
}

/// Fills in each row's ratio to its limit, where both were measured: the limit re-measured just
/// before the row, or failing that the limit's own row; and each throughput row's ratio to its
/// baseline row.
pub fn add_ratios(results: &mut [RowResult]) {
    let rate_of = |name: &str| {
        results.iter().find(|r| r.name == name).and_then(|r| r.throughput.as_ref()).map(Throughput::msgs_per_sec)
    };
    let rates: Vec<Option<f64>> = results.iter().map(|r| r.baseline.and_then(rate_of)).collect();
    for (r, base) in results.iter_mut().zip(rates) {
        if let (Some(t), Some(base)) = (&r.throughput, base) {
            r.baseline_ratio = Some(t.msgs_per_sec() / base.max(1e-9));
        }
    }
    let p50_of = |results: &[RowResult], name: &str| {
        results.iter().find(|r| r.name == name).and_then(|r| r.latency.as_ref()).map(|l| l.p50)
    };
    let limits: Vec<Option<u64>> = results.iter().map(|r| r.limit_row().and_then(|n| p50_of(results, n))).collect();
    for (r, base) in results.iter_mut().zip(limits) {
        if let (Some(l), Some(base)) = (&r.latency, r.adjacent_limit.or(base)) {
            r.ratio = Some(l.p50 as f64 / base.max(1) as f64);
            r.ratio_base = Some(base);
        }
    }
}

/// A file for `--json` or `--plot`, opened before any row runs, so that a path that cannot be
/// written is refused at once instead of after minutes of measuring.
pub struct OutFile {
    path: PathBuf,
    file: File,
    /// Whether opening created it (it is removed again if nothing is written).
    created: bool,
}

impl OutFile {
    /// Opens (or creates) `path` for writing without truncating it yet; `flag` names the option
    /// in the error.
    pub fn open(path: &Path, flag: &str) -> Result<OutFile, String> {
        let existed = path.symlink_metadata().is_ok();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot write the {flag} file {}: {e}", path.display()))?;
        Ok(OutFile { path: path.to_owned(), file, created: !existed })
    }

    /// Replaces the file's contents with `text`.
    pub fn write(mut self, text: &str) -> Result<(), String> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all(text.as_bytes()))
            .map_err(|e| format!("writing {}: {e}", self.path.display()))
    }

    /// Gives up on the file: removes it if opening created it.
    pub fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// How the run was configured.
pub struct Meta {
    pub cores: [usize; 2],
    pub quick: bool,
    pub rounds: u64,
    pub warmup: u64,
    pub duration: Duration,
    /// Messages in all of each seed-demo row.
    pub seed_messages: u64,
    /// Slots of the ring in each throughput row.
    pub capacity: usize,
}

fn ns(v: u64) -> String {
    match v {
        0..=9_999 => format!("{v} ns"),
        10_000..=999_999 => format!("{:.1} µs", v as f64 / 1e3),
        _ => format!("{:.2} ms", v as f64 / 1e6),
    }
}

pub(super) fn si(v: f64, unit: &str) -> String {
    let (d, p) = match v {
        v if v >= 1e9 => (1e9, "G"),
        v if v >= 1e6 => (1e6, "M"),
        v if v >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    format!("{:.1} {p}{unit}", v / d)
}

/// The readable report: a latency table, then a throughput table.
pub fn table(results: &[RowResult], meta: &Meta) -> String {
    let mut o = String::new();
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let lat: Vec<&RowResult> = results.iter().filter(|r| r.kind == Kind::Latency).collect();
    let tput: Vec<&RowResult> = results.iter().filter(|r| r.kind == Kind::Throughput).collect();
    if !lat.is_empty() {
        let _ = writeln!(
            o,
            "round-trip latency: {} round trips per row after {} warm-up, cores {},{}",
            meta.rounds, meta.warmup, meta.cores[0], meta.cores[1]
        );
        let _ = writeln!(
            o,
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  p50 vs limit (the limit's p50)",
            "row", "p50", "p90", "p99", "p99.9", "max"
        );
        for r in lat {
            let _ = write!(o, "{:<width$}  ", r.name);
            match (&r.latency, &r.skipped, &r.error) {
                (Some(l), _, _) => {
                    let _ = write!(
                        o,
                        "{:>9}  {:>9}  {:>9}  {:>9}  {:>9}",
                        ns(l.p50),
                        ns(l.p90),
                        ns(l.p99),
                        ns(l.p999),
                        ns(l.max)
                    );
                    if let (Some(x), Some(base), Some(limit)) = (r.ratio, r.ratio_base, r.limit_row()) {
                        // The limit's p50 beside the ratio, so the ratio can be checked here.
                        let from = if r.adjacent_limit.is_some() { "" } else { ", the limit's row" };
                        let _ = write!(o, "  {x:.2}x {limit} ({}{from})", ns(base));
                    }
                }
                (None, Some(s), _) => {
                    let _ = write!(o, "skipped: {s}");
                }
                (None, None, Some(e)) => {
                    let _ = write!(o, "FAILED: {e}");
                }
                (None, None, None) => {}
            }
            let _ = writeln!(o);
        }
    }
    if !tput.is_empty() {
        if !o.is_empty() {
            let _ = writeln!(o);
        }
        let _ = writeln!(
            o,
            "throughput: {:?} per row, {} slots; processes (shmq) or threads (crossbeam, rtrb) pinned to cores {},{}",
            meta.duration, meta.capacity, meta.cores[0], meta.cores[1]
        );
        let _ = writeln!(
            o,
            "{:<width$}  {:>6}  {:>12}  {:>12}  {:>12}  notes",
            "row", "size", "msgs/s", "bytes/s", "messages"
        );
        for r in &tput {
            let _ = write!(o, "{:<width$}  ", r.name);
            match (&r.throughput, &r.skipped, &r.error) {
                (Some(t), _, _) => {
                    let _ = write!(
                        o,
                        "{:>6}  {:>12}  {:>12}  {:>12}",
                        format!("{} B", t.size),
                        si(t.msgs_per_sec(), "msg/s"),
                        si(t.bytes_per_sec(), "B/s"),
                        t.messages
                    );
                    let mut notes = Vec::new();
                    if let (Some(x), Some(base)) = (r.baseline_ratio, r.baseline) {
                        notes.push(format!("{x:.2}x {base}"));
                    }
                    if let Some(c) = t.switches_per_msg() {
                        notes.push(format!("{c:.2} ctx switches/msg"));
                    }
                    if !notes.is_empty() {
                        let _ = write!(o, "  {}", notes.join(", "));
                    }
                }
                (None, Some(s), _) => {
                    let _ = write!(o, "skipped: {s}");
                }
                (None, None, Some(e)) => {
                    let _ = write!(o, "FAILED: {e}");
                }
                (None, None, None) => {}
            }
            let _ = writeln!(o);
        }
        if tput.iter().any(|r| r.name.starts_with("seed-demo-")) {
            let _ = writeln!(
                o,
                "seed-demo rows: 10 producer and 10 consumer processes (producers and the parent on core {}, \
                 consumers on core {}), a queue of capacity 3, {} messages in all, each counted exactly once; \
                 ctx switches: every process of the row, start-up included",
                meta.cores[0], meta.cores[1], meta.seed_messages
            );
        }
    }
    o
}

pub(super) fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

/// A finite JSON number (or null).
pub(super) fn json_f64(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        _ => "null".into(),
    }
}

/// Every row, as a JSON document.
pub fn json(results: &[RowResult], meta: &Meta) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{{");
    let _ = writeln!(
        o,
        "  \"cores\": [{}, {}],\n  \"quick\": {},\n  \"rounds\": {},\n  \"warmup\": {},\n  \"throughput_duration_ms\": {},\n  \"seed_demo_messages\": {},\n  \"capacity\": {},",
        meta.cores[0],
        meta.cores[1],
        meta.quick,
        meta.rounds,
        meta.warmup,
        meta.duration.as_millis(),
        meta.seed_messages,
        meta.capacity
    );
    let _ = writeln!(o, "  \"rows\": [");
    for (k, r) in results.iter().enumerate() {
        let l = r.latency.as_ref();
        let t = r.throughput.as_ref();
        let fields = [
            ("name", json_str(&r.name)),
            ("kind", json_str(r.kind.name())),
            (
                "status",
                json_str(if r.error.is_some() {
                    "failed"
                } else if r.skipped.is_some() {
                    "skipped"
                } else {
                    "ok"
                }),
            ),
            ("note", r.error.as_ref().or(r.skipped.as_ref()).map_or("null".into(), |s| json_str(s))),
            ("samples", json_opt(l.map(|l| l.samples))),
            ("p50_ns", json_opt(l.map(|l| l.p50))),
            ("p90_ns", json_opt(l.map(|l| l.p90))),
            ("p99_ns", json_opt(l.map(|l| l.p99))),
            ("p999_ns", json_opt(l.map(|l| l.p999))),
            ("max_ns", json_opt(l.map(|l| l.max))),
            ("mean_ns", json_f64(l.map(|l| l.mean))),
            ("msg_size", json_opt(t.map(|t| t.size))),
            ("messages", json_opt(t.map(|t| t.messages))),
            ("msgs_per_sec", json_f64(t.map(|t| t.msgs_per_sec()))),
            ("bytes_per_sec", json_f64(t.map(|t| t.bytes_per_sec()))),
            ("context_switches", json_opt(t.and_then(|t| t.context_switches))),
            ("context_switches_per_msg", json_f64(t.and_then(Throughput::switches_per_msg))),
            ("baseline", r.baseline.map_or("null".into(), json_str)),
            ("ratio_to_baseline", json_f64(r.baseline_ratio)),
            ("ratio_to_limit", json_f64(r.ratio)),
            ("limit", r.limit_row().map_or("null".into(), json_str)),
            ("limit_p50_ns", json_opt(r.ratio_base)),
            ("limit_adjacent", json_opt(r.ratio_base.map(|_| r.adjacent_limit.is_some()))),
        ];
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}: {v}", json_str(k))).collect();
        let comma = if k + 1 < results.len() { "," } else { "" };
        let _ = writeln!(o, "    {{{}}}{comma}", body.join(", "));
    }
    let _ = writeln!(o, "  ]\n}}");
    o
}

/// Distinct line colours (Tableau 10, then a few darker ones).
const COLORS: [(u8, u8, u8); 14] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (0, 0, 128),
    (128, 0, 0),
    (0, 100, 0),
];

/// Latency by percentile, HdrHistogram style: x is `1 / (1 - quantile)` on a log axis (so 90%,
/// 99%, 99.9% are evenly spaced), y is the round trip on a log axis (ticks in ns, µs or ms).
/// Returns the SVG document.
pub fn plot(results: &[RowResult]) -> Result<String, String> {
    use plotters::prelude::*;
    let rows: Vec<(&str, &Latency)> =
        results.iter().filter_map(|r| r.latency.as_ref().map(|l| (r.name.as_str(), l))).collect();
    if rows.is_empty() {
        return Err("no latency rows to plot".into());
    }
    let x_of = |q: f64, n: u64| 1.0 / (1.0 - q).max(1.0 / n.max(1) as f64);
    let x_max = rows.iter().map(|(_, l)| x_of(1.0, l.samples)).fold(10.0, f64::max);
    let y_min = rows.iter().flat_map(|(_, l)| l.curve.first()).map(|p| p.1).min().unwrap_or(1);
    let y_max = rows.iter().map(|(_, l)| l.max).max().unwrap_or(1);
    let e = |e: &dyn std::fmt::Display| e.to_string();

    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("shmq bench: round-trip latency by percentile", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_max).log_scale(), ((y_min.max(1) as f64 * 0.8)..(y_max as f64 * 1.25)).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        // No unit here: each tick carries its own (ns, µs, ms).
        .y_desc("round trip")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            if p < 99.0 {
                format!("{p:.0}%")
            } else {
                let digits = (-(1.0 - p / 100.0).log10()).round() as usize - 2;
                format!("{p:.digits$}%")
            }
        })
        .y_label_formatter(&|y| ns(*y as u64))
        .draw()
        .map_err(|x| e(&x))?;
    for (k, (name, l)) in rows.iter().enumerate() {
        let (r, g, b) = COLORS[k % COLORS.len()];
        let color = RGBColor(r, g, b).to_rgba();
        let points = l.curve.iter().map(|&(q, v)| (x_of(q, l.samples), v.max(1) as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    drop(chart);
    drop(root);
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn ratios_use_the_limit_of_the_same_kind() {
        let lat = |v: u64| {
            let mut h = super::super::harness::new_histogram();
            h.record(v).unwrap();
            Ok(Measured::Latency(h))
        };
        let mut rs = vec![
            RowResult::new("atomic-limit", Kind::Latency, None, lat(100)),
            RowResult::new("futex-limit", Kind::Latency, None, lat(10_000)),
            RowResult::new("s", Kind::Latency, Some(Limit::Spin), lat(150)),
            RowResult::new("b", Kind::Latency, Some(Limit::Block), lat(20_000)),
        ];
        add_ratios(&mut rs);
        assert!((rs[2].ratio.unwrap() - 1.5).abs() < 0.01);
        assert!((rs[3].ratio.unwrap() - 2.0).abs() < 0.01);
        assert!(rs[0].ratio.is_none());
        assert_eq!(rs[2].ratio_base, Some(100));
    }

    #[test]
    fn the_table_and_json_show_the_limit_each_ratio_was_taken_from() {
        let lat = |v: u64| {
            let mut h = super::super::harness::new_histogram();
            h.record(v).unwrap();
            Ok(Measured::Latency(h))
        };
        let mut rs = vec![
            RowResult::new("atomic-limit", Kind::Latency, None, lat(100)),
            RowResult::new("adjacent", Kind::Latency, Some(Limit::Spin), lat(300)),
            RowResult::new("own-row", Kind::Latency, Some(Limit::Spin), lat(150)),
        ];
        rs[1].adjacent_limit = Some(200);
        add_ratios(&mut rs);
        let meta = Meta {
            cores: [0, 1],
            quick: true,
            rounds: 1,
            warmup: 0,
            duration: Duration::ZERO,
            seed_messages: 0,
            capacity: 1024,
        };
        let t = table(&rs, &meta);
        assert!(t.contains("1.50x atomic-limit (200 ns)"), "{t}");
        assert!(t.contains("1.50x atomic-limit (100 ns, the limit's row)"), "{t}");
        let j = json(&rs, &meta);
        assert!(j.contains("\"limit_p50_ns\": 200, \"limit_adjacent\": true"), "{j}");
        assert!(j.contains("\"limit_p50_ns\": 100, \"limit_adjacent\": false"), "{j}");
    }
}
