"""``ddpserver --workers N``: a master process that forks N full servers on one socket.

Each worker is a whole ``ddpserver`` (its own database pool, listener, registry row),
forked once the master has run the checks, prepared capture, closed its database
connection and opened the listening socket, so that workers share the socket, as
gunicorn's do, and nothing else: no connection, no thread. The master then only
supervises:

* a worker that exits while the server runs is started again with the same index (SockJS
  sessions are routed to a worker by index: :mod:`ddp.server.affinity`), after a pause
  that doubles while workers keep dying young, so that one that cannot start does not
  spin;
* SIGTERM or SIGINT is passed on to every worker, which shuts down gracefully as a single
  server does; the master waits for them and exits 0 (a second signal is passed on too,
  and stops them at once);
* a worker that exits before it ever served stops the start: the master stops the others
  and exits 1, since a server that cannot start would only restart in a loop.

The master uses the standard library only (``select``, ``os.fork``, ``os.waitpid``,
signals through a wake-up pipe); what a worker needs of the driver after ``fork()`` is
passed in.
"""

import dataclasses
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable

logger = logging.getLogger("ddp.server")

#: The first and the longest pause before a worker that died is started again.
FIRST_PAUSE, MAX_PAUSE = 0.5, 30.0
#: Seconds after which a worker counts as having started well: its next death restarts
#: it after FIRST_PAUSE again.
STEADY = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass(frozen=True)
class Worker:
    """What one worker knows of the others: its ``index`` of ``count``, the descriptor it
    receives connections on (``inbox``), those it sends each worker's on (``outboxes``,
    by index), the ``master``'s pid, and ``ready()`` to tell the master it serves."""

    index: int
    count: int
    inbox: int
    outboxes: tuple
    master: int
    ready: Callable[[], None]


class Master:
    """Fork ``count`` workers, each running ``run(worker)`` (which serves until SIGTERM)
    and keep them so until a stop signal.

    ``channels`` are :func:`ddp.server.eventlet_driver.channels`, ``after_fork()`` runs
    first in each worker, ``on_started(pids)`` (in index order) once every worker has
    served, and
    ``sock`` (the shared listening socket) is closed by the master when it stops, so that
    new clients are refused rather than queued for nobody.
    """

    def __init__(self, count, run, sock, channels, after_fork, on_started):
        self.count = count
        self.run_worker = run
        self.sock = sock
        self.channels = channels
        self.after_fork = after_fork
        self.on_started = on_started
        self.pids = {}  # pid -> index
        self.born = {}  # index -> when it was last forked
        self.served = set()  # indexes that have told they serve, once
        self.pause = dict.fromkeys(range(count), FIRST_PAUSE)
        self.due = {}  # index -> when to start it again
        self.stopping = False
        self.status = 0

    def run(self):
        """Supervise until every worker has exited; return the exit status."""
        self.wake_r, self.wake_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()
        for fd in (self.wake_r, self.wake_w, self.ready_r):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        for signum in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(signum, _ignore)
        for index in range(self.count):
            self.fork(index)
        while self.pids or (self.due and not self.stopping):
            timeout = None
            if self.due and not self.stopping:
                timeout = max(0.0, min(self.due.values()) - time.monotonic())
            select.select([self.wake_r, self.ready_r], [], [], timeout)
            for signum in _drain(self.wake_r):
                if signum in STOP_SIGNALS:
                    self.stop(signum)
            self.note_ready()
            self.reap()
            now = time.monotonic()
            for index, when in list(self.due.items()):
                if when <= now and not self.stopping:
                    del self.due[index]
                    self.fork(index)
        return self.status

    def fork(self, index):
        receiving = [inbox for inbox, _ in self.channels]
        worker = Worker(
            index=index,
            count=self.count,
            inbox=receiving[index],
            outboxes=tuple(outbox for _, outbox in self.channels),
            master=os.getpid(),
            ready=lambda: os.write(self.ready_w, index.to_bytes(2, "big")),
        )
        pid = os.fork()
        if pid == 0:
            self.become(worker)
        self.pids[pid] = index
        self.born[index] = time.monotonic()

    def become(self, worker):
        """In the child: undo the master's signal handling, run the worker, never return."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            for fd in (self.wake_r, self.wake_w, self.ready_r):
                os.close(fd)
            self.after_fork()
            self.run_worker(worker)
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def note_ready(self):
        data = b"".join(_read_all(self.ready_r))
        for start in range(0, len(data) - 1, 2):
            index = int.from_bytes(data[start : start + 2], "big")
            first = len(self.served) < self.count
            self.served.add(index)
            if first and len(self.served) == self.count and not self.stopping:
                self.on_started(sorted(self.pids, key=self.pids.get))

    def reap(self):
        while self.pids:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping:
                if code != 0 and self.status == 0:
                    self.status = 1
                continue
            if index not in self.served:
                logger.error("Worker %d exited with status %d before it could serve", index, code)
                sys.stderr.write(f"Worker {index} exited with status {code} before serving\n")
                self.status = 1
                self.stop(signal.SIGTERM)
                continue
            self.restart_later(index, pid, code)

    def restart_later(self, index, pid, code):
        lived = time.monotonic() - self.born[index]
        if lived >= STEADY:
            self.pause[index] = FIRST_PAUSE
        pause = self.pause[index]
        self.pause[index] = min(MAX_PAUSE, pause * 2)
        logger.warning(
            "Worker %d (pid %d) exited with status %d: starting another in %.1f s",
            index,
            pid,
            code,
            pause,
        )
        self.due[index] = time.monotonic() + pause

    def stop(self, signum):
        """Pass ``signum`` on to every worker; from the first, restart none and take no
        new clients."""
        if not self.stopping:
            self.stopping = True
            self.due.clear()
            self.sock.close()
        for pid in self.pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def _ignore(signum, frame):
    """The signal's number is written to the wake-up pipe, where the master reads it."""


def _read_all(fd):
    """What the non-blocking pipe ``fd`` holds now. Through ``io``, not ``os.read``, which
    eventlet makes wait for data: the master reads both of its pipes after each wake-up,
    whichever woke it."""
    with open(fd, "rb", buffering=0, closefd=False) as pipe:
        while data := pipe.read(4096):
            yield data


def _drain(fd):
    return [byte for data in _read_all(fd) for byte in data]
