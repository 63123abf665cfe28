"""What every test shares: servers started once per module, and no replication slot that
outlives the servers that made it.

``ddpserver`` with ``DDP["CAPTURE"] = "auto"`` makes a slot on the test database; while it
exists, this process's writers leave their changes to a reader, and the test database
cannot be dropped. So it is dropped once the servers a test or a module started have
stopped (module-scoped fixtures stop after the module's last test), and at the end.
"""

import pytest
from django.db.models.signals import post_migrate

from ddp.testing.live import ServerProcess, drop_capture
from tests.live import SIGNALS

#: How django.contrib.auth connects its ``post_migrate`` receiver.
CREATE_PERMISSIONS = "django.contrib.auth.management.create_permissions"

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
    """The test database, migrated; then the flush after each transactional test leaves
    out the content types and permissions that ``post_migrate`` would make again: no test
    reads them, and making them took four fifths of every such test's teardown."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.contenttypes.management import create_contenttypes

    post_migrate.disconnect(create_permissions, dispatch_uid=CREATE_PERMISSIONS)
    post_migrate.disconnect(create_contenttypes)
    yield
    post_migrate.connect(create_contenttypes)
    post_migrate.connect(create_permissions, dispatch_uid=CREATE_PERMISSIONS)
    drop_capture()


@pytest.fixture(scope="module")
def start_server(django_db_setup, django_db_blocker):
    """``start_server(*args, **options)``: a started :class:`ServerProcess` (same
    arguments) that serves every test of the module and stops after its last one.

    Starting a ``ddpserver`` costs about a second; a module whose tests can share one
    server asks for it here rather than starting one per test.
    """
    started = []

    def start(*args, **options):
        with django_db_blocker.unblock():
            server = ServerProcess(*args, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def capture_signals(settings):
    """This process captures its writes through model signals, as servers started with
    ``ddp=SIGNALS`` do (``tests.live.SIGNALS``)."""
    settings.DDP = SIGNALS


@pytest.fixture
def pool():
    """A database pool of one worker on a fake driver (``pool.driver``), closed after the
    test. Its worker runs while the test waits for a job, on the test's own connection."""
    from ddp.server.pool import DatabasePool
    from ddp.testing.driver import FakeDriver

    pool = DatabasePool(1, FakeDriver())
    yield pool
    pool.close()
