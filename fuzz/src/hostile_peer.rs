//! A hostile peer: while this process uses a queue and a pipe, the fuzzer's bytes overwrite the
//! segments (header fields, stamps, head/tail, lengths), as a malicious process mapping the same
//! memory could. This process must not panic, must not touch memory outside the segment, must
//! never hand out a message longer than the slot, and must not hang (only `try_*` calls here).
//! Typed errors (`Corrupt` and the like) are the expected outcome.
//!
//! Besides the overwrites between operations, a concurrent scribbler (a second thread, standing
//! for a peer process) can rewrite bytes of both segments over and over *while* the operations
//! run, so a check and the use of what it checked can see different bytes.

use arbitrary::{Arbitrary, Unstructured};
use shmq::fuzzing::{self, SegmentBytes};
use shmq::queue::InPlace;
use shmq::{Connection, PipeBuilder, Queue};
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes somewhere in a segment.
    Poke {
        pipe: bool,
        /// 0: header, 1: participant table, 2: a ring's control block, 3: its slots, else
        /// anywhere.
        region: u8,
        ring: bool,
        offset: u16,
        width: u8,
        value: u64,
    },
    /// Moves a ring's tail or head counter by a small amount.
    Nudge {
        pipe: bool,
        ring: bool,
        head: bool,
        delta: i8,
    },
    /// A well-formed but wrong stamp in a queue slot: any state, a nearby lap.
    Stamp {
        slot: u8,
        state: u8,
        owner: u16,
        laps: i8,
    },
    /// A message length in a slot header.
    Length {
        pipe: bool,
        ring: bool,
        slot: u8,
        value: u32,
    },
    QPut {
        len: u8,
    },
    QGet,
    QGetAndHold,
    QDropGuard(u8),
    QReserve {
        len: u8,
        commit: bool,
    },
    QClose,
    QLen,
    PSend {
        end: bool,
        len: u8,
    },
    PRecv {
        end: bool,
    },
    PSendBatch {
        end: bool,
        count: u8,
    },
    PRecvBatch {
        end: bool,
        max: u8,
    },
    PPoll {
        end: bool,
    },
}

/// One byte the concurrent scribbler keeps rewriting.
#[derive(Arbitrary, Debug)]
struct Scribble {
    pipe: bool,
    /// In the slots (stamps, lengths, payloads) rather than anywhere in the segment.
    slots: bool,
    offset: u16,
    value: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    slot_size: u8,
    duplex: bool,
    /// Bytes a second thread rewrites in a loop while `ops` run (none: no second thread).
    scribble: Vec<Scribble>,
    ops: Vec<Op>,
}

/// Where one segment's parts are.
struct Layout {
    ring_offset: usize,
    ring_bytes: usize,
    stride: usize,
}

const CTRL_BYTES: usize = 640;
const HEAD_OFFSET: usize = 128;

impl Layout {
    fn of(seg: &SegmentBytes<'_>) -> Layout {
        // The header's first bytes are enough (a copy of the whole segment costs more than the
        // rest of an execution).
        let header: Vec<u8> = (0..1024.min(seg.len())).map(|i| seg.read(i)).collect();
        let (ring_offset, ring_bytes, stride) = fuzzing::ring_layout(&header).expect("a fresh segment has a header");
        Layout { ring_offset, ring_bytes, stride }
    }

    fn ring(&self, r: bool) -> usize {
        self.ring_offset + if r { self.ring_bytes } else { 0 }
    }

    fn slot(&self, r: bool, idx: usize) -> usize {
        self.ring(r) + CTRL_BYTES + idx * self.stride
    }
}

fn read_u64(seg: &SegmentBytes<'_>, off: usize) -> u64 {
    u64::from_le_bytes(std::array::from_fn(|i| seg.read(off + i)))
}

/// Touches every byte of a received message and checks its length against the most a message
/// may hold: a slot for the queue, `slot × capacity` for a pipe (whose messages larger than a slot
/// arrive reassembled from consecutive slots, into memory of our own).
fn consume(m: &[u8], max: usize) {
    assert!(m.len() <= max, "a message of {} bytes where at most {max} fit", m.len());
    std::hint::black_box(m.iter().map(|&b| b as u64).sum::<u64>());
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let cap = input.capacity as usize % 4 + 1;
    let slot = input.slot_size as usize % 64 + 1;
    let q = Queue::builder().capacity(cap).slot_size(slot).spin(0).create_anonymous().expect("anonymous queue");
    let (mut p0, mut p1): (Connection, Connection) = PipeBuilder::new()
        .duplex(input.duplex)
        .capacity(cap)
        .slot_size(slot)
        .spin(0)
        .create_anonymous()
        .expect("anonymous pipe");
    let qseg = fuzzing::queue_segment(&q);
    let pseg = fuzzing::pipe_segment(&p0);
    let (qlay, play) = (Layout::of(&qseg), Layout::of(&pseg));
    let one_lap = (cap as u64).next_power_of_two();
    let mut guards: Vec<InPlace<'_>> = Vec::new();
    let payload = vec![0xA5u8; slot + 1];
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut scribbler = None;
        if !input.scribble.is_empty() {
            let (qseg, pseg, qlay, play, stop) = (&qseg, &pseg, &qlay, &play, &stop);
            let scribble = &input.scribble[..input.scribble.len().min(64)];
            scribbler = Some(s.spawn(move || {
                let mut rounds = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && rounds < 1_000_000 {
                    for sc in scribble {
                        let (seg, lay) = if sc.pipe { (pseg, play) } else { (qseg, qlay) };
                        let at = if sc.slots {
                            lay.slot(false, 0) + sc.offset as usize % (cap * lay.stride)
                        } else {
                            sc.offset as usize % seg.len()
                        };
                        seg.write(at, &[sc.value.wrapping_add(rounds as u8)]);
                    }
                    rounds += 1;
                }
            }));
        }

        for op in input.ops.iter().take(200) {
            match *op {
                Op::Poke { pipe, region, ring, offset, width, value } => {
                    let (seg, lay) = if pipe { (&pseg, &play) } else { (&qseg, &qlay) };
                    let off = offset as usize;
                    let at = match region % 5 {
                        0 => off % 256,
                        1 => 256 + off % 4096,
                        2 => lay.ring(ring) + off % CTRL_BYTES,
                        3 => lay.slot(ring, 0) + off % (cap * lay.stride),
                        _ => off % seg.len(),
                    };
                    let width = 1 << (width % 4);
                    seg.write(at, &value.to_le_bytes()[..width]);
                }
                Op::Nudge { pipe, ring, head, delta } => {
                    let (seg, lay) = if pipe { (&pseg, &play) } else { (&qseg, &qlay) };
                    let at = lay.ring(ring) + if head { HEAD_OFFSET } else { 0 };
                    let v = read_u64(seg, at).wrapping_add(delta as i64 as u64);
                    seg.write(at, &v.to_le_bytes());
                }
                Op::Stamp { slot: s, state, owner, laps } => {
                    let at = qlay.slot(false, s as usize % cap);
                    let (_, _, pos) = fuzzing::unpack(read_u64(&qseg, at));
                    let pos = pos.wrapping_add((laps as i64 as u64).wrapping_mul(one_lap));
                    let st = fuzzing::stamp(state as u64 % 8, owner, pos);
                    qseg.write(at, &st.to_le_bytes());
                }
                Op::Length { pipe, ring, slot: s, value } => {
                    let (seg, lay) = if pipe { (&pseg, &play) } else { (&qseg, &qlay) };
                    seg.write(lay.slot(ring, s as usize % cap) + 8, &value.to_le_bytes());
                }
                Op::QPut { len } => {
                    let _ = q.try_put(&payload[..len as usize % (slot + 2)]);
                }
                Op::QGet => {
                    if let Ok(m) = q.try_get() {
                        consume(&m, slot * cap);
                    }
                }
                Op::QGetAndHold => {
                    if let Ok(m) = q.try_get_in_place() {
                        consume(&m, slot * cap);
                        guards.push(m);
                    }
                }
                Op::QDropGuard(i) => {
                    if !guards.is_empty() {
                        let m = guards.remove(i as usize % guards.len());
                        consume(&m, slot * cap);
                    }
                }
                Op::QReserve { len, commit } => {
                    if let Ok(mut r) = q.try_reserve() {
                        assert_eq!(r.buf().len(), slot);
                        r.buf().fill(0x5A);
                        if commit {
                            let _ = r.commit(len as usize % (slot + 2));
                        }
                    }
                }
                Op::QClose => q.close(),
                Op::QLen => {
                    assert!(q.len() <= cap);
                    let _ = (q.is_empty(), q.is_full(), q.producer_count());
                }
                Op::PSend { end, len } => {
                    let c = if end { &mut p1 } else { &mut p0 };
                    let _ = c.try_send(&payload[..len as usize % (slot + 2)]);
                }
                Op::PRecv { end } => {
                    let c = if end { &mut p1 } else { &mut p0 };
                    if let Ok(m) = c.try_recv() {
                        consume(&m, slot * cap);
                    }
                }
                Op::PSendBatch { end, count } => {
                    let c = if end { &mut p1 } else { &mut p0 };
                    if let Some(tx) = c.sender() {
                        let msgs = (0..count % 6).map(|i| &payload[..i as usize * 7 % (slot + 2)]);
                        let _ = tx.send_batch(msgs);
                    }
                }
                Op::PRecvBatch { end, max } => {
                    let c = if end { &mut p1 } else { &mut p0 };
                    if let Some(rx) = c.receiver() {
                        let _ = rx.recv_batch(max as usize % 6, |m| consume(m, slot * cap));
                    }
                }
                Op::PPoll { end } => {
                    let c = if end { &mut p1 } else { &mut p0 };
                    let _ = c.poll(Some(Duration::ZERO));
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Joined explicitly: the scope's own wait ends when the closure returns, before the
        // thread has finished exiting (its thread-local teardown frees memory), and libFuzzer's
        // leak check after this input would see that teardown half done.
        if let Some(h) = scribbler {
            let _ = h.join();
        }
    });
}
