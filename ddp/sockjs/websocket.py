"""The SockJS websocket transport: ``GET .../<server>/<session>/websocket``.

sockjs-node's ``src/trans-websocket.coffee`` (PROTOCOL.md 10.2, T8): ``o`` first, then ``a``
frames and finally ``c[code,"reason"]`` followed by a close of the socket (1000). A client
frame is one JSON string or a JSON array of strings; empty frames are ignored, and anything
else closes the socket with 3000 "Broken framing." (no close frame, as sockjs-node). The
session lives exactly as long as the socket, so websocket sessions may reuse an id.

Heartbeats are RFC 6455 pings, as sockjs-node 0.3.24 sends: a client that does not answer
within 10 s is closed with ``c[3000,"No response from heartbeat"]``.

Two green threads per client: this request's thread, which reads and hands what arrives
to the session; and a writer, the only one to write frames, which takes
what the session holds whenever it is woken and pings every ``heartbeat_delay``.
"""

import threading
import time

from wsproto.events import Ping
from wsproto.utilities import LocalProtocolError

from ddp.sockjs import responses
from ddp.sockjs.framing import FramingError, client_messages
from ddp.websocket import WebSocket

#: How long sockjs-node 0.3.24 waits for the pong to a heartbeat ping, in seconds.
PONG_TIMEOUT = 10.0


def refusal(environ):
    """Why this is no WebSocket handshake that can be accepted, or None.

    As T1, except that version 8 is refused too: wsproto speaks version 13 only, and
    raises on a handshake it would refuse rather than answering it.
    """
    connection = {token.strip().lower() for token in environ.get("HTTP_CONNECTION", "").split(",")}
    if (
        "upgrade" not in connection
        or environ.get("HTTP_UPGRADE", "").lower() != "websocket"
        or not environ.get("HTTP_SEC_WEBSOCKET_KEY")
    ):
        return b"Not a valid websocket request"
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        return b"Only supported WebSocket protocol is RFC 6455."
    return None


def serve(server, environ, start_response, session_id):
    reason = refusal(environ)
    if reason is not None:
        return responses.respond(start_response, "400 Bad Request", [responses.TEXT], reason)
    try:
        ws = WebSocket(environ, max_message_size=server.options.max_message_size)
        session = server.websocket_session(session_id, environ)
        writer = Writer(ws, session, server.options.heartbeat_delay)
        pending, _ = session.attach(writer)
        thread = threading.Thread(target=writer.run, args=(pending,), daemon=True)
        thread.start()
        try:
            read(ws, session, writer)
        finally:
            writer.stop()
            thread.join()
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
    """The session's receiver on a websocket, and the one thread that writes to it."""

    def __init__(self, ws, session, heartbeat_delay):
        self._ws = ws
        self._session = session
        self._heartbeat_delay = heartbeat_delay
        self._wakeup = threading.Event()
        self._stopped = False
        self._abort = None

    def wake(self):
        self._wakeup.set()

    def stop(self):
        """The socket is gone: write nothing more."""
        self._stopped = True
        self._wakeup.set()

    def cut(self):
        """Drop the client at once, even while this writer is blocked writing to it."""
        self._stopped = True
        self._ws.abort()

    def abort(self, code, reason):
        """Close the socket with ``code`` and no SockJS close frame (broken framing)."""
        self._abort = (code, reason)
        self._wakeup.set()

    def run(self, pending):
        next_ping = time.monotonic() + self._heartbeat_delay
        pong_due = None
        closing = False
        try:
            while True:
                if pending:
                    self._ws.send_texts(pending)
                if closing:
                    self._ws.close_with(1000, "Normal closure")
                    return
                deadline = next_ping if pong_due is None else min(next_ping, pong_due)
                self._wakeup.wait(max(0.0, deadline - time.monotonic()))
                self._wakeup.clear()
                if self._abort is not None:
                    self._ws.close_with(*self._abort)
                    return
                if self._stopped:
                    return
                now = time.monotonic()
                if pong_due is not None and self._ws.pong_received:
                    pong_due = None
                elif pong_due is not None and now >= pong_due:
                    # The close frame goes out next; the deadline left in place sends no ping.
                    self._session.close(3000, "No response from heartbeat")
                if now >= next_ping:
                    # One ping in flight at a time: its deadline stands.
                    if pong_due is None:
                        self._ping()
                        pong_due = now + PONG_TIMEOUT
                    next_ping = now + self._heartbeat_delay
                pending, closing = self._session.take()
        except (OSError, LocalProtocolError):
            pass  # the client went away or closed first; the reader sees it too

    def _ping(self):
        ws = self._ws
        ws.pong_received = False
        ws.sock.send(ws.ws.send(Ping()))
