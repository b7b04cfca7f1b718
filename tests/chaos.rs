//! Chaos: producer and consumer processes under load while a supervisor SIGKILLs random ones at
//! random moments and restarts them. Every message is accounted for in a ledger in shared memory
//! (byte counters a kill cannot lose): what producers meant to put, what they committed, and how
//! often each message was received. Prints Jepsen's four counts.
//!
//! `SHMQ_CHAOS_KILLS=N` sets the number of kills (default 200, the CI size); larger values make a
//! soak (see `docs/ROBUSTNESS.md`).

use shmq::{Queue, RecvError, Role, SendError};
use std::fs::OpenOptions;
use std::process::Child;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{child, finish, job, unique};

const IDS: usize = 1 << 24;
const HEAD: usize = 64;

/// The ledger: `next_id`, `stop`, `progress`, `taking` per consumer, then `intent`, `committed`,
/// `received` per id.
struct Ledger {
    map: memmap2::MmapMut,
}

impl Ledger {
    fn create(path: &str) -> Ledger {
        let f = OpenOptions::new().read(true).write(true).create_new(true).open(path).unwrap();
        f.set_len((HEAD + 3 * IDS) as u64).unwrap();
        Self::map(&f)
    }

    fn open(path: &str) -> Ledger {
        Self::map(&OpenOptions::new().read(true).write(true).open(path).unwrap())
    }

    fn map(f: &std::fs::File) -> Ledger {
        // SAFETY: a file of ours, sized above; it is only accessed through atomics below.
        let map = unsafe { memmap2::MmapMut::map_mut(f).unwrap() };
        Ledger { map }
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < HEAD / 8);
        // SAFETY: in bounds (checked), 8-aligned (page-aligned base), shared memory used only
        // through atomics.
        unsafe { &*(self.map.as_ptr().add(i * 8) as *const AtomicU64) }
    }

    fn byte(&self, table: usize, id: u64) -> &AtomicU8 {
        assert!(table < 3 && (id as usize) < IDS);
        // SAFETY: in bounds (checked); AtomicU8 has no alignment requirement.
        unsafe { &*(self.map.as_ptr().add(HEAD + table * IDS + id as usize) as *const AtomicU8) }
    }

    fn next_id(&self) -> &AtomicU64 {
        self.word(0)
    }
    fn stop(&self) -> &AtomicU64 {
        self.word(1)
    }
    fn progress(&self) -> &AtomicU64 {
        self.word(2)
    }
    /// Consumer `i` is between asking for a message and recording it: a `get` returns the message
    /// owned (its slot already freed), so a consumer killed here may take one message with it.
    fn taking(&self, i: usize) -> &AtomicU64 {
        self.word(3 + i)
    }
    fn intent(&self, id: u64) -> &AtomicU8 {
        self.byte(0, id)
    }
    fn committed(&self, id: u64) -> &AtomicU8 {
        self.byte(1, id)
    }
    fn received(&self, id: u64) -> &AtomicU8 {
        self.byte(2, id)
    }
}

#[test]
#[ignore = "a child process's entry point: run by the multi-process tests"]
fn child_entry() {
    let Some(job) = job() else { return };
    let w: Vec<&str> = job.split(':').collect();
    let (queue, ledger) = (w[1], Ledger::open(w[2]));
    let index: usize = w.get(3).map_or(0, |i| i.parse().unwrap());
    match w[0] {
        "chaos-producer" | "chaos-producer-large" => {
            let large = w[0] == "chaos-producer-large";
            let q = Queue::builder().role(Role::Producer).spin(64).open(queue).unwrap();
            while ledger.stop().load(Ordering::SeqCst) == 0 {
                let id = ledger.next_id().fetch_add(1, Ordering::SeqCst);
                if id as usize >= IDS {
                    break;
                }
                ledger.intent(id).store(1, Ordering::SeqCst);
                if id % 16 == 0 {
                    // Keep the load steady rather than maximal, so ids last the whole run.
                    std::thread::sleep(Duration::from_micros(50));
                }
                let put = if large {
                    q.put_large_timeout(&message(id), Duration::from_secs(1))
                } else {
                    q.put_timeout(&id.to_le_bytes(), Duration::from_secs(1))
                };
                match put {
                    Ok(()) => ledger.committed(id).store(1, Ordering::SeqCst),
                    Err(SendError::Timeout) => {}
                    Err(e) => panic!("producer: {e}"),
                }
            }
        }
        "chaos-consumer" | "chaos-consumer-large" => {
            let large = w[0] == "chaos-consumer-large";
            let q = Queue::builder().role(Role::Consumer).spin(64).open(queue).unwrap();
            let taking = ledger.taking(index);
            loop {
                taking.store(1, Ordering::SeqCst);
                match q.get_timeout(Duration::from_secs(1)) {
                    Ok(m) => {
                        let id = u64::from_le_bytes(m[..8].try_into().unwrap());
                        if large {
                            assert!(*m == message(id), "message {id} arrived torn: {:?}", &*m);
                        } else {
                            assert_eq!(m.len(), 8, "message {id}");
                        }
                        ledger.received(id).fetch_add(1, Ordering::SeqCst);
                        taking.store(0, Ordering::SeqCst);
                        drop(m);
                        ledger.progress().fetch_add(1, Ordering::SeqCst);
                    }
                    Err(RecvError::Timeout) => {}
                    Err(RecvError::Closed) => break,
                    Err(e) => panic!("consumer: {e}"),
                }
            }
        }
        other => panic!("unknown job {other}"),
    }
}

/// What a large-message producer puts for `id`: 8 to 24 bytes (one to three 8-byte slots), the
/// id first, then bytes derived from it, so a consumer can tell a whole message from a torn one.
fn message(id: u64) -> Vec<u8> {
    let len = 8 + (id % 17) as usize;
    let mut m = id.to_le_bytes().to_vec();
    m.extend((8..len).map(|i| (id as u8).wrapping_mul(31).wrapping_add(i as u8)));
    m
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn random_sigkills_lose_no_committed_message_and_duplicate_none() {
    chaos(false, 200);
}

/// The same with messages of one to three slots (`put_large`): a kill can land between the slots
/// of a group claim, a commit or a read. No message may arrive torn, twice, or never (unless in
/// flight at a consumer's death).
#[test]
fn random_sigkills_with_messages_larger_than_a_slot_tear_none() {
    chaos(true, 100);
}

fn chaos(large: bool, default_kills: u64) {
    const PRODUCERS: usize = 3;
    const CONSUMERS: usize = 3;
    let kills_wanted: u64 =
        std::env::var("SHMQ_CHAOS_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_kills);
    let name = unique(if large { "chaos-large" } else { "chaos" });
    let ledger_path = format!("/dev/shm{}-ledger", name);
    let ledger = Ledger::create(&ledger_path);
    // Both roles, though it never gets: a dead consumer is reaped within tens of milliseconds, and
    // while every consumer happens to be dead and not yet replaced, our consumer role keeps the
    // producers from a broken pipe (as our producer role keeps end of stream away until `close`).
    let q = Queue::builder().capacity(8).slot_size(8).role(Role::Both).unlink_on_drop(true).create(&name).unwrap();
    let spawn = |producer: bool, index: usize| -> Child {
        let role = match (producer, large) {
            (true, false) => "chaos-producer",
            (true, true) => "chaos-producer-large",
            (false, false) => "chaos-consumer",
            (false, true) => "chaos-consumer-large",
        };
        child("child_entry", &format!("{role}:{name}:{ledger_path}:{index}")).spawn().unwrap()
    };
    // Entries are (producer?, index among its kind, process).
    let mut procs: Vec<(bool, usize, Option<Child>)> = (0..PRODUCERS)
        .map(|i| (true, i, Some(spawn(true, i))))
        .chain((0..CONSUMERS).map(|i| (false, i, Some(spawn(false, i)))))
        .collect();
    // Consumers killed while taking a message (each may take one with it).
    let mut killed_taking = 0u64;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let start = Instant::now();
    let (mut kills, mut max_stall) = (0u64, Duration::ZERO);
    let ids_left = || (ledger.next_id().load(Ordering::SeqCst) as usize) < IDS;
    while kills < kills_wanted && start.elapsed() < Duration::from_secs(300) && ids_left() {
        std::thread::sleep(Duration::from_micros(2_000 + rng.next(10_000)));
        let i = rng.next(procs.len() as u64) as usize;
        let (producer, index, slot) = &mut procs[i];
        let mut victim = slot.take().unwrap();
        let _ = victim.kill(); // SIGKILL, at whatever instruction it is on
        let _ = victim.wait();
        if !*producer && ledger.taking(*index).swap(0, Ordering::SeqCst) == 1 {
            killed_taking += 1;
        }
        *slot = Some(spawn(*producer, *index));
        kills += 1;
        // Stall: how long until consumers make progress again after this kill.
        let before = ledger.progress().load(Ordering::SeqCst);
        let t = Instant::now();
        while ledger.progress().load(Ordering::SeqCst) == before && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_micros(200));
        }
        max_stall = max_stall.max(t.elapsed());
    }
    let chaos_time = start.elapsed();

    // Wind down: producers stop; our close then ends the stream; consumers drain and exit.
    ledger.stop().store(1, Ordering::SeqCst);
    for (_, _, p) in procs.iter_mut().filter(|(producer, _, _)| *producer) {
        let _ = p.as_mut().unwrap().wait();
    }
    q.close();
    for (producer, _, c) in procs {
        if !producer {
            finish(c.unwrap(), Duration::from_secs(120));
        }
    }

    let stats = q.recovery_stats();
    let ids = ledger.next_id().load(Ordering::SeqCst).min(IDS as u64);
    let (mut committed, mut received, mut lost, mut duplicated, mut unexpected) = (0, 0, 0, 0, 0);
    for id in 0..IDS as u64 {
        let (i, c, r) = (
            ledger.intent(id).load(Ordering::SeqCst),
            ledger.committed(id).load(Ordering::SeqCst),
            ledger.received(id).load(Ordering::SeqCst),
        );
        committed += c as u64;
        received += (r > 0) as u64;
        lost += (c == 1 && r == 0) as u64;
        duplicated += (r > 1) as u64;
        unexpected += (r > 0 && i == 0) as u64;
    }
    let _ = std::fs::remove_file(&ledger_path);
    eprintln!(
        "chaos{}: {kills} kills in {chaos_time:.1?}; {ids} messages attempted, {committed} committed, {received} received; \
         lost {lost}, duplicated {duplicated}, unexpected {unexpected}, in flight at a consumer's death {} \
         (claimed {}, taken {killed_taking}; uncommitted dropped {}, participants reaped {}); max stall after a kill \
         {max_stall:.1?}",
        if large { " (large messages)" } else { "" },
        stats.lost_reads + killed_taking,
        stats.lost_reads,
        stats.dropped_writes,
        stats.reaped
    );
    assert!(kills >= kills_wanted, "only {kills} kills");
    // A wedged queue shows as a stall that never ends (the wait above gives up at 10 s).
    assert!(max_stall < Duration::from_secs(5), "consumers stalled {max_stall:?} after a kill");
    assert_eq!(duplicated, 0, "a message was delivered twice");
    assert_eq!(unexpected, 0, "a message was received that was never put");
    // A message is lost only with a consumer that died holding it: claimed in the ring
    // (recovery counts it) or already taken out of it (the ledger's `taking` mark).
    assert!(
        lost <= stats.lost_reads + killed_taking,
        "{lost} committed messages lost, only {} in flight at a consumer's death",
        stats.lost_reads + killed_taking
    );
    assert!(received > 0);
}
