"""Password hashes off the hub (ddp.accounts.hashing): bounded, and run where installed."""

import threading
import time

import pytest

from ddp.accounts import hashing

pytestmark = pytest.mark.quick


@pytest.fixture
def installed():
    """Install a runner that records the thread each hash ran in; uninstall after."""
    threads = []

    def execute(function, *args):
        threads.append(threading.get_ident())
        return function(*args)

    yield threads, execute
    hashing.install(None)


def test_without_a_runner_hashes_run_in_the_caller():
    hashing.install(None)
    assert hashing.run(threading.get_ident) == threading.get_ident()


def test_at_most_the_given_number_of_hashes_run_at_once(installed):
    ran_in, execute = installed
    hashing.install(execute, threads=2)
    running, most = [0], [0]
    lock = threading.Lock()

    def work():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    callers = [threading.Thread(target=hashing.run, args=(work,)) for _ in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(ran_in) == 6
    assert most[0] == 2
