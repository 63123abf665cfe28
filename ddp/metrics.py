"""Counters of what a server has seen, for logs, ``/metrics`` and tests.

Plain integers in one process, incremented from green threads (no lock needed under
eventlet's cooperative switching, and ``+=`` on a dict entry is atomic enough in CPython
for counters). Names follow Prometheus conventions.
"""

from collections import Counter

counters = Counter()


def inc(name, amount=1):
    counters[name] += amount
