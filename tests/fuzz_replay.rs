//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets' own
//! code (`fuzz/src/<target>.rs`, included here), so CI checks every input the fuzzers found
//! interesting without needing libFuzzer or a nightly toolchain. See docs/FUZZING.md.

use std::path::Path;

#[path = "../fuzz/src/hostile_peer.rs"]
mod hostile_peer;
#[path = "../fuzz/src/open_segment.rs"]
mod open_segment;
#[path = "../fuzz/src/pipe_ops.rs"]
mod pipe_ops;
#[path = "../fuzz/src/queue_ops.rs"]
mod queue_ops;

/// Runs `run` on every file of `fuzz/corpus/<target>/`; returns how many there were.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        eprintln!("{target}: {}", f.display());
        run(&data);
    }
    // The empty input, and one that is all ones, are always worth a run.
    run(&[]);
    run(&[0xff; 64]);
    files.len()
}

#[test]
fn open_segment_corpus_replays_clean() {
    assert!(replay("open_segment", open_segment::run) > 0);
}

#[test]
fn queue_ops_corpus_replays_clean() {
    assert!(replay("queue_ops", queue_ops::run) > 0);
}

#[test]
fn pipe_ops_corpus_replays_clean() {
    assert!(replay("pipe_ops", pipe_ops::run) > 0);
}

#[test]
fn hostile_peer_corpus_replays_clean() {
    assert!(replay("hostile_peer", hostile_peer::run) > 0);
}
