"""The per-client DDP state machine, with no I/O of its own.

Theory of operation
-------------------

The caller owns the transport, the clock and the session. For every text frame
(WebSocket) or message (SockJS) that arrives, it calls :meth:`ServerConnection.receive`
and gets back, in order, everything that frame asks for:

* server messages (:class:`Connected`, :class:`Failed`, :class:`Pong`,
  :class:`Error`) to encode and send as they are;
* :data:`CLOSE`: close the transport once what precedes it is sent;
* client requests (:class:`Sub`, :class:`Unsub`, :class:`Method`) already validated,
  for the session to execute in arrival order;
* :class:`Resume`: a successful handshake from a client that names its previous session
  and how many messages it got from it (Meteor 3.4's session resumption). The caller
  either hands that session back, or sends the :class:`Connected` of this new one, which
  the ``Resume`` carries.

The connection answers everything the protocol itself defines: the handshake
(PROTOCOL.md C1-C6), heartbeats (H1, H6) and every malformed input (section 4.2), so
the session only ever sees well-formed requests. Being alive is the caller's business
too: every call to ``receive`` is proof that the peer is (H3).

States::

    AWAITING_CONNECT --connect, version agreed--> CONNECTED
    AWAITING_CONNECT --connect, no agreement----> CLOSED   (failed, then CLOSE)

Anything but ``connect`` while awaiting it gets ``Must connect first``; a second
``connect`` gets ``Already connected``; both leave the state alone. A ``disconnect``
from a connected client gets no answer: it only makes the session one never to resume
(:attr:`ServerConnection.resumable`), as the client is leaving on purpose. In ``CLOSED``
every frame is ignored: a client sends its requests right behind ``connect`` without
waiting (C7), and they must not run on a failed handshake.

``receive`` never raises for a string, whatever it holds. Any exception from it is a
bug here.
"""

import enum
from dataclasses import dataclass

from ddp.protocol.ejson import EJSONError, from_ejson, loads
from ddp.protocol.ids import random_id
from ddp.protocol.messages import (
    MISSING,
    Connected,
    Error,
    Failed,
    Method,
    Pong,
    Sub,
    Unsub,
)

#: DDP versions this server speaks, most preferred first (Meteor's own list).
SUPPORTED_VERSIONS = ("1", "pre2", "pre1")


class ConnectionState(enum.Enum):
    """Where a connection is in its life (see the module's theory of operation)."""

    #: No successful ``connect`` yet; only a handshake is accepted (C1).
    AWAITING_CONNECT = "AWAITING_CONNECT"
    #: A version was agreed; requests go to the session.
    CONNECTED = "CONNECTED"
    #: The handshake failed and the transport is closing; input is ignored (C2, C3).
    CLOSED = "CLOSED"


class _Close(enum.Enum):
    CLOSE = "CLOSE"

    def __repr__(self):
        return "CLOSE"


#: Returned by :meth:`ServerConnection.receive`: close the transport after sending
#: the messages before it.
CLOSE = _Close.CLOSE


@dataclass(frozen=True, slots=True)
class Resume:
    """Returned by :meth:`ServerConnection.receive` for a handshake that asks to resume
    ``session``, whose client got ``received_count`` messages from it (pings and pongs
    left out; None when the client gave no count, as clients older than Meteor 3.4 do).
    Not a message: the caller hands that session back if it holds it and the counts
    agree, and otherwise sends ``connected``, this new session's ``connected``. A session
    named and not handed back is ended, as Meteor's server does: its client has left it."""

    session: str
    received_count: int | None
    connected: Connected


def _count(value):
    """``receivedCount`` as a whole number of messages, or None when it is not one."""
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and value >= 0 and value.is_integer():
        return int(value)  # JSON has one kind of number: 5.0 is what a client meant by 5
    return None


def _js_falsy(value):
    # Meteor rejects a message with ``!msg.msg``: null, false, 0 and "" count as absent.
    if isinstance(value, bool) or value is None:
        return not value
    return value == "" or (type(value) in (int, float) and value == 0)


class ServerConnection:
    """The server side of one DDP connection.

    ``session_id`` is sent in ``connected``; a fresh ``Random.id()`` when not given
    (C5). A reconnecting client's old session id is never reused (C4).
    """

    def __init__(self, session_id=None):
        self.session_id = random_id() if session_id is None else session_id
        self.state = ConnectionState.AWAITING_CONNECT
        #: The negotiated DDP version, ``None`` until the handshake succeeds.
        self.version = None
        #: Set by the client's ``disconnect``: it left on purpose.
        self.disconnected = False

    @property
    def resumable(self):
        """Whether a client that loses this connection may resume its session: it
        connected, and did not say it was leaving."""
        return self.state is ConnectionState.CONNECTED and not self.disconnected

    @property
    def heartbeat_enabled(self):
        """Whether DDP pings run on this connection: not for ``pre1`` sessions (H6)."""
        return self.version != "pre1"

    def receive(self, text):
        """Take one inbound DDP message and return what to do about it, in order.

        The list holds server messages to send, :data:`CLOSE`, and client requests
        (:class:`Sub`, :class:`Unsub`, :class:`Method`) for the session. It is empty
        for a ``pong`` and after a failed handshake. Raise ``TypeError`` if ``text``
        is not a ``str``; nothing else.
        """
        if not isinstance(text, str):
            raise TypeError(f"DDP messages are text, not {type(text).__name__}")
        if self.state is ConnectionState.CLOSED:
            return []
        try:
            message = loads(text)
        except (ValueError, RecursionError):
            return [Error("Bad request")]
        if not isinstance(message, (dict, list)):
            return [Error("Bad request")]
        if isinstance(message, dict) and "params" in message:
            # Meteor decodes ``params`` while parsing, before looking at ``msg``.
            try:
                message["params"] = from_ejson(message["params"])
            except (EJSONError, RecursionError):
                return [Error("Parse error")]
        kind = message.get("msg") if isinstance(message, dict) else None
        if _js_falsy(kind):
            return [_error("Bad request", message)]
        if kind == "connect":
            if self.state is ConnectionState.CONNECTED:
                return [_error("Already connected", message)]
            return self._handshake(message)
        if self.state is ConnectionState.AWAITING_CONNECT:
            return [_error("Must connect first", message)]
        return self._request(kind, message)

    def _handshake(self, message):
        version, support = message.get("version"), message.get("support")
        if not (
            isinstance(version, str)
            and isinstance(support, list)
            and all(isinstance(proposal, str) for proposal in support)
            and version in support
        ):
            return self._fail(SUPPORTED_VERSIONS[0])
        # The client's order of preference wins among the versions both sides speak.
        agreed = next((v for v in support if v in SUPPORTED_VERSIONS), SUPPORTED_VERSIONS[0])
        if agreed != version:
            return self._fail(agreed)
        self.version = version
        self.state = ConnectionState.CONNECTED
        connected = Connected(self.session_id)
        previous, count = message.get("session"), _count(message.get("receivedCount"))
        if isinstance(previous, str):
            return [Resume(previous, count, connected)]
        return [connected]

    def _fail(self, version):
        self.state = ConnectionState.CLOSED
        return [Failed(version), CLOSE]

    def _request(self, kind, message):
        """Answer or validate one message of a connected client."""
        if self.heartbeat_enabled:
            if kind == "ping":
                # H1 echoes the id; B5 lets only a string go out as one.
                return [Pong(_string_or_missing(message.get("id", MISSING)))]
            if kind == "pong":
                return []
        if kind == "sub":
            return [_sub(message)]
        if kind == "unsub":
            # S6: even an unknown or absent id gets its nosub, so the request goes on.
            return [Unsub(_string_or_missing(message.get("id", MISSING)))]
        if kind == "method":
            return [_method(message)]
        if kind == "disconnect":
            self.disconnected = True
            return []
        return [_error("Bad request", message)]


def _string_or_missing(value):
    return value if isinstance(value, str) else MISSING


def _sub(message):
    sub_id, name = message.get("id"), message.get("name")
    params = message.get("params", [])
    if isinstance(sub_id, str) and isinstance(name, str) and isinstance(params, list):
        return Sub(sub_id, name, tuple(params))
    return _error("Malformed subscription", message)


def _method(message):
    method_id, name = message.get("id"), message.get("method")
    params = message.get("params", [])
    seed = message.get("randomSeed", MISSING)
    if (
        isinstance(method_id, str)
        and isinstance(name, str)
        and isinstance(params, list)
        and (seed is MISSING or isinstance(seed, str))
    ):
        return Method(method_id, name, tuple(params), seed)
    return _error("Malformed method invocation", message)


#: ``offendingMessage`` quotes a message nested at most this deep. Deeper, encoding it runs
#: close to Python's recursion limit, which the stack of whoever sends the reply lowers.
MAX_QUOTED_DEPTH = 100


def _error(reason, message):
    """Build the top-level ``error`` for ``message``, quoting it as ``offendingMessage``.

    A message nested deeper than :data:`MAX_QUOTED_DEPTH` goes unquoted: the reply must
    stay sendable from any caller.
    """
    if _deeper_than(message, MAX_QUOTED_DEPTH):
        return Error(reason)
    return Error(reason, message)


def _deeper_than(value, limit):
    """Whether lists and dicts nest in ``value`` more than ``limit`` deep; iterative, so
    that measuring cannot exhaust the stack either."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
