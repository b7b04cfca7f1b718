import faulthandler
import multiprocessing
import sys

import pytest

START_METHODS = [m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]

# Each test must end within this many seconds; a hung one dumps every thread's stack and ends
# the run instead of wedging CI.
TEST_DEADLINE = 90


@pytest.fixture(autouse=True)
def _deadline():
    faulthandler.dump_traceback_later(TEST_DEADLINE, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=START_METHODS)
def ctx(request):
    """A multiprocessing context for each start method (fork, spawn, forkserver)."""
    return multiprocessing.get_context(request.param)
