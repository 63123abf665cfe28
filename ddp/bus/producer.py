"""The writer's side: one serialisation and one match per change, NOTIFY in its transaction.

For a saved row of a published model, the producer takes the registry's lock shared and
reads where the registry stands (one query), asks which distinct subscriptions the row
belongs to in one statement per collection (:class:`ddp.bus.matching.Matcher`: its cost
hardly grows with distinct subscriptions, and never with clients or servers), serialises
the row once, and sends one event per collection with ``pg_notify`` on the writer's own
connection. All of it runs in the writer's transaction (a transaction of its own after an
autocommit write): PostgreSQL delivers the notification on COMMIT, in commit order, and
drops it on ROLLBACK, including a rolled-back savepoint's. Nothing is sent when no
subscription publishes the collection.

Matching never fails the writer: it runs in savepoints, and what it could not decide
goes in the event as *unsure*, for the subscriptions' servers to re-run.

Every transaction that NOTIFYs takes a cluster-wide lock at commit, so the producer sends
one small notification per changed document and collection, and none for models nobody
publishes. Under database capture (:func:`reading_database`) writers send nothing at all:
the replication reader does this work for every write, with :func:`announce_rows`.
"""

import hashlib
import itertools
import logging
import time
import weakref
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from ddp import metrics
from ddp.api import API
from ddp.bus import payload, registry, signing
from ddp.bus.matching import Matcher
from ddp.conf import ddp_settings
from ddp.serialize import document, document_id

logger = logging.getLogger("ddp.bus")


def channel(collection_name):
    """The NOTIFY channel of a collection (PostgreSQL names are at most 63 bytes)."""
    name = f"ddp_{collection_name}"
    if len(name.encode()) <= 63:
        return name
    return "ddp_" + hashlib.sha1(collection_name.encode()).hexdigest()


#: The channel that carries revoked login tokens (their hashes) to every server.
LOGOUT_CHANNEL = "ddp_logout"
#: Where servers ask the replication reader for a fence (see ddp.replication.reader).
READER_CHANNEL = "ddp_reader"


class PostgresBackend:
    """Where changes go in production: the shared registry tables and ``pg_notify``."""

    def __init__(self):
        self.matcher = Matcher(self)

    registry_state = staticmethod(registry.registry_state)
    match_rows = staticmethod(registry.match_rows)
    representative = staticmethod(registry.representative)
    group_keys = staticmethod(registry.group_keys)
    subscriptions = staticmethod(registry.subscriptions)

    def source(self, using):
        """The registry's match rows, as the relation ``m`` of a matching statement."""
        return "ddp_match m", []

    def send(self, using, events):
        """NOTIFY ``events`` in order, in as few statements as their size allows."""
        with connections[using].cursor() as cursor:
            signing.notify_all(
                cursor,
                [
                    (channel(event.collection), text)
                    for event in events
                    for text in payload.encode(event)
                ],
            )

    def revoke_token(self, using, token_hash):
        with connections[using].cursor() as cursor:
            signing.notify(cursor, LOGOUT_CHANNEL, [token_hash])


_backend = PostgresBackend()


class Writes:
    """Whether a block of work sent changes: a method's caller must then wait for them to
    come back through the listener before ``updated`` (PROTOCOL.md R4).

    Opened with :func:`recording` around the work. Model signals hand the producer
    nothing but the database alias, so a :class:`Writes` is bound to the connection the
    work runs on (its transaction's), for the block's duration: a write on another
    connection (another thread's, or green thread's) does not mark it.
    """

    __slots__ = ("sent",)

    def __init__(self):
        #: Changes went out on the connection (or will, at its COMMIT).
        self.sent = False


# DatabaseWrapper -> the Writes recording what is sent on it. Django gives every thread its
# own wrapper, and a wrapper outlives the database connections it opens and closes.
_recording = weakref.WeakKeyDictionary()


@contextmanager
def recording(using=DEFAULT_DB_ALIAS):
    """Yield a :class:`Writes` that records whether the block sends changes on ``using``,
    as this thread's connection to it. What a block nested in it sends, it sends too."""
    connection = connections[using]
    writes = Writes()
    outer = _recording.get(connection)
    _recording[connection] = writes
    try:
        yield writes
    finally:
        if outer is None:
            del _recording[connection]
        else:
            _recording[connection] = outer
            outer.sent = outer.sent or writes.sent


def _sent(using):
    """Mark the :class:`Writes` open on ``using``'s connection, if any: it sent changes."""
    writes = _recording.get(connections[using])
    if writes is not None:
        writes.sent = True


def use_backend(backend):
    """Send changes through ``backend`` from now on; return the previous one.

    The seam for :class:`ddp.bus.memory.InMemoryBus`, which tests use to see changes
    made inside a test's transaction that never commits.
    """
    global _backend
    previous, _backend = _backend, backend
    return previous


#: Seconds a process trusts what it last saw of its database's replication slot, with
#: ``DDP["CAPTURE"] = "auto"``: most writes cost no query for it.
SLOT_CHECK_INTERVAL = 5.0
_slots = {}  # database alias -> (whether its slot exists, time.monotonic() of the look)


def reading_database(using=DEFAULT_DB_ALIAS):
    """Whether the replication reader announces every write on ``using``: writers then
    send nothing, and pay nothing.

    ``"database"``: always. ``"signals"``: never. ``"auto"``: when the database's
    replication slot exists, as PostgreSQL tells every process alike (whatever its own
    role could do): a slot keeps every change from its creation on until a reader reads
    it, late maybe, never lost. The answer is kept :data:`SLOT_CHECK_INTERVAL` seconds; a
    writer that has not seen a new slot yet sends as well, and an event twice costs
    clients nothing. The in-process bus of tests has no reader: signals carry its changes.
    """
    if not isinstance(_backend, PostgresBackend):
        return False
    setting = ddp_settings.CAPTURE
    if setting != "auto":
        return setting == "database"
    now = time.monotonic()
    seen = _slots.get(using)
    if seen is None or now - seen[1] >= SLOT_CHECK_INTERVAL:
        seen = _slots[using] = (_slot_exists(using), now)
    return seen[0]


def _slot_exists(using):
    from ddp.replication.setup import replication_name  # it imports this module

    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_database(), array(SELECT slot_name FROM pg_replication_slots"
            " WHERE database = current_database() AND plugin = 'pgoutput')"
        )
        dbname, slots = cursor.fetchone()
    return replication_name(dbname) in slots


def forget_slots():
    """Look for the replication slot again at the next write: this process made or
    dropped it."""
    _slots.clear()


def wrote(using="default"):
    """Whether the transaction open on ``using`` has written anything (in it)."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT txid_current_if_assigned() IS NOT NULL")
        return cursor.fetchone()[0]


def commit_position(using="default"):
    """A WAL position at or after every commit made so far on ``using`` (after one)."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn")
        return int(cursor.fetchone()[0])


def changed(instance, collections, using, deleted=False):
    """Announce that ``instance`` was saved (or ``deleted``) to every live subscription."""
    _announce({instance.pk: None if deleted else instance}, collections, using)


def _announce(rows, collections, using, ids=None):
    """Announce the rows ``{pk: instance, or None when deleted}`` of one model, in order.

    However many rows: one look at the registry, one matching statement per collection,
    one statement of NOTIFYs (:meth:`PostgresBackend.send`). ``ids``: the events' ids
    (:func:`ddp.bus.announcements.event_ids`); else empty, and :func:`payload.to_text`
    draws a random one for each.
    """
    ids = itertools.repeat("") if ids is None else ids
    names = [collection.get_name() for collection in collections]
    # savepoint=False: inside the writer's transaction this adds no round trip; after an
    # autocommit write it is a transaction of its own, holding the lock until NOTIFY.
    with transaction.atomic(using=using, savepoint=False):
        state = _backend.registry_state(names, using)
        if not state.live:
            return
        present = [pk for pk, instance in rows.items() if instance is not None]
        events = []
        for collection, name in zip(collections, names, strict=True):
            if name not in state.live:
                continue
            matches = dict(zip(present, _match(name, present, using, state.version), strict=True))
            for pk, instance in rows.items():
                if instance is None:
                    doc_id, fields = document_id(pk), None
                    keys = unsure = frozenset()
                else:
                    doc_id, fields = document(instance, collection)
                    keys, unsure = matches[pk]
                events.append(
                    payload.Event(name, doc_id, fields, keys, state.registry, unsure, next(ids))
                )
        if events:
            _backend.send(using, events)
            _sent(using)


def truncated(model, using="default", ids=None):
    """Announce that ``model``'s table was emptied (``TRUNCATE``), which names no row.

    Every subscription of its collections is told it cannot trust what it holds (an
    event every subscription is unsure of): each re-runs, and its clients get the
    differences. ``ids``: as :func:`_announce`'s.
    """
    ids = itertools.repeat("") if ids is None else ids
    names = [collection.get_name() for collection in API.collections_for_model(model)]
    with transaction.atomic(using=using, savepoint=False):
        state = _backend.registry_state(names, using)
        unsure = payload.EVERY
        events = [
            payload.Event(name, "", None, frozenset(), state.registry, unsure, next(ids))
            for name in names
            if name in state.live
        ]
        if events:
            _backend.send(using, events)
            _sent(using)


def _match(name, pks, using, version):
    """``(keys, unsure)`` of each row of ``pks`` of collection ``name``; never raises: when
    matching itself fails, every subscription of the collection is unsure."""
    if not pks:
        return []
    try:
        _backend.matcher.sync(using, version)
        return _backend.matcher.match(using, name, pks)
    except Exception:
        logger.exception("Matching a %s change failed: its subscriptions will re-run", name)
        metrics.inc("ddp_match_failures_total")
        return [(frozenset(), payload.EVERY)] * len(pks)


def revoke_token(token_hash, using="default"):
    """Close every connection logged in with this token, on every server, after COMMIT."""
    _backend.revoke_token(using, token_hash)


def notify_changed(model, pks, using="default"):
    """Announce rows written without model signals (``update()``, ``bulk_create()``, SQL).

    Rows that no longer exist are announced as deleted. Call it inside the same
    transaction as the write, so that the change goes out only if it commits. While the
    replication reader announces every write (:func:`reading_database`) it does nothing.
    """
    if not reading_database(using):
        announce_rows(model, pks, using)


def announce_rows(model, pks, using="default", ids=None):
    """Announce the rows ``pks`` of ``model`` as the database holds them now (a key no
    longer there as deleted): what :func:`notify_changed` and the replication reader do
    (``ids``: as :func:`_announce`'s)."""
    collections = API.collections_for_model(model)
    if not collections:
        return
    pks = [model._meta.pk.to_python(pk) for pk in pks]
    found = {obj.pk: obj for obj in model._default_manager.using(using).filter(pk__in=pks)}
    _announce({pk: found.get(pk) for pk in pks}, collections, using, ids)
