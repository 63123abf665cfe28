"""Change events as NOTIFY payloads: a format version, a unique id, and chunks.

An event is one JSON object (EJSON for the fields)::

    {"v": 1, "e": "<unique id>", "c": "<collection>", "i": "<document id>",
     "f": {<fields>} or null when the document is gone,
     "s": ["<subscription key>", ...], "r": <highest registry id the writer saw>,
     "u": ["<subscription key>", ...]}

``"u"``, left out when empty, names the subscriptions the writer could not match (a
publication or a statement failed): their servers re-run them. ``"*"`` there means every
subscription of the collection.

The unique id keeps two equal changes in one transaction from being folded into one
notification by PostgreSQL. A payload over PostgreSQL's 8000-byte limit is sent as
numbered chunks ``#<id>:<n>:<total>:<part>``, all in the same transaction and so
delivered together and in order; :class:`Reassembler` joins them, and drops a set that
stays incomplete longer than its timeout.

On the wire each notification (an event, a chunk, any other notice) is signed:
``<tag>:<text>``, the tag being :mod:`ddp.bus.signing`'s HMAC of the channel and ``text``.
This module only frames the tag (:func:`tagged`, :func:`untag`) and needs no key.
"""

import secrets
from dataclasses import dataclass

from ddp import metrics
from ddp.protocol import dumps, from_ejson, loads, to_ejson

VERSION = 1
#: PostgreSQL refuses payloads of 8000 bytes or more; keep room for the chunk header
#: (within the text) and the tag (around it): 7900 + ``TAG_LENGTH`` + 1 < 8000.
MAX_PAYLOAD = 7900
#: A tag is a SHA-256 HMAC in unpadded base64url: 43 characters.
TAG_LENGTH = 43
_TAG_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class Event:
    collection: str
    id: str
    #: The document's fields, or ``None`` when it was deleted.
    fields: dict | None
    #: Keys of the distinct subscriptions the document belongs to after the change.
    subs: frozenset
    #: The highest subscription registry id the writer could see.
    registry: int
    #: Keys of the subscriptions the writer could not match (:data:`EVERY`: all of them).
    unsure: frozenset = frozenset()
    event_id: str = ""

    def is_unsure(self, key):
        """Whether the subscription ``key`` must re-run rather than trust ``subs``."""
        return bool(self.unsure) and (key in self.unsure or "*" in self.unsure)


#: ``unsure`` when matching failed before any subscription was known.
EVERY = frozenset({"*"})


def to_text(event):
    """The whole JSON text of one event, before any chunking."""
    data = {
        "v": VERSION,
        "e": event.event_id or secrets.token_hex(8),
        "c": event.collection,
        "i": event.id,
        "f": None if event.fields is None else to_ejson(event.fields),
        "s": sorted(event.subs),
        "r": event.registry,
    }
    if event.unsure:
        data["u"] = sorted(event.unsure)
    return dumps(data)


def encode(event):
    """The NOTIFY payloads of one event: one, or several chunks of a large one."""
    text = to_text(event)
    if len(text) <= MAX_PAYLOAD:
        return [text]
    # ``dumps`` escapes every non-ASCII character, so characters are bytes here.
    size = MAX_PAYLOAD - 64
    event_id = loads(text)["e"]
    parts = [text[n : n + size] for n in range(0, len(text), size)]
    return [f"#{event_id}:{n}:{len(parts)}:{part}" for n, part in enumerate(parts)]


def tagged(tag, text):
    """The notification that carries ``text`` with its ``tag``."""
    return f"{tag}:{text}"


def untag(notification):
    """``(tag, text)`` of a notification as received; ``(None, notification)`` when it
    carries no tag. An event's text starts with ``{`` and a chunk's with ``#``, neither of
    which is a tag's character, so the two cannot be mistaken for each other."""
    tag, colon, text = notification.partition(":")
    if colon and len(tag) == TAG_LENGTH and _TAG_CHARACTERS.issuperset(tag):
        return tag, text
    return None, notification


#: How deep a change's fields may nest. A row's fields are at most a JSON column's value;
#: anything deeper is refused as a bad payload rather than decoded by recursion.
MAX_DEPTH = 100


def _deeper_than(value, limit):
    """Whether ``value`` nests lists and dicts more than ``limit`` deep (no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in item)
    return False


def decode(text):
    """The :class:`Event` in one whole payload; ``ValueError`` if it is not one.

    Anyone allowed to NOTIFY on the database can put anything on a channel: every key
    is checked, and nesting is bounded, so a bad payload is refused here and never
    reaches a session.
    """
    try:
        data = loads(text)
    except RecursionError:
        raise ValueError("A payload nested too deep to parse") from None
    version = data.get("v") if isinstance(data, dict) else None
    if isinstance(version, bool) or version != VERSION:
        raise ValueError(f"Not a version {VERSION} change event")
    fields, subs, registry = data.get("f"), data.get("s"), data.get("r")
    unsure = data.get("u", [])
    if not (
        isinstance(data.get("e"), str)
        and isinstance(data.get("c"), str)
        and isinstance(data.get("i"), str)
        and (fields is None or isinstance(fields, dict))
        and isinstance(subs, list)
        and all(isinstance(key, str) for key in subs)
        and isinstance(registry, int)
        and not isinstance(registry, bool)
        and isinstance(unsure, list)
        and all(isinstance(key, str) for key in unsure)
    ):
        raise ValueError("A change event with missing or mistyped keys")
    if _deeper_than(fields, MAX_DEPTH):
        raise ValueError(f"A change event whose fields nest deeper than {MAX_DEPTH}")
    return Event(
        collection=data["c"],
        id=data["i"],
        fields=None if fields is None else from_ejson(fields),
        subs=frozenset(subs),
        registry=registry,
        unsure=frozenset(unsure),
        event_id=data["e"],
    )


class Reassembler:
    """Joins chunked payloads; forgets a chunk set not completed within ``timeout`` s."""

    def __init__(self, timeout=30.0):
        self.timeout = timeout
        self._partial = {}  # event id -> (first seen, {n: part}, total)

    def feed(self, payload, now):
        """Return the whole payload once complete (or at once if unchunked), else None."""
        if not payload.startswith("#"):
            return payload
        try:
            event_id, n, total, part = payload[1:].split(":", 3)
            n, total = int(n), int(total)
        except ValueError:
            raise ValueError("A chunk with a malformed header") from None
        _, parts, expected = self._partial.setdefault(event_id, (now, {}, total))
        if total != expected or not 0 <= n < total:
            del self._partial[event_id]
            raise ValueError(f"Chunk {n} of {total} does not fit event {event_id}")
        parts[n] = part
        if len(parts) < total:
            return None
        del self._partial[event_id]
        metrics.inc("ddp_chunk_reassemblies_total")
        return "".join(parts[k] for k in range(total))

    def expire(self, now):
        """Drop chunk sets older than the timeout; return how many were dropped."""
        stale = [e for e, (started, _, _) in self._partial.items() if now - started > self.timeout]
        for event_id in stale:
            del self._partial[event_id]
        return len(stale)
