"""Queues and pipes across processes, under every start method (fork, spawn, forkserver)."""

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

import shmq
import workers


def test_queue_passed_to_a_process(ctx):
    q, out = shmq.Queue(3), shmq.Queue()
    q.put(0)  # used before the child starts: the child opens its own handle anyway
    p = ctx.Process(target=workers.double, args=(q, out))
    p.start()
    for i in range(1, 20):
        q.put(i)
    q.put(None)
    assert sorted(out.get(timeout=30) for _ in range(20)) == [2 * i for i in range(20)]
    p.join(30)
    assert p.exitcode == 0


def test_seed_demo_10_producers_10_consumers_capacity_3(ctx):
    """The seed's demo: 10 producers and 10 consumers on a queue of capacity 3; every item is
    received exactly once."""
    q, out = shmq.Queue(3), shmq.Queue()
    producers = [ctx.Process(target=workers.produce, args=(q, p, 10)) for p in range(10)]
    consumers = [ctx.Process(target=workers.consume, args=(q, out)) for _ in range(10)]
    for p in consumers + producers:
        p.start()
    for p in producers:
        p.join(60)
        assert p.exitcode == 0
    for _ in consumers:
        q.put(None)
    items, done = collections.Counter(), 0
    while done < len(consumers):
        _, item = out.get(timeout=60)
        if item == "done":
            done += 1
        else:
            items[item] += 1
    for p in consumers:
        p.join(60)
        assert p.exitcode == 0
    assert items == collections.Counter((p, i) for p in range(10) for i in range(10))
    assert q.empty()


def test_joinable_queue_with_workers(ctx):
    jobs, results = shmq.JoinableQueue(4), shmq.Queue()
    ps = [ctx.Process(target=workers.joinable_worker, args=(jobs, results)) for _ in range(3)]
    for p in ps:
        p.start()
    for i in range(30):
        jobs.put(i)
    jobs.join()  # every job marked done
    assert sorted(results.get(timeout=30) for _ in range(30)) == sorted(i * i for i in range(30))
    for _ in ps:
        jobs.put(None)
    jobs.join()
    for p in ps:
        p.join(30)
        assert p.exitcode == 0


def test_pipe_end_passed_to_a_process(ctx):
    parent, child = shmq.Pipe()
    p = ctx.Process(target=workers.echo, args=(child,))
    p.start()
    child.close()  # the child has it now
    big = list(range(100_000))  # longer than the ring: sent in parts
    for obj in ["hi", {"k": 1}, big]:
        parent.send(obj)
        assert parent.recv() == obj
    parent.send(None)
    parent.send_bytes(b"raw")
    assert parent.recv_bytes() == b"bytes:raw"
    with pytest.raises(EOFError):
        parent.recv()  # the child closed its end
    p.join(30)
    assert p.exitcode == 0


def test_one_way_pipe_to_a_process(ctx):
    r, w = shmq.Pipe(duplex=False)
    p = ctx.Process(target=workers.writer, args=(w, 50))
    p.start()
    w.close()
    assert [r.recv() for _ in range(50)] == list(range(50))
    with pytest.raises(EOFError):
        r.recv()
    p.join(30)


def test_process_pool_initializer(ctx):
    q = shmq.Queue()
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=workers.init_pool, initargs=(q, None)) as pool:
        pids = set(pool.map(workers.pool_task, range(20)))
    assert sorted(q.get(timeout=30) for _ in range(20)) == [("task", i) for i in range(20)]
    assert 1 <= len(pids) <= 2


def test_process_pool_initializer_with_a_pipe_end(ctx):
    parent, child = shmq.Pipe()
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=workers.init_pool, initargs=(None, child)) as pool:
        assert pool.submit(workers.pool_pipe_task).result(timeout=60)
        assert parent.recv() == "from the pool"


def test_large_objects_across_processes(ctx):
    q = shmq.Queue(4)
    p = ctx.Process(target=workers.put_large, args=(q, 3_000_000))
    p.start()
    assert q.get(timeout=30) == b"x" * 3_000_000
    p.join(30)


def test_queue_passed_through_a_queue():
    """Handles can be pickled at any time (multiprocessing's resource sharer carries the
    descriptor), not only while spawning."""
    import multiprocessing as mp

    outer, inner = shmq.Queue(), shmq.Queue()
    outer.put(inner)
    received = outer.get(timeout=10)
    p = mp.get_context("spawn").Process(target=workers.report_pid, args=(received,))
    p.start()
    assert inner.get(timeout=30) == p.pid
    p.join(30)


def test_killed_blocked_worker_does_not_wedge_the_others(ctx):
    """A consumer killed (SIGKILL) while it waits in get() leaves the queue working: the seed
    demo then runs with every item received exactly once."""
    q, out, ready = shmq.Queue(3), shmq.Queue(), shmq.Queue()
    victim = ctx.Process(target=workers.block_in_get, args=(q, ready))
    victim.start()
    assert ready.get(timeout=30) == victim.pid
    time.sleep(0.1)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    producers = [ctx.Process(target=workers.produce, args=(q, p, 10)) for p in range(4)]
    consumers = [ctx.Process(target=workers.consume, args=(q, out)) for _ in range(3)]
    for p in consumers + producers:
        p.start()
    for p in producers:
        p.join(60)
    for _ in consumers:
        q.put(None)
    got = collections.Counter()
    done = 0
    while done < len(consumers):
        _, item = out.get(timeout=60)
        if item == "done":
            done += 1
        else:
            got[item] += 1
    assert got == collections.Counter((p, i) for p in range(4) for i in range(10))


def test_killed_busy_worker_does_not_wedge_the_others(ctx):
    """A consumer killed while the queue is busy: the others go on, nothing is received twice,
    and at most the one item the victim had taken is missing."""
    q, out = shmq.Queue(3), shmq.Queue()
    consumers = [ctx.Process(target=workers.consume, args=(q, out)) for _ in range(3)]
    for p in consumers:
        p.start()
    n = 300
    for i in range(n):
        q.put(i)
        if i == n // 2:
            os.kill(consumers[0].pid, signal.SIGKILL)
    for _ in consumers[1:]:
        q.put(None)
    got, done = collections.Counter(), 0
    while done < 2:
        pid, item = out.get(timeout=60)
        if item == "done":
            done += 1
        else:
            got[item] += 1
    assert all(c == 1 for c in got.values())
    assert n - 1 <= len(got) <= n  # the victim may have died holding one item
    consumers[0].join(30)
    assert consumers[0].exitcode == -signal.SIGKILL
    for p in consumers[1:]:
        p.join(30)
        assert p.exitcode == 0


def test_killed_child_is_end_of_file_for_the_parent(ctx):
    parent, child = shmq.Pipe()
    ready = shmq.Queue()
    p = ctx.Process(target=workers.send_then_hang, args=(child, ready))
    p.start()
    child.close()  # as with multiprocessing: else this process keeps the child's end open
    assert parent.recv() == "hello"
    ready.get(timeout=30)
    os.kill(p.pid, signal.SIGKILL)
    t = time.monotonic()
    with pytest.raises(EOFError):
        parent.recv()
    assert time.monotonic() - t < 5
    with pytest.raises(BrokenPipeError):
        parent.send("anyone?")
    p.join(30)


def test_fork_child_and_parent_share_ends_first_user_takes_it():
    import multiprocessing as mp

    a, b = shmq.Pipe()
    a.send("parent took a")  # `a` is this process's from now on
    p = mp.get_context("fork").Process(target=workers.echo, args=(b,))
    p.start()
    assert a.recv() == "parent took a"  # the child echoes
    with pytest.raises(OSError, match="taken by another process"):
        b.send("the child took b")
    a.send(None)
    a.send_bytes(b"z")
    assert a.recv_bytes() == b"bytes:z"
    p.join(30)
    assert p.exitcode == 0


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import signal, sys, time, shmq
    # A shell that starts jobs in the background (no job control) starts them with SIGINT
    # ignored, and Python then keeps it ignored: install its handler whatever we inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    what = sys.argv[1]
    q = shmq.Queue(1)
    j = shmq.JoinableQueue()
    a, b = shmq.Pipe()
    if what == "put":
        q.put(1)
    if what == "join":
        j.put(1)
    call = {"get": q.get, "put": lambda: q.put(2), "recv": b.recv, "poll": lambda: b.poll(None),
            "join": j.join}[what]
    print("ready", flush=True)
    t = time.monotonic()
    try:
        call()
    except KeyboardInterrupt:
        print("interrupted after %.3f" % (time.monotonic() - t), flush=True)
        sys.exit(3)
    """
)


@pytest.mark.parametrize("call", ["get", "put", "recv", "poll", "join"])
def test_ctrl_c_interrupts_a_blocking_call(call):
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, call], stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(__file__)
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # well inside the blocking call
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        assert child.wait(10) == 3
        latency = time.monotonic() - sent
        assert "interrupted" in child.stdout.read()
        # Designed: within one 50 ms slice; generous for a loaded 2-core machine.
        assert latency < 1.0
    finally:
        child.kill()
        child.wait()


def test_named_queue_passed_to_a_process(ctx):
    name = f"/shmq-pytest-named-{os.getpid()}"
    q = shmq.Queue(name=name)
    try:
        out = shmq.Queue()
        p = ctx.Process(target=workers.double, args=(q, out))  # pickled as its name
        p.start()
        q.put(21)
        q.put(None)
        assert out.get(timeout=30) == 42
        p.join(30)
        assert p.exitcode == 0
    finally:
        shmq.unlink(name)
