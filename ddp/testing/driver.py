"""A deterministic :class:`ddp.runtime.driver.Driver` for tests: green threads on a fake clock.

Code written against a driver runs here exactly as on eventlet's (the same guarantees:
one OS thread, no preemption between yields, spawned threads start in order at the next
yield), but time passes only when the test says so. A test that used to sleep through a
30 s timeout calls ``driver.advance(30)`` and is done in microseconds, the same way on a
loaded machine as on an idle one.

The test's own code is the hub: green threads run only while it is inside
:meth:`FakeDriver.run`, :meth:`FakeDriver.advance`, or a wait of its own (``sleep``,
``event().wait()``), never behind its back. An exception in a green thread is raised
from the call that ran it, so a failure in a background thread fails the test that
caused it. A wait that nothing could ever end raises :class:`Deadlock` instead of
hanging the suite.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import select
from collections.abc import Callable
from typing import Any

import greenlet


class Deadlock(RuntimeError):
    """The test waits for something no green thread or timer can bring about."""


class _Timer:
    __slots__ = ("when", "function", "cancelled")

    def __init__(self, when: float, function: Callable[[], Any] | _Waiter) -> None:
        self.when = when
        self.function = function  # a callable, or the _Waiter a sleep or wait times out
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Waiter:
    """One wait of one green thread (``thread`` None: the test's own). It ends once, by
    whichever comes first of its event and its timeout."""

    __slots__ = ("thread", "woken", "ended")

    def __init__(self, thread: greenlet.greenlet | None) -> None:
        self.thread = thread
        self.woken = False
        self.ended = False


class _Event:
    def __init__(self, driver: FakeDriver) -> None:
        self._driver = driver
        self._set = False
        self._waiters: list[_Waiter] = []

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._driver._end(waiter, True)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        if timeout is not None and timeout <= 0:
            return False
        return self._driver._park(self._waiters, timeout)


class FakeDriver:
    """Green threads (real greenlets) scheduled in order, on a clock only tests move.

    ``clock()`` starts at ``start`` and moves only in :meth:`advance` (and in a wait of
    the test's own, which advances to the next timer it needs).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        # Green threads to start or resume, in order.
        self._ready: collections.deque[greenlet.greenlet] = collections.deque()
        self._timers: list[tuple[float, int, _Timer]] = []  # a heap
        self._sequence = itertools.count()
        self._hub: greenlet.greenlet | None = None  # the greenlet running the loop, while one does
        # The waits in wait_readable: each waiter with the files it waits for.
        self._watches: dict[_Waiter, tuple[Any, ...]] = {}

    # The Driver protocol.

    def spawn(self, function: Callable[..., Any], *args: Any) -> None:
        self._ready.append(greenlet.greenlet(lambda: function(*args)))

    def event(self) -> _Event:
        return _Event(self)

    def timer(self, seconds: float, function: Callable[[], Any]) -> _Timer:
        return self._schedule(seconds, function)

    def clock(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self._park(None, max(seconds, 0.0))

    def wait_readable(self, *files: Any, timeout: float | None = None) -> list[Any]:
        """Those of ``files`` readable now, or once one is, or ``[]`` after ``timeout``
        on the fake clock. Readiness is looked at whenever no green thread can run, before
        the clock moves: what the test or a green thread writes wakes the waiter before
        any timer, on a clock that has not moved (the test writes before it lets time
        pass)."""
        readable = select.select(files, (), (), 0)[0]
        if readable or (timeout is not None and timeout <= 0):
            return readable
        self._park(None, timeout, files)
        return select.select(files, (), (), 0)[0]

    def run_blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)

    # What tests call.

    def run(self) -> None:
        """Run every green thread that can run now, without moving the clock."""
        self._loop(self._now)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, running every timer and sleeper due on the way
        at its own time, and every thread they wake."""
        self._loop(self._now + seconds)

    @property
    def idle(self) -> bool:
        """Whether nothing is ready to run now (timers may still be pending)."""
        return not self._ready

    # Internals.

    def _park(
        self,
        waiters: list[_Waiter] | None,
        timeout: float | None,
        files: tuple[Any, ...] = (),
    ) -> bool:
        """Suspend the caller until woken (True: by an event, or one of ``files``
        became readable) or ``timeout`` seconds (False); the test itself, not a green
        thread, runs the loop meanwhile."""
        hub, current = self._hub, greenlet.getcurrent()
        waiter = _Waiter(None if hub is None or current is hub else current)
        if waiters is not None:
            waiters.append(waiter)
        if files:
            self._watches[waiter] = files
        timer = None if timeout is None else self._schedule(timeout, waiter)
        if hub is None or current is hub:
            self._wait_as_test(waiter)
        else:
            hub.switch()
        if timer is not None:
            timer.cancel()
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
        self._watches.pop(waiter, None)
        return waiter.woken

    def _end(self, waiter: _Waiter, woken: bool) -> None:
        if waiter.ended:
            return
        waiter.ended = True
        waiter.woken = woken
        if waiter.thread is not None:
            self._ready.append(waiter.thread)

    def _wait_as_test(self, waiter: _Waiter) -> None:
        while True:
            self._loop(self._now)
            if waiter.ended:
                return
            upcoming = self._next_timer()
            if upcoming is None:
                raise Deadlock("the test waits for something nothing can bring about")
            self._loop(upcoming)

    def _schedule(self, seconds: float, function: Callable[[], Any] | _Waiter) -> _Timer:
        timer = _Timer(self._now + max(seconds, 0.0), function)
        heapq.heappush(self._timers, (timer.when, next(self._sequence), timer))
        return timer

    def _next_timer(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def _loop(self, until: float) -> None:
        if self._hub is not None:
            raise RuntimeError("FakeDriver.run() called from one of its own green threads")
        self._hub = greenlet.getcurrent()
        try:
            while True:
                while self._ready:
                    self._switch(self._ready.popleft())
                if self._wake_readable():
                    continue
                upcoming = self._next_timer()
                if upcoming is None or upcoming > until:
                    break
                when, _, timer = heapq.heappop(self._timers)
                self._now = max(self._now, when)
                if isinstance(timer.function, _Waiter):
                    self._end(timer.function, False)  # a sleep or a wait timed out
                else:
                    self.spawn(timer.function)
            self._now = max(self._now, until)
        finally:
            self._hub = None

    def _wake_readable(self) -> bool:
        """Wake the waits in :meth:`wait_readable` whose files can be read now; whether
        any was."""
        woken = False
        for waiter, files in list(self._watches.items()):
            if not waiter.ended and select.select(files, (), (), 0)[0]:
                self._end(waiter, True)
                woken = True
        return woken

    def _switch(self, thread: greenlet.greenlet) -> None:
        if thread.dead:
            return
        thread.parent = self._hub
        thread.switch()
