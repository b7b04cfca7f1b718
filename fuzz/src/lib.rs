//! The bodies of the fuzz targets. Each module has `run(data: &[u8])`; the libFuzzer binaries in
//! `fuzz_targets/` call it, and the main crate's `tests/fuzz_replay.rs` includes the same files
//! to replay the checked-in corpus under a plain `cargo test`.

pub mod hostile_peer;
pub mod open_segment;
pub mod pipe_ops;
pub mod queue_ops;
