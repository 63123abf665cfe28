"""The ``Driver``: everything the runtime and the bus need from a concurrency library.

They receive a driver and never import one, so that eventlet stays in one module
(:mod:`ddp.server.eventlet_driver`, the only driver production uses), tests can run the
same code on a deterministic driver with a fake clock (:mod:`ddp.testing.driver`), and a
future asyncio driver knows exactly what it must provide.

What the code written against a driver relies on:

1. **One OS thread.** Everything ``spawn`` starts, every timer's function and every
   waiter runs on the one OS thread that runs the driver. Connection state, sessions and
   the bus's tables are changed without locks for that reason. The one way to another OS
   thread is :meth:`Driver.run_blocking`, whose function must touch none of that state.
2. **No preemption between yields.** A green thread runs alone until it yields: it calls
   ``sleep``, waits on an event, waits for a socket, does I/O on a socket that would
   block, or calls ``run_blocking``. A section with none of those is atomic with respect
   to every other green thread; "check, then act" needs no lock when nothing between the
   two yields.
3. **Spawning does not yield.** ``spawn`` returns at once and the new thread starts at the
   caller's next yield, threads spawned together starting in the order they were spawned:
   messages told together are handled, and their answers written, together.
4. **Timers never run early.** A timer's function runs no sooner than its delay has passed
   on :meth:`Driver.clock`, in a green thread of its own; once ``cancel()`` has returned it
   never runs.
5. **Events wake in one step.** ``set()`` never yields; every thread waiting on the event
   resumes at the setter's next yield. ``wait(timeout)`` returns whether the event was set.
6. **Nothing blocks the thread.** ``sleep`` and the waits give way to every other green
   thread; ``clock()`` is monotonic seconds and never yields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Event(Protocol):
    """A flag green threads wait on (``threading.Event``'s meaning, on the driver)."""

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds; return whether it is set."""
        ...


class Timer(Protocol):
    def cancel(self) -> None:
        """Make sure the function does not run (harmless once it has)."""
        ...


class Driver(Protocol):
    def spawn(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` in a new green thread; an exception it raises is
        logged by the driver and ends that thread only."""
        ...

    def event(self) -> Event: ...

    def timer(self, seconds: float, function: Callable[[], Any]) -> Timer:
        """Run ``function()`` in a new green thread after ``seconds``."""
        ...

    def clock(self) -> float:
        """Monotonic seconds: the clock timers, sleeps and timeouts are measured on."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def wait_readable(self, fileno: int, timeout: float | None) -> None:
        """Return once ``fileno`` can be read, or after ``timeout`` seconds."""
        ...

    def run_blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in a pool of OS threads, for work that would hold every
        green thread (password hashing); the caller waits, the others run."""
        ...
