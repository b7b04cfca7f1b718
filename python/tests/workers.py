"""Functions that run in child processes (importable by spawned and forkserver children)."""

import os
import time


def double(q, out):
    """Takes numbers from `q` until None; puts each doubled into `out`."""
    for x in iter(q.get, None):
        out.put(x * 2)


def produce(q, producer, n):
    """The seed demo's producer: puts (producer, i) for i in range(n), then a sentinel count."""
    for i in range(n):
        q.put((producer, i))


def consume(q, out):
    """The seed demo's consumer: takes items until None, and reports each to `out`."""
    for item in iter(q.get, None):
        out.put((os.getpid(), item))
    out.put((os.getpid(), "done"))


def block_in_get(q, ready):
    """Says it is ready, then blocks in get() on an empty queue (to be killed there)."""
    ready.put(os.getpid())
    q.get()


def joinable_worker(jobs, results):
    """Takes jobs until None, puts each squared into `results`, and marks it done."""
    while True:
        job = jobs.get()
        if job is None:
            jobs.task_done()
            return
        results.put(job * job)
        jobs.task_done()


def echo(conn):
    """Sends back everything received (objects, and bytes sent with send_bytes) until None."""
    while True:
        obj = conn.recv()
        if obj is None:
            break
        conn.send(obj)
    conn.send_bytes(b"bytes:" + conn.recv_bytes())
    conn.close()


def send_then_hang(conn, ready):
    """Sends one message, then sleeps (to be killed)."""
    conn.send("hello")
    ready.put(os.getpid())
    time.sleep(60)


def writer(conn, n):
    """Sends 0..n-1 and closes the end."""
    for i in range(n):
        conn.send(i)
    conn.close()


_initialized = {}


def init_pool(q, conn):
    """A ProcessPoolExecutor initializer: keeps the handles for the tasks."""
    _initialized["q"] = q
    _initialized["conn"] = conn


def pool_task(x):
    """Puts x into the initializer's queue; returns its pid."""
    _initialized["q"].put(("task", x))
    return os.getpid()


def pool_pipe_task():
    """Sends through the initializer's pipe end (one worker only)."""
    _initialized["conn"].send("from the pool")
    return True


def put_large(q, size):
    q.put(b"x" * size)


def report_pid(q):
    q.put(os.getpid())
