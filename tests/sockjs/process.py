"""The SockJS test server (``python -m ddp.sockjs.testserver``) in a subprocess.

It is started and read like a ``ddpserver`` (:class:`ddp.testing.live.ServerProcess`),
with an environment cleaned of ``DJANGO_SETTINGS_MODULE``: the server needs no project.
"""

import os
import sys
from pathlib import Path

from ddp.testing.live import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


class SockJSTestServer(ServerProcess):
    """``module`` is run with ``python -m``; it prints ``listening on http://...`` when ready."""

    def __init__(self, module="ddp.sockjs.testserver"):
        super().__init__(command=[sys.executable, "-m", module], cwd=ROOT)

    def environ(self):
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def ws_url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"
