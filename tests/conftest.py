import pytest

from tests.live import ServerProcess


@pytest.fixture(scope="session")
def ddp_server(django_db_setup, django_db_blocker):
    """One ``ddpserver`` for the session, serving the test database."""
    with django_db_blocker.unblock():
        server = ServerProcess().start()
    yield server
    server.stop()


@pytest.fixture
def live_db(transactional_db):
    """Data the tests write is committed, so the server process sees it."""
