"""Password hashes off the hub: in OS threads, a bounded number at once, one hash's time.

A PBKDF2 check costs about 0.2 s of CPU. Run on the hub's one OS thread it stops every
client of the server for that long: a bystander's ping went from 0.4 ms to 484 ms while
20 logins were checked. ``hashlib`` and ``bcrypt`` release the GIL, so in OS threads the
checks run beside the hub and on the other cores. ``ddpserver`` installs its driver with
:func:`install` (its ``run_blocking`` is the pool of OS threads); elsewhere (tests in one
process, Django's own views) the work runs in the caller, as Django would run it.

Every check costs one hash of the preferred hasher, whether or not there is a user or a
usable hash to check against, as Django's ``ModelBackend`` does: the time an answer takes
must not tell which accounts exist.
"""

import collections
import os

from django.contrib.auth.hashers import check_password, make_password

from ddp.accounts.passwords import check_digest, hasher_of

_driver = None
_slots = None


class _Slots:
    """At most ``count`` holders at once; the others wait as green threads, first come
    first served. A slot given back goes straight to the longest waiting, so one that
    arrives meanwhile cannot take it first.

    No lock: the counts change between yields only (the driver's guarantee 2).
    """

    def __init__(self, driver, count):
        self._driver = driver
        self._free = count
        self._waiting = collections.deque()

    def acquire(self):
        if self._free:
            self._free -= 1  # nobody waits while a slot is free
            return
        turn = self._driver.event()
        self._waiting.append(turn)
        try:
            turn.wait()
        except BaseException:
            # Killed while waiting: a slot handed over meanwhile goes to the next.
            if turn.is_set():
                self.release()
            else:
                self._waiting.remove(turn)
            raise

    def release(self):
        if self._waiting:
            self._waiting.popleft().set()
        else:
            self._free += 1


def install(driver, threads=None):
    """Run hashes with ``driver.run_blocking``, ``threads`` (default: one per CPU) at once.

    ``run_blocking`` runs its function in an OS thread and waits for it without blocking
    the other green threads; those waiting for a slot wait as green threads. ``None``: in
    the caller again.
    """
    global _driver, _slots
    _driver = driver
    _slots = None if driver is None else _Slots(driver, threads or os.cpu_count() or 1)


def run(function, *args):
    """``function(*args)``, in a hashing thread once :func:`install` has been called."""
    if _driver is None:
        return function(*args)
    slots = _slots
    slots.acquire()
    try:
        return _driver.run_blocking(function, *args)
    finally:
        slots.release()


def verify(kind, secret, encoded):
    """``(matches, stale)`` for the ``secret`` of ``kind`` and the hash ``encoded``.

    ``kind`` is ``"plain"`` (the password) or ``"digest"`` (Meteor's SHA-256 of it);
    ``encoded`` may be None (no such user). ``stale``: the hash matched but should be made
    again with the preferred hasher, as Django's login does. Pure CPU: run it with :func:`run`.
    """
    if kind == "digest":
        matches = check_digest(encoded, secret)
    elif hasher_of(encoded) is not None:
        stale = []
        matches = check_password(secret, encoded, setter=stale.append)
        return matches, bool(stale)
    else:
        matches = None
    if matches is None:
        make_password(secret)  # what a check would have cost
        return False, False
    return matches, False
