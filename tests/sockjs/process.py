"""The SockJS test server (``python -m ddp.sockjs.testserver``) in a subprocess.

The environment is cleaned of ``DJANGO_SETTINGS_MODULE``: the server needs no project.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(?P<port>\d+)/")


class SockJSTestServer:
    """``module`` is run with ``python -m``; it prints ``listening on http://...`` when ready."""

    def __init__(self, module="ddp.sockjs.testserver"):
        self.module = module
        self.lines = []
        self.port = None
        self._started = threading.Event()

    def start(self, timeout=30):
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env["PYTHONUNBUFFERED"] = "1"
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "127.0.0.1:0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        if not self._started.wait(timeout) or self.port is None:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the SockJS test server did not start:\n{self.output()}")
        return self

    def _read_stdout(self):
        for line in self.process.stdout:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and self.port is None:
                self.port = int(match["port"])
                self._started.set()
        self._started.set()

    def stop(self, timeout=20):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self):
        self.stderr.seek(0)
        return "".join(self.lines) + self.stderr.read().decode(errors="replace")

    def ws_url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"
