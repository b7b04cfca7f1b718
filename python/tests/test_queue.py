"""multiprocessing.Queue / JoinableQueue / SimpleQueue behaviours, within one process."""

import pickle
import queue
import threading
import time

import pytest

import shmq


def test_fifo_and_any_picklable_object():
    q = shmq.Queue()
    objs = [1, "two", b"three", [4], {"five": 5}, (6, None), 7.5, None, list(range(1000))]
    for o in objs:
        q.put(o)
    assert [q.get() for _ in objs] == objs


def test_exceptions_are_the_queue_modules():
    assert shmq.Full is queue.Full and shmq.Empty is queue.Empty


def test_get_nowait_and_block_false_on_empty_raise_empty():
    q = shmq.Queue(2)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get(block=False, timeout=10)  # timeout is ignored when block is false


def test_put_nowait_and_block_false_on_full_raise_full():
    q = shmq.Queue(2)
    q.put(1)
    q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, False)
    assert q.get() == 1 and q.get() == 2


def test_timeouts_wait_about_that_long():
    q = shmq.Queue(1)
    t = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert 0.15 < time.monotonic() - t < 2
    q.put("x")
    t = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("y", timeout=0.2)
    assert 0.15 < time.monotonic() - t < 2
    # Zero and negative timeouts do not wait.
    with pytest.raises(queue.Full):
        q.put("y", True, 0)
    with pytest.raises(queue.Full):
        q.put("y", True, -1)
    assert q.get(True, 0) == "x"
    with pytest.raises(queue.Empty):
        q.get(True, -1)


def test_blocking_get_wakes_when_another_thread_puts():
    q = shmq.Queue(4)
    threading.Timer(0.1, q.put, args=("late",)).start()
    assert q.get(timeout=10) == "late"


def test_blocking_put_wakes_when_another_thread_gets():
    q = shmq.Queue(1)
    q.put(1)
    threading.Timer(0.1, q.get).start()
    q.put(2, timeout=10)
    assert q.get() == 2


def test_qsize_empty_full():
    q = shmq.Queue(3)
    assert q.empty() and not q.full() and q.qsize() == 0
    q.put(1)
    assert not q.empty() and not q.full() and q.qsize() == 1
    q.put(2)
    q.put(3)
    assert q.full() and q.qsize() == 3
    assert q.maxsize == 3


def test_maxsize_zero_is_the_documented_bound():
    q = shmq.Queue()
    assert q.maxsize == shmq.DEFAULT_MAXSIZE
    assert q.maxsize * q.slot_size >= shmq.QUEUE_BYTES
    assert shmq.Queue(-5).maxsize == shmq.DEFAULT_MAXSIZE
    # A small queue gets large slots: the ring still holds QUEUE_BYTES.
    small = shmq.Queue(3)
    assert small.maxsize * small.slot_size >= shmq.QUEUE_BYTES


def test_objects_larger_than_a_slot():
    q = shmq.Queue(16, slot_size=64)
    big = bytes(range(256)) * 2
    q.put(big)  # takes several slots
    q.put("small")
    assert q.get() == big
    assert q.get() == "small"


def test_an_object_larger_than_the_ring_is_refused():
    q = shmq.Queue(4, slot_size=64)
    with pytest.raises(ValueError, match="slot_size"):
        q.put(b"x" * 1000)
    q.put("still works")
    assert q.get() == "still works"


def test_default_queue_carries_megabytes():
    q = shmq.Queue(3)
    big = b"y" * 3_000_000
    q.put(big)
    assert q.get() == big


def test_bytes_path_does_not_pickle():
    q = shmq.Queue()
    q.put_bytes(b"raw")
    q.put_bytes(bytearray(b"array"))
    q.put_bytes(memoryview(b"view"))
    assert q.get_bytes() == b"raw"
    assert q.get_bytes() == b"array"
    assert q.get_bytes() == b"view"
    q.put(42)
    assert pickle.loads(q.get_bytes()) == 42
    with pytest.raises(queue.Empty):
        q.get_bytes(block=False)


def test_pickled_as_multiprocessing_does():
    from multiprocessing.reduction import ForkingPickler

    q = shmq.Queue()
    obj = {"a": [1, 2, 3]}
    q.put(obj)
    assert q.get_bytes() == bytes(ForkingPickler.dumps(obj))


def test_unpicklable_object_raises_at_put():
    q = shmq.Queue()
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        q.put(lambda: None)
    with pytest.raises(TypeError):
        q.put(threading.Lock())
    q.put("fine")
    assert q.get() == "fine"


def test_close_then_put_or_get_raises_value_error():
    q = shmq.Queue()
    q.put(1)
    q.close()
    q.close()  # idempotent
    with pytest.raises(ValueError):
        q.put(2)
    with pytest.raises(ValueError):
        q.get()
    with pytest.raises(ValueError):
        q.get_nowait()
    with pytest.raises(ValueError):
        q.qsize()


def test_close_leaves_other_handles_working():
    q = shmq.Queue()
    q2 = pickle.loads(pickle.dumps(q))  # another handle on the same queue
    q.put("kept")
    q.close()
    assert q2.get(timeout=5) == "kept"


def test_close_wakes_a_blocked_get_in_another_thread():
    q = shmq.Queue()
    errors = []

    def reader():
        try:
            q.get()
        except ValueError as e:
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    q.close()
    t.join(5)
    assert not t.is_alive() and len(errors) == 1


def test_join_thread_and_cancel_join_thread():
    q = shmq.Queue()
    with pytest.raises(AssertionError):
        q.join_thread()  # as multiprocessing: only after close()
    q.cancel_join_thread()
    q.close()
    q.join_thread()


def test_threads_share_a_queue():
    q = shmq.Queue(3)
    got = []
    lock = threading.Lock()

    def consumer():
        for x in iter(q.get, None):
            with lock:
                got.append(x)

    consumers = [threading.Thread(target=consumer) for _ in range(4)]
    for t in consumers:
        t.start()
    producers = [threading.Thread(target=lambda p=p: [q.put((p, i)) for i in range(200)]) for p in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    for _ in consumers:
        q.put(None)
    for t in consumers:
        t.join()
    assert sorted(got) == sorted((p, i) for p in range(4) for i in range(200))


def test_joinable_queue_task_done_and_join():
    q = shmq.JoinableQueue()
    for i in range(5):
        q.put(i)
    done = []

    def worker():
        for _ in range(5):
            done.append(q.get())
            time.sleep(0.01)
            q.task_done()

    t = threading.Thread(target=worker)
    t.start()
    q.join()
    assert done == [0, 1, 2, 3, 4]
    t.join()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()


def test_join_returns_at_once_with_no_tasks():
    shmq.JoinableQueue().join()


def test_plain_queue_has_no_task_done():
    assert not hasattr(shmq.Queue(), "task_done")
    assert isinstance(shmq.JoinableQueue(), shmq.Queue)


def test_simple_queue():
    q = shmq.SimpleQueue()
    assert q.empty()
    q.put("a")
    q.put(["b"])
    assert not q.empty()
    assert q.get() == "a" and q.get() == ["b"]
    q.close()
    with pytest.raises(ValueError):
        q.get()


def test_named_queue_opens_by_name_and_persists_until_unlinked():
    import os

    name = f"/shmq-pytest-{os.getpid()}"
    try:
        a = shmq.Queue(4, name=name)
        a.put("hello")
        b = shmq.Queue(name=name)  # opens the existing queue, whatever its size
        assert b.maxsize == 4 and b.name == name
        assert b.get(timeout=5) == "hello"
        c = pickle.loads(pickle.dumps(a))  # pickled as its name
        c.put("again")
        assert a.get(timeout=5) == "again"
        a.close()
        b.close()
        c.close()
        assert os.path.exists("/dev/shm" + name)
    finally:
        shmq.unlink(name)
    with pytest.raises(FileNotFoundError):
        shmq.unlink(name)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        shmq.Queue(2**25)
    with pytest.raises(ValueError):
        shmq.Queue(slot_size=0)
    with pytest.raises(ValueError):
        shmq.Queue(name="no-slash")
    with pytest.raises(ValueError):
        shmq.Queue().get(timeout=float("nan"))


def test_repr():
    assert repr(shmq.JoinableQueue(3)).startswith("<shmq.JoinableQueue maxsize=3")
