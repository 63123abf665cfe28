"""What every Driver must do (ddp/runtime/driver.py's guarantees), as checks any driver runs.

The same checks run on the fake driver in the test process (test_driver.py) and on the
eventlet driver in a process of its own (``python -m tests.runtime.driver_contract``),
where eventlet's hub may run without patching the test process.
"""

import socket
import threading


def spawned_threads_start_in_order_at_the_next_yield(driver):
    started = []
    for n in range(3):
        driver.spawn(started.append, n)
    assert started == []
    driver.sleep(0)
    assert started == [0, 1, 2]


def timers_run_after_their_delay_and_never_once_cancelled(driver):
    fired = []
    start = driver.clock()
    driver.timer(0.05, lambda: fired.append(driver.clock() - start))
    driver.timer(0.02, lambda: fired.append("cancelled")).cancel()
    driver.sleep(0.1)
    assert len(fired) == 1 and fired[0] >= 0.05 - 1e-9, fired


def an_event_wakes_its_waiters_and_times_out_unset(driver):
    event = driver.event()
    assert not event.wait(0.01)
    results = []
    driver.spawn(lambda: results.append(event.wait(5)))
    driver.spawn(lambda: results.append(event.wait(5)))
    driver.sleep(0)
    assert results == []
    event.set()
    assert results == []  # set() does not yield
    driver.sleep(0)
    assert results == [True, True]
    event.clear()
    assert not event.is_set()
    driver.spawn(lambda: results.append(event.wait(0.02)))
    driver.sleep(0.05)
    assert results == [True, True, False]


def the_caller_waits_for_a_set_from_a_green_thread(driver):
    event = driver.event()

    def later():
        driver.sleep(0.02)
        event.set()

    driver.spawn(later)
    assert event.wait(5)


def a_section_without_yields_runs_alone(driver):
    seen = []
    counter = [0]

    def bump():
        for _ in range(1000):
            value = counter[0]
            counter[0] = value + 1  # no yield between the read and the write
        seen.append(counter[0])

    for _ in range(3):
        driver.spawn(bump)
    driver.sleep(0.01)
    assert counter[0] == 3000 and seen == [1000, 2000, 3000]


def blocking_work_runs_in_another_os_thread(driver):
    caller = threading.get_ident()
    assert driver.run_blocking(lambda a, b: a + b, 40, 2) == 42
    # The fake driver runs it in place; eventlet's pool, elsewhere.
    assert isinstance(driver.run_blocking(threading.get_ident), int)
    assert caller == threading.get_ident()


def a_wait_for_sockets_names_those_readable(driver):
    quiet, talking = socket.socketpair()
    with quiet, talking:
        assert driver.wait_readable(quiet, talking.fileno(), timeout=0.02) == []
        talking.send(b"x")
        assert driver.wait_readable(talking.fileno(), quiet, timeout=5) == [quiet]


def a_wait_for_sockets_ends_when_another_thread_writes(driver):
    """Not at its timeout: an xhr poll held on a socket pair answers when woken."""
    quiet, talking = socket.socketpair()
    with quiet, talking:
        start = driver.clock()
        driver.spawn(talking.send, b"x")
        assert driver.wait_readable(quiet, timeout=30) == [quiet]
        assert driver.clock() - start < 30


CHECKS = [
    a_wait_for_sockets_names_those_readable,
    a_wait_for_sockets_ends_when_another_thread_writes,
    spawned_threads_start_in_order_at_the_next_yield,
    timers_run_after_their_delay_and_never_once_cancelled,
    an_event_wakes_its_waiters_and_times_out_unset,
    the_caller_waits_for_a_set_from_a_green_thread,
    a_section_without_yields_runs_alone,
    blocking_work_runs_in_another_os_thread,
]


if __name__ == "__main__":
    from ddp.server.eventlet_driver import EventletDriver

    for check in CHECKS:
        check(EventletDriver())
        print("passed", check.__name__, flush=True)
