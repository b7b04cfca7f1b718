#!/usr/bin/env python3
"""shmq's Queue and Pipe against multiprocessing's, measured in the same run.

    python bench.py [--quick] [--start-method fork|spawn|forkserver]

Rows:
- round trip: this process sends an object, a child process sends it back (Queue: through two
  queues; Pipe: both ways on one duplex pipe); the median of several runs, per round trip.
- demo: the seed's demo, 10 producer and 10 consumer processes on a queue of capacity 3, every
  item counted (wall time from starting the processes to the last item, so process start-up is
  included), with 10 items per producer (the seed's size) and with 1000.

Each row prints both times and the ratio multiprocessing / shmq (above 1: shmq is faster).
Compare ratios from one run: a loaded or virtual machine moves the absolute figures between runs.
"""

import argparse
import multiprocessing as mp
import statistics
import time

import shmq


def echo_queue(inq, outq):
    for obj in iter(inq.get, None):
        outq.put(obj)


def echo_pipe(conn):
    while True:
        obj = conn.recv()
        if obj is None:
            return
        conn.send(obj)


def echo_pipe_bytes(conn):
    while True:
        b = conn.recv_bytes()
        if not b:
            return
        conn.send_bytes(b)


def produce(q, producer, n):
    for i in range(n):
        q.put((producer, i))


def consume(q, out):
    count = 0
    for _ in iter(q.get, None):
        count += 1
    out.put(count)


def timed_runs(one_run, runs):
    return statistics.median(one_run() for _ in range(runs))


def queue_round_trip(ctx, Queue, obj, n, runs):
    a, b = Queue(), Queue()
    p = ctx.Process(target=echo_queue, args=(a, b))
    p.start()
    for _ in range(100):  # warm up (and wait for the child)
        a.put(obj)
        b.get()

    def one_run():
        t = time.perf_counter()
        for _ in range(n):
            a.put(obj)
            b.get()
        return (time.perf_counter() - t) / n

    r = timed_runs(one_run, runs)
    a.put(None)
    p.join()
    return r


def pipe_round_trip(ctx, Pipe, obj, n, runs, raw=False):
    here, there = Pipe()
    p = ctx.Process(target=echo_pipe_bytes if raw else echo_pipe, args=(there,))
    p.start()
    there.close()
    send, recv = (here.send_bytes, here.recv_bytes) if raw else (here.send, here.recv)
    for _ in range(100):
        send(obj)
        recv()

    def one_run():
        t = time.perf_counter()
        for _ in range(n):
            send(obj)
            recv()
        return (time.perf_counter() - t) / n

    r = timed_runs(one_run, runs)
    send(b"" if raw else None)
    p.join()
    return r


def demo(ctx, Queue, items, runs):
    def one_run():
        q, out = Queue(3), Queue()
        t = time.perf_counter()
        consumers = [ctx.Process(target=consume, args=(q, out)) for _ in range(10)]
        producers = [ctx.Process(target=produce, args=(q, p, items)) for p in range(10)]
        for p in consumers + producers:
            p.start()
        for p in producers:
            p.join()
        for _ in consumers:
            q.put(None)
        total = sum(out.get() for _ in consumers)
        elapsed = time.perf_counter() - t
        for p in consumers:
            p.join()
        assert total == 10 * items, total
        return elapsed

    return timed_runs(one_run, runs)


def fmt(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:9.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:9.1f} ms"
    return f"{seconds:9.2f} s "


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--start-method", default="fork", choices=mp.get_all_start_methods())
    args = ap.parse_args()
    ctx = mp.get_context(args.start_method)
    n, runs = (500, 3) if args.quick else (5000, 5)
    small = (1, "two", 3.0)
    kib64 = b"x" * 65536

    rows = [
        ("Queue round trip, small object", lambda Q: queue_round_trip(ctx, Q, small, n, runs), shmq.Queue, ctx.Queue),
        (
            "Queue round trip, 64 KiB bytes",
            lambda Q: queue_round_trip(ctx, Q, kib64, n // 5, runs),
            shmq.Queue,
            ctx.Queue,
        ),
        ("Pipe round trip, small object", lambda P: pipe_round_trip(ctx, P, small, n, runs), shmq.Pipe, ctx.Pipe),
        (
            "Pipe round trip, send_bytes 64 B",
            lambda P: pipe_round_trip(ctx, P, b"y" * 64, n, runs, raw=True),
            shmq.Pipe,
            ctx.Pipe,
        ),
        (
            "Pipe round trip, 64 KiB bytes",
            lambda P: pipe_round_trip(ctx, P, kib64, n // 5, runs),
            shmq.Pipe,
            ctx.Pipe,
        ),
        ("demo 10 x 10, capacity 3, 10 items each", lambda Q: demo(ctx, Q, 10, runs), shmq.Queue, ctx.Queue),
        (
            "demo 10 x 10, capacity 3, 1000 items each",
            lambda Q: demo(ctx, Q, 100 if args.quick else 1000, 3),
            shmq.Queue,
            ctx.Queue,
        ),
    ]
    print(f"start method {args.start_method}; median of {runs} runs; ratio = multiprocessing / shmq")
    print(f"{'':44} {'shmq':>12} {'multiprocessing':>16} {'ratio':>8}")
    for label, measure, ours, theirs in rows:
        s = measure(ours)
        m = measure(theirs)
        print(f"{label:44} {fmt(s):>12} {fmt(m):>16} {m / s:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
