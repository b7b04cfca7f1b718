//! Heap allocations per message on the paths that do not sleep, counted by a global allocator.
//!
//! After warm-up, sending (`put`, `try_put`, `put_value`, `send`, `try_send`, `send_value`) and
//! receiving (`get`, `try_get`, `get_value`, `recv`, `try_recv`, `recv_value`, and `get_into` /
//! `recv_into` into a reused `Vec`) make no heap allocation. An owned one-slot [`Message`] longer
//! than [`INLINE_BYTES`] (22) is held in a buffer of its own, and a thread's next receive of that
//! length reuses the buffer of the last one it dropped: receiving and dropping messages of one
//! length in turn allocates nothing per message, while messages held at once take one buffer
//! each.
//!
//! Only allocations made by the measuring thread while it measures are counted (a thread-local
//! switch in the allocator), so the test harness's other threads, and tests running beside this
//! one, do not interfere. Nothing here blocks: every queue and pipe has room for the messages a
//! loop puts before it takes them back.

use shmq::{Connection, Message, PipeBuilder, Queue, INLINE_BYTES};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

/// The system allocator, counting the allocations (and reallocations) of a thread that asked.
struct Counting;

thread_local! {
    // `const` initialisers with no destructor: reading them allocates nothing and needs no
    // registration, so the allocator may use them.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: during thread teardown the locals may be gone; such allocations are not ours.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds GlobalAlloc's contract;
// the counting beside it touches only const thread-locals and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: delegated to the caller (a valid, non-zero-size layout).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: delegated to the caller.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: delegated to the caller (`ptr` came from this allocator, i.e. from `System`).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: delegated to the caller (`ptr` came from this allocator, i.e. from `System`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Messages per measured loop (the queues and pipes hold them all, so nothing waits).
const N: usize = 1000;
/// Slots: room for `N` messages.
const CAPACITY: usize = 1024;

/// Heap allocations this thread makes while running `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(|n| n.get())
}

fn message<const L: usize>(i: usize) -> [u8; L] {
    let mut m = [0u8; L];
    m[..8.min(L)].copy_from_slice(&(i as u64).to_le_bytes()[..8.min(L)]);
    m
}

/// Puts `N` messages with `put`, then takes them with `get`, and so on for each pair of calls;
/// returns `(what, allocations in N messages, expected)` for each call.
fn queue_paths<const L: usize>(q: &Queue) -> Vec<(String, u64, u64)>
where
    [u8; L]: shmq::bytemuck::Pod,
{
    let mut out = Vec::new();
    let mut row = |what: &str, n: u64, expected: u64| out.push((format!("queue {what}, {L} bytes"), n, expected));
    // Each message is dropped before the next receive: a longer one's buffer serves the next.
    let owned = 0;

    let n = allocations(|| (0..N).for_each(|i| q.put(&message::<L>(i)).unwrap()));
    row("put", n, 0);
    let n = allocations(|| (0..N).for_each(|_| drop(black_box(q.get().unwrap()))));
    row("get", n, owned);

    let n = allocations(|| (0..N).for_each(|i| q.try_put(&message::<L>(i)).unwrap()));
    row("try_put", n, 0);
    let n = allocations(|| (0..N).for_each(|_| drop(black_box(q.try_get().unwrap()))));
    row("try_get", n, owned);

    let n = allocations(|| (0..N).for_each(|i| q.put_value(&message::<L>(i)).unwrap()));
    row("put_value", n, 0);
    let n = allocations(|| {
        (0..N).for_each(|_| {
            black_box(q.get_value::<[u8; L]>().unwrap());
        })
    });
    row("get_value", n, 0);
    out
}

fn pipe_paths<const L: usize>(tx: &mut Connection, rx: &mut Connection) -> Vec<(String, u64, u64)>
where
    [u8; L]: shmq::bytemuck::Pod,
{
    let mut out = Vec::new();
    let mut row = |what: &str, n: u64, expected: u64| out.push((format!("pipe {what}, {L} bytes"), n, expected));
    // Each message is dropped before the next receive: a longer one's buffer serves the next.
    let owned = 0;

    let n = allocations(|| (0..N).for_each(|i| tx.send(&message::<L>(i)).unwrap()));
    row("send", n, 0);
    let n = allocations(|| (0..N).for_each(|_| drop(black_box(rx.recv().unwrap()))));
    row("recv", n, owned);

    let n = allocations(|| (0..N).for_each(|i| tx.try_send(&message::<L>(i)).unwrap()));
    row("try_send", n, 0);
    let n = allocations(|| (0..N).for_each(|_| drop(black_box::<Message>(rx.try_recv().unwrap()))));
    row("try_recv", n, owned);

    let n = allocations(|| (0..N).for_each(|i| tx.send_value(&message::<L>(i)).unwrap()));
    row("send_value", n, 0);
    let n = allocations(|| {
        (0..N).for_each(|_| {
            black_box(rx.recv_value::<[u8; L]>().unwrap());
        })
    });
    row("recv_value", n, 0);
    out
}

/// Fails listing every path whose count differs from what it should be.
fn check(results: Vec<(String, u64, u64)>) {
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, n, expected)| n != expected)
        .map(|(what, n, expected)| format!("{what}: {n} allocations in {N} messages, expected {expected}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn queue_sends_and_receives_allocate_nothing_per_message_after_warm_up() {
    assert_eq!(INLINE_BYTES, 22, "the expectations below assume 22-byte inline messages");
    let q = Queue::builder().capacity(CAPACITY).slot_size(64).create_anonymous().unwrap();
    // Warm-up: every path once over, so that anything done on first use is done.
    let _ = queue_paths::<8>(&q);
    let _ = queue_paths::<64>(&q);
    let mut results = queue_paths::<8>(&q);
    results.extend(queue_paths::<64>(&q));
    check(results);
    assert!(q.is_empty());
}

#[test]
fn pipe_sends_and_receives_allocate_nothing_per_message_after_warm_up() {
    let (mut a, mut b) = PipeBuilder::new().capacity(CAPACITY).slot_size(64).create_anonymous().unwrap();
    let _ = pipe_paths::<8>(&mut a, &mut b);
    let _ = pipe_paths::<64>(&mut a, &mut b);
    let mut results = pipe_paths::<8>(&mut a, &mut b);
    results.extend(pipe_paths::<64>(&mut a, &mut b));
    // And the other way round, on the duplex pipe's second ring.
    results.extend(pipe_paths::<8>(&mut b, &mut a));
    check(results);
}

/// 1000-byte messages (a heap `Message` each if received owned) received into a reused `Vec`.
#[test]
fn receives_into_a_reused_vec_allocate_nothing_per_message() {
    const L: usize = 1000;
    let q = Queue::builder().capacity(CAPACITY).slot_size(1024).create_anonymous().unwrap();
    let (mut tx, mut rx) =
        PipeBuilder::new().duplex(false).capacity(CAPACITY).slot_size(1024).create_anonymous().unwrap();
    let mut buf = Vec::new();
    let mut round = |results: &mut Vec<(String, u64, u64)>| {
        let n = allocations(|| (0..N).for_each(|i| q.put(&message::<L>(i)).unwrap()));
        results.push(("queue put, 1000 bytes".into(), n, 0));
        let n = allocations(|| (0..N).for_each(|_| assert_eq!(q.get_into(&mut buf).unwrap(), L)));
        results.push(("queue get_into, 1000 bytes".into(), n, 0));
        (0..N).for_each(|i| q.put(&message::<L>(i)).unwrap());
        let n = allocations(|| (0..N).for_each(|_| assert_eq!(q.try_get_into(&mut buf).unwrap(), L)));
        results.push(("queue try_get_into, 1000 bytes".into(), n, 0));

        let n = allocations(|| (0..N).for_each(|i| tx.send(&message::<L>(i)).unwrap()));
        results.push(("pipe send, 1000 bytes".into(), n, 0));
        let n = allocations(|| (0..N).for_each(|_| assert_eq!(rx.recv_into(&mut buf).unwrap(), L)));
        results.push(("pipe recv_into, 1000 bytes".into(), n, 0));
        (0..N).for_each(|i| tx.send(&message::<L>(i)).unwrap());
        let n = allocations(|| (0..N).for_each(|_| assert_eq!(rx.try_recv_into(&mut buf).unwrap(), L)));
        results.push(("pipe try_recv_into, 1000 bytes".into(), n, 0));
    };
    // Warm-up: the Vec grows to 1000 bytes once, here.
    round(&mut Vec::new());
    let mut results = Vec::new();
    round(&mut results);
    check(results);
    assert_eq!(&buf[..8], &((N - 1) as u64).to_le_bytes());
}

/// Longer messages held at once take a buffer each; once they are dropped, the next receive of
/// their length takes none. (Each test runs on a thread of its own, so no other test's messages
/// left this thread a spare buffer.)
#[test]
fn held_longer_messages_take_a_buffer_each_and_a_dropped_one_serves_the_next() {
    const L: usize = INLINE_BYTES + 19;
    let q = Queue::anonymous(CAPACITY, 64).unwrap();
    let mut held: Vec<Message> = Vec::with_capacity(8);
    (0..8).for_each(|i| q.put(&message::<L>(i)).unwrap());
    assert_eq!(allocations(|| (0..8).for_each(|_| held.push(q.get().unwrap()))), 8);
    for (i, m) in held.iter().enumerate() {
        assert_eq!(&m[..], &message::<L>(i)[..]);
    }
    drop(held);
    q.put(&message::<L>(9)).unwrap();
    let mut again = None;
    assert_eq!(allocations(|| again = Some(q.get().unwrap())), 0);
    assert_eq!(&again.unwrap()[..], &message::<L>(9)[..]);
}

/// The counter sees what it should: a `Vec` of 64 bytes is one allocation, and a message too
/// long to be inline is one too when the thread has no spare buffer of its length.
#[test]
fn the_counter_counts() {
    assert_eq!(allocations(|| drop(black_box(vec![0u8; 64]))), 1);
    let q = Queue::anonymous(4, 128).unwrap();
    q.put(&[1u8; INLINE_BYTES + 1]).unwrap();
    assert_eq!(allocations(|| drop(black_box(q.get().unwrap()))), 1);
}
