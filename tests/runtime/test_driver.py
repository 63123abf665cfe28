"""The drivers keep ddp/runtime/driver.py's promises; the fake one keeps its clock still."""

import subprocess
import sys

import pytest

from ddp.testing.driver import Deadlock, FakeDriver
from tests.live import ROOT
from tests.runtime.driver_contract import CHECKS

pytestmark = pytest.mark.quick


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_fake_driver_keeps_the_contract(check):
    check(FakeDriver())


def test_the_eventlet_driver_keeps_the_contract():
    result = subprocess.run(
        [sys.executable, "-m", "tests.runtime.driver_contract"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == [f"passed {check.__name__}" for check in CHECKS]


def test_time_passes_only_when_the_test_moves_it():
    driver = FakeDriver()
    fired = []
    driver.timer(30, lambda: fired.append(driver.clock()))
    driver.timer(10, lambda: fired.append(driver.clock()))
    driver.run()
    assert fired == [] and driver.clock() == 1000.0
    driver.advance(29.5)
    assert fired == [1010.0] and driver.clock() == 1029.5
    driver.advance(0.5)
    assert fired == [1010.0, 1030.0]


def test_a_sleeping_thread_wakes_at_its_own_time_within_an_advance():
    driver = FakeDriver()
    woke = []

    def sleeper(seconds):
        driver.sleep(seconds)
        woke.append((seconds, driver.clock()))

    driver.spawn(sleeper, 5)
    driver.spawn(sleeper, 2)
    driver.advance(60)
    assert woke == [(2, 1002.0), (5, 1005.0)]


def test_a_wait_nothing_can_end_is_a_deadlock_not_a_hang():
    driver = FakeDriver()
    with pytest.raises(Deadlock):
        driver.event().wait()


def test_an_exception_in_a_green_thread_fails_the_call_that_ran_it():
    driver = FakeDriver()

    def broken():
        raise ValueError("from a green thread")

    driver.spawn(broken)
    with pytest.raises(ValueError, match="from a green thread"):
        driver.run()
    driver.spawn(lambda: None)
    driver.run()  # the driver goes on
