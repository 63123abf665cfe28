"""The SockJS websocket transport: ``GET .../<server>/<session>/websocket``.

sockjs-node's ``src/trans-websocket.coffee`` (PROTOCOL.md 10.2, T8): ``o`` first, then ``a``
frames and finally ``c[code,"reason"]`` followed by a close of the socket (1000). A client
frame is one JSON string or a JSON array of strings; empty frames are ignored, and anything
else closes the socket with 3000 "Broken framing." (no close frame, as sockjs-node). The
session lives exactly as long as the socket, so websocket sessions may reuse an id.

Heartbeats are RFC 6455 pings, as sockjs-node 0.3.24 sends: a client that does not answer
within 10 s is closed with ``c[3000,"No response from heartbeat"]``.

This request's green thread reads and hands what arrives to the session. A writer, the
only one to write frames, runs while there is something to write: what the session holds
when it wakes the writer, and a ping every ``heartbeat_delay``, which one thread for all
clients asks for (:class:`Heartbeats`). An idle client holds no thread but its reader (an
idle green thread costs ~14 KB). A writer's state changes only between green switches:
this transport runs under eventlet alone (it takes its socket from eventlet's environ).
"""

import threading
import time

from wsproto.events import Ping
from wsproto.utilities import LocalProtocolError

from ddp.sockjs import responses
from ddp.sockjs.framing import FramingError, client_messages
from ddp.websocket import UNSUPPORTED_VERSION, VERSIONS, WebSocket

#: How long sockjs-node 0.3.24 waits for the pong to a heartbeat ping, in seconds.
PONG_TIMEOUT = 10.0


def refusal(environ):
    """Why this is no WebSocket handshake that can be accepted, or None (T1)."""
    connection = {token.strip().lower() for token in environ.get("HTTP_CONNECTION", "").split(",")}
    if (
        "upgrade" not in connection
        or environ.get("HTTP_UPGRADE", "").lower() != "websocket"
        or not environ.get("HTTP_SEC_WEBSOCKET_KEY")
    ):
        return b"Not a valid websocket request"
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") not in VERSIONS:
        return UNSUPPORTED_VERSION
    return None


def refused(server, environ, start_response):
    """The answer to a websocket request ``server`` cannot take, or None to take it."""
    reason = refusal(environ)
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


def serve(server, environ, start_response, session_id):
    answer = refused(server, environ, start_response)
    if answer is not None:
        return answer
    try:
        ws = WebSocket(environ, max_message_size=server.options.max_message_size)
        session = server.websocket_session(session_id, environ)
        writer = Writer(ws, session, server.options.heartbeat_delay, server.spawn)
        pending, _ = session.attach(writer)
        writer.start(pending)
        try:
            read(ws, session, writer)
        finally:
            writer.stop()
            session.detach(writer, aborted=True)
            ws.close_with(1000, "Normal closure")
    finally:
        server.mark_handled()
    return []


def read(ws, session, writer):
    """Hand each client frame's messages to the session until the socket closes.

    After broken framing the rest is ignored: the writer sends the close and shuts the
    socket, which ends the reading.
    """
    broken = False

    def on_message(data):
        nonlocal broken
        if broken or not data:
            return
        try:
            text = data.decode() if isinstance(data, bytes) else data
            messages = client_messages(text, single_allowed=True)
        except (UnicodeDecodeError, FramingError):
            broken = True
            writer.abort(3000, "Broken framing.")
            return
        session.receive(messages)

    ws.run(on_message)


class Writer:
    """The session's receiver on a websocket, and the one thread at a time that writes."""

    def __init__(self, ws, session, heartbeat_delay, spawn):
        self._ws = ws
        self._spawn = spawn
        self._session = session
        self.heartbeat_delay = heartbeat_delay
        self._initial = None  # the frames attach() gave, written first
        self._started = False
        self._running = False  # a thread runs _write
        self._again = False  # woken while it ran: it looks once more
        self._stopped = False  # nothing more is written
        self._abort = None
        self._ping_now = False
        self._next_ping = time.monotonic() + heartbeat_delay
        self._pong_due = None
        self._idle = None  # made by stop() to wait for a running writer

    def start(self, pending):
        self._initial = pending
        self._started = True
        self._schedule()
        heartbeats.add(self)

    def wake(self):
        self._schedule()

    def stop(self):
        """The socket is gone: write nothing more, once the write under way has ended."""
        self._stopped = True
        heartbeats.discard(self)
        if self._running:
            self._idle = threading.Event()
            self._idle.wait()

    def cut(self):
        """Drop the client at once, even while a writer is blocked writing to it."""
        self._stopped = True
        self._ws.abort()

    def abort(self, code, reason):
        """Close the socket with ``code`` and no SockJS close frame (broken framing)."""
        self._abort = (code, reason)
        self._schedule()

    def beat(self, now):
        """Called a few times per ``heartbeat_delay`` by :data:`heartbeats`: ask for a ping
        when one is due, close the session when a ping went unanswered too long."""
        if self._stopped:
            return
        if self._pong_due is not None:
            if self._ws.pong_received:
                self._pong_due = None
            elif now >= self._pong_due:
                # The close frame goes out next; the deadline left in place sends no ping.
                self._session.close(3000, "No response from heartbeat")
        if now >= self._next_ping:
            # One ping in flight at a time: its deadline stands.
            if self._pong_due is None:
                self._ws.pong_received = False
                self._pong_due = now + PONG_TIMEOUT
                self._ping_now = True
                self._schedule()
            self._next_ping = now + self.heartbeat_delay

    def _schedule(self):
        if not self._started or self._stopped:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        self._spawn(self._write)

    def _write(self):
        try:
            while True:
                self._again = False
                if self._abort is not None:
                    self._stopped = True
                    self._ws.close_with(*self._abort)
                    return
                if self._stopped:
                    return
                frames, closing = self._session.take()
                if self._initial is not None:
                    frames, self._initial = self._initial + frames, None
                if frames:
                    self._ws.send_texts(frames)
                if self._ping_now:
                    self._ping_now = False
                    self._ws.sock.send(self._ws.ws.send(Ping()))
                if closing:
                    self._stopped = True
                    self._ws.close_with(1000, "Normal closure")
                    return
                if not self._again:
                    return
        except (OSError, LocalProtocolError):
            self._stopped = True  # the client went away or closed first; the reader sees it
        finally:
            self._running = False
            if self._idle is not None:
                self._idle.set()


class Heartbeats:
    """One thread that looks at every websocket writer a few times per heartbeat delay,
    while there are any."""

    def __init__(self):
        self._writers = set()
        self._running = False

    def add(self, writer):
        self._writers.add(writer)
        if not self._running:
            self._running = True
            threading.Thread(target=self._run, daemon=True).start()

    def discard(self, writer):
        self._writers.discard(writer)

    def _run(self):
        while self._writers:
            time.sleep(min(writer.heartbeat_delay for writer in self._writers) / 4)
            now = time.monotonic()
            for writer in list(self._writers):
                writer.beat(now)
        self._running = False


heartbeats = Heartbeats()
