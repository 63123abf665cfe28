"""Raw DDP over WebSocket (``/websocket``): one DDP message per text frame, no framing.

Each connection runs three green threads joined by queues:

* the reader (the request's own thread) waits for frames, keeps the heartbeat, answers
  pings and malformed input at once and puts requests into the inbox;
* the worker takes requests from the inbox one at a time and runs them in the session;
* the writer drains the outbox, so nothing that produces messages (a database worker
  streaming a publication, say) ever waits on a slow client.

simple-websocket is used for the handshake and for reading. Two of its habits are
corrected here: it writes with ``socket.send`` and ignores partial writes, so a large
frame to a slow reader arrived cut (every write here is a full ``sendall``, serialised per
connection); and it accepts permessage-deflate whenever a browser offers it, which
triples the cost per frame (off unless ``DDP["WEBSOCKET_COMPRESSION"]`` is true).
"""

import logging
import queue
import socket
import threading

import simple_websocket
from simple_websocket.errors import ConnectionClosed
from wsproto.events import CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason

from ddp.conf import ddp_settings
from ddp.protocol import ConnectionState, Error, Ping
from ddp.session import WAKE, Session

logger = logging.getLogger("ddp.server")

#: Closes the transport once everything queued before it has been written.
_CLOSE = object()


class FullWriteSocket:
    """A socket whose ``send`` writes everything, one writer at a time."""

    def __init__(self, sock):
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, data):
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class WebSocket(simple_websocket.Server):
    """simple-websocket's server with full writes and compression only when enabled."""

    def __init__(self, environ, **kwargs):
        if not ddp_settings.WEBSOCKET_COMPRESSION:
            environ = {k: v for k, v in environ.items() if k != "HTTP_SEC_WEBSOCKET_EXTENSIONS"}
        raw = environ["eventlet.input"].get_socket()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        environ = {**environ, "gunicorn.socket": FullWriteSocket(raw)}
        super().__init__(environ, **kwargs)

    def send_text(self, text):
        self.sock.send(self.ws.send(TextMessage(data=text)))

    def close_with(self, code, reason=None):
        """Send a close frame, then end both directions so no thread waits on the peer."""
        if self.connected:
            self.connected = False
            try:
                self.sock.send(self.ws.send(CloseConnection(code, reason)))
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.event.set()


def bad_request(environ):
    """The HTTP answer to a request on ``/websocket`` that is no WebSocket upgrade (T1)."""
    if environ["REQUEST_METHOD"] != "GET":
        return "405 Method Not Allowed", [("Allow", "GET")], b""
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return "400 Bad Request", [], b"Not a valid websocket request"
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") not in ("8", "13"):
        return "400 Bad Request", [], b"Only supported WebSocket protocol is RFC 6455."
    return None


class Connection:
    """One client on ``/websocket``: the reader, worker and writer around a Session."""

    def __init__(self, ws, run_db, bus=None):
        self.ws = ws
        self.inbox = queue.Queue()
        self.outbox = queue.Queue()
        self.session = Session(
            self.outbox.put, self.close, run_db, wake=lambda: self.inbox.put(WAKE), bus=bus
        )

    def close(self, code=CloseReason.NORMAL_CLOSURE, reason=None):
        """Close after what is queued; safe from any thread, any number of times."""
        self.outbox.put((_CLOSE, code, reason))

    def serve(self):
        worker = threading.Thread(target=self._work, daemon=True)
        writer = threading.Thread(target=self._write, daemon=True)
        worker.start()
        writer.start()
        if ddp_settings.SEND_SERVER_ID:
            self.outbox.put('{"server_id":"0"}')
        try:
            self._read()
        finally:
            self.inbox.put(None)
            self.close()
            worker.join()
            writer.join()
            self.session.teardown()

    def _read(self):
        interval = ddp_settings.HEARTBEAT_INTERVAL
        timeout = ddp_settings.HEARTBEAT_TIMEOUT
        pinged = False
        while True:
            try:
                data = self.ws.receive(timeout=timeout if pinged else interval)
            except ConnectionClosed:
                return
            if data is None:
                if not self.ws.connected:
                    return
                if pinged:
                    # Silent through a whole interval and timeout: the peer is gone (H4).
                    # A socket that never completes the DDP handshake ends the same way
                    # (Meteor's C9), but is never pinged: DDP has not started on it.
                    self.close(CloseReason.GOING_AWAY, "Heartbeat timeout")
                    return
                connection = self.session.connection
                if connection.state is ConnectionState.CONNECTED:
                    if not connection.heartbeat_enabled:
                        continue  # pre1 has no heartbeat
                    self.session.send(Ping())
                pinged = True
                continue
            pinged = False
            if isinstance(data, bytes):
                self.session.send(Error("Bad request"))
                continue
            for request in self.session.receive(data):
                self.inbox.put(request)

    def _work(self):
        while (request := self.inbox.get()) is not None:
            self.session.handle(request)

    def _write(self):
        while True:
            item = self.outbox.get()
            if isinstance(item, tuple) and item[0] is _CLOSE:
                self.ws.close_with(item[1], item[2])
                return
            if not self.ws.connected:
                continue  # the peer went away: drop what is left until the close marker
            try:
                self.ws.send_text(item)
            except OSError:
                self.ws.connected = False
