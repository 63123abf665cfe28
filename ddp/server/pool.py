"""A fixed pool of database workers, so 10,000 clients never mean 10,000 connections.

Django keeps one connection per thread; under eventlet each worker is a green thread
with its own connection, kept open across jobs (opening one per message was the earlier
implementation's cost). Sessions hand work over with :meth:`DatabasePool.run` and wait
for the result without blocking the hub.
"""

import queue
import threading

from django.db import connections


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


class DatabasePool:
    def __init__(self, size):
        if size < 1:
            raise ValueError("The database pool needs at least one worker")
        self.size = size
        self._jobs = queue.Queue()
        self._workers = [
            threading.Thread(target=self._work, name=f"ddp-db-{n}", daemon=True)
            for n in range(size)
        ]
        for worker in self._workers:
            worker.start()

    def run(self, func, *args):
        """Run ``func(*args)`` in a worker; return its result or raise its exception."""
        job = _Job(func, args)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def close(self):
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join()

    def _work(self):
        try:
            while (job := self._jobs.get()) is not None:
                try:
                    job.result = job.func(*job.args)
                except Exception as exc:
                    job.error = exc
                    discard_broken_connections()
                finally:
                    job.done.set()
        finally:
            connections.close_all()
