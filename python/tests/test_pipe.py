"""multiprocessing.Pipe / Connection behaviours, within one process."""

import array
import io
import threading
import time

import pytest
from multiprocessing import BufferTooShort

import shmq


def test_duplex_send_recv_both_ways():
    a, b = shmq.Pipe()
    assert a.readable and a.writable and b.readable and b.writable
    a.send({"x": [1, 2]})
    b.send("back")
    assert b.recv() == {"x": [1, 2]}
    assert a.recv() == "back"


def test_one_way_pipe_is_reader_then_writer():
    r, w = shmq.Pipe(duplex=False)
    assert r.readable and not r.writable
    assert w.writable and not w.readable
    w.send(1)
    assert r.recv() == 1
    with pytest.raises(OSError, match="read-only"):
        r.send(1)
    with pytest.raises(OSError, match="write-only"):
        w.recv()
    with pytest.raises(OSError, match="write-only"):
        w.poll()


def test_send_bytes_offset_and_size():
    a, b = shmq.Pipe()
    a.send_bytes(b"hello world")
    a.send_bytes(b"hello world", 6)
    a.send_bytes(b"hello world", 0, 5)
    a.send_bytes(bytearray(b"abc"))
    a.send_bytes(array.array("i", [1, 2]))  # the bytes of wider items
    a.send_bytes(b"")
    assert b.recv_bytes() == b"hello world"
    assert b.recv_bytes() == b"world"
    assert b.recv_bytes() == b"hello"
    assert b.recv_bytes() == b"abc"
    assert b.recv_bytes() == array.array("i", [1, 2]).tobytes()
    assert b.recv_bytes() == b""


def test_send_bytes_argument_errors():
    a, _ = shmq.Pipe()
    with pytest.raises(ValueError, match="offset is negative"):
        a.send_bytes(b"abc", -1)
    with pytest.raises(ValueError, match="buffer length < offset"):
        a.send_bytes(b"abc", 4)
    with pytest.raises(ValueError, match="size is negative"):
        a.send_bytes(b"abc", 0, -1)
    with pytest.raises(ValueError, match=r"buffer length < offset \+ size"):
        a.send_bytes(b"abc", 1, 3)


def test_recv_bytes_maxlength():
    a, b = shmq.Pipe()
    a.send_bytes(b"12345")
    with pytest.raises(ValueError):
        b.recv_bytes(-1)
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(4)


def test_recv_bytes_into():
    a, b = shmq.Pipe()
    buf = bytearray(10)
    a.send_bytes(b"abc")
    assert b.recv_bytes_into(buf) == 3
    assert buf[:3] == b"abc"
    a.send_bytes(b"xyz")
    assert b.recv_bytes_into(buf, 5) == 3
    assert buf == bytearray(b"abc\x00\x00xyz\x00\x00")
    ints = array.array("i", [0] * 4)
    a.send_bytes(array.array("i", [7, 8]))
    assert b.recv_bytes_into(ints, 4) == 8
    assert list(ints) == [0, 7, 8, 0]
    a.send_bytes(b"too long for it")
    with pytest.raises(BufferTooShort) as e:
        b.recv_bytes_into(bytearray(4))
    assert e.value.args[0] == b"too long for it"
    with pytest.raises(ValueError, match="negative offset"):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match="offset too large"):
        b.recv_bytes_into(buf, 11)


def test_poll():
    a, b = shmq.Pipe()
    assert not b.poll()
    assert not b.poll(0.05)
    a.send(1)
    assert b.poll()
    assert b.poll(None)
    assert b.recv() == 1
    threading.Timer(0.1, a.send, args=(2,)).start()
    assert b.poll(10)
    assert b.recv() == 2
    t = time.monotonic()
    assert not b.poll(0.2)
    assert 0.15 < time.monotonic() - t < 2
    assert not b.poll(-1)


def test_eof_after_the_other_end_closes_and_everything_is_received():
    a, b = shmq.Pipe()
    a.send(1)
    a.send(2)
    a.close()
    assert b.poll()
    assert b.recv() == 1 and b.recv() == 2
    assert b.poll()  # end of file is something to read, as with multiprocessing
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv_bytes()


def test_eof_wakes_a_blocked_recv():
    a, b = shmq.Pipe()
    threading.Timer(0.1, a.close).start()
    with pytest.raises(EOFError):
        b.recv()


def test_broken_pipe_after_the_other_end_closes():
    a, b = shmq.Pipe()
    b.close()
    with pytest.raises(BrokenPipeError):
        a.send("nobody")
    with pytest.raises(BrokenPipeError):
        a.send_bytes(b"nobody")


def test_closed_handle_raises_oserror():
    a, b = shmq.Pipe()
    a.close()
    a.close()  # idempotent
    assert a.closed and not b.closed
    for call in (lambda: a.send(1), a.recv, a.poll, lambda: a.send_bytes(b"x"), a.recv_bytes):
        with pytest.raises(OSError, match="handle is closed"):
            call()


def test_context_manager_closes():
    a, b = shmq.Pipe()
    with a:
        a.send("in")
    assert a.closed
    assert b.recv() == "in"
    with pytest.raises(EOFError):
        b.recv()


def test_fileno_is_unsupported():
    a, _ = shmq.Pipe()
    with pytest.raises(io.UnsupportedOperation):
        a.fileno()


def test_messages_of_any_size():
    a, b = shmq.Pipe(capacity=8, slot_size=64)
    chunk = 64  # long messages go in parts of a slot each
    sizes = [0, 1, 63, 64, 65, 127, 128, 129, 8 * chunk, 10_000, 100_000, 1_000_000]

    def send_all():
        for n in sizes:
            a.send_bytes(bytes([n % 251]) * n)
        a.send(list(range(20_000)))

    t = threading.Thread(target=send_all)
    t.start()
    for n in sizes:
        assert b.recv_bytes() == bytes([n % 251]) * n
    assert b.recv() == list(range(20_000))
    t.join()


def test_default_pipe_carries_megabytes():
    a, b = shmq.Pipe()
    big = bytes(range(256)) * 20_000
    t = threading.Thread(target=a.send_bytes, args=(big,))
    t.start()
    assert b.recv_bytes() == big
    t.join()


def test_send_and_recv_from_two_threads_on_one_end():
    a, b = shmq.Pipe()
    n = 2000

    def echo():
        for _ in range(n):
            b.send(b.recv())

    t = threading.Thread(target=echo)
    t.start()
    got = []
    reader = threading.Thread(target=lambda: got.extend(a.recv() for _ in range(n)))
    reader.start()
    for i in range(n):
        a.send(i)
    reader.join(30)
    t.join(30)
    assert got == list(range(n))


def test_a_used_end_cannot_be_handed_on():
    import pickle

    a, b = shmq.Pipe()
    a.send(1)  # `a` now belongs to this process
    with pytest.raises(OSError, match="used by this process"):
        pickle.dumps(a)
    # An unused end can be pickled (it travels as multiprocessing passes descriptors).
    c = pickle.loads(pickle.dumps(b))
    assert c.recv() == 1
