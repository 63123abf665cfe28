"""What every test shares: no replication slot outlives the servers that made it.

``ddpserver`` with ``DDP["CAPTURE"] = "auto"`` makes a slot on the test database; while it
exists, this process's writers leave their changes to a reader, and the test database
cannot be dropped. So it is dropped once the servers a test or a module started have
stopped (module-scoped fixtures stop after the module's last test), and at the end.
"""

import pytest

from ddp.testing.live import drop_capture

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True, scope="module")
def _no_slot_after_a_modules_servers():
    yield
    drop_capture()


@pytest.fixture(autouse=True)
def _no_slot_after_a_tests_servers():
    yield
    drop_capture()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    yield
    drop_capture()
