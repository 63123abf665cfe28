"""The test server's shutdown through the eventlet driver: every session hears 1001."""

import websocket

from tests.live import SockJSTestServer
from tests.sockjs.checks import close_status
from tests.sockjs.wire import Connection, session_url


def test_sigterm_closes_every_session_and_stops():
    server = SockJSTestServer().start()
    try:
        ws = websocket.create_connection(server.ws_url(session_url() + "/websocket"), timeout=10)
        assert ws.recv() == "o"
        raw = websocket.create_connection(server.ws_url("/echo/websocket"), timeout=10)
        raw.send("hello")
        assert raw.recv() == "hello"
        stream = Connection(server.port)
        r = stream.request("POST", session_url() + "/xhr_streaming")
        r.read_frame()
        assert r.read_frame() == "o\n"
    finally:
        returncode = server.stop()
    assert ws.recv() == 'c[1001,"Server shutting down"]'
    assert close_status(ws) == (1000, "Normal closure")
    # A raw websocket has no SockJS close frame: the socket's close says it.
    assert close_status(raw) == (1001, "Server shutting down")
    assert r.read_frame() == 'c[1001,"Server shutting down"]\n'
    assert r.read_frame() == ""
    assert returncode == 0
    assert "Traceback" not in server.output()
