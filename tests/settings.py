"""The test suite's settings: the bookstore example plus ``tests.testapp``.

``DDP_TEST_SETTINGS`` (JSON) overrides the ``DDP`` setting in ``ddpserver`` processes
that tests start, so a test can shorten the heartbeat or turn compression on;
``TEST_ALLOWED_HOSTS`` (comma-separated) replaces ``ALLOWED_HOSTS``.
"""

import json
import os

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
DDP = json.loads(os.environ.get("DDP_TEST_SETTINGS", "{}"))
# A test may start a server that accepts only some hosts (the example accepts any).
ALLOWED_HOSTS = os.environ.get("TEST_ALLOWED_HOSTS", "*").split(",")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"ddp": {"handlers": ["console"], "level": "INFO"}},
}
