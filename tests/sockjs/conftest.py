"""One SockJS test server for the SockJS tests; sessions have random ids, so tests do not meet."""

import pytest

from tests.live import SockJSTestServer


@pytest.fixture(scope="session")
def sockjs_server():
    server = SockJSTestServer().start()
    yield server
    server.stop()
    # Whatever a test did, the server must not have logged a traceback.
    assert "Traceback" not in server.output(), server.output()


@pytest.fixture
def port(sockjs_server):
    return sockjs_server.port
