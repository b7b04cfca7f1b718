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
    assert!(out.contains("x atomic-limit"), "ratio column: {out}");
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
