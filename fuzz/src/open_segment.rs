//! Arbitrary bytes as a segment file: opening it as a queue or as a pipe returns a handle or a
//! typed error, never panics and never touches memory outside the mapping; a handle that opens
//! survives a few non-blocking operations.
//!
//! Inputs are either raw bytes or a valid segment (made by this build) with patches and a size
//! change, so the fuzzer reaches the checks behind the magic number. Each input is opened as one
//! kind, chosen by the input.

use arbitrary::{Arbitrary, Unstructured};
use shmq::fuzzing;
use shmq::{PipeBuilder, Queue};
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw {
        /// Open it as a pipe (else as a queue). One kind per execution: each open maps the file
        /// and registers, which is most of an execution's cost.
        as_pipe: bool,
        bytes: Vec<u8>,
    },
    Patched {
        /// Open it as the other kind than it was made as.
        cross: bool,
        pipe: bool,
        duplex: bool,
        capacity: u8,
        slot_size: u8,
        patches: Vec<Patch>,
        /// Bytes added (positive) or cut (negative), in units of 64.
        resize: i8,
    },
}

#[derive(Arbitrary, Debug)]
struct Patch {
    /// 0: header, 1: participant table, 2: ring control, 3: slots, else anywhere.
    region: u8,
    offset: u16,
    /// 1, 2, 4 or 8 bytes of `value`, little-endian.
    width: u8,
    value: u64,
}

/// `(pipe, duplex, capacity, slot_size)`.
type Geometry = (bool, bool, usize, usize);

/// The bytes of a fresh segment of this build, made once per geometry: creating a segment costs
/// a memfd and a registration, far more than the rest of an execution.
fn template(pipe: bool, duplex: bool, capacity: usize, slot_size: usize) -> Vec<u8> {
    thread_local! {
        static CACHE: RefCell<HashMap<Geometry, Vec<u8>>> = RefCell::default();
    }
    let key = (pipe, duplex && pipe, capacity, slot_size);
    CACHE
        .with(|c| c.borrow_mut().entry(key).or_insert_with(|| make_template(pipe, duplex, capacity, slot_size)).clone())
}

fn make_template(pipe: bool, duplex: bool, capacity: usize, slot_size: usize) -> Vec<u8> {
    if pipe {
        let (a, _b) = PipeBuilder::new()
            .duplex(duplex)
            .capacity(capacity)
            .slot_size(slot_size)
            .create_anonymous()
            .expect("anonymous pipe");
        fuzzing::pipe_segment(&a).to_vec()
    } else {
        let q = Queue::anonymous(capacity, slot_size).expect("anonymous queue");
        fuzzing::queue_segment(&q).to_vec()
    }
}

/// Applies `p` to `bytes` (a segment with the given ring layout), ignoring what falls outside.
fn patch(bytes: &mut [u8], layout: (usize, usize, usize), p: &Patch) {
    let (ring_offset, ring_bytes, _) = layout;
    let off = p.offset as usize;
    let at = match p.region % 5 {
        0 => off % 256,
        1 => 256 + off % 4096,
        2 => ring_offset + off % 640,
        3 => ring_offset + 640 + off % ring_bytes.saturating_sub(640).max(1),
        _ => off % bytes.len().max(1),
    };
    let width = 1 << (p.width % 4);
    for (i, b) in p.value.to_le_bytes()[..width].iter().enumerate() {
        if let Some(slot) = bytes.get_mut(at + i) {
            *slot = *b;
        }
    }
}

fn exercise_queue(bytes: &[u8]) {
    let Ok(q) = fuzzing::open_queue(bytes) else {
        return;
    };
    let slot = q.slot_size();
    assert!(q.len() <= q.capacity());
    let _ = q.try_put(b"fuzz");
    let _ = q.try_put(&vec![7; slot]);
    assert!(matches!(q.try_put(&vec![7; slot + 1]), Err(shmq::SendError::TooLarge { .. })));
    for _ in 0..3 {
        if let Ok(m) = q.try_get() {
            assert!(m.len() <= slot, "a message longer than its slot");
            std::hint::black_box(m.iter().map(|&b| b as u64).sum::<u64>());
        }
    }
    if let Ok(mut r) = q.try_reserve() {
        assert_eq!(r.buf().len(), slot);
        r.buf().fill(1);
        let _ = r.commit(slot.min(3));
    }
    assert!(q.len() <= q.capacity());
}

fn exercise_pipe(bytes: &[u8]) {
    let Ok((mut end1, end0)) = fuzzing::open_pipe(bytes) else {
        return;
    };
    let mut ends = vec![];
    if let Ok(e) = end0 {
        ends.push(e);
    }
    let _ = end1.try_send(b"fuzz");
    ends.push(end1);
    for c in &mut ends {
        let _ = c.try_send(b"x");
        let _ = c.poll(Some(std::time::Duration::ZERO));
        for _ in 0..2 {
            if let Some(rx) = c.receiver() {
                if let Ok(m) = rx.try_recv() {
                    std::hint::black_box(m.iter().map(|&b| b as u64).sum::<u64>());
                }
                let _ = rx.recv_batch(4, |m| {
                    std::hint::black_box(m.len());
                });
            }
        }
    }
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let (as_pipe, bytes) = match input {
        Input::Raw { as_pipe, bytes } => (as_pipe, bytes),
        Input::Patched { cross, pipe, duplex, capacity, slot_size, patches, resize } => {
            let capacity = capacity as usize % 8 + 1;
            let slot_size = slot_size as usize % 200 + 1;
            let mut bytes = template(pipe, duplex, capacity, slot_size);
            let layout = fuzzing::ring_layout(&bytes).expect("a fresh segment has a header");
            for p in &patches {
                patch(&mut bytes, layout, p);
            }
            let len = (bytes.len() as isize + resize as isize * 64).max(0) as usize;
            bytes.resize(len, 0);
            (pipe != cross, bytes)
        }
    };
    if as_pipe {
        exercise_pipe(&bytes);
    } else {
        exercise_queue(&bytes);
    }
}
