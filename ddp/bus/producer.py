"""The writer's side: one serialisation and one match per change, NOTIFY in its transaction.

For a saved row of a published model, the producer reads the distinct live subscriptions
that publish its collection (one query), evaluates each distinct subscription's queryset
for that collection against the row (one ``EXISTS`` query each: the cost grows with
distinct subscriptions, never with clients or servers), serialises the row once, and
sends one event per collection with ``pg_notify`` on the writer's own connection. The
notification is part of the transaction: PostgreSQL delivers it on COMMIT, in commit
order, and drops it on ROLLBACK, including a rolled-back savepoint's. Nothing is sent
when no live subscription publishes the collection.

Every transaction that NOTIFYs takes a cluster-wide lock at commit, so the producer sends
one small notification per changed document and collection, and none for models nobody
publishes.
"""

import hashlib
import logging
import threading

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import connections

from ddp.api import API, Context
from ddp.bus import payload
from ddp.bus.registry import live_subscriptions
from ddp.protocol import from_ejson, loads
from ddp.serialize import document, document_id

logger = logging.getLogger("ddp.bus")

# Whether this thread NOTIFYed since it last asked: a method's caller must then wait for
# its own changes to come back through the listener before ``updated`` (PROTOCOL.md R4).
_local = threading.local()


def channel(collection_name):
    """The NOTIFY channel of a collection (PostgreSQL names are at most 63 bytes)."""
    name = f"ddp_{collection_name}"
    if len(name.encode()) <= 63:
        return name
    return "ddp_" + hashlib.sha1(collection_name.encode()).hexdigest()


def take_notified():
    """Whether this thread sent a change since the last call."""
    notified = getattr(_local, "notified", False)
    _local.notified = False
    return notified


def _user(user_id):
    if user_id is None:
        return AnonymousUser()
    try:
        return get_user_model()._default_manager.get(pk=user_id)
    except Exception:
        return AnonymousUser()


def _matches(row, collection, pk):
    """Whether the row ``pk`` is in what subscription ``row`` publishes to ``collection``."""
    _, key, name, params, user_id, _ = row
    publication = API.publications.get(name)
    if publication is None:
        return False
    params = from_ejson(loads(params) if isinstance(params, str) else params)
    try:
        instance = publication(Context(connection_id="", user=_user(user_id)))
        pairs = API.resolve_queries(instance, params)
    except Exception:
        logger.exception("Publication %r failed while matching a change", name)
        return False
    for queryset, target in pairs:
        if target is not collection:
            continue
        if queryset.query.is_sliced:
            queryset = queryset.model._default_manager.filter(pk__in=queryset.values("pk"))
        if queryset.filter(pk=pk).exists():
            return True
    return False


#: The channel that carries revoked login tokens (their hashes) to every server.
LOGOUT_CHANNEL = "ddp_logout"


class PostgresBackend:
    """Where changes go in production: the shared registry tables and ``pg_notify``."""

    def live_subscriptions(self, collection_names, using):
        return live_subscriptions(collection_names, using)

    def send(self, using, event):
        with connections[using].cursor() as cursor:
            for text in payload.encode(event):
                cursor.execute("SELECT pg_notify(%s, %s)", [channel(event.collection), text])

    def revoke_token(self, using, token_hash):
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [LOGOUT_CHANNEL, token_hash])


_backend = PostgresBackend()


def use_backend(backend):
    """Send changes through ``backend`` from now on; return the previous one.

    The seam for :class:`ddp.bus.memory.InMemoryBus`, which tests use to see changes
    made inside a test's transaction that never commits.
    """
    global _backend
    previous, _backend = _backend, backend
    return previous


def changed(instance, collections, using, deleted=False):
    """Announce that ``instance`` was saved (or ``deleted``) to every live subscription."""
    names = [collection.get_name() for collection in collections]
    rows = _backend.live_subscriptions(names, using)
    if not rows:
        return
    for collection, name in zip(collections, names, strict=True):
        relevant = [row for row in rows if name in row[5]]
        if not relevant:
            continue
        registry = max(row[0] for row in relevant)
        if deleted:
            doc_id, fields, keys = document_id(instance.pk), None, frozenset()
        else:
            doc_id, fields = document(instance, collection)
            keys = frozenset(row[1] for row in relevant if _matches(row, collection, instance.pk))
        _backend.send(using, payload.Event(name, doc_id, fields, keys, registry))
        _local.notified = True


def revoke_token(token_hash, using="default"):
    """Close every connection logged in with this token, on every server, after COMMIT."""
    _backend.revoke_token(using, token_hash)


def notify_changed(model, pks, using="default"):
    """Announce rows written without model signals (``update()``, ``bulk_create()``, SQL).

    Rows that no longer exist are announced as deleted. Call it inside the same
    transaction as the write, so that the change goes out only if it commits.
    """
    collections = API.collections_for_model(model)
    if not collections:
        return
    pks = [model._meta.pk.to_python(pk) for pk in pks]
    found = {obj.pk: obj for obj in model._default_manager.using(using).filter(pk__in=pks)}
    for pk in pks:
        obj = found.get(pk)
        if obj is None:
            obj = model(pk=pk)
        changed(obj, collections, using, deleted=pk not in found)
