"""The project's one live-server helper: ddp.testing's ``ServerProcess`` for a ``ddpserver``,
:class:`SockJSTestServer` for the SockJS test server, and the waits tests make on them.

Every test that runs a server in a subprocess starts it through ``ServerProcess`` (which
waits until the server prints where it listens) and polls it through :func:`wait_until`;
a module whose tests can share servers gets them from the ``start_server`` fixture
(tests/conftest.py).
"""

import os
import sys
import time
import urllib.request
from pathlib import Path

from ddp.testing.live import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
#: ``DDP`` settings that capture writes through model signals rather than the database.
SIGNALS = {"CAPTURE": "signals"}

__all__ = [
    "ROOT",
    "SIGNALS",
    "ServerProcess",
    "SockJSTestServer",
    "metric",
    "wait_metric",
    "wait_until",
]


class SockJSTestServer(ServerProcess):
    """The SockJS test server (``python -m ddp.server.sockjs_testserver``), started and read
    like a ``ddpserver``, with an environment cleaned of ``DJANGO_SETTINGS_MODULE``: the server
    needs no project. ``module`` is run with ``python -m``; it prints ``listening on
    http://...`` when ready."""

    def __init__(self, module="ddp.server.sockjs_testserver"):
        super().__init__(command=[sys.executable, "-m", module], cwd=ROOT)

    def environ(self):
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def ws_url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"


def wait_until(predicate, timeout=20, what="the condition", interval=0.02):
    """Poll ``predicate()`` every ``interval`` seconds until it holds; fail after
    ``timeout`` seconds, naming ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(interval)


def metric(server, name, labels=""):
    """The value of one sample of ``server``'s ``/metrics``, 0 when absent."""
    with urllib.request.urlopen(server.url + "metrics", timeout=30) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.split()[-1])
    return 0.0


def wait_metric(server, name, predicate, timeout=20):
    """Poll ``/metrics`` until ``predicate(value)``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = metric(server, name)
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} stayed at {value}\n{server.output()[-3000:]}")
        time.sleep(0.02)
