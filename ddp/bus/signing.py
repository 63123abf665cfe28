"""Signed notifications: only a holder of ``SECRET_KEY`` can put something on a DDP channel.

Any database role that can connect may ``NOTIFY`` on any channel. So every notification a
server acts on (change events and each of their chunks, logout notices, fences) carries an
HMAC-SHA256 of its channel and its exact text, under a key derived from ``SECRET_KEY`` for
this use alone (Django's ``salted_hmac`` with :data:`KEY_SALT`). The listener checks it
before reassembling or decoding anything: a forged change, chunk or logout notice is
refused and counted, and a forged chunk cannot even spoil a genuine event's chunk set.
Signing the channel too keeps a genuine notification from being re-sent on another channel
(one collection's change as another's, or as a logout notice).

Every sender goes through :func:`notify`; the in-process bus of tests
(:mod:`ddp.bus.memory`) sends nothing over the database and signs nothing.

Rotation: notifications are signed with ``SECRET_KEY`` and accepted under it or any of
``SECRET_KEY_FALLBACKS``, so servers moved to a new key (the old one in their fallbacks)
still accept what servers not yet moved send; once all have moved, drop the fallback.

Not stopped: a role that can LISTEN and NOTIFY may re-send, on the same channel, a genuine
notification it heard (an old state of a document, until its next change or a resync).
"""

import base64
import functools
import hashlib
import hmac

from django.conf import settings
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes

from ddp.bus import payload

#: Sets this key apart from every other use of ``SECRET_KEY``.
KEY_SALT = "ddp.bus.notify"


class Refused(ValueError):
    """A notification without a valid tag: forged, or signed with another ``SECRET_KEY``."""


def tag(channel, text, secret=None):
    """The tag of ``text`` on ``channel`` under ``secret`` (default ``SECRET_KEY``).

    Channel names cannot hold a NUL character, so ``channel\\0text`` is unambiguous.
    """
    key = _key(settings.SECRET_KEY if secret is None else secret)
    digest = hmac.new(key, f"{channel}\0{text}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@functools.lru_cache(maxsize=8)
def _key(secret):
    """The HMAC key of ``secret``, derived as Django's ``salted_hmac`` derives it, once per
    secret rather than once per notification (thousands a second)."""
    return hashlib.sha256(force_bytes(KEY_SALT) + force_bytes(secret)).digest()


def sign(channel, text):
    """The notification to send on ``channel`` for ``text``."""
    return payload.tagged(tag(channel, text), text)


def verify(channel, notification):
    """The text of ``notification`` received on ``channel``; :class:`Refused` unless it is
    tagged under ``SECRET_KEY`` or one of ``SECRET_KEY_FALLBACKS``."""
    found, text = payload.untag(notification)
    if found is None:
        raise Refused("no signature")
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        if constant_time_compare(found, tag(channel, text, secret)):
            return text
    raise Refused("a wrong signature")


#: Characters of notifications sent in one statement, at most (a batch of events is cut
#: in statements of about this size).
STATEMENT_SIZE = 1 << 20


def notify(cursor, channel, texts):
    """``NOTIFY`` each of ``texts`` on ``channel``, signed, through ``cursor``."""
    notify_all(cursor, [(channel, text) for text in texts])


def notify_all(cursor, notifications):
    """``NOTIFY`` each ``(channel, text)`` of ``notifications`` in order, signed, through
    ``cursor``: the one way this project sends a notification, so that none goes out
    unsigned. A batch takes one statement (or one per :data:`STATEMENT_SIZE`), not one
    round trip each."""
    batch, size = [], 0
    for channel, text in notifications:
        batch.append((channel, sign(channel, text)))
        size += len(text)
        if size >= STATEMENT_SIZE:
            _send(cursor, batch)
            batch, size = [], 0
    if batch:
        _send(cursor, batch)


def _send(cursor, notifications):
    channels, texts = zip(*notifications, strict=True)
    # A function scan returns its rows in order: PostgreSQL delivers them in that order.
    cursor.execute(
        "SELECT count(pg_notify(c, t)) FROM unnest(%s::text[], %s::text[]) AS n(c, t)",
        [list(channels), list(texts)],
    )
