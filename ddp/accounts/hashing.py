"""Password hashes off the hub: in OS threads, a bounded number at once, one hash's time.

A PBKDF2 check costs about 0.2 s of CPU. Run on the hub's one OS thread it stops every
client of the server for that long: a bystander's ping went from 0.4 ms to 484 ms while
20 logins were checked. ``hashlib`` and ``bcrypt`` release the GIL, so in OS threads the
checks run beside the hub and on the other cores. ``ddpserver`` installs its driver's
thread runner with :func:`install`; elsewhere (tests in one process, Django's own views)
the work runs in the caller, as Django would run it.

Every check costs one hash of the preferred hasher, whether or not there is a user or a
usable hash to check against, as Django's ``ModelBackend`` does: the time an answer takes
must not tell which accounts exist.
"""

import os
import threading

from django.contrib.auth.hashers import check_password, make_password

from ddp.accounts.passwords import check_digest, hasher_of

_execute = None
_slots = None


def install(execute, threads=None):
    """Run hashes with ``execute(function, *args)``, ``threads`` (default: one per CPU) at once.

    ``execute`` runs its function in an OS thread and waits for it without blocking the
    hub; those waiting for a slot wait as green threads. ``None``: in the caller again.
    """
    global _execute, _slots
    _execute = execute
    _slots = threading.BoundedSemaphore(threads or os.cpu_count() or 1)


def run(function, *args):
    """``function(*args)``, in a hashing thread once :func:`install` has been called."""
    if _execute is None:
        return function(*args)
    with _slots:
        return _execute(function, *args)


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
