"""Options the test server fixes, tried on a SockJSServer in this process on the fake clock.

Requests are WSGI calls in the driver's green threads (:mod:`tests.sockjs.inprocess`);
heartbeats and ``disconnect_delay`` pass in ``driver.advance()``.
"""

import pytest

from ddp.runtime.shutdown import close_all
from tests.sockjs.inprocess import Served

pytestmark = pytest.mark.quick


class Echo:
    """An app that writes each message straight back to its session (a transport)."""

    def __init__(self):
        self.sessions = []
        self.closed = 0

    def connect(self, session):
        self.sessions.append(session)
        return Echoing(session)

    def only_session(self):
        (session,) = self.sessions
        return session

    def disconnect(self, connection):
        self.closed += 1


class Echoing:
    def __init__(self, session):
        self.session = session

    def receive(self, text):
        self.session.send_texts([text])


@pytest.fixture
def serve():
    """``serve(app, **options)``: a :class:`Served` SockJSServer at ``/sockjs``."""
    running = []

    def start(app, **options):
        served = Served(app, **options)
        running.append(served)
        return served

    yield start
    for served in running:
        served.close()


def test_polling_heartbeat(serve):
    served = serve(Echo(), heartbeat_delay=25)
    assert served.fetch("POST", "/sockjs/0/s/xhr").body == "o\n"
    poll = served.start("POST", "/sockjs/0/s/xhr")
    served.driver.advance(24.9)
    assert (poll.done, poll.body) == (False, "")
    served.driver.advance(0.1)
    assert (poll.done, poll.body) == (True, "h\n")


def test_streaming_heartbeats(serve):
    served = serve(Echo(), heartbeat_delay=25)
    stream = served.start("POST", "/sockjs/0/s/xhr_streaming")
    assert stream.chunks == ["h" * 2048 + "\n", "o\n"]
    served.driver.advance(24.9)
    assert len(stream.chunks) == 2
    served.driver.advance(25.1)
    assert stream.chunks[2:] == ["h\n", "h\n"]
    assert not stream.done


def test_disconnect_delay(serve):
    app = Echo()
    served = serve(app, disconnect_delay=5)
    assert served.fetch("POST", "/sockjs/0/s/xhr").body == "o\n"
    assert served.server.connections == {app.only_session()}
    served.driver.advance(4.9)
    assert app.closed == 0
    # Sending is no receiving request: it keeps no session alive.
    assert served.fetch("POST", "/sockjs/0/s/xhr_send", '["a"]').status == 204
    served.driver.advance(0.1)
    assert app.closed == 1
    assert served.server.connections == set()
    assert served.fetch("POST", "/sockjs/0/s/xhr_send", '["a"]').status == 404


def test_session_offers_its_id_and_environ(serve):
    app = Echo()
    served = serve(app)
    served.fetch("POST", "/sockjs/0/abc/xhr", headers={"X-Test": "yes"})
    session = app.only_session()
    assert session.id == "abc"
    assert session.environ["HTTP_X_TEST"] == "yes"


def test_sending_from_another_thread_reaches_a_held_poll(serve):
    app = Echo()
    served = serve(app)
    served.fetch("POST", "/sockjs/0/s/xhr")
    session = app.only_session()
    held = served.start("POST", "/sockjs/0/s/xhr")
    assert not held.done
    served.driver.timer(1, lambda: session.send_texts(["pushed"]))
    served.driver.advance(1)
    assert (held.done, held.body) == (True, 'a["pushed"]\n')


def test_cors_off(serve):
    served = serve(Echo(), cors=False)
    r = served.fetch("GET", "/sockjs/info", headers={"Origin": "test"})
    assert "origins" not in served.info(headers={"Origin": "test"})
    assert r.header("access-control-allow-origin") is None
    r = served.fetch("POST", "/sockjs/0/s/xhr", headers={"Origin": "test"})
    assert r.header("access-control-allow-origin") is None


def test_max_message_size(serve):
    served = serve(Echo(), max_message_size=10)
    served.fetch("POST", "/sockjs/0/s/xhr")
    assert served.fetch("POST", "/sockjs/0/s/xhr_send", '["' + "x" * 10 + '"]').status == 413
    assert served.fetch("POST", "/sockjs/0/s/xhr_send", '["x"]').status == 204


def test_shut_down(serve):
    app = Echo()
    served = serve(app)
    served.fetch("POST", "/sockjs/0/idle/xhr")
    served.fetch("POST", "/sockjs/0/held/xhr")
    held = served.start("POST", "/sockjs/0/held/xhr")
    close_all(served.server.connections, 1001, "Server shutting down", 0, served.driver)
    served.driver.run()
    assert (held.done, held.body) == (True, 'c[1001,"Server shutting down"]\n')
    # No one is left to hear a close frame: every session is gone at once.
    assert served.server.connections == set()
    assert app.closed == 2


def test_a_session_its_app_aborts_is_gone_and_its_id_opens_a_new_one(serve):
    """What the app's bounded outbox does to a client that stopped polling."""
    app = Echo()
    served = serve(app)
    served.fetch("POST", "/sockjs/0/s/xhr")
    app.only_session().abort()
    served.driver.run()
    assert app.closed == 1
    assert served.server.connections == set()
    assert served.fetch("POST", "/sockjs/0/s/xhr").body == "o\n"
