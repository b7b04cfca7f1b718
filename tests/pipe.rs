//! Pipes in one process and between processes.

use shmq::{channel, pipe, Connection, Error, PipeBuilder, RecvError, SendError};
use std::time::{Duration, Instant};

mod common;
use common::{child, finish, job, tagged, unique};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let mut words = job.split(':');
    match words.next().unwrap() {
        // A channel's halves, handed over one by one: take the receiver, echo into the sender.
        "halves" => {
            let mut rx = shmq::Receiver::from_env("RX").unwrap();
            let mut tx = shmq::Sender::from_env("TX").unwrap();
            for m in &mut rx {
                tx.send(&m).unwrap();
            }
        }
        "echo" => {
            // Replies to every message with the same bytes reversed, until end of file.
            let mut c = Connection::from_env("P").unwrap();
            let mut n = 0;
            loop {
                let reply: Vec<u8> = match c.recv() {
                    Ok(m) => m.iter().rev().copied().collect(),
                    Err(RecvError::Closed) => break,
                    Err(e) => panic!("{e}"),
                };
                c.send(&reply).unwrap();
                n += 1;
            }
            println!("echoed {n}");
        }
        "send-then-exit" => {
            let mut c = Connection::from_env("P").unwrap();
            for i in 0..words.next().unwrap().parse::<u64>().unwrap() {
                c.send_value(&i).unwrap();
            }
        }
        "recv-few-then-exit" => {
            let mut c = Connection::from_env("P").unwrap();
            for _ in 0..3 {
                c.recv().unwrap();
            }
        }
        "open-named" => {
            let name = words.next().unwrap();
            let mut c = PipeBuilder::new().open(name).unwrap();
            assert!(matches!(PipeBuilder::new().open(name), Err(Error::AlreadyAttached)));
            c.send(b"from child").unwrap();
            println!("reply {}", String::from_utf8_lossy(&c.recv().unwrap()));
        }
        other => panic!("unknown job {other}"),
    }
}

#[test]
fn duplex_ping_pong_between_processes_checks_every_reply() {
    let (mut a, b) = PipeBuilder::new().capacity(4).slot_size(64).create_anonymous().unwrap();
    let mut cmd = child("child_entry", "echo");
    let handover = b.hand_over(&mut cmd, "P");
    let c = cmd.spawn().unwrap();
    drop(handover);
    const ROUNDS: u32 = 5_000;
    for i in 0..ROUNDS {
        let msg = format!("ping {i} {}", "x".repeat((i % 40) as usize));
        a.send(msg.as_bytes()).unwrap();
        let reply = a.recv_timeout(Duration::from_secs(20)).unwrap();
        let expect: Vec<u8> = msg.bytes().rev().collect();
        assert_eq!(&*reply, &expect[..], "round {i}");
    }
    drop(a); // end of file for the child
    assert_eq!(tagged(&finish(c, LIMIT), "echoed"), [ROUNDS.to_string()]);
}

#[test]
fn end_of_file_after_drain_when_the_sender_process_exits() {
    let (tx, mut rx) = PipeBuilder::new().duplex(false).create_anonymous().unwrap();
    let mut cmd = child("child_entry", "send-then-exit:500");
    let h = tx.hand_over(&mut cmd, "P");
    let c = cmd.spawn().unwrap();
    drop(h);
    finish(c, LIMIT);
    for i in 0..500u64 {
        assert_eq!(rx.recv_value::<u64>().unwrap(), i);
    }
    assert_eq!(rx.recv().unwrap_err(), RecvError::Closed);
    assert!(rx.poll(Some(Duration::from_secs(5))), "poll is ready at end of file");
}

#[test]
fn broken_pipe_when_the_receiver_process_exits() {
    let (mut tx, rx) = PipeBuilder::new().duplex(false).capacity(2).slot_size(8).create_anonymous().unwrap();
    let mut cmd = child("child_entry", "recv-few-then-exit");
    let h = rx.hand_over(&mut cmd, "P");
    let c = cmd.spawn().unwrap();
    drop(h);
    let r = loop {
        if let Err(e) = tx.send_timeout(b"x", Duration::from_secs(30)) {
            break e;
        }
    };
    assert_eq!(r, SendError::Closed);
    finish(c, LIMIT);
}

#[test]
fn named_pipe_between_unrelated_processes_and_second_attach_refused() {
    let name = unique("named-pipe");
    let mut end0 = PipeBuilder::new().unlink_on_drop(true).create(&name).unwrap();
    let c = child("child_entry", &format!("open-named:{name}")).spawn().unwrap();
    assert_eq!(&*end0.recv_timeout(Duration::from_secs(30)).unwrap(), b"from child");
    end0.send(b"from parent").unwrap();
    assert_eq!(tagged(&finish(c, LIMIT), "reply"), ["from parent"]);
    // The child's end was attached once: nobody may take it again.
    assert!(matches!(PipeBuilder::new().open(&name), Err(Error::AlreadyAttached)));
}

#[test]
fn one_way_ends_cannot_be_used_the_wrong_way_round() {
    let (mut tx, mut rx) = PipeBuilder::new().duplex(false).create_anonymous().unwrap();
    assert_eq!(rx.send(b"x"), Err(SendError::WrongRole));
    assert_eq!(tx.recv().unwrap_err(), RecvError::WrongRole);
    assert!(!tx.poll(Some(Duration::ZERO)));
    tx.send(b"ok").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"ok");
    // Compile-time halves: a Sender has no recv, a Receiver no send.
    let (mut s, mut r) = channel(4, 8).unwrap();
    s.send(b"typed").unwrap();
    assert_eq!(&*r.recv().unwrap(), b"typed");
}

#[test]
fn order_is_kept_across_wrap_around_with_batches() {
    let (mut s, mut r) = channel(5, 16).unwrap();
    let mut next_send = 0u64;
    let mut next_recv = 0u64;
    while next_recv < 10_000 {
        let batch: Vec<[u8; 8]> = (next_send..next_send + 3).map(|v| v.to_le_bytes()).collect();
        next_send += s.send_batch(batch.iter().map(|b| &b[..])).unwrap() as u64;
        r.recv_batch(2, |m| {
            assert_eq!(u64::from_le_bytes(m.try_into().unwrap()), next_recv);
            next_recv += 1;
        })
        .unwrap();
    }
}

#[test]
fn both_slot_orders_keep_order_and_openers_follow_the_creator() {
    for (sequential, slot) in [(false, 8), (false, 64), (true, 8), (true, 64)] {
        let name = unique("order");
        let mut a = PipeBuilder::new()
            .capacity(64)
            .slot_size(slot)
            .sequential(sequential)
            .unlink_on_drop(true)
            .create(&name)
            .unwrap();
        // The opener asks for the other order: the segment's flag decides, not the builder.
        let mut b = PipeBuilder::new().sequential(!sequential).open(&name).unwrap();
        let (mut sent, mut got) = (0u64, 0u64);
        while got < 5_000 {
            // Up to 5 messages ahead of the receiver, so the ring wraps with several in flight.
            while sent < got + 5 && a.try_send(&sent.to_le_bytes()).is_ok() {
                sent += 1;
            }
            while let Ok(m) = b.try_recv() {
                assert_eq!(u64::from_le_bytes((*m).try_into().unwrap()), got, "sequential {sequential}, slot {slot}");
                got += 1;
            }
            // And back the other way, through the duplex pipe's second ring.
            b.send(&got.to_le_bytes()).unwrap();
            let echo = a.recv_timeout(Duration::from_secs(10)).expect("the reply, in this order");
            assert_eq!(u64::from_le_bytes((*echo).try_into().unwrap()), got);
        }
    }
}

#[test]
fn poll_with_and_without_timeout() {
    let (mut a, mut b) = pipe().unwrap();
    assert!(!a.poll(Some(Duration::ZERO)));
    let t = Instant::now();
    assert!(!a.poll(Some(Duration::from_millis(50))));
    assert!(t.elapsed() >= Duration::from_millis(50));
    b.send(b"x").unwrap();
    assert!(a.poll(None));
    assert!(a.poll(Some(Duration::ZERO)), "poll does not consume");
    assert_eq!(&*a.recv().unwrap(), b"x");
}

#[test]
fn oversize_and_full_are_typed_and_lose_nothing() {
    let (mut s, mut r) = channel(2, 8).unwrap();
    assert_eq!(s.try_send(&[0; 17]), Err(SendError::TooLarge { len: 17, max: 16 }), "over capacity × slot size");
    s.try_send(b"a").unwrap();
    s.try_send(b"b").unwrap();
    assert_eq!(s.try_send(b"c"), Err(SendError::Full));
    assert_eq!(s.send_timeout(b"c", Duration::from_millis(20)), Err(SendError::Timeout));
    assert_eq!(&*r.recv().unwrap(), b"a");
    assert_eq!(&*r.recv().unwrap(), b"b");
    assert_eq!(r.try_recv().unwrap_err(), RecvError::Empty);
    assert_eq!(r.recv_timeout(Duration::from_millis(20)).unwrap_err(), RecvError::Timeout);
}

#[test]
fn reserve_writes_in_place_and_pod_views_are_aligned() {
    let (mut s, mut r) = channel(4, 64).unwrap();
    let mut res = s.reserve().unwrap();
    res.buf()[..16].copy_from_slice(bytemuck::bytes_of(&[7u64, 9u64]));
    res.commit(16).unwrap();
    let _ = s.reserve().unwrap(); // uncommitted: nothing sent
    let m = r.recv_in_place().unwrap();
    assert_eq!(m.as_value::<[u64; 2]>(), Some(&[7, 9]));
    drop(m);
    assert_eq!(r.try_recv().unwrap_err(), RecvError::Empty);
    drop(s);
    assert_eq!(r.recv().unwrap_err(), RecvError::Closed);
}

#[test]
fn split_halves_work_from_two_threads() {
    let (a, b) = pipe().unwrap();
    let (Some(mut atx), Some(mut arx)) = a.split() else { panic!() };
    let (Some(mut btx), Some(mut brx)) = b.split() else { panic!() };
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..10_000u64 {
                atx.send_value(&i).unwrap();
            }
        });
        s.spawn(move || {
            for i in 0..10_000u64 {
                assert_eq!(brx.recv_value::<u64>().unwrap(), i);
                btx.send_value(&i).unwrap();
            }
        });
        for i in 0..10_000u64 {
            assert_eq!(arx.recv_value::<u64>().unwrap(), i);
        }
    });
}

#[test]
fn messages_larger_than_a_slot_are_split_and_reassembled() {
    let (mut s, mut r) = channel(8, 16).unwrap();
    let big: Vec<u8> = (0..100u8).collect();
    s.send(&big).unwrap(); // 7 slots
    s.send(b"small").unwrap();
    assert_eq!(&*r.recv().unwrap(), &big[..]);
    assert_eq!(&*r.recv().unwrap(), b"small");
    let max: Vec<u8> = (0..128u8).collect();
    s.send(&max).unwrap(); // exactly capacity × slot size
    assert_eq!(s.try_send(b"x"), Err(SendError::Full), "it took every slot");
    assert_eq!(&*r.recv().unwrap(), &max[..]);
    assert_eq!(s.try_send(&[0; 129]), Err(SendError::TooLarge { len: 129, max: 128 }));
    // Batches deliver a fragmented message alone and in order.
    s.send(b"a").unwrap();
    s.send(&big).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        r.recv_batch(10, |m| seen.push(m.to_vec())).unwrap();
    }
    assert_eq!(seen, vec![b"a".to_vec(), big]);
}

#[test]
fn large_messages_cross_processes_intact() {
    let (mut a, b) = PipeBuilder::new().capacity(4).slot_size(64).create_anonymous().unwrap();
    let mut cmd = child("child_entry", "echo");
    let handover = b.hand_over(&mut cmd, "P");
    let c = cmd.spawn().unwrap();
    drop(handover);
    for len in (1..=256).step_by(7) {
        let msg: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        a.send(&msg).unwrap();
        let reply = a.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(reply.iter().eq(msg.iter().rev()), "length {len}");
    }
    drop(a);
    finish(c, LIMIT);
}

#[test]
fn for_msg_in_the_receiver_runs_until_end_of_file() {
    let (mut tx, mut rx) = channel(4, 8).unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..10u8 {
            tx.send(&[i]).unwrap();
        }
    });
    let mut got = Vec::new();
    for m in &mut rx {
        got.push(m[0]);
    }
    t.join().unwrap();
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
}

#[test]
fn channel_halves_are_handed_to_a_worker() {
    let (to_child, from_parent) = channel(4, 16).unwrap();
    let (to_parent, mut from_child) = channel(4, 16).unwrap();
    let mut w = common::worker("halves");
    w.command().stdout(std::process::Stdio::null());
    let w = w.receiver("RX", from_parent).unwrap().sender("TX", to_parent).unwrap().spawn().unwrap();
    let mut to_child = to_child;
    for i in 0..20u8 {
        to_child.send(&[i; 5]).unwrap();
        assert_eq!(&*from_child.recv_timeout(Duration::from_secs(20)).unwrap(), &[i; 5]);
    }
    drop(to_child); // end of file for the worker, which then closes its sender
    assert_eq!(from_child.recv_timeout(Duration::from_secs(20)).unwrap_err(), RecvError::Closed);
    assert!(w.join().unwrap().success());
}

#[test]
fn half_of_a_split_duplex_end_is_not_handed_over_alone() {
    let (a, _b) = pipe().unwrap();
    let (tx, rx) = a.split();
    let mut cmd = std::process::Command::new("true");
    let r = tx.unwrap().hand_over(&mut cmd, "P");
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{:?}", r.err());
    drop(rx);
}

#[test]
fn value_timeout_and_in_place_sends_match_the_queue_set() {
    let short = Duration::from_millis(20);
    let (mut s, mut r) = channel(2, 16).unwrap();
    s.try_send_value(&1u64).unwrap();
    s.send_value_timeout(&2u64, short).unwrap();
    assert_eq!(s.try_send_value(&3u64), Err(SendError::Full));
    assert_eq!(s.send_value_timeout(&3u64, short), Err(SendError::Timeout));
    assert!(matches!(s.try_reserve(), Err(SendError::Full)));
    assert_eq!(r.try_recv_value::<u64>(), Ok(1));
    assert_eq!(r.recv_value_timeout::<u64>(short), Ok(2));
    assert_eq!(r.try_recv_value::<u64>(), Err(RecvError::Empty));
    assert_eq!(r.recv_value_timeout::<u64>(short), Err(RecvError::Timeout));

    let mut res = s.try_reserve().unwrap();
    res.buf()[..3].copy_from_slice(b"abc");
    res.commit(3).unwrap();
    s.send_with(|buf| {
        buf[..2].copy_from_slice(b"de");
        2
    })
    .unwrap();
    assert_eq!(&*r.recv().unwrap(), b"abc");
    assert_eq!(&*r.recv().unwrap(), b"de");
    assert_eq!(s.send_with(|_| 17), Err(SendError::TooLarge { len: 17, max: 16 }));
    assert_eq!(r.try_recv().unwrap_err(), RecvError::Empty, "a refused send_with sends nothing");
    drop(s);
    assert_eq!(r.try_recv_value::<u64>(), Err(RecvError::Closed));
    assert_eq!(r.recv_value_timeout::<u64>(short), Err(RecvError::Closed));
}

#[test]
fn a_connection_reserves_sends_with_batches_and_values() {
    let short = Duration::from_millis(20);
    let (mut a, mut b) = PipeBuilder::new().capacity(4).slot_size(16).create_anonymous().unwrap();
    let mut res = a.reserve().unwrap();
    res.buf()[..2].copy_from_slice(b"r1");
    res.commit(2).unwrap();
    a.send_with(|buf| {
        buf[..2].copy_from_slice(b"w1");
        2
    })
    .unwrap();
    assert_eq!(a.send_batch([&b"b1"[..], &b"b2"[..]]).unwrap(), 2);
    assert!(matches!(a.try_reserve(), Err(SendError::Full)));
    assert_eq!(a.try_send_value(&9u32), Err(SendError::Full));
    assert_eq!(a.send_value_timeout(&9u32, short), Err(SendError::Timeout));
    for want in [&b"r1"[..], b"w1", b"b1", b"b2"] {
        assert_eq!(&*b.recv().unwrap(), want);
    }
    a.send_value_timeout(&9u32, short).unwrap();
    a.try_send_value(&10u32).unwrap();
    assert_eq!(b.recv_value_timeout::<u32>(short), Ok(9));
    assert_eq!(b.try_recv_value::<u32>(), Ok(10));
    assert_eq!(b.try_recv_value::<u32>(), Err(RecvError::Empty));
    // The other direction of the same duplex pipe.
    b.send_with(|buf| {
        buf[0] = 7;
        1
    })
    .unwrap();
    assert_eq!(&*a.recv().unwrap(), &[7]);
}

#[test]
fn error_texts_name_the_ring_and_say_what_happened() {
    assert_eq!(SendError::Full.to_string(), "the ring is full");
    assert_eq!(RecvError::Empty.to_string(), "the ring is empty");
    assert!(RecvError::Closed.to_string().starts_with("end of stream"));
    assert!(RecvError::Closed.to_string().contains("every sender has gone"), "pipes report it too");
    assert_eq!(
        SendError::TooLarge { len: 100, max: 64 }.to_string(),
        "message of 100 bytes is larger than the 64 bytes this call can carry"
    );
    let (mut s, _r) = channel(4, 16).unwrap();
    // A pipe's split messages carry up to capacity × slot size.
    assert_eq!(
        s.try_send(&[0; 65]).unwrap_err().to_string(),
        "message of 65 bytes is larger than the 64 bytes this call can carry"
    );
}
