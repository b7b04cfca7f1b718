# The seed demo in Python's multiprocessing: the work of `shmq bench`'s seed-demo-shmq row.
#
# 10 producer and 10 consumer processes share multiprocessing.Queue(maxsize=3); producers put
# (id << 32) | i, their share of TOTAL messages; consumers hand every message back on a second
# queue; the parent counts each one. A thread of the parent joins the producers and then tells
# the consumers there is no more (one None each); each consumer ends its results with a None.
# Timed from the moment every process waits at the start barrier to the last consumer's None.
#
# Usage: python3 -c "$(cat seed_demo.py)" TOTAL CORE_A CORE_B
# Prints: received N lost N duplicated N elapsed_ns N
import os
import sys
import threading
import time
import multiprocessing as mp

PRODUCERS = 10
CONSUMERS = 10


def pin(core):
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass


def share(total, pid):
    return total // PRODUCERS + (1 if pid < total % PRODUCERS else 0)


def producer(jobs, pid, n, core, start):
    pin(core)
    start.wait()
    for i in range(n):
        jobs.put((pid << 32) | i)


def consumer(jobs, results, core, start):
    pin(core)
    start.wait()
    while True:
        item = jobs.get()
        if item is None:
            break
        results.put(item)
    results.put(None)


def main():
    total, core_a, core_b = (int(x) for x in sys.argv[1:4])
    pin(core_a)
    # "fork" explicitly: the functions above live in a `-c` script, which the "spawn" and
    # "forkserver" start methods cannot import in the children.
    ctx = mp.get_context("fork")
    jobs = ctx.Queue(maxsize=3)
    results = ctx.Queue()
    start = ctx.Barrier(PRODUCERS + CONSUMERS + 1)
    consumers = [ctx.Process(target=consumer, args=(jobs, results, core_b, start)) for _ in range(CONSUMERS)]
    producers = [
        ctx.Process(target=producer, args=(jobs, pid, share(total, pid), core_a, start)) for pid in range(PRODUCERS)
    ]
    for p in consumers + producers:
        p.start()
    first = [0] * PRODUCERS
    for pid in range(1, PRODUCERS):
        first[pid] = first[pid - 1] + share(total, pid - 1)
    seen = bytearray(total)

    start.wait()
    t0 = time.perf_counter_ns()

    def closer():
        for p in producers:
            p.join()
        for _ in consumers:
            jobs.put(None)

    closing = threading.Thread(target=closer)
    closing.start()
    received = 0
    ended = 0
    while ended < CONSUMERS:
        item = results.get()
        if item is None:
            ended += 1
            continue
        received += 1
        pid, i = item >> 32, item & 0xFFFFFFFF
        if pid < PRODUCERS and i < share(total, pid) and seen[first[pid] + i] < 255:
            seen[first[pid] + i] += 1
    elapsed = time.perf_counter_ns() - t0
    closing.join()
    for p in consumers:
        p.join()
    lost = seen.count(0)
    duplicated = total - lost - seen.count(1)
    print(f"received {received} lost {lost} duplicated {duplicated} elapsed_ns {elapsed}")


if __name__ == "__main__":
    main()
