"""Shared-memory drop-ins for multiprocessing's Queue, JoinableQueue, SimpleQueue and Pipe.

    import shmq
    q = shmq.Queue(3)                    # instead of multiprocessing.Queue(3)
    jobs = shmq.JoinableQueue()          # instead of multiprocessing.JoinableQueue()
    a, b = shmq.Pipe()                   # instead of multiprocessing.Pipe()

The objects have multiprocessing's methods, signatures and exceptions, and are passed to
``multiprocessing.Process`` (every start method: fork, spawn, forkserver) and to a
``ProcessPoolExecutor`` initializer as multiprocessing's own are. Objects are pickled as
multiprocessing pickles them; ``put_bytes``/``get_bytes`` and ``send_bytes``/``recv_bytes`` move
bytes without pickling. A message crosses through a ring in shared memory (Linux only), with no
feeder thread, and with no system call for a put or get that does not have to wait.

As with multiprocessing, unpickling runs code the pickle names: ``get`` and ``recv`` trust the
process that put the object. Share queues and pipes only with processes you trust, or move bytes
(``get_bytes``/``recv_bytes``) and decode them yourself.

Differences from multiprocessing, all deliberate:

- A queue is bounded: ``maxsize <= 0`` means ``DEFAULT_MAXSIZE`` (16384) items, and ``put``
  blocks while the queue is full (multiprocessing buffers without limit in a feeder thread).
  ``qsize()`` counts slots: an object larger than ``slot_size`` takes several.
- A queue's ring holds ``maxsize * slot_size`` bytes, by default 4 MiB (``QUEUE_BYTES``; the
  default ``slot_size`` is 4 MiB / maxsize, at least 256 bytes; about 5 MiB of memory, reserved
  when the queue is created), and an object's pickle must fit in it (``ValueError`` otherwise):
  give a larger ``slot_size`` for larger objects. Pipes take messages of any size (a ``Pipe()``
  reserves about 1 MiB each way: ``PIPE_CAPACITY`` slots of ``PIPE_SLOT`` bytes).
- ``close()`` closes this process's handle at once (there is no buffered data to flush), and
  every call on it but ``close`` and ``join_thread`` then raises ``ValueError``;
  ``join_thread()`` and ``cancel_join_thread()`` have nothing to wait for.
- ``recv_bytes(maxlength)`` with a longer message raises ``OSError`` and closes the end.
- A pipe end belongs to the first process that uses it (sends, receives or polls): under fork,
  parent and child both hold every end, and whichever uses an end first takes it; the other gets
  ``OSError``. An end this process has used cannot be handed to another process. As with
  multiprocessing, a process that holds an end it does not use keeps it open: close the child's
  end in the parent after starting the child, so that the parent sees ``EOFError`` when the
  child dies.
- ``Connection.fileno()`` raises ``io.UnsupportedOperation``: there is no descriptor to select
  on.
- Handles can be pickled at any time (multiprocessing allows queues only while spawning).

Blocking calls release the GIL and check for signals every 50 ms, so Ctrl-C interrupts them
(KeyboardInterrupt, as with multiprocessing). A process that dies, even by SIGKILL, does not
wedge the others: shmq reaps it (a pipe's other end then sees EOFError / BrokenPipeError).
"""

import collections as _collections
import copyreg as _copyreg
import io
import multiprocessing.reduction as _reduction
import os as _os
import pickle as _pickle
import queue as _queue
from multiprocessing import BufferTooShort

from . import _shmq
from ._shmq import (
    DEFAULT_MAXSIZE,
    LAYOUT_VERSION,
    MIN_SLOT,
    PIPE_CAPACITY,
    PIPE_SLOT,
    QUEUE_BYTES,
    unlink,
)

Full = _queue.Full
Empty = _queue.Empty

__all__ = [
    "Queue",
    "JoinableQueue",
    "SimpleQueue",
    "Pipe",
    "Connection",
    "Full",
    "Empty",
    "BufferTooShort",
    "unlink",
    "DEFAULT_MAXSIZE",
    "QUEUE_BYTES",
    "PIPE_CAPACITY",
    "PIPE_SLOT",
]

# Objects are pickled as multiprocessing's ForkingPickler pickles them (the default protocol, and
# the reducers registered with ForkingPickler.register), through a live view of its dispatch
# table rather than the copy ForkingPickler makes for every object.
_dispatch_table = _collections.ChainMap(_reduction.ForkingPickler._extra_reducers, _copyreg.dispatch_table)


def _dumps(obj, _BytesIO=io.BytesIO, _Pickler=_pickle.Pickler):
    buf = _BytesIO()
    p = _Pickler(buf)
    p.dispatch_table = _dispatch_table
    p.dump(obj)
    return buf.getbuffer()


# Handles copied into a child by fork() belong to the parent: drop them there (see _shmq).
_os.register_at_fork(after_in_child=_shmq._after_fork_child)


def _rebuild_queue(cls, state, df=None):
    if df is not None:
        state = (state[0], df.detach()) + tuple(state[2:])
    return _shmq.QueueBase.__new__(cls, _inherit=state)


class Queue(_shmq.QueueBase):
    """A process-shared FIFO queue: ``multiprocessing.Queue``'s interface on shared memory.

    ``Queue(maxsize=0, *, slot_size=None, name=None)``

    - ``maxsize``: the most items the queue holds; ``<= 0`` means ``DEFAULT_MAXSIZE``.
    - ``slot_size``: bytes of one slot; a larger pickle takes several consecutive slots, up to
      ``maxsize * slot_size`` bytes. Default: ``QUEUE_BYTES // maxsize``, at least ``MIN_SLOT``.
    - ``name``: ``"/name"`` opens the named queue, creating it if it does not exist (in
      ``/dev/shm``; it persists until ``shmq.unlink(name)``). Default: anonymous, shared with
      child processes only.

    Methods: ``put(obj, block=True, timeout=None)``, ``put_nowait(obj)``,
    ``get(block=True, timeout=None)``, ``get_nowait()``, ``qsize()``, ``empty()``, ``full()``,
    ``close()``, ``join_thread()``, ``cancel_join_thread()``; and ``put_bytes``/``get_bytes``,
    which move bytes without pickling. ``queue.Full`` and ``queue.Empty`` as multiprocessing;
    ``ValueError`` after ``close()``.
    """

    def __reduce__(self):
        state = self._reduce_state()
        if state[0] == "name":
            return (_rebuild_queue, (type(self), state))
        # The segment's descriptor travels as multiprocessing passes descriptors: inherited
        # through spawn/forkserver, or through its resource sharer at any other time.
        return (_rebuild_queue, (type(self), state[:1] + (None,) + state[2:], _reduction.DupFd(state[1])))


class JoinableQueue(Queue):
    """``multiprocessing.JoinableQueue``: a ``Queue`` that counts unfinished tasks.

    Every ``put`` adds a task, ``task_done()`` marks one done (``ValueError`` if called more
    times than items were put), and ``join()`` blocks until every task is done.
    """

    def __new__(cls, maxsize=0, *, slot_size=None, name=None, ctx=None):
        return super().__new__(cls, maxsize, slot_size=slot_size, name=name, _joinable=True)

    def task_done(self):
        """Marks one item taken from the queue as done."""
        self._task_done()

    def join(self):
        """Blocks until every item put into the queue has been marked done."""
        self._join(None)


class SimpleQueue(Queue):
    """``multiprocessing.SimpleQueue``: ``put(obj)``, ``get()``, ``empty()``, ``close()``.

    The same queue as ``Queue`` (bounded by ``DEFAULT_MAXSIZE`` items: ``put`` blocks while it
    is full, as multiprocessing's blocks while its pipe is full).
    """

    def __new__(cls, *, slot_size=None, name=None, ctx=None):
        return super().__new__(cls, 0, slot_size=slot_size, name=name)


def _rebuild_connection(cls, df, state):
    return cls(_shmq._end_from_fd(df.detach(), state))


class Connection(_shmq.ConnectionBase):
    """One end of a ``Pipe``: ``multiprocessing.connection.Connection``'s interface.

    ``send(obj)``, ``recv()``, ``send_bytes(buf, offset=0, size=None)``,
    ``recv_bytes(maxlength=None)``, ``recv_bytes_into(buf, offset=0)``, ``poll(timeout=0.0)``,
    ``close()``, the ``closed``, ``readable`` and ``writable`` attributes, and use as a context
    manager. ``recv`` raises ``EOFError`` once the other end is closed (or its process has died)
    and everything sent has been received; ``send`` raises ``BrokenPipeError`` once the other end
    has gone; calls on a closed end raise ``OSError("handle is closed")``.
    """

    def recv_bytes_into(self, buf, offset=0):
        """Receives a message's bytes into the writable buffer ``buf`` at byte ``offset``;
        returns the message's length. ``BufferTooShort`` (with the message as its argument) if
        it does not fit."""
        with memoryview(buf) as m:
            itemsize = m.itemsize
            bytesize = itemsize * len(m)
            if offset < 0:
                raise ValueError("negative offset")
            elif offset > bytesize:
                raise ValueError("offset too large")
            data = self.recv_bytes()
            size = len(data)
            if bytesize < offset + size:
                raise BufferTooShort(data)
            m.cast("B")[offset : offset + size] = data
            return size

    def fileno(self):
        """Not supported: an end of a shared-memory pipe has no descriptor to select on."""
        raise io.UnsupportedOperation("shmq connections have no file descriptor")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __reduce__(self):
        fd, state = self._handover()
        return (_rebuild_connection, (type(self), _reduction.DupFd(fd), state))


def Pipe(duplex=True, *, capacity=PIPE_CAPACITY, slot_size=PIPE_SLOT):
    """Returns a pair ``(conn1, conn2)`` of ``Connection`` objects, as ``multiprocessing.Pipe``.

    With ``duplex`` (the default) both ends send and receive; otherwise ``conn1`` only receives
    and ``conn2`` only sends. Each direction is a ring of ``capacity`` slots of ``slot_size``
    bytes; a message of any size crosses (longer ones in several parts).
    """
    a, b = _shmq._pipe(duplex, capacity, slot_size)
    return Connection(a), Connection(b)
