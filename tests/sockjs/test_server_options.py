"""Options the test server fixes, tried on a SockJSServer in this process with short delays.

wsgiref's threaded server stands in for eventlet here (the xhr transports need nothing of
eventlet); it answers HTTP/1.0 and writes each yielded frame at once.
"""

import json
import socketserver
import threading
import time
from types import SimpleNamespace
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from ddp.runtime.shutdown import close_all
from ddp.sockjs.server import SockJSOptions, SockJSServer
from tests.sockjs.wire import Connection, fetch

pytestmark = pytest.mark.quick


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class Echo:
    """An app that writes each message straight back to its session (a transport)."""

    def __init__(self):
        self.sessions = []
        self.opened = threading.Event()
        self.closed = threading.Event()

    def connect(self, session):
        self.sessions.append(session)
        self.opened.set()
        return Echoing(session)

    def only_session(self):
        """The session opened, once the app has heard of it."""
        assert self.opened.wait(5)
        (session,) = self.sessions
        return session

    def disconnect(self, connection):
        self.closed.set()


class Echoing:
    def __init__(self, session):
        self.session = session

    def receive(self, text):
        self.session.send_texts([text])


@pytest.fixture
def serve():
    """``serve(app, **options)`` -> (port, server): a SockJSServer at ``/sockjs``."""
    running = []

    def start(app, **options):
        sockjs = SockJSServer(app, "/sockjs", SockJSOptions(**options))
        httpd = make_server(
            "127.0.0.1", 0, sockjs, server_class=ThreadingWSGIServer, handler_class=QuietHandler
        )
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        running.append(httpd)
        return httpd.server_port, sockjs

    yield start
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


def test_polling_heartbeat(serve):
    port, _ = serve(Echo(), heartbeat_delay=0.2)
    assert fetch(port, "POST", "/sockjs/0/s/xhr").body == "o\n"
    started = time.monotonic()
    assert fetch(port, "POST", "/sockjs/0/s/xhr").body == "h\n"
    assert time.monotonic() - started >= 0.2


def test_streaming_heartbeats(serve):
    port, _ = serve(Echo(), heartbeat_delay=0.1)
    with Connection(port) as c:
        c.request("POST", "/sockjs/0/s/xhr_streaming")
        assert c.read(2049 + 2) == "h" * 2048 + "\no\n"
        assert c.read(4) == "h\nh\n"


def test_disconnect_delay(serve):
    app = Echo()
    port, sockjs = serve(app, disconnect_delay=0.2)
    assert fetch(port, "POST", "/sockjs/0/s/xhr").body == "o\n"
    assert sockjs.connections == {app.only_session()}
    assert app.closed.wait(5)
    assert sockjs.connections == set()
    assert fetch(port, "POST", "/sockjs/0/s/xhr_send", '["a"]').status == 404


def test_session_offers_its_id_and_environ(serve):
    app = Echo()
    port, _ = serve(app)
    fetch(port, "POST", "/sockjs/0/abc/xhr", headers={"X-Test": "yes"})
    session = app.only_session()
    assert session.id == "abc"
    assert session.environ["HTTP_X_TEST"] == "yes"


def test_sending_from_another_thread_reaches_a_held_poll(serve):
    app = Echo()
    port, _ = serve(app)
    fetch(port, "POST", "/sockjs/0/s/xhr")
    session = app.only_session()
    with Connection(port) as held:
        held.send_request("POST", "/sockjs/0/s/xhr")
        threading.Timer(0.1, session.send_texts, args=(["pushed"],)).start()
        assert held.read_head().read_body() == 'a["pushed"]\n'


def test_cors_off(serve):
    port, _ = serve(Echo(), cors=False)
    r = fetch(port, "GET", "/sockjs/info", headers={"Origin": "test"})
    assert "origins" not in json.loads(r.body)
    assert r["access-control-allow-origin"] is None
    r = fetch(port, "POST", "/sockjs/0/s/xhr", headers={"Origin": "test"})
    assert r["access-control-allow-origin"] is None


def test_max_message_size(serve):
    port, _ = serve(Echo(), max_message_size=10)
    fetch(port, "POST", "/sockjs/0/s/xhr")
    assert fetch(port, "POST", "/sockjs/0/s/xhr_send", '["' + "x" * 10 + '"]').status == 413
    assert fetch(port, "POST", "/sockjs/0/s/xhr_send", '["x"]').status == 204


def test_shut_down(serve):
    app = Echo()
    port, sockjs = serve(app)
    fetch(port, "POST", "/sockjs/0/idle/xhr")
    fetch(port, "POST", "/sockjs/0/held/xhr")
    with Connection(port) as held:
        held.send_request("POST", "/sockjs/0/held/xhr")
        time.sleep(0.1)
        close_all(
            sockjs.connections, 1001, "Server shutting down", 0, SimpleNamespace(sleep=time.sleep)
        )
        assert held.read_head().read_body() == 'c[1001,"Server shutting down"]\n'
    # No one is left to hear a close frame: every session is gone at once.
    assert sockjs.connections == set()


def test_a_session_its_app_aborts_is_gone_and_its_id_opens_a_new_one(serve):
    """What the app's bounded outbox does to a client that stopped polling."""
    app = Echo()
    port, sockjs = serve(app)
    fetch(port, "POST", "/sockjs/0/s/xhr")
    app.only_session().abort()
    assert app.closed.wait(5)
    assert sockjs.connections == set()
    assert fetch(port, "POST", "/sockjs/0/s/xhr").body == "o\n"
