"""A SockJSServer served in the test process, on the fake clock (:mod:`ddp.testing.driver`).

Each request is the WSGI call in a green thread of the driver, its answer's chunks kept as
the server yields them (one frame each, as eventlet.wsgi writes them). Its client's socket
is one end of a socket pair, in ``eventlet.input`` as eventlet.wsgi gives it: closing the
other end (:meth:`Request.leave`) is the client going away mid-request. Timeouts
(heartbeats, ``disconnect_delay``) pass in ``driver.advance()``, not in sleeps.
"""

import io
import json
import socket

from ddp.sockjs.server import SockJSOptions, SockJSServer
from ddp.testing.driver import FakeDriver


class Input:
    """eventlet.wsgi's ``eventlet.input``, as far as the xhr transports read it."""

    def __init__(self, sock):
        self._sock = sock

    def get_socket(self):
        return self._sock


class Request:
    """One request to ``server``, served at the driver's next yield."""

    def __init__(self, served, method, path, body=b"", headers=None, address="127.0.0.1"):
        self.status = None
        self.headers = None
        self.chunks = []
        self.done = False
        self._client, sock = socket.socketpair()
        if isinstance(body, str):
            body = body.encode()
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "REMOTE_ADDR": address,
            "CONTENT_TYPE": "text/plain",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "eventlet.input": Input(sock),
        }
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        self.environ = environ
        self._sock = sock
        served.driver.spawn(self._serve, served.server)

    def _serve(self, server):
        try:
            for chunk in server.handle(self.environ, self._start_response):
                self.chunks.append(chunk.decode())
        finally:
            self.done = True
            self._sock.close()

    def _start_response(self, status, headers):
        self.status = int(status.split()[0])
        self.headers = {name.lower(): value for name, value in headers}

    @property
    def body(self):
        return "".join(self.chunks)

    def header(self, name):
        return self.headers.get(name.lower())

    def leave(self):
        """The client goes away: its end of the connection closes."""
        self._client.close()


class Served:
    """A SockJSServer for ``app`` at ``/sockjs`` on a :class:`FakeDriver`."""

    def __init__(self, app, **options):
        self.driver = FakeDriver()
        self.server = SockJSServer(app, self.driver, "/sockjs", SockJSOptions(**options))
        self.requests = []

    def start(self, method, path, body=b"", **kwargs):
        """A request, begun and run as far as it goes without the clock moving."""
        request = Request(self, method, path, body, **kwargs)
        self.requests.append(request)
        self.driver.run()
        return request

    def fetch(self, method, path, body=b"", **kwargs):
        """A request that must be answered in full without the clock moving."""
        request = self.start(method, path, body, **kwargs)
        assert request.done, f"{method} {path} still waits: {request.chunks}"
        return request

    def info(self, **kwargs):
        return json.loads(self.fetch("GET", "/sockjs/info", **kwargs).body)

    def close(self):
        for request in self.requests:
            request.leave()
