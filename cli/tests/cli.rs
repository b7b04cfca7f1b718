//! The `shmq` binary on real segments in /dev/shm: every run is bounded in time, every segment
//! has a unique name (the test's pid in it) and is removed at the end, even on failure.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shmq");
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `shmq args...`, killing it if it runs past [`LIMIT`].
fn shmq(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmq");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmq {args:?} ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut stderr).unwrap();
    Output { status, stdout, stderr }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = shmq(args);
    assert!(o.status.success(), "shmq {args:?} failed: {}{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

fn fails(args: &[&str]) -> (i32, String, String) {
    let o = shmq(args);
    assert!(!o.status.success(), "shmq {args:?} should have failed: {}", text(&o.stdout));
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

/// A unique segment name, removed from /dev/shm when dropped.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        Name(format!("/shmq-cli-{}-{tag}", std::process::id()))
    }

    fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

#[test]
fn create_ls_stat_put_get_rm_round_trip() {
    let n = Name::new("life");
    let name = n.0.as_str();
    ok(&["create", name, "--capacity", "4", "--slot-size", "32"]);
    assert!(std::path::Path::new(&n.path()).exists());

    ok(&["put", name, "hello", "--timeout", "5"]);
    // The name may be given without its slash.
    ok(&["put", &name[1..], "wörld", "--timeout", "5"]);

    let ls = ok(&["ls"]);
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in ls:\n{ls}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..6], ["queue", "4", "32", "2", "0"], "{line}");

    let stat = ok(&["stat", name]);
    assert!(stat.contains("validates          yes"), "{stat}");
    assert!(stat.contains("capacity           4"), "{stat}");
    assert!(stat.contains("len                2"), "{stat}");

    assert_eq!(ok(&["get", name, "--timeout", "5"]), "hello\n");
    // Slot by slot: the first message read and freed for the next lap, the second still there.
    let slots = ok(&["stat", name, "--slots"]);
    assert!(slots.contains("slot 0             EMPTY at 1:0 (len 5)"), "{slots}");
    assert!(slots.contains("slot 1             FULL at 0:1 (len 6)"), "{slots}");
    assert!(slots.contains("slot 3             EMPTY at 0:3"), "{slots}");
    let two = ok(&["stat", "--slots", name, "--max-slots", "2"]);
    assert!(two.contains("first 2 of 4 shown") && !two.contains("slot 2 "), "{two}");
    assert_eq!(ok(&["get", name, "--timeout", "5"]), "wörld\n");
    // Empty now: a bounded get fails (timed out, or closed since the producers have gone).
    let start = Instant::now();
    let (code, _, err) = fails(&["get", name, "--timeout", "0.2"]);
    assert_eq!(code, 1);
    assert!(err.contains(name), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // Queues made by `shmq create` are persistent: clients that came and went close nothing.
    ok(&["put", name, "again", "--timeout", "5"]);
    assert_eq!(ok(&["get", name, "--timeout", "5"]), "again\n");

    // Creating it again is refused.
    let (code, _, err) = fails(&["create", name]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");

    assert!(ok(&["rm", name]).contains("removed"));
    assert!(!std::path::Path::new(&n.path()).exists());
    let (_, _, err) = fails(&["stat", name]);
    assert!(err.contains("no shmq segment"), "{err}");
}

#[test]
fn bad_names_are_refused_with_a_message() {
    for bad in ["a/b", "/a/b", "/", ".."] {
        for args in [
            vec!["stat", bad],
            vec!["rm", bad],
            vec!["put", bad, "x", "--timeout", "0"],
            vec!["get", bad, "--timeout", "0"],
            vec!["create", bad],
        ] {
            let (code, _, err) = fails(&args);
            assert_eq!(code, 1, "{args:?}");
            assert!(err.contains("invalid segment name"), "{args:?}: {err}");
        }
    }
    let long = format!("/{}", "x".repeat(300));
    let (_, _, err) = fails(&["stat", &long]);
    assert!(err.contains("invalid segment name"), "{err}");
    // Usage errors are clap's exit code 2.
    let (code, _, _) = fails(&["put"]);
    assert_eq!(code, 2);
    let (code, _, _) = fails(&["bench", "--cores", "0"]);
    assert_eq!(code, 2);
}

#[test]
fn missing_segments_are_reported() {
    let n = Name::new("missing");
    let (code, _, err) = fails(&["stat", &n.0]);
    assert_eq!(code, 1);
    assert!(err.contains("no shmq segment"), "{err}");
    let (_, _, err) = fails(&["get", &n.0, "--timeout", "0"]);
    assert!(err.contains("no shmq segment"), "{err}");
    let (_, _, err) = fails(&["rm", &n.0]);
    assert!(err.contains("no shmq segment"), "{err}");
}

#[test]
fn corrupt_and_foreign_files_are_reported_never_waited_for() {
    // The magic number, then a header that lies about its sizes, at full header length (16 KiB:
    // more than the header of any layout so far).
    let corrupt = Name::new("corrupt");
    let mut bytes = vec![0u8; 16384];
    bytes[..8].copy_from_slice(b"SHMQSEG\0");
    bytes[8..12].copy_from_slice(&shmq::LAYOUT_VERSION.to_le_bytes()); // version
    bytes[12..16].copy_from_slice(&1u32.to_le_bytes()); // kind: queue
    bytes[16..20].copy_from_slice(&0x5244_5921u32.to_le_bytes()); // ready
    bytes[20..24].copy_from_slice(&1u32.to_le_bytes()); // ring count
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes()); // capacity
    std::fs::write(corrupt.path(), &bytes).unwrap();
    // The magic number and nothing else.
    let truncated = Name::new("truncated");
    std::fs::write(truncated.path(), b"SHMQSEG\0").unwrap();
    // The magic number, never published as ready (a creator that died half way).
    let unready = Name::new("unready");
    let mut bytes = vec![0u8; 16384];
    bytes[..8].copy_from_slice(b"SHMQSEG\0");
    std::fs::write(unready.path(), &bytes).unwrap();
    // Not ours at all.
    let foreign = Name::new("foreign");
    std::fs::write(foreign.path(), vec![0xabu8; 10_000]).unwrap();

    for (n, says) in [(&corrupt, "capacity"), (&truncated, "truncated"), (&unready, "not ready")] {
        let start = Instant::now();
        let (code, out, err) = fails(&["stat", &n.0]);
        assert_eq!(code, 1);
        assert!(out.contains("validates          NO"), "{out}");
        assert!(err.contains(says), "{}: {err}", n.0);
        assert!(start.elapsed() < Duration::from_millis(1500), "stat waited");
        // ls lists them with their problem instead of failing.
        let ls = ok(&["ls"]);
        assert!(ls.lines().any(|l| l.starts_with(&n.0)), "{ls}");
    }
    let (code, _, err) = fails(&["stat", &foreign.0]);
    assert_eq!(code, 1);
    assert!(err.contains("not a shmq segment"), "{err}");
    assert!(!ok(&["ls"]).contains(&foreign.0));

    // Opening one as a queue fails with a message, never a hang or a panic.
    let (_, _, err) = fails(&["put", &corrupt.0, "x", "--timeout", "0"]);
    assert!(!err.contains("panicked"), "{err}");

    // rm removes broken shmq segments; a foreign file only with --force.
    ok(&["rm", &corrupt.0, &truncated.0]);
    assert!(!std::path::Path::new(&corrupt.path()).exists());
    assert!(!std::path::Path::new(&truncated.path()).exists());
    let (code, _, err) = fails(&["rm", &foreign.0]);
    assert_eq!(code, 1);
    assert!(err.contains("not a shmq segment"), "{err}");
    assert!(std::path::Path::new(&foreign.path()).exists());
    ok(&["rm", "--force", &foreign.0]);
    assert!(!std::path::Path::new(&foreign.path()).exists());
    ok(&["rm", &unready.0]);
}

#[test]
fn rm_refuses_a_live_segment_unless_forced_and_stale_spares_it() {
    // Only this test's segments are candidates for --stale (see --prefix below): other tests,
    // and other people's segments on this machine, are never touched.
    let live = Name::new("rmtest-live");
    let stale = Name::new("rmtest-stale");
    let prefix = format!("/shmq-cli-{}-rmtest-", std::process::id());
    ok(&["create", &stale.0, "--capacity", "2", "--slot-size", "8"]);
    ok(&["create", &live.0, "--capacity", "2", "--slot-size", "8"]);
    // A producer blocked in `put` on the full queue keeps the segment alive while it waits.
    ok(&["put", &live.0, "one", "--timeout", "5"]);
    ok(&["put", &live.0, "two", "--timeout", "5"]);
    let mut putter = Command::new(BIN)
        .args(["put", &live.0, "three", "--timeout", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let stat = shmq(&["stat", &live.0]);
        if text(&stat.stdout).contains("1 alive") {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = putter.kill();
            let _ = putter.wait();
            panic!("the blocked put never showed as attached");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _, err) = fails(&["rm", &live.0]);
    assert_eq!(code, 1);
    assert!(err.contains("live participant"), "{err}");

    let out = ok(&["rm", "--stale", "--prefix", &prefix]);
    assert!(out.contains(&stale.0), "{out}");
    assert!(!out.contains(&live.0), "{out}");
    assert!(!std::path::Path::new(&stale.path()).exists());
    assert!(std::path::Path::new(&live.path()).exists());

    // --force removes the name even so; the putter keeps its mapping, and we end it.
    assert!(ok(&["rm", "--force", &live.0]).contains("removed"));
    assert!(!std::path::Path::new(&live.path()).exists());
    assert!(putter.try_wait().unwrap().is_none(), "the putter should still be blocked");
    putter.kill().unwrap();
    putter.wait().unwrap();
}

/// The optional peers (cargo features `ipc-channel` and `iceoryx2`) measure real round trips:
/// every sample is an echo of the value just sent.
#[test]
#[cfg(any(feature = "ipc-channel", feature = "iceoryx2"))]
fn optional_peer_rows_measure_round_trips() {
    let mut rows = vec![];
    if cfg!(feature = "ipc-channel") {
        rows.push("ipc-channel");
    }
    if cfg!(feature = "iceoryx2") {
        rows.push("iceoryx2");
    }
    let dir = std::env::temp_dir().join(format!("shmq-cli-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = ok(&["bench", "--rounds", "2000", "--rows", &rows.join(","), "--json", json.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let got: Vec<&str> = v["rows"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(got, rows, "{out}");
    for r in v["rows"].as_array().unwrap() {
        assert_eq!(r["samples"], 2000, "{out}");
        assert!(r["p50_ns"].as_u64().unwrap() > 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quick_bench_writes_valid_json() {
    let dir = std::env::temp_dir().join(format!("shmq-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let svg = dir.join("out.svg");
    let out = ok(&[
        "bench",
        "--quick",
        "--rounds",
        "2000",
        "--rows",
        "atomic-limit,pipe(2),shmq-queue-spin,shmq-pipe-spin,shmq-queue-1to1-64",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.contains("atomic-limit"), "{out}");
    assert!(out.contains("x atomic-limit ("), "ratio column with the limit's p50: {out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["atomic-limit", "pipe(2)", "shmq-queue-spin", "shmq-pipe-spin", "shmq-queue-1to1-64"]);
    for r in &rows[..4] {
        assert_eq!(r["kind"], "latency");
        assert_eq!(r["samples"], 2000);
        let p = |k: &str| r[k].as_u64().unwrap();
        assert!(p("p50_ns") > 0 && p("p50_ns") <= p("p99_ns") && p("p99_ns") <= p("max_ns"));
    }
    for r in &rows[2..4] {
        assert!(r["ratio_to_limit"].as_f64().unwrap() > 0.0);
        assert_eq!(r["limit"], "atomic-limit");
        // The limit's p50 the ratio was taken from, also in the table beside the ratio.
        let base = r["limit_p50_ns"].as_u64().unwrap();
        let ratio = r["p50_ns"].as_u64().unwrap() as f64 / base as f64;
        assert!((ratio - r["ratio_to_limit"].as_f64().unwrap()).abs() < 0.01, "{r}");
    }
    assert_eq!(rows[4]["kind"], "throughput");
    assert!(rows[4]["msgs_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[4]["msg_size"], 64);
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg"));
    let _ = std::fs::remove_dir_all(&dir);

    let (code, _, err) = fails(&["bench", "--rows", "no-such-row"]);
    assert_eq!(code, 1);
    assert!(err.contains("no bench row"), "{err}");
}

/// The awaited rows (shmq's feature `async` on tokio current-thread runtimes) measure real round
/// trips, the shmq ones compared with the futex limit as the blocking rows are, and tokio's
/// in-process mpsc channel beside them with no limit.
#[test]
fn async_rows_measure_round_trips() {
    let dir = std::env::temp_dir().join(format!("shmq-cli-async-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = ok(&[
        "bench",
        "--quick",
        "--rows",
        "shmq-pipe-async,shmq-queue-async,tokio-mpsc",
        "--json",
        json.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    // In the order of `shmq bench --list`.
    assert_eq!(names, ["shmq-queue-async", "shmq-pipe-async", "tokio-mpsc"], "{out}");
    for r in rows {
        assert_eq!(r["status"], "ok", "{out}");
        assert_eq!(r["kind"], "latency");
        assert_eq!(r["samples"], v["rounds"], "{r}");
        let p = |k: &str| r[k].as_u64().unwrap();
        assert!(p("p50_ns") > 0 && p("p50_ns") <= p("p99_ns") && p("p99_ns") <= p("max_ns"), "{r}");
        // A round trip of 8 bytes: microseconds, tens of milliseconds on a very loaded host.
        assert!(p("p50_ns") < 100_000_000, "{r}");
    }
    for r in &rows[..2] {
        assert_eq!(r["limit"], "futex-limit", "{r}");
        assert_eq!(r["limit_adjacent"], true, "{r}");
        let ratio = r["p50_ns"].as_u64().unwrap() as f64 / r["limit_p50_ns"].as_u64().unwrap() as f64;
        assert!((ratio - r["ratio_to_limit"].as_f64().unwrap()).abs() < 0.01, "{r}");
    }
    assert!(rows[2]["limit"].is_null() && rows[2]["ratio_to_limit"].is_null(), "{}", rows[2]);
    assert_eq!(out.matches("x futex-limit (").count(), 2, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The POSIX message queue row measures real round trips, or is skipped with the reason where
/// the kernel offers no message queues.
#[test]
fn posix_mq_row_measures_round_trips_or_says_why_not() {
    let dir = std::env::temp_dir().join(format!("shmq-cli-mq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = ok(&["bench", "--rounds", "2000", "--rows", "posix-mq", "--json", json.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &v["rows"][0];
    assert_eq!(r["name"], "posix-mq", "{out}");
    if r["status"] == "skipped" {
        assert!(r["note"].as_str().unwrap().contains("not available"), "{out}");
    } else {
        assert_eq!(r["status"], "ok", "{out}");
        assert_eq!(r["samples"], 2000, "{out}");
        assert!(r["p50_ns"].as_u64().unwrap() > 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The seed demo (10 + 10 processes, capacity 3) counts every message in shmq and, where python3
/// is present, in Python's multiprocessing, and reports the ratio and the context switches.
#[test]
fn seed_demo_rows_count_every_message_and_compare_with_python() {
    let dir = std::env::temp_dir().join(format!("shmq-cli-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = ok(&["bench", "--rows", "seed-demo", "--seed-messages", "2003", "--json", json.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["seed_demo_messages"], 2003);
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["seed-demo-shmq", "seed-demo-python"], "{out}");
    let (shmq, python) = (&rows[0], &rows[1]);
    assert_eq!(shmq["status"], "ok", "{out}");
    assert_eq!(shmq["messages"], 2003);
    assert!(shmq["msgs_per_sec"].as_f64().unwrap() > 0.0);
    assert!(shmq["context_switches_per_msg"].as_f64().is_some(), "{shmq}");
    assert_eq!(shmq["baseline"], "seed-demo-python");
    if python["status"] == "ok" {
        assert_eq!(python["messages"], 2003);
        let ratio = shmq["msgs_per_sec"].as_f64().unwrap() / python["msgs_per_sec"].as_f64().unwrap();
        assert!((ratio - shmq["ratio_to_baseline"].as_f64().unwrap()).abs() < 0.01 * ratio, "{shmq}");
        assert!(out.contains("x seed-demo-python"), "{out}");
    } else {
        assert_eq!(python["status"], "skipped", "{out}");
        assert!(shmq["ratio_to_baseline"].is_null());
    }
    assert!(out.contains("ctx switches/msg") && out.contains("2003 messages in all"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The producers × consumers sweep on a tiny matrix with short cells: every cell measured in
/// shmq and crossbeam, every message counted, the matrices printed and the JSON complete.
#[test]
fn sweep_measures_every_cell_of_the_matrix() {
    let dir = std::env::temp_dir().join(format!("shmq-cli-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("sweep.json");
    let out = ok(&["bench", "--sweep", "--max", "2", "--cell-ms", "30", "--json", json.to_str().unwrap()]);
    for title in ["shmq queue, P producer and C consumer processes", "crossbeam ArrayQueue", "shmq / crossbeam"] {
        assert!(out.contains(title), "{out}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["max"], 2);
    let cells = v["cells"].as_array().unwrap();
    let shape: Vec<(u64, u64)> =
        cells.iter().map(|c| (c["producers"].as_u64().unwrap(), c["consumers"].as_u64().unwrap())).collect();
    assert_eq!(shape, [(1, 1), (1, 2), (2, 1), (2, 2)]);
    for c in cells {
        assert!(c["shmq_error"].is_null() && c["crossbeam_error"].is_null(), "{c}");
        assert!(c["shmq_messages"].as_u64().unwrap() > 0, "{c}");
        let ratio = c["shmq_msgs_per_sec"].as_f64().unwrap() / c["crossbeam_msgs_per_sec"].as_f64().unwrap();
        assert!((ratio - c["ratio"].as_f64().unwrap()).abs() < 0.01 * ratio + 1e-4, "{c}");
    }
    // The sweep is its own mode: the rows' options do not mix with it.
    let (code, _, err) = fails(&["bench", "--sweep", "--quick"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = fails(&["bench", "--max", "2"]);
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--size` and `--capacity` reach every cell of the sweep (shmq and crossbeam alike) and the
/// JSON; sizes other than the rows' and a zero capacity are usage errors.
#[test]
fn sweep_takes_the_message_size_and_the_capacity() {
    let dir = std::env::temp_dir().join(format!("shmq-cli-sweep-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("sweep.json");
    let args = ["bench", "--sweep", "--max", "1", "--cell-ms", "30", "--size", "64", "--capacity", "32"];
    let out = ok(&[&args[..], &["--json", json.to_str().unwrap()]].concat());
    assert!(out.contains("64-byte messages through 32 slots"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!((v["msg_size"].as_u64(), v["capacity"].as_u64()), (Some(64), Some(32)));
    let c = &v["cells"][0];
    assert!(c["shmq_error"].is_null() && c["crossbeam_error"].is_null(), "{c}");
    for bad in [&["--size", "7"][..], &["--capacity", "0"][..]] {
        let (code, out, err) = fails(&[&["bench", "--sweep", "--max", "1"][..], bad].concat());
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(bad[0]) && out.is_empty(), "{err} {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_refuses_zero_rounds_as_a_usage_error() {
    let (code, out, err) = fails(&["bench", "--rounds", "0", "--rows", "atomic-limit"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--rounds") && err.contains("at least 1"), "{err}");
    assert!(out.is_empty(), "nothing ran: {out}");
}

/// An output path that cannot be written is refused before any row runs (the rows asked for
/// here would take minutes), and nothing is left behind.
#[test]
fn bench_refuses_unwritable_output_paths_before_running() {
    let dir = std::env::temp_dir().join(format!("shmq-cli-unwritable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing_dir = dir.join("no-such-dir").join("out.json");
    let missing_svg = missing_dir.with_extension("svg");
    let good_json = dir.join("good.json");
    let slow = ["bench", "--rows", "latency", "--rounds", "100000000"];
    let cases: [(&[&str], &str); 3] = [
        (&["--json", missing_dir.to_str().unwrap()], "--json"),
        // A directory is no file to write to.
        (&["--json", dir.to_str().unwrap()], "--json"),
        (&["--json", good_json.to_str().unwrap(), "--plot", missing_svg.to_str().unwrap()], "--plot"),
    ];
    for (extra, flag) in cases {
        let start = Instant::now();
        let args: Vec<&str> = slow.iter().chain(extra).copied().collect();
        let (code, out, err) = fails(&args);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&format!("cannot write the {flag} file")), "{err}");
        assert!(out.is_empty(), "nothing ran: {out}");
        assert!(start.elapsed() < Duration::from_secs(10), "refused only after {:?}", start.elapsed());
    }
    // The --json file opened before the --plot path was refused is not left behind.
    assert!(!good_json.exists());
    let (code, _, err) = fails(&["bench", "--rows", "throughput", "--plot", dir.join("x.svg").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("--plot draws latency rows"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bench_row_that_overruns_is_killed_and_reported() {
    let start = Instant::now();
    let (code, out, err) =
        fails(&["bench", "--rows", "futex-limit,shmq-queue-spin", "--rounds", "1000000000", "--row-timeout", "1"]);
    assert_eq!(code, 1);
    assert!(out.contains("FAILED: timed out after 1s"), "{out}");
    assert!(err.contains("futex-limit, shmq-queue-spin"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn binary_messages_travel_whole_by_file_hex_and_raw() {
    let n = Name::new("binary");
    let name = n.0.as_str();
    ok(&["create", name, "--capacity", "4", "--slot-size", "16"]);
    // Hex in, hex out: bytes no text encoding survives, and a message larger than a slot.
    let bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x80).collect();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    ok(&["put", name, "--hex", &hex, "--timeout", "5"]);
    assert_eq!(ok(&["get", name, "--hex", "--timeout", "5"]), format!("{hex}\n"));
    // A file in, raw bytes out.
    let file = std::env::temp_dir().join(format!("shmq-cli-{}-binary", std::process::id()));
    std::fs::write(&file, &bytes).unwrap();
    ok(&["put", name, "--file", file.to_str().unwrap(), "--timeout", "5"]);
    let o = shmq(&["get", name, "--raw", "--timeout", "5"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, bytes, "--raw writes the bytes unchanged");
    // Plain `get` of a binary message refuses to print it as text, and keeps it (hex on stderr).
    ok(&["put", name, "--hex", "1b5b324a00ff", "--timeout", "5"]);
    let (_, out, err) = fails(&["get", name, "--timeout", "5"]);
    assert!(out.is_empty() && err.contains("1b5b324a00ff") && err.contains("--raw"), "{err}");
    std::fs::remove_file(file).unwrap();
    ok(&["rm", name, "--force"]);
}

#[test]
fn hostile_file_names_are_printed_escaped() {
    let n = Name(format!("/shmq-cli-{}-evil\u{1b}[2J\nremoved everything", std::process::id()));
    std::fs::write(n.path(), b"SHMQSEG\0and then nothing valid").unwrap();
    let listing = ok(&["ls"]);
    assert!(!listing.contains('\u{1b}'), "ls printed an escape code");
    assert!(!listing.contains("\nremoved everything"), "ls printed a forged line");
    assert!(listing.contains("\\u{1b}[2J\\nremoved everything"), "{listing}");
    let (_, _, err) = fails(&["stat", &n.0]);
    assert!(!err.contains('\u{1b}') && !err.contains("\nremoved"), "{err}");
    let out = ok(&["rm", &n.0, "--force"]);
    assert_eq!(out.lines().count(), 1, "one line per removed name: {out:?}");
}

#[test]
fn rm_force_removes_a_symlink_a_fifo_and_an_empty_directory() {
    let pid = std::process::id();
    let target = Name::new("link-target");
    std::fs::write(target.path(), b"keep me").unwrap();
    let link = Name::new("symlink");
    std::os::unix::fs::symlink(target.path(), link.path()).unwrap();
    let (_, _, err) = fails(&["rm", &link.0]);
    assert!(err.contains("symbolic link"), "a symlink is named for what it is: {err}");
    ok(&["rm", &link.0, "--force"]);
    assert!(std::fs::symlink_metadata(link.path()).is_err(), "the link is gone");
    assert_eq!(std::fs::read(target.path()).unwrap(), b"keep me", "its target is not touched");

    let fifo = Name::new("fifo");
    let c = std::ffi::CString::new(fifo.path()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    ok(&["rm", &fifo.0, "--force"]);
    assert!(std::fs::symlink_metadata(fifo.path()).is_err());

    let dir = format!("/dev/shm/shmq-cli-{pid}-dir");
    std::fs::create_dir(&dir).unwrap();
    ok(&["rm", &format!("/shmq-cli-{pid}-dir"), "--force"]);
    assert!(std::fs::symlink_metadata(&dir).is_err());
}
