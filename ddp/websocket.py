"""The WebSocket under raw DDP (``/websocket``) and SockJS: simple-websocket, corrected.

simple-websocket does the handshake and the reading. Three of its habits are corrected
here: it writes with ``socket.send`` and ignores partial writes, so a large frame to a slow
reader arrived cut (every write here is a full ``sendall``, one writer at a time per
connection);
it accepts permessage-deflate whenever a browser offers it, which triples the cost per
frame and adds about 120 KB per connection (off unless ``DDP["WEBSOCKET_COMPRESSION"]``);
and it reads in a thread of its own. An idle green thread holds about 14 KB, so here the
request's own thread reads (:meth:`WebSocket.run`) and hands each message to a callback.
"""

import functools
import socket

import simple_websocket
from wsproto.events import CloseConnection, TextMessage
from wsproto.utilities import LocalProtocolError

from ddp.conf import ddp_settings

#: The ``Sec-WebSocket-Version`` values served (T1): RFC 6455's 13, and 8, the draft
#: (hybi-08) whose frames and handshake are the same, which sockjs-node also takes.
VERSIONS = ("8", "13")

#: The answer to any other version, sockjs-node's.
UNSUPPORTED_VERSION = b"Only supported WebSocket protocol is RFC 6455."

#: An RFC 6455 ping from a server: final, opcode 9, no payload, unmasked.
PING = b"\x89\x00"


@functools.lru_cache(maxsize=1024)
def text_frame(text):
    """The bytes of an uncompressed server text frame (RFC 6455: FIN, opcode 1, unmasked).

    The same for every client, so a message sent to many is framed once: the cache is
    keyed by the text, whose hash Python keeps in the string itself.
    """
    data = text.encode()
    size = len(data)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + data


class FullWriteSocket:
    """A socket whose ``send`` writes everything, one writer at a time, and whose
    ``send_nowait`` writes what the kernel takes at once.

    Several green threads write to one connection: the runtime's writer, the heartbeat's
    ping, the reader's close on a bad frame, a shutdown's close. A ``send`` to a full
    socket yields in the middle of a frame, so the others must wait for it to end: a
    flag says a frame is under way (on the driver's one OS thread, testing and setting it
    without a yield between is atomic), and an event of ``driver``'s, made only when a
    second writer has to wait, wakes the waiting ones when it ends."""

    __slots__ = ("_sock", "_os_socket", "_driver", "_writing", "_written")

    def __init__(self, sock, driver):
        self._sock = sock
        self._driver = driver
        # The OS socket under eventlet's green one, non-blocking: a write to it never
        # waits (a green socket's send would wait, in the caller's thread, when full).
        self._os_socket = sock.fd
        self._writing = False
        self._written = None  # the event writers waiting for this frame wait on

    def send_nowait(self, data):
        """Write what the socket takes without waiting; return how many bytes that was
        (0 while another thread writes: it must finish its frame first)."""
        if self._writing:
            return 0
        try:
            return self._os_socket.send(data)
        except OSError:  # full (BlockingIOError), or gone: the writer finds out which
            return 0

    def send(self, data):
        while self._writing:
            if self._written is None:
                self._written = self._driver.event()
            self._written.wait()
        self._writing = True
        try:
            self._sock.sendall(data)
        finally:
            self._writing = False
            written, self._written = self._written, None
            if written is not None:
                written.set()
        return len(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _ReadByCaller:
    """Stands in for the reader thread simple-websocket would start: :meth:`WebSocket.run`
    runs its loop in the caller's thread instead."""

    name = "read by caller"

    def __init__(self, target):
        pass

    def start(self):
        pass


class _NoWaiting:
    """Stands in for the event simple-websocket's ``receive`` waits on: nothing waits here
    (messages go to :meth:`WebSocket.run`'s callback), and a green Event costs 1.5 KB."""

    def set(self):
        pass

    def clear(self):
        pass


class WebSocket(simple_websocket.Server):
    """simple-websocket's server with full writes, compression only when enabled, and
    reading in the caller's thread.

    :mod:`ddp.sockjs` is given this class by its host (it imports nothing else of
    ``ddp``), and asks it which handshakes it takes (:meth:`refusal`). ``driver`` (a
    :class:`ddp.runtime.driver.Driver`) is the one the connection runs on: writers that
    meet on it wait on its events."""

    @staticmethod
    def refusal(environ):
        """Why the GET ``environ`` is no WebSocket handshake this class can accept, or
        None (T1). sockjs-node's answers, which Meteor gives at ``/websocket`` too: one
        check for raw DDP and for SockJS's websocket transport."""
        connection = environ.get("HTTP_CONNECTION", "").lower()
        if (
            "upgrade" not in {token.strip() for token in connection.split(",")}
            or environ.get("HTTP_UPGRADE", "").lower() != "websocket"
            or not environ.get("HTTP_SEC_WEBSOCKET_KEY")
        ):
            return b"Not a valid websocket request"
        if environ.get("HTTP_SEC_WEBSOCKET_VERSION") not in VERSIONS:
            return UNSUPPORTED_VERSION
        return None

    def __init__(self, environ, driver, **kwargs):
        #: Whether permessage-deflate may have been negotiated (then wsproto frames).
        self.compression = ddp_settings.WEBSOCKET_COMPRESSION
        raw = environ["eventlet.input"].get_socket()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handshake = {**environ, "gunicorn.socket": FullWriteSocket(raw, driver)}
        if not self.compression:
            handshake.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        if handshake.get("HTTP_SEC_WEBSOCKET_VERSION") == "8":
            # wsproto knows only 13 by name, and would refuse the draft it answers alike.
            handshake["HTTP_SEC_WEBSOCKET_VERSION"] = "13"
        self._on_message = None
        super().__init__(handshake, thread_class=_ReadByCaller, event_class=_NoWaiting, **kwargs)
        self.environ = environ  # the request's own: the copy was for the handshake only

    def run(self, on_message):
        """Read until the connection closes, calling ``on_message(data)`` with each message
        (``str`` for text, ``bytes`` for binary) in the order they arrive.

        simple-websocket's loop (``_thread``, without its pings, which are not used
        here), except that each chunk read is handed on in a call that returns before
        the next read: its loop kept the last chunk in a local while it waited, so
        every idle connection held the last thing its client sent."""
        self._on_message = on_message
        try:
            while self.connected:
                self._receive(self.sock.recv(self.receive_bytes))
        except (OSError, LocalProtocolError):
            self.connected = False
            self.event.set()
        self.sock.close()

    def _receive(self, data):
        if not data:
            raise OSError("The peer closed the connection")
        self.ws.receive_data(data)
        self.connected = self._handle_events()

    def _handle_events(self):
        keep_going = super()._handle_events()
        while self.input_buffer:
            self._on_message(self.input_buffer.pop(0))
        return keep_going

    def ping_nowait(self):
        """Send a ping, which every client answers by itself, without waiting: the
        heartbeat thread must not wait on one client. False when a writer is mid-frame or
        the socket is full (the caller tries again later); ``pong_received`` tells whether
        the answer came."""
        self.pong_received = False
        sent = self.sock.send_nowait(PING)
        if sent == 0:
            return False
        if sent < len(PING):  # never seen: the frame must still be whole
            self.sock.send(PING[sent:])
        return True

    def send_now(self, texts):
        """Write the frames of ``texts`` as far as the socket takes them now; return the
        bytes left (empty when all went), which must be sent before anything else."""
        data = self._frames(texts)
        return data[self.sock.send_nowait(data) :]

    def send_texts(self, texts):
        """Send each text as one frame, all in one write."""
        self.sock.send(self._frames(texts))

    def _frames(self, texts):
        if self.compression:
            return b"".join(self.ws.send(TextMessage(data=text)) for text in texts)
        if len(texts) == 1:  # a fan-out's usual write: the cached frame, no join
            return text_frame(texts[0])
        return b"".join(map(text_frame, texts))

    def abort(self):
        """Cut the connection now, whatever a writer is blocked on (a client that stopped
        reading cannot be sent a close frame)."""
        self.connected = False
        try:
            self.sock._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.event.set()

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
    reason = WebSocket.refusal(environ)
    return None if reason is None else ("400 Bad Request", [], reason)
