"""The example project's settings with ``DDP["DISCONNECT_GRACE_PERIOD"]`` taken from
``DDP_BENCH_GRACE``: ``bench/reconnect.py`` runs one server with session resumption and one
without, in the same run."""

import os

from testproject.settings import *  # noqa: F403

DDP = {"DISCONNECT_GRACE_PERIOD": float(os.environ.get("DDP_BENCH_GRACE", "15"))}
