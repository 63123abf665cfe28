"""An idle SockJS websocket costs no more than a raw one (issue 16).

Its request's green thread waits in the read, and greenlet keeps that stack for each
idle client: what the frames between the WSGI call and the read hold is paid per
connection. SockJS's extra was routing (a ``functools.partial`` called from C, its
arguments, the route's dict) and a closure with its cells; none of it may come back.
"""

import functools
import re
import sys

import pytest

from ddp.sockjs import websocket_transport
from ddp.sockjs.server import SockJSServer
from ddp.sockjs.websocket_transport import SockJSWebSocket
from ddp.testing.driver import FakeDriver

pytestmark = pytest.mark.quick


class App:
    """The host's side: ``connect`` gives what receives the messages (itself here)."""

    def __init__(self):
        self.received = []

    def connect(self, transport):
        return self

    def receive(self, text):
        self.received.append(text)

    def disconnect(self, receiver):
        pass


class ProbeWebSocket:
    """The WebSocket class the host passes; its ``run``, where an idle client's thread
    waits, records the frames from there up to the WSGI call and what they hold."""

    opened = []

    @staticmethod
    def refusal(environ):
        return None  # every handshake here is a good one

    def __init__(self, environ, driver, max_message_size=None):
        self.environ = environ
        self.texts = []
        self.opened.append(self)

    def send_texts(self, texts):
        self.texts.extend(texts)

    def close_with(self, code, reason):
        pass

    def run(self, on_message):
        self.on_message = on_message
        self.frames = []
        frame = sys._getframe(1)
        while True:
            self.frames.append((frame.f_code, dict(frame.f_locals)))
            if frame.f_code is SockJSServer.handle.__code__:
                break
            frame = frame.f_back
        on_message('["hello"]')


def test_the_idle_reader_stack_holds_no_routing_and_no_closure():
    server = SockJSServer(App(), FakeDriver(), "/sockjs", websocket=ProbeWebSocket)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/sockjs/000/abcdef/websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_UPGRADE": "websocket",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
    }
    assert server.handle(environ, lambda status, headers: None) == []
    ws = ProbeWebSocket.opened.pop()
    assert ws.texts == ["o"]
    assert server.app.received == ["hello"]

    # Read straight in the transport's serve, called straight from the WSGI call.
    codes = [code for code, _ in ws.frames]
    assert codes == [websocket_transport.serve.__code__, SockJSServer.handle.__code__]
    held = [
        (code.co_name, name, value)
        for code, names in ws.frames
        for name, value in names.items()
        if isinstance(value, functools.partial | dict | re.Match) and value is not environ
    ]
    assert held == []
    # Frames are handed to the transport's own method: no closure, no cells.
    transport = ws.on_message.__self__
    assert isinstance(transport, SockJSWebSocket)
    assert transport.id == "abcdef"  # read from the URL the environ keeps, not copied
    assert [code.co_cellvars for code in codes] == [(), ()]
