"""The SockJS websocket transport: ``GET .../<server>/<session>/websocket``.

sockjs-node's ``src/trans-websocket.coffee`` (PROTOCOL.md 10.2, T8): ``o`` first, then ``a``
frames and finally ``c[code,"reason"]`` followed by a close of the socket (1000). A client
frame is one JSON string or a JSON array of strings; empty frames are ignored, and anything
else closes the socket with 3000 "Broken framing." (no close frame, as sockjs-node). The
session lives exactly as long as the socket, so websocket sessions may reuse an id.

Heartbeats are RFC 6455 pings, as sockjs-node 0.3.24 sends: a client that does not answer
within 10 s is closed with ``c[3000,"No response from heartbeat"]``.

No session object and no thread of this layer's own: the socket is a
:class:`SockJSWebSocket`, a transport the host's runtime drives (it writes the frames,
holds what waits, and calls :meth:`SockJSWebSocket.keepalive` from its heartbeat thread),
and this request's green thread reads and hands each message to the host
(``app.connect(transport)`` gives what receives them; ``app.disconnect`` it at the end).
The host passes the WebSocket class (:class:`ddp.websocket.WebSocket` under ``ddpserver``),
which takes its socket from eventlet's environ.
"""

import functools
import json

from ddp.sockjs import responses
from ddp.sockjs.framing import (
    OPEN,
    FramingError,
    client_messages,
    close_frame,
    messages_frame,
)

#: How long sockjs-node 0.3.24 waits for the pong to a heartbeat ping, in seconds.
PONG_TIMEOUT = 10.0


@functools.lru_cache(maxsize=1024)
def message_frame(text):
    """The ``a`` frame of one message. A message sent to many clients is framed once, and
    its WebSocket frame then too (the host's cache is keyed by this very string).

    Quoted without :func:`~ddp.sockjs.framing.quote`'s cache: this one already holds the
    message, and a second entry for each message sent once (every ``connected``) cost
    each idle connection a copy of its text and a cache link."""
    return "a[" + json.dumps(text) + "]"


@functools.lru_cache(maxsize=64)
def batch_frame(texts):
    """The ``a`` frame of several messages written at once (``texts``, a tuple). A server
    that falls behind a burst hands every client of a fan-out the same batch in the same
    turn: it is framed once, the tuple hashed and compared by its texts' identities, not
    built and then hashed whole by the host's frame cache for each client. A batch is
    reused within the turn that made it, so a few entries do."""
    return messages_frame(texts)


def _frame(texts):
    """One ``a`` frame for what the runtime writes at once, as sockjs-node sends what
    waits together; built once for all the clients that get the same messages."""
    if len(texts) == 1:
        return message_frame(texts[0])
    return batch_frame(tuple(texts))


def refused(server, environ, start_response):
    """The answer to a websocket request ``server`` cannot take, or None to take it."""
    reason = server.websocket.refusal(environ)
    if reason is not None:
        return responses.respond(start_response, "400 Bad Request", [responses.TEXT], reason)
    if not server.admit():
        return responses.respond(
            start_response,
            "503 Service Unavailable",
            [responses.TEXT, ("Retry-After", "5")],
            b"Too many connections",
        )
    return None


def serve(server, environ, start_response):
    answer = refused(server, environ, start_response)
    if answer is not None:
        return answer
    try:
        ws = server.websocket(
            environ, server.driver, max_message_size=server.options.max_message_size
        )
        transport = SockJSWebSocket(ws, server.options.heartbeat_delay)
        try:
            ws.send_texts([OPEN])
        except OSError:
            return []
        transport.receiver = server.app.connect(transport)
        # Read here, not in a function of its own: an idle client's thread waits in
        # this stack, and each frame of it costs every connection. The transport's own
        # method takes the frames: no closure and cells per connection.
        try:
            ws.run(transport.receive)
        finally:
            server.app.disconnect(transport.receiver)
            ws.close_with(1000, "Normal closure")
    finally:
        server.mark_handled()
    return []


class PlainWebSocket:
    """A WebSocket (the host's class) as a transport (see :mod:`ddp.runtime.transport`):
    each text one frame, the close the socket's, no pings of its own. The websocket
    transports here and raw DDP's (:mod:`ddp.server.raw_ddp`) are this, and differ only
    where they say so."""

    # One per idle connection: no __dict__, here or in a subclass.
    __slots__ = ("ws", "environ")

    def __init__(self, ws):
        self.ws = ws
        self.environ = ws.environ

    def send_now(self, texts):
        return self.ws.send_now(texts)

    def send_texts(self, texts):
        self.ws.send_texts(texts)

    def send_bytes(self, data):
        self.ws.sock.send(data)

    def close(self, code, reason):
        self.ws.close_with(code, reason)

    def abort(self):
        self.ws.abort()

    def backlog(self):
        """Nothing waits here: the runtime's writer writes through, blocking."""
        return 0, 0

    def ping(self):
        return False

    def answered(self):
        return False

    def keepalive(self, now):
        return None


class SockJSWebSocket(PlainWebSocket):
    """A SockJS websocket session as a transport: what is written at once one ``a``
    frame, the close a ``c`` frame, pings of its own (:meth:`keepalive`)."""

    __slots__ = ("receiver", "_heartbeat_delay", "_next_ping", "_pong_due")

    def __init__(self, ws, heartbeat_delay):
        super().__init__(ws)
        self._heartbeat_delay = heartbeat_delay
        self._next_ping = None
        self._pong_due = None
        #: What receives the client's messages (the host's ``app.connect(self)``).
        self.receiver = None

    @property
    def id(self):
        """The session id, read from the URL (``.../<session>/websocket``) the environ
        keeps anyway: no copy per connection, for a name nothing looks up."""
        return self.environ["PATH_INFO"].rstrip("/").rsplit("/", 2)[-2]

    def receive(self, data):
        """Hand each message of a client frame to :attr:`receiver`; broken framing closes
        the socket at once, which ends the reading."""
        if not data:
            return
        try:
            text = data.decode() if isinstance(data, bytes) else data
            messages = client_messages(text, single_allowed=True)
        except (UnicodeDecodeError, FramingError):
            self.ws.close_with(3000, "Broken framing.")
            return
        for message in messages:
            self.receiver.receive(message)

    def send_now(self, texts):
        return self.ws.send_now([_frame(texts)])

    def send_texts(self, texts):
        self.ws.send_texts([_frame(texts)])

    def close(self, code, reason):
        try:
            self.ws.send_texts([close_frame(int(code), reason or "Normal closure")])
        except OSError:
            pass  # gone: the socket is closed below anyway
        self.ws.close_with(1000, "Normal closure")

    def keepalive(self, now):
        """Ping every ``heartbeat_delay``, one ping in flight at a time; give up on a
        peer that leaves one unanswered for :data:`PONG_TIMEOUT`."""
        if self._next_ping is None:
            self._next_ping = now + self._heartbeat_delay
        if self._pong_due is not None:
            if self.ws.pong_received:
                self._pong_due = None
            elif now >= self._pong_due:
                return 3000, "No response from heartbeat"
        if now >= self._next_ping:
            if self._pong_due is None:
                if not self.ws.ping_nowait():
                    return None  # a writer is mid-frame: at the next beat
                self._pong_due = now + PONG_TIMEOUT
            self._next_ping = now + self._heartbeat_delay
        return None
