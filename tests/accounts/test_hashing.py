"""Password hashes off the hub (ddp.accounts.hashing): bounded, and run where installed."""

import threading

import greenlet
import pytest

from ddp.accounts import hashing
from ddp.testing.driver import FakeDriver

pytestmark = pytest.mark.quick


class SlowHashes(FakeDriver):
    """Each hash takes a second of the fake clock, during which the other green threads
    run, as they do while eventlet's OS threads hash; it counts how many ran at once."""

    def __init__(self):
        super().__init__()
        self.running = self.most = 0
        self.hashed = []

    def run_blocking(self, function, *args):
        self.running += 1
        self.most = max(self.most, self.running)
        self.sleep(1)
        self.running -= 1
        self.hashed.append(self.clock())
        return function(*args)


@pytest.fixture
def driver():
    """A driver installed for the test; uninstalled after."""
    driver = SlowHashes()
    yield driver
    hashing.install(None)


def test_without_a_runner_hashes_run_in_the_caller():
    hashing.install(None)
    assert hashing.run(threading.get_ident) == threading.get_ident()


def test_at_most_the_given_number_of_hashes_run_at_once(driver):
    hashing.install(driver, threads=2)
    results = []
    for n in range(6):
        driver.spawn(lambda n=n: results.append(hashing.run(lambda: n)))
    driver.advance(10)
    assert sorted(results) == list(range(6))
    assert driver.most == 2
    # Two at a time, each slot taken again as soon as it is free.
    assert driver.hashed == [1001.0, 1001.0, 1002.0, 1002.0, 1003.0, 1003.0]


def test_a_slot_goes_to_the_longest_waiting_and_never_to_a_thread_killed_meanwhile(driver):
    hashing.install(driver, threads=1)
    order, threads = [], {}

    def login(name):
        threads[name] = greenlet.getcurrent()
        order.append(hashing.run(lambda: name))

    for name in ("first", "second", "third"):
        driver.spawn(login, name)
    driver.run()  # "first" hashes, the others wait for the slot
    threads["second"].throw(greenlet.GreenletExit)  # as eventlet's kill() would
    driver.advance(5)
    assert order == ["first", "third"]
    assert driver.most == 1 and len(driver.hashed) == 2


def test_a_slot_handed_to_a_thread_killed_before_it_ran_goes_on_to_the_next():
    driver = FakeDriver()
    slots = hashing._Slots(driver, 1)
    slots.acquire()
    took, threads = [], {}

    def wait_for_a_slot(name):
        threads[name] = greenlet.getcurrent()
        slots.acquire()
        took.append(name)

    driver.spawn(wait_for_a_slot, "killed")
    driver.spawn(wait_for_a_slot, "next")
    driver.run()
    slots.release()  # handed to "killed", which has not run since
    threads["killed"].throw(greenlet.GreenletExit)
    driver.run()
    assert took == ["next"]
