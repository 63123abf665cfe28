"""The project's own live-server helpers: ddp.testing's, plus where the repository is."""

import urllib.request
from pathlib import Path

from ddp.testing.live import ServerProcess

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "ServerProcess", "metric"]


def metric(server, name, labels=""):
    """The value of one sample of ``server``'s ``/metrics``, 0 when absent."""
    with urllib.request.urlopen(server.url + "metrics", timeout=30) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.split()[-1])
    return 0.0
