"""One immutable class per DDP message, and their exact wire form.

Messages are plain values: build one, hand it around, compare it in a test. Each
class knows its wire dict (``to_dict``) with ``msg`` first and the other keys in the
order Meteor sends them, so captures compare byte for byte. Only ``fields``,
``params`` and ``result`` (and an error's ``details``) are EJSON (PROTOCOL.md B3);
ids and names go out verbatim, so callers escape document ids with
:func:`ddp.protocol.ids.stringify_id` first.

``to_dict`` does no more than build one dict, because a message bound for many
clients is encoded once (:func:`encode`) and the same text is sent to all of them.

Don't subclass these: code matches on the exact class.
"""

import enum
from dataclasses import dataclass

from ddp.protocol.ejson import dumps, to_ejson
from ddp.protocol.errors import MeteorError, ProtocolError


class _Missing(enum.Enum):
    """A key that is absent from the message, as opposed to present with ``null``."""

    MISSING = "MISSING"

    def __repr__(self):
        return "MISSING"


#: The value of an optional field whose key is not in the message.
MISSING = _Missing.MISSING


def _require_str(message, name, value):
    # B5: the Meteor client rejects a message whose id is not a string.
    if not isinstance(value, str):
        raise ProtocolError(f"{type(message).__name__}.{name} must be a string, not {value!r}")


def _require_error(message, error):
    if error is not None and not isinstance(error, MeteorError):
        raise ProtocolError(
            f"{type(message).__name__}.error must be a MeteorError (see sanitize), not {error!r}"
        )


def _freeze(message, name):
    # Sequences are stored as tuples, so equal messages compare equal whichever
    # sequence type the caller used, and nobody can append to a sent message.
    object.__setattr__(message, name, tuple(getattr(message, name)))


# -- client to server -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """``connect``: the client proposes ``version``, one of the versions in ``support``.

    ``session`` is the previous session id of a reconnecting client, and
    ``received_count`` (``receivedCount`` on the wire, Meteor 3.4) how many messages it
    got from that session, pings and pongs left out: with both, the server may hand the
    same session back (session resumption, meteor/meteor#14051).
    """

    version: str
    support: tuple
    session: str | _Missing = MISSING
    received_count: int | _Missing = MISSING

    def __post_init__(self):
        _freeze(self, "support")

    def to_dict(self):
        wire = {"msg": "connect"}
        if self.session is not MISSING:
            wire["session"] = self.session
        wire["version"] = self.version
        wire["support"] = list(self.support)
        if self.received_count is not MISSING:
            wire["receivedCount"] = self.received_count
        return wire


@dataclass(frozen=True, slots=True)
class Disconnect:
    """``disconnect``: the client is leaving on purpose (Meteor 3.4 sends it before it
    closes), so its session is never resumed."""

    def to_dict(self):
        return {"msg": "disconnect"}


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``, sent by either side; ``id`` is echoed in the ``pong`` (H1)."""

    id: str | _Missing = MISSING

    def to_dict(self):
        if self.id is MISSING:
            return {"msg": "ping"}
        return {"msg": "ping", "id": self.id}


@dataclass(frozen=True, slots=True)
class Pong:
    """``pong``, the answer to a ``ping``, carrying the ping's ``id`` when it had one."""

    id: str | _Missing = MISSING

    def to_dict(self):
        if self.id is MISSING:
            return {"msg": "pong"}
        return {"msg": "pong", "id": self.id}


@dataclass(frozen=True, slots=True)
class Sub:
    """``sub``: start publication ``name`` with ``params`` (decoded EJSON) under ``id``."""

    id: str
    name: str
    params: tuple = ()

    def __post_init__(self):
        _freeze(self, "params")

    def to_dict(self):
        return {"msg": "sub", "id": self.id, "name": self.name, "params": to_ejson(self.params)}


@dataclass(frozen=True, slots=True)
class Unsub:
    """``unsub``: stop subscription ``id``. Answered with ``nosub`` even when unknown (S6)."""

    id: str | _Missing = MISSING

    def to_dict(self):
        if self.id is MISSING:
            return {"msg": "unsub"}
        return {"msg": "unsub", "id": self.id}


@dataclass(frozen=True, slots=True)
class Method:
    """``method``: call ``method`` with ``params`` (decoded EJSON); answered per ``id``.

    ``random_seed`` (``randomSeed`` on the wire) lets the server generate the same
    ids as the client's simulation (R8).
    """

    id: str
    method: str
    params: tuple = ()
    random_seed: str | _Missing = MISSING

    def __post_init__(self):
        _freeze(self, "params")

    def to_dict(self):
        wire = {"msg": "method", "id": self.id, "method": self.method}
        wire["params"] = to_ejson(self.params)
        if self.random_seed is not MISSING:
            wire["randomSeed"] = self.random_seed
        return wire


# -- server to client -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """``connected``: the handshake succeeded and ``session`` names the new session."""

    session: str

    def to_dict(self):
        return {"msg": "connected", "session": self.session}


@dataclass(frozen=True, slots=True)
class Failed:
    """``failed``: the handshake failed; ``version`` is the one the client should propose."""

    version: str

    def to_dict(self):
        return {"msg": "failed", "version": self.version}


@dataclass(frozen=True, slots=True)
class Added:
    """``added``: document ``id`` enters ``collection`` with ``fields``.

    ``fields`` is always on the wire, ``{}`` when empty: ddp_asyncio raises without
    it (D1).
    """

    collection: str
    id: str
    fields: dict

    def __post_init__(self):
        _require_str(self, "id", self.id)

    def to_dict(self):
        return {
            "msg": "added",
            "collection": self.collection,
            "id": self.id,
            "fields": to_ejson(self.fields),
        }


@dataclass(frozen=True, slots=True)
class Changed:
    """``changed``: new values for ``fields`` and removal of the ``cleared`` field names.

    Empty ``fields`` are stored as ``None`` and left off the wire, as is an empty
    ``cleared`` (B4). A ``changed`` that changes nothing is a server bug (D2) and
    raises :class:`ProtocolError`.
    """

    collection: str
    id: str
    fields: dict | None = None
    cleared: tuple = ()

    def __post_init__(self):
        _require_str(self, "id", self.id)
        if not self.fields:
            object.__setattr__(self, "fields", None)
        _freeze(self, "cleared")
        if self.fields is None and not self.cleared:
            raise ProtocolError(f"empty changed for {self.collection!r} {self.id!r}")

    def to_dict(self):
        wire = {"msg": "changed", "collection": self.collection, "id": self.id}
        if self.fields is not None:
            wire["fields"] = to_ejson(self.fields)
        if self.cleared:
            wire["cleared"] = list(self.cleared)
        return wire


@dataclass(frozen=True, slots=True)
class Removed:
    """``removed``: document ``id`` leaves ``collection``."""

    collection: str
    id: str

    def __post_init__(self):
        _require_str(self, "id", self.id)

    def to_dict(self):
        return {"msg": "removed", "collection": self.collection, "id": self.id}


@dataclass(frozen=True, slots=True)
class Ready:
    """``ready``: the subscriptions ``subs`` have sent their initial documents."""

    subs: tuple

    def __post_init__(self):
        _freeze(self, "subs")

    def to_dict(self):
        return {"msg": "ready", "subs": list(self.subs)}


@dataclass(frozen=True, slots=True)
class NoSub:
    """``nosub``: subscription ``id`` is over, because of ``error`` when there is one."""

    id: str | _Missing = MISSING
    error: MeteorError | None = None

    def __post_init__(self):
        if self.id is not MISSING:
            _require_str(self, "id", self.id)
        _require_error(self, self.error)

    def to_dict(self):
        wire = {"msg": "nosub"}
        if self.id is not MISSING:
            wire["id"] = self.id
        if self.error is not None:
            wire["error"] = self.error.to_dict()
        return wire


@dataclass(frozen=True, slots=True)
class Result:
    """``result`` of method ``id``: its return value, or ``error``.

    A method that returns nothing has no ``result`` key at all (``MISSING``); one
    that returns ``None`` sends ``"result":null`` (R3).
    """

    id: str
    result: object = MISSING
    error: MeteorError | None = None

    def __post_init__(self):
        _require_str(self, "id", self.id)
        _require_error(self, self.error)
        if self.error is not None and self.result is not MISSING:
            raise ProtocolError(f"result {self.id!r} has both a value and an error")

    def to_dict(self):
        wire = {"msg": "result", "id": self.id}
        if self.error is not None:
            wire["error"] = self.error.to_dict()
        elif self.result is not MISSING:
            wire["result"] = to_ejson(self.result)
        return wire


@dataclass(frozen=True, slots=True)
class Updated:
    """``updated``: every write of the methods ``methods`` has reached this client (R4)."""

    methods: tuple

    def __post_init__(self):
        _freeze(self, "methods")

    def to_dict(self):
        return {"msg": "updated", "methods": list(self.methods)}


@dataclass(frozen=True, slots=True)
class Error:
    """Top-level ``error``: the client sent something malformed (PROTOCOL.md 4.2).

    ``offending_message`` (``offendingMessage``) is the message as parsed, with its
    ``params`` decoded; it is absent when the text could not be parsed at all.
    """

    reason: str
    offending_message: object = MISSING

    def to_dict(self):
        if self.offending_message is MISSING:
            return {"msg": "error", "reason": self.reason}
        return {
            "msg": "error",
            "reason": self.reason,
            "offendingMessage": to_ejson(self.offending_message),
        }


def encode(message):
    """Return the text of ``message`` for one WebSocket text frame or SockJS message."""
    return dumps(message.to_dict())
