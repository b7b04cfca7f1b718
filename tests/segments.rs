//! Opening segments that are not what they claim: every case is a typed error, never a panic.

use shmq::{Error, PipeBuilder, Queue};
use std::fs;
use std::time::{Duration, Instant};

mod common;
use common::unique;

fn path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// Creates a valid queue segment that outlives its handle, and returns its bytes.
fn valid_queue_bytes(name: &str) -> Vec<u8> {
    drop(Queue::builder().capacity(4).slot_size(32).unlink_on_drop(false).create(name).unwrap());
    let bytes = fs::read(path(name)).unwrap();
    fs::remove_file(path(name)).unwrap();
    bytes
}

fn open_bytes(name: &str, bytes: &[u8]) -> Result<Queue, Error> {
    fs::write(path(name), bytes).unwrap();
    let r = Queue::open(name);
    let _ = fs::remove_file(path(name));
    r
}

#[test]
fn garbage_is_bad_magic() {
    let name = unique("garbage");
    let junk: Vec<u8> = (0..16384u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert!(matches!(open_bytes(&name, &junk), Err(Error::BadMagic)));
}

#[test]
fn truncated_segment_is_a_size_mismatch() {
    let name = unique("trunc");
    let bytes = valid_queue_bytes(&name);
    assert!(matches!(open_bytes(&name, &bytes[..bytes.len() - 4096]), Err(Error::SizeMismatch(_))));
    assert!(matches!(open_bytes(&name, &bytes[..100]), Err(Error::SizeMismatch(_))));
}

#[test]
fn other_layout_version_is_refused() {
    let name = unique("version");
    let mut bytes = valid_queue_bytes(&name);
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        open_bytes(&name, &bytes),
        Err(Error::VersionMismatch { found: 99, expected: shmq::LAYOUT_VERSION })
    ));
}

#[test]
fn inconsistent_geometry_is_refused() {
    let name = unique("geometry");
    let valid = valid_queue_bytes(&name);
    // capacity (offset 24): a bigger ring than the file holds.
    let mut bytes = valid.clone();
    bytes[24..32].copy_from_slice(&5000u64.to_le_bytes());
    assert!(matches!(open_bytes(&name, &bytes), Err(Error::SizeMismatch(_))));
    // slot stride (offset 40) that disagrees with the slot size.
    let mut bytes = valid.clone();
    bytes[40..48].copy_from_slice(&16u64.to_le_bytes());
    assert!(matches!(open_bytes(&name, &bytes), Err(Error::SizeMismatch(_))));
    // capacity 0 and an unknown kind.
    let mut bytes = valid.clone();
    bytes[24..32].copy_from_slice(&0u64.to_le_bytes());
    assert!(matches!(open_bytes(&name, &bytes), Err(Error::Corrupt(_))));
    let mut bytes = valid;
    bytes[12..16].copy_from_slice(&7u32.to_le_bytes());
    assert!(matches!(open_bytes(&name, &bytes), Err(Error::Corrupt(_))));
}

#[test]
fn pipe_and_queue_are_different_kinds() {
    let name = unique("kind-pipe");
    let _end = PipeBuilder::new().unlink_on_drop(true).create(&name).unwrap();
    assert!(matches!(Queue::open(&name), Err(Error::WrongKind { found: "pipe", expected: "queue" })));
    let name = unique("kind-queue");
    let _q = Queue::builder().capacity(2).slot_size(8).unlink_on_drop(true).create(&name).unwrap();
    assert!(matches!(PipeBuilder::new().open(&name), Err(Error::WrongKind { found: "queue", expected: "pipe" })));
}

#[test]
fn empty_file_is_not_ready_after_a_bounded_wait() {
    let name = unique("empty");
    let t = Instant::now();
    assert!(matches!(open_bytes(&name, &[]), Err(Error::NotReady)));
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn half_built_segment_is_not_ready() {
    let name = unique("unready");
    let mut bytes = valid_queue_bytes(&name);
    bytes[16..20].copy_from_slice(&0u32.to_le_bytes()); // the ready word
    assert!(matches!(open_bytes(&name, &bytes), Err(Error::NotReady)));
}

#[test]
fn symlink_is_not_followed() {
    let name = unique("link");
    std::os::unix::fs::symlink("/etc/passwd", path(&name)).unwrap();
    let r = Queue::open(&name);
    fs::remove_file(path(&name)).unwrap();
    assert!(matches!(r, Err(Error::PermissionDenied(_))), "{r:?}");
}

#[test]
fn created_segments_have_the_requested_mode() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique("mode");
    let _q = Queue::builder().mode(0o640).unlink_on_drop(true).create(&name).unwrap();
    assert_eq!(fs::metadata(path(&name)).unwrap().permissions().mode() & 0o777, 0o640);
    let name = unique("mode-default");
    let _q = Queue::builder().capacity(1).slot_size(1).unlink_on_drop(true).create(&name).unwrap();
    assert_eq!(fs::metadata(path(&name)).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn segment_owned_by_another_user_is_refused() {
    let name = unique("foreign-owner");
    drop(Queue::builder().unlink_on_drop(false).create(&name).unwrap());
    // Only root can give a file away; elsewhere there is nothing to test.
    if std::os::unix::fs::chown(path(&name), Some(54321), None).is_ok() {
        let r = Queue::open(&name);
        assert!(matches!(r, Err(Error::PermissionDenied(_))), "{r:?}");
    }
    fs::remove_file(path(&name)).unwrap();
}
