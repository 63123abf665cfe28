"""A real ``ddpserver`` in a subprocess, on a free port, against the test database."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from django.db import connection

from ddp.testing.database import database_url

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening on http://(?P<host>[^/]+):(?P<port>\d+)/")


class ServerProcess:
    """Start ``python -m django ddpserver`` and learn its port from what it prints."""

    def __init__(self, *args, ddp=None, command=None, settings="tests.settings", env=None):
        self.args = list(args)
        self.ddp = ddp or {}
        self.command = command
        self.settings = settings
        self.extra_env = env or {}
        self.port = None
        self.lines = []
        self._started = threading.Event()

    def environ(self):
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(connection.settings_dict),
            DJANGO_SETTINGS_MODULE=self.settings,
            PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "testproject")]),
            DDP_TEST_SETTINGS=json.dumps(self.ddp),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout=60):
        command = self.command or [sys.executable, "-m", "django", "ddpserver"]
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [*command, "127.0.0.1:0", *self.args],
            cwd=ROOT,
            env=self.environ(),
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        if not self._started.wait(timeout) or self.port is None:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"ddpserver did not start:\n{self.output()}")
        return self

    def _read_stdout(self):
        for line in self.process.stdout:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and self.port is None:
                self.port = int(match["port"])
                self._started.set()
        self._started.set()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}/websocket"

    def output(self):
        self.stderr.seek(0)
        return "".join(self.lines) + self.stderr.read().decode(errors="replace")

    def stop(self, signum=signal.SIGTERM, timeout=20):
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
