"""The example project's settings with ``DDP["CAPTURE"]`` taken from ``DDP_BENCH_CAPTURE``.

``bench/capture.py`` runs the same project in three capture modes; its ``ddpserver`` processes
get their mode this way (its writers switch theirs in process).
"""

import os

from testproject.settings import *  # noqa: F403

DDP = {"CAPTURE": os.environ.get("DDP_BENCH_CAPTURE", "auto")}
