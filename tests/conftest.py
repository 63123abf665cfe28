"""What every test shares: no replication slot outlives the servers that made it.

``ddpserver`` with ``DDP["CAPTURE"] = "auto"`` makes a slot on the test database; while it
exists, this process's writers leave their changes to a reader, and the test database
cannot be dropped. So it is dropped once a test's (or a module's) servers have stopped,
before the next test, and at the end before the test database goes.
"""

import pytest

from ddp.testing.live import drop_capture

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_slot_without_servers():
    drop_capture()  # a module's servers stopped after its last test
    yield
    drop_capture()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    yield
    drop_capture()
