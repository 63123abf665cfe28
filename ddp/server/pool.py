"""A fixed pool of database workers, so 10,000 clients never mean 10,000 connections.

Django keeps one connection per thread; each worker is a green thread of the driver
(:class:`ddp.runtime.driver.Driver`) with its own connection, kept open across jobs
(opening one per message was the earlier implementation's cost). That a green thread has
a connection of its own is eventlet's patching of ``threading.local``, the one thing here
the driver cannot pass in: Django asks the thread, not us. On the fake driver of tests
every worker shares the test's connection. Sessions hand work over with
:meth:`DatabasePool.run` and wait for the result without blocking the other green threads.

A connection kept open can die while idle: when PostgreSQL restarts, every one does. So
before each job a worker closes those the server has hung up on, and the job opens a new
one rather than fail on the dead one.

No locks: the queue and the idle workers change between yields only (the driver's
guarantee 2), so "is the job still queued? then withdraw it" needs none.
"""

import collections

from django.db import connections, reset_queries


class _Job:
    __slots__ = ("func", "args", "done", "result", "error")

    def __init__(self, func, args, done):
        self.func = func
        self.args = args
        self.done = done
        self.result = self.error = None


def discard_broken_connections():
    """Close this worker's connections that failed and are no longer usable."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.errors_occurred:
            conn.errors_occurred = False
            if not conn.is_usable():
                conn.close()


def discard_hung_up_connections(driver):
    """Close this worker's idle connections that the server has hung up on.

    An idle connection has nothing to read: readable, it holds the server's last words
    (PostgreSQL stopping sends an error, then closes) or its end. Told without a round
    trip; a connection closed by mistake (one that got an unasked-for message) costs only
    a new one. One the driver knows is closed (a job caught the error) goes too.
    """
    for conn in connections.all(initialized_only=True):
        raw = conn.connection
        if raw is not None and (raw.closed or driver.wait_readable(raw, timeout=0)):
            conn.close()


class DatabasePool:
    def __init__(self, size, driver):
        if size < 1:
            raise ValueError("The database pool needs at least one worker")
        self.size = size
        self.driver = driver
        # A deque rather than a queue: a job given up on is taken out of it.
        self._jobs = collections.deque()
        #: The events of the workers waiting for a job, the longest waiting first.
        self._idle = collections.deque()
        self._stopped = [driver.event() for _ in range(size)]
        for stopped in self._stopped:
            driver.spawn(self._work, stopped)

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
        job = _Job(func, args, self.driver.event())
        self._put(job)
        if not job.done.wait(timeout):
            if job in self._jobs:
                self._jobs.remove(job)
            if not job.done.is_set():
                raise TimeoutError(f"no answer within {timeout:g} s")
        if job.error is not None:
            raise job.error
        return job.result

    def close(self):
        """Stop the workers once the jobs queued before are done; wait until they have
        closed their connections."""
        for _ in self._stopped:
            self._put(None)
        for stopped in self._stopped:
            stopped.wait()

    def _put(self, job):
        self._jobs.append(job)
        if self._idle:
            self._idle.popleft().set()

    def _take(self):
        while not self._jobs:
            # Woken by _put; another worker may have taken the job first: wait again.
            woken = self.driver.event()
            self._idle.append(woken)
            woken.wait()
        return self._jobs.popleft()

    def _work(self, stopped):
        try:
            while (job := self._take()) is not None:
                try:
                    discard_hung_up_connections(self.driver)
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
            stopped.set()
