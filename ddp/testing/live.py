"""A real ``ddpserver`` in a subprocess, on a free port, against the test database.

The test process itself is never monkey-patched by eventlet: the server runs apart, as in
production, with ``DATABASE_URL`` pointing at the test database. If it fails to start,
:meth:`ServerProcess.start` raises with everything it printed, traceback included.

With ``DDP["CAPTURE"] = "auto"`` (the default) a server makes a replication slot on the
test database where it allows it (the embedded PostgreSQL does). A database with a slot
cannot be dropped, and while it exists this process's writers leave their changes to a
reader: call :func:`drop_capture` once the servers have stopped (the ``ddp_live_server``
fixture and ``DDPLiveServerTestCase`` do). PostgreSQL makes a slot only once every
transaction that has written has ended: start a server before a test's own transaction
writes, or its start-up waits for that transaction, which waits for the server.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any, ClassVar

import psycopg2
from django.db import connection

from ddp.testing.database import database_url

LISTENING = re.compile(r"listening on http://(?P<host>[^/]+):(?P<port>\d+)/")


#: ``python -m django ddpserver --noreload`` as that command runs once it has re-executed
#: itself with eventlet patched first (``python -m ddp.server``): the same server, started
#: without the interpreter that only re-executes, which costs a third of a start.
DDPSERVER = [sys.executable, "-m", "ddp.server", "-m", "django.__main__", "ddpserver", "--noreload"]


class ServerProcess:
    """Start a ``ddpserver`` (:data:`DDPSERVER`) and learn its port from what it prints.

    ``args`` are more ``ddpserver`` options; ``command`` replaces :data:`DDPSERVER` (without
    ``--noreload`` a ``ddpserver`` is two processes, a reloader and the server; ``python
    -m django ddpserver`` re-executes itself first); ``env`` adds environment variables;
    ``ddp`` is passed JSON-encoded in ``DDP_TEST_SETTINGS`` for a test settings module that
    reads it (this project's does). ``addrport`` is where it listens: a free port by
    default, but a server that restarts must find its port again.
    """

    #: The servers started in this process since :func:`drop_capture` last ran.
    started: ClassVar[list["ServerProcess"]] = []

    process: "subprocess.Popen[str]"
    stderr: IO[bytes]

    def __init__(
        self,
        *args: str,
        ddp: dict[str, Any] | None = None,
        command: list[str] | None = None,
        settings: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        addrport: str | None = None,
    ) -> None:
        self.args = list(args)
        self.addrport = addrport or "127.0.0.1:0"
        self.ddp = ddp or {}
        self.command = command
        self.settings = settings
        self.extra_env = env or {}
        self.cwd = cwd or os.getcwd()
        #: The port the server listens on, once started.
        self.port: int | None = None
        self.lines: list[str] = []
        self._started = threading.Event()

    def environ(self) -> dict[str, str]:
        """The server's environment: this process's, pointed at the test database."""
        env = dict(os.environ)
        # The server imports what this process imports: same settings, same sys.path.
        env.update(
            DATABASE_URL=database_url(connection.settings_dict),
            DJANGO_SETTINGS_MODULE=self.settings or os.environ["DJANGO_SETTINGS_MODULE"],
            PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
            DDP_TEST_SETTINGS=json.dumps(self.ddp),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> "ServerProcess":
        """Start the server and wait until it listens; raise with its output if it does not."""
        command = self.command or DDPSERVER
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [*command, self.addrport, *self.args],
            cwd=self.cwd,
            env=self.environ(),
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        ServerProcess.started.append(self)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        if not self._started.wait(timeout) or self.port is None:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"ddpserver did not start:\n{self.output()}")
        from ddp.bus.producer import forget_slots

        forget_slots()  # it may have made the slot: this process's writers go quiet now
        return self

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and self.port is None:
                self.port = int(match["port"])
                self._started.set()
        self._started.set()

    @property
    def url(self) -> str:
        """The server's HTTP root, ``http://127.0.0.1:<port>/``."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        """The server's raw DDP websocket, ``ws://127.0.0.1:<port>/websocket``."""
        return f"ws://127.0.0.1:{self.port}/websocket"

    def output(self) -> str:
        """Everything the server printed so far, stdout then stderr."""
        self.stderr.seek(0)
        return "".join(self.lines) + self.stderr.read().decode(errors="replace")

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` now (to test a shutdown); :meth:`stop` then only waits: a second
        SIGTERM or SIGINT would make the server stop at once instead of gracefully."""
        self._signalled = True
        self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Stop the server (``signum``, then a kill after ``timeout`` s); its exit status."""
        if self.process.poll() is None:
            if not getattr(self, "_signalled", False):
                self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def drop_capture(timeout: float = 30) -> bool:
    """Drop the test database's replication slot and publication once every server this
    process started has exited; True if it did (False while one runs, or none ran since).

    Waits up to ``timeout`` seconds for PostgreSQL to let go of the slot of a server that
    has just exited. From then on this process's writers send their changes again.
    """
    from ddp.replication import setup

    if not ServerProcess.started or any(s.process.poll() is None for s in ServerProcess.started):
        return False
    conn = psycopg2.connect(database_url(connection.settings_dict))
    conn.autocommit = True
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with conn.cursor() as cursor:
                    setup.drop(cursor)
                break
            except setup.SetupError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        conn.close()
    ServerProcess.started.clear()
    return True
