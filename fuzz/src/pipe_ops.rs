//! A sequence of pipe operations applied to a real anonymous pipe (one-way or duplex, its ends
//! split into halves) and to a model of `VecDeque`s, compared after every step: returned bytes,
//! order and errors.
//!
//! Blocking calls (`send_value`, `recv_value`, `reserve`) are made only when the model says they
//! return at once; if the model were wrong the target would hang, which libFuzzer reports.
//! The batch calls may see fewer messages (or less room) than there are, because each side
//! trusts its cached copy of the other side's counter while it shows any: they must move at
//! least one when one can move, never more than there are, and in order.

use arbitrary::{Arbitrary, Unstructured};
use shmq::{PipeBuilder, Receiver, RecvError, SendError, Sender};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Op {
    TrySend { ring: bool, len: u8, fill: u8 },
    SendValue { ring: bool, v: u32 },
    TryRecv { ring: bool },
    RecvValue { ring: bool },
    RecvHoldThenSend { ring: bool, len: u8, fill: u8 },
    SendBatch { ring: bool, lens: Vec<u8>, fill: u8 },
    RecvBatch { ring: bool, max: u8 },
    Reserve { ring: bool, len: u8, fill: u8, commit: bool },
    Poll { ring: bool },
    CloseSender { ring: bool },
    CloseReceiver { ring: bool },
}

#[derive(Arbitrary, Debug)]
struct Input {
    duplex: bool,
    capacity: u8,
    slot_size: u8,
    ops: Vec<Op>,
}

/// One ring's model.
struct Ring {
    msgs: VecDeque<Vec<u8>>,
    tx: Option<Sender>,
    rx: Option<Receiver>,
    /// The sender saw the receiver gone (sticky, as in `Sender`).
    broken: bool,
}

fn fill_bytes(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let cap = input.capacity as usize % 4 + 1;
    // Mostly tiny slots (messages span several), a quarter of them long enough for the receive's
    // block copy (64-byte blocks, then words and bytes) and its spare buffers.
    let slot = match input.slot_size {
        s @ 0..192 => s as usize % 16 + 1,
        s => 56 + (s as usize - 192) * 3,
    };
    let (end0, end1) = PipeBuilder::new()
        .duplex(input.duplex)
        .capacity(cap)
        .slot_size(slot)
        .spin(0)
        .create_anonymous()
        .expect("anonymous pipe");
    // Ring 0: end 1 sends, end 0 receives. Ring 1 (duplex only): the other way. A one-way pipe's
    // ends come as (sending, receiving): (end 1, end 0).
    let (end0, end1) = if input.duplex { (end0, end1) } else { (end1, end0) };
    let (tx_ring1, rx_ring0) = end0.split();
    let (tx_ring0, rx_ring1) = end1.split();
    let mut rings = vec![Ring { msgs: VecDeque::new(), tx: tx_ring0, rx: rx_ring0, broken: false }];
    if input.duplex {
        rings.push(Ring { msgs: VecDeque::new(), tx: tx_ring1, rx: rx_ring1, broken: false });
    } else {
        assert!(tx_ring1.is_none() && rx_ring1.is_none(), "one-way: one ring");
    }
    let n = rings.len();

    for op in input.ops.iter().take(200) {
        match op {
            Op::TrySend { ring, len, fill } => {
                let r = &mut rings[*ring as usize % n];
                // Up to one byte more than the pipe holds: fragmented and too-large messages too.
                let msg = fill_bytes(*len as usize % (slot * cap + 2), *fill);
                let want = send_result(r, cap, slot, msg.len());
                let Some(tx) = &mut r.tx else { continue };
                assert_eq!(tx.try_send(&msg), want, "try_send");
                after_send(r, want, msg);
            }
            Op::SendValue { ring, v } => {
                let r = &mut rings[*ring as usize % n];
                let want = send_result(r, cap, slot, 4);
                let Some(tx) = &mut r.tx else { continue };
                if want == Err(SendError::Full) {
                    continue; // would block
                }
                assert_eq!(tx.send_value(v), want, "send_value");
                after_send(r, want, v.to_ne_bytes().to_vec());
            }
            Op::TryRecv { ring } => {
                let r = &mut rings[*ring as usize % n];
                let want = recv_result(r);
                let took = want.is_ok();
                let Some(rx) = &mut r.rx else { continue };
                match (rx.try_recv(), want) {
                    (Ok(m), Ok(bytes)) => assert_eq!(&*m, &bytes[..], "message bytes"),
                    (Err(e), Err(w)) => assert_eq!(e, w, "try_recv error"),
                    (got, want) => panic!("try_recv: got {got:?}, model says {want:?}"),
                }
                if took {
                    r.msgs.pop_front();
                }
            }
            Op::RecvValue { ring } => {
                let r = &mut rings[*ring as usize % n];
                let want = recv_result(r);
                let Some(rx) = &mut r.rx else { continue };
                let want = match want {
                    Err(RecvError::Empty) => continue, // would block
                    Err(e) => Err(e),
                    Ok(bytes) => {
                        r.msgs.pop_front();
                        match <[u8; 4]>::try_from(&bytes[..]) {
                            Ok(b) => Ok(u32::from_ne_bytes(b)),
                            Err(_) => Err(RecvError::SizeMismatch { len: bytes.len(), expected: 4 }),
                        }
                    }
                };
                assert_eq!(rx.recv_value::<u32>(), want, "recv_value");
            }
            Op::RecvHoldThenSend { ring, len, fill } => {
                let r = &mut rings[*ring as usize % n];
                // The held slot is not free yet: the room is what it was before the receive.
                let msg = fill_bytes(*len as usize % (slot + 2), *fill);
                let want = send_result(r, cap, slot, msg.len());
                let (Some(tx), Some(rx)) = (&mut r.tx, &mut r.rx) else {
                    continue;
                };
                let Some(front) = r.msgs.front().cloned() else {
                    assert_eq!(rx.try_recv().unwrap_err(), RecvError::Empty);
                    continue;
                };
                // In place: the slot stays taken while the guard is held.
                let held = rx.try_recv_in_place().expect("the model has a message");
                assert_eq!(&*held, &front[..], "message bytes");
                assert_eq!(tx.try_send(&msg), want, "try_send while a message is held");
                assert_eq!(&*held, &front[..], "a held message changed");
                drop(held);
                r.msgs.pop_front();
                if want.is_ok() {
                    r.msgs.push_back(msg);
                }
            }
            Op::SendBatch { ring, lens, fill } => {
                let r = &mut rings[*ring as usize % n];
                let msgs: Vec<Vec<u8>> = lens
                    .iter()
                    .take(8)
                    .enumerate()
                    .map(|(i, l)| fill_bytes(*l as usize % (slot + 2), fill.wrapping_add(i as u8)))
                    .collect();
                let broken = r.broken || r.rx.is_none();
                let room = cap - used(r, slot);
                let Some(tx) = &mut r.tx else { continue };
                let got = tx.send_batch(msgs.iter().map(|m| &m[..]));
                if broken {
                    assert_eq!(got, Err(SendError::Closed), "send_batch to a closed receiver");
                    r.broken = true;
                    continue;
                }
                let fitting = msgs.iter().take_while(|m| m.len() <= slot).count();
                let most = room.min(fitting);
                let sent = got.expect("send_batch");
                assert!(sent <= most && (most == 0 || sent >= 1), "send_batch sent {sent} of {most}");
                r.msgs.extend(msgs.into_iter().take(sent));
            }
            Op::RecvBatch { ring, max } => {
                let r = &mut rings[*ring as usize % n];
                let max = *max as usize % 5;
                let want = recv_result(r).map(|_| ());
                let Some(rx) = &mut r.rx else { continue };
                let mut seen = Vec::new();
                let got = rx.recv_batch(max, |m| seen.push(m.to_vec()));
                match (got, want) {
                    (Ok(k), Ok(())) => {
                        // A message spanning several slots comes alone; others come in a run.
                        let front_fragmented = r.msgs.front().is_some_and(|m| m.len() > slot);
                        let run = r.msgs.iter().take_while(|m| m.len() <= slot).count();
                        let most = if front_fragmented { max.min(1) } else { max.min(run) };
                        assert!(k <= most && (most == 0 || k >= 1), "recv_batch got {k} of {most}");
                        assert_eq!(seen.len(), k);
                        for m in seen {
                            assert_eq!(Some(m), r.msgs.pop_front(), "recv_batch order");
                        }
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w, "recv_batch error"),
                    (got, want) => panic!("recv_batch: got {got:?}, model says {want:?}"),
                }
            }
            Op::Reserve { ring, len, fill, commit } => {
                let r = &mut rings[*ring as usize % n];
                // A reservation checks no length: ask the model with an empty message.
                let want = send_result(r, cap, slot, 0);
                let Some(tx) = &mut r.tx else { continue };
                if want == Err(SendError::Full) {
                    continue; // would block
                }
                let res = tx.reserve();
                let mut res = match (res, want) {
                    (Ok(res), Ok(())) => res,
                    (Err(e), Err(w)) => {
                        assert_eq!(e, w, "reserve error");
                        r.broken = true;
                        continue;
                    }
                    (got, want) => {
                        panic!("reserve: got {:?}, model says {want:?}", got.map(|_| ()))
                    }
                };
                assert_eq!(res.buf().len(), slot, "a reservation is a whole slot");
                let bytes = fill_bytes(slot, *fill);
                res.buf().copy_from_slice(&bytes);
                if *commit {
                    let len = *len as usize % (slot + 2);
                    if len > slot {
                        let e = SendError::TooLarge { len, max: slot };
                        assert_eq!(res.commit(len), Err(e));
                    } else {
                        assert_eq!(res.commit(len), Ok(()));
                        r.msgs.push_back(bytes[..len].to_vec());
                    }
                }
            }
            Op::Poll { ring } => {
                let r = &mut rings[*ring as usize % n];
                let ready = !r.msgs.is_empty() || r.tx.is_none();
                let Some(rx) = &mut r.rx else { continue };
                assert_eq!(rx.poll(Some(Duration::ZERO)), ready, "poll");
            }
            Op::CloseSender { ring } => {
                rings[*ring as usize % n].tx = None;
            }
            Op::CloseReceiver { ring } => {
                rings[*ring as usize % n].rx = None;
            }
        }
    }
}

/// Slots a message of `len` bytes takes (larger than a slot: consecutive fragments).
fn slots_of(len: usize, slot: usize) -> usize {
    len.div_ceil(slot).max(1)
}

/// Slots the model's queued messages take.
fn used(r: &Ring, slot: usize) -> usize {
    r.msgs.iter().map(|m| slots_of(m.len(), slot)).sum()
}

/// What a send of `len` bytes returns now, by the model.
fn send_result(r: &Ring, cap: usize, slot: usize, len: usize) -> Result<(), SendError> {
    if len > slot * cap {
        Err(SendError::TooLarge { len, max: slot * cap })
    } else if r.broken || r.rx.is_none() {
        Err(SendError::Closed)
    } else if used(r, slot) + slots_of(len, slot) > cap {
        Err(SendError::Full)
    } else {
        Ok(())
    }
}

fn after_send(r: &mut Ring, got: Result<(), SendError>, msg: Vec<u8>) {
    match got {
        Ok(()) => r.msgs.push_back(msg),
        Err(SendError::Closed) => r.broken = true,
        Err(_) => {}
    }
}

/// What a receive returns now, by the model (the message is not taken out).
fn recv_result(r: &Ring) -> Result<Vec<u8>, RecvError> {
    match r.msgs.front() {
        Some(m) => Ok(m.clone()),
        None if r.tx.is_none() => Err(RecvError::Closed),
        None => Err(RecvError::Empty),
    }
}
