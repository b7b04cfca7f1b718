//! A tokio TCP front end that hands requests to worker processes over a queue and gets the
//! replies back over pipes, with a built-in load run.
//!
//! ```text
//! cargo run --release --features async --example async_server [-- REQUESTS [WORKERS [CLIENTS]]]
//! ```
//! The server listens on 127.0.0.1 on a port the system picks. Each request is one line; the
//! front end puts `id ++ line` into the `jobs` queue with `put_async`, and any worker process
//! takes it (a blocking `get`), answers (the line upper-cased) and sends `id ++ answer` on its
//! own reply pipe. One task per reply pipe awaits `recv_async` and hands each reply to the
//! connection that waits for it. The load run: CLIENTS connections (default 16) send REQUESTS
//! requests in all (default 2,000) over loopback, each waiting for its reply before the next,
//! for at most 20 s; it prints requests/s and latency percentiles, then shuts everything down
//! (the workers see end of stream, the reply tasks end of file).

use hdrhistogram::Histogram;
use shmq::{PipeBuilder, Queue, RecvError, Role, Worker};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The load run stops here, finished or not.
const LOAD_LIMIT: Duration = Duration::from_secs(20);
/// Largest request or reply line, in bytes (the slot size holds it and the 8-byte id).
const MAX_LINE: usize = 248;

/// Connections waiting for a reply, by request id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// A worker process: takes jobs until end of stream and answers on its reply pipe.
fn worker() -> Res<()> {
    let jobs = Queue::from_env("JOBS")?;
    let mut reply = shmq::Connection::from_env("REPLY")?;
    let mut out = Vec::with_capacity(MAX_LINE + 8);
    for job in &jobs {
        let (id, line) = job.split_at(8);
        out.clear();
        out.extend_from_slice(id);
        out.extend(line.iter().map(u8::to_ascii_uppercase));
        reply.send(&out)?;
    }
    Ok(())
}

/// Serves one TCP connection: each line in, its reply out.
async fn serve(stream: TcpStream, jobs: Arc<Queue>, waiting: Waiting, next_id: Arc<AtomicU64>) -> Res<()> {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let mut msg = Vec::with_capacity(MAX_LINE + 8);
    while let Some(line) = lines.next_line().await? {
        let line = &line.as_bytes()[..line.len().min(MAX_LINE)];
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        waiting.lock().unwrap().insert(id, tx);
        msg.clear();
        msg.extend_from_slice(&id.to_le_bytes());
        msg.extend_from_slice(line);
        jobs.put_async(&msg).await?;
        let mut answer = rx.await?;
        answer.push(b'\n');
        wr.write_all(&answer).await?;
    }
    Ok(())
}

/// Hands the replies that arrive on one worker's pipe to the connections waiting for them, until
/// the worker has gone (end of file).
async fn route_replies(mut replies: shmq::Receiver, waiting: Waiting) -> Res<()> {
    loop {
        match replies.recv_async().await {
            Ok(m) => {
                let (id, answer) = m.split_at(8);
                let id = u64::from_le_bytes(id.try_into()?);
                if let Some(tx) = waiting.lock().unwrap().remove(&id) {
                    let _ = tx.send(answer.to_vec());
                }
            }
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// One load-run client: requests until `budget` is spent; returns each request's latency (ns).
async fn client(addr: std::net::SocketAddr, budget: Arc<AtomicU64>) -> Res<Vec<u64>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let mut latencies = Vec::new();
    while budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
        let n = latencies.len();
        let t = Instant::now();
        wr.write_all(format!("hello {n}\n").as_bytes()).await?;
        let reply = lines.next_line().await?.ok_or("the server closed the connection")?;
        latencies.push(t.elapsed().as_nanos() as u64);
        assert_eq!(reply, format!("HELLO {n}"), "the reply matches the request");
    }
    Ok(latencies)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker();
    }
    let arg =
        |i: usize, default: u64| -> Res<u64> { Ok(args.get(i).map(|a| a.parse()).transpose()?.unwrap_or(default)) };
    let (requests, n_workers, n_clients) = (arg(1, 2_000)?, arg(2, 2)?, arg(3, 16)?);

    // Workers die with the thread that spawns them: spawn them here, on the main thread.
    let jobs =
        Arc::new(Queue::builder().capacity(256).slot_size(MAX_LINE + 8).role(Role::Producer).create_anonymous()?);
    let mut workers = Vec::new();
    let mut reply_pipes = Vec::new();
    for _ in 0..n_workers {
        let (tx, rx) = PipeBuilder::new().duplex(false).capacity(256).slot_size(MAX_LINE + 8).create_anonymous()?;
        let w = Worker::this_program()?.arg("worker").queue("JOBS", &jobs, Role::Consumer).pipe("REPLY", tx);
        workers.push(w.spawn()?);
        reply_pipes.push(rx.into_receiver().ok_or("end 0 of a one-way pipe receives")?);
    }

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (elapsed, mut latencies, finished) = rt.block_on(async {
        let waiting: Waiting = Arc::default();
        let routers: Vec<_> =
            reply_pipes.into_iter().map(|rx| tokio::spawn(route_replies(rx, waiting.clone()))).collect();

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        println!(
            "front end on {addr}, {n_workers} worker processes; load: {requests} requests over {n_clients} connections"
        );
        let server = {
            let jobs = jobs.clone();
            let next_id = Arc::new(AtomicU64::new(0));
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { return };
                    let _ = stream.set_nodelay(true);
                    let conn = serve(stream, jobs.clone(), waiting.clone(), next_id.clone());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            eprintln!("connection: {e}");
                        }
                    });
                }
            })
        };

        let budget = Arc::new(AtomicU64::new(requests));
        let start = Instant::now();
        let clients: Vec<_> = (0..n_clients).map(|_| tokio::spawn(client(addr, budget.clone()))).collect();
        let all = async {
            let mut latencies = Vec::new();
            for c in clients {
                latencies.extend(c.await??);
            }
            Res::Ok(latencies)
        };
        let (latencies, finished) = match tokio::time::timeout(LOAD_LIMIT, all).await {
            Ok(l) => (l?, true),
            Err(_) => (Vec::new(), false),
        };
        let elapsed = start.elapsed();

        // Shut down: no more connections; the front end's producer handle closes, so the workers
        // see end of stream once they have drained the queue, exit, and the routers see end of
        // file on their pipes.
        server.abort();
        jobs.close();
        for r in routers {
            tokio::time::timeout(Duration::from_secs(10), r).await???;
        }
        Res::Ok((elapsed, latencies, finished))
    })?;
    for mut w in workers {
        if w.join_timeout(Duration::from_secs(10))?.is_none() {
            return Err("a worker did not exit".into());
        }
    }

    if !finished {
        return Err(format!("the load run did not finish within {LOAD_LIMIT:?}").into());
    }
    latencies.sort_unstable();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for &l in &latencies {
        hist.record(l.max(1))?;
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{} requests in {:.2} s: {:.0} requests/s; latency p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        us(0.5),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0
    );
    Ok(())
}
