"""A fixed pool of database workers, so 10,000 clients never mean 10,000 connections.

Django keeps one connection per thread; under eventlet each worker is a green thread
with its own connection, kept open across jobs (opening one per message was the earlier
implementation's cost). Sessions hand work over with :meth:`DatabasePool.run` and wait
for the result without blocking the hub.

A connection kept open can die while idle: when PostgreSQL restarts, every one does. So
before each job a worker closes those the server has hung up on, and the job opens a new
one rather than fail on the dead one.
"""

import collections
import select
import threading

from django.db import connections, reset_queries


class _Job:
    __slots__ = ("func", "args", "done", "result", "error")

    def __init__(self, func, args):
        self.func = func
        self.args = args
        self.done = threading.Event()
        self.result = self.error = None


def discard_broken_connections():
    """Close this worker's connections that failed and are no longer usable."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.errors_occurred:
            conn.errors_occurred = False
            if not conn.is_usable():
                conn.close()


def discard_hung_up_connections():
    """Close this worker's idle connections that the server has hung up on.

    An idle connection has nothing to read: readable, it holds the server's last words
    (PostgreSQL stopping sends an error, then closes) or its end. Told without a round
    trip; a connection closed by mistake (one that got an unasked-for message) costs only
    a new one. One the driver knows is closed (a job caught the error) goes too.
    """
    for conn in connections.all(initialized_only=True):
        raw = conn.connection
        if raw is not None and (raw.closed or select.select([raw], [], [], 0)[0]):
            conn.close()


class DatabasePool:
    def __init__(self, size):
        if size < 1:
            raise ValueError("The database pool needs at least one worker")
        self.size = size
        # A deque rather than a queue.Queue: a job given up on is taken out of it.
        self._jobs = collections.deque()
        self._ready = threading.Condition()
        self._workers = [
            threading.Thread(target=self._work, name=f"ddp-db-{n}", daemon=True)
            for n in range(size)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def waiting(self):
        """Jobs queued that no worker has taken yet."""
        return len(self._jobs)

    def run(self, func, *args, timeout=None):
        """Run ``func(*args)`` in a worker; return its result or raise its exception.

        With a ``timeout``, raise TimeoutError once that many seconds have passed. A job
        still queued then is withdrawn, so that callers who give up (a health probe every
        few seconds on a stuck database) do not pile up ahead of every client's work; one
        a worker already runs ends on its own (the probe has PostgreSQL cancel itself).
        """
        job = _Job(func, args)
        self._put(job)
        if not job.done.wait(timeout):
            with self._ready:
                if job in self._jobs:
                    self._jobs.remove(job)
            if not job.done.is_set():
                raise TimeoutError(f"no answer within {timeout:g} s")
        if job.error is not None:
            raise job.error
        return job.result

    def close(self):
        for _ in self._workers:
            self._put(None)
        for worker in self._workers:
            worker.join()

    def _put(self, job):
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()

    def _take(self):
        with self._ready:
            while not self._jobs:
                self._ready.wait()
            return self._jobs.popleft()

    def _work(self):
        try:
            while (job := self._take()) is not None:
                try:
                    discard_hung_up_connections()
                    # A job is this worker's request: DEBUG's query log starts afresh, as
                    # Django starts it at each request, instead of growing for ever.
                    reset_queries()
                    job.result = job.func(*job.args)
                except Exception as exc:
                    job.error = exc
                    discard_broken_connections()
                finally:
                    job.done.set()
        finally:
            connections.close_all()
