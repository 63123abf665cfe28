"""An in-memory bus with the contract of the PostgreSQL one, for tests in one process.

Django's ``TestCase`` runs each test in a transaction that never commits, so no NOTIFY
would ever be delivered. This bus stands in for both ends: the producer asks it which
subscriptions are live and hands it each change, and sessions subscribe to it. A change is
delivered when production would deliver its NOTIFY: at once outside ``atomic()`` blocks,
else when the outermost block the test itself opened exits, in the same order; a change
made in a savepoint that rolls back is never delivered. (It rides on Django's own
``on_commit`` bookkeeping, which already forgets callbacks of rolled-back savepoints.)
"""

import itertools
from collections import defaultdict
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from ddp.bus import payload
from ddp.bus.audience import Audience, Change
from ddp.bus.matching import Matcher, Spec
from ddp.bus.registry import MatchRow, RegistryState, SubscriptionRow
from ddp.protocol import dumps, to_ejson

#: The bus's match rows as the relation ``m`` of a matching statement: the same
#: statements as production's, over the rows this bus holds instead of ``ddp_match``.
SOURCE = (
    "jsonb_to_recordset(%s::jsonb)"
    " AS m(key text, collection text, template text, t text[], i bigint[])"
)


class _Delivery:
    """An ``on_commit`` callback this bus can find again in Django's list."""

    __slots__ = ("bus", "event")

    def __init__(self, bus, event):
        self.bus = bus
        self.event = event

    def __call__(self):
        self.bus.deliver(self.event)


class _Revocation(_Delivery):
    def __call__(self):
        self.bus.revoked(self.event)


class _Registered(NamedTuple):
    """A distinct subscription this bus holds, as ``ddp_subscription`` would."""

    id: int
    row: SubscriptionRow


class _Match(NamedTuple):
    """How a subscription is matched against one collection, as ``ddp_match`` would hold it."""

    id: int
    key: str
    collection: str
    spec: Spec


def _test_depth(connection):
    """How many of the open atomic blocks a ``TestCase`` opened (they never commit)."""
    return sum(1 for block in connection.atomic_blocks if getattr(block, "_from_testcase", False))


class InMemoryBus:
    def __init__(self, using=DEFAULT_DB_ALIAS):
        self.using = using
        self._ids = itertools.count(1)
        self._rows = {}  # key -> _Registered
        self._matches = {}  # key -> [_Match]
        self._match_ids = itertools.count(1)
        self.matcher = Matcher(self)
        self._refcounts = defaultdict(int)
        self._sessions = defaultdict(lambda: defaultdict(int))
        self._tokens = defaultdict(set)
        self.audience = Audience()

    # The session's side (the contract of ddp.bus.hub.Bus) --------------------------

    def subscribe(self, session, key, publication, params, user_id, collections, matches=dict):
        for name in collections:
            self._sessions[name][session] += 1
        self.audience.subscribed(session, key)
        if key not in self._rows:
            row = SubscriptionRow(publication, to_ejson(list(params)), user_id)
            self._rows[key] = _Registered(next(self._ids), row)
            self._matches[key] = [
                _Match(next(self._match_ids), key, name, spec)
                for name, spec in sorted(matches().items())
                if spec is not None
            ]
        self._refcounts[key] += 1
        return self._rows[key].id

    def unsubscribe(self, session, key, collections):
        for name in collections:
            sessions = self._sessions.get(name, {})
            sessions[session] = sessions.get(session, 0) - 1
            if sessions[session] <= 0:
                sessions.pop(session, None)
        self.audience.unsubscribed(session, key)
        self._refcounts[key] -= 1
        if self._refcounts[key] <= 0:
            del self._refcounts[key]
            self._rows.pop(key, None)
            self._matches.pop(key, None)

    def fence(self, target=True):
        """A method's writes are delivered once its block has exited: nothing to wait for."""
        self.flush()

    def track_token(self, session, old_hash, new_hash):
        if old_hash is not None:
            self._tokens[old_hash].discard(session)
        if new_hash is not None:
            self._tokens[new_hash].add(session)

    def revoked(self, token_hash):
        for session in list(self._tokens.get(token_hash, ())):
            session.push_revoked(token_hash)

    def deliver(self, event):
        change = Change(event)
        for session in self.audience.of(event, self._sessions.get(event.collection, {})):
            session.push_change(change)

    # The producer's side (the contract of ddp.bus.producer.PostgresBackend) ----------

    def _match_rows(self):
        return itertools.chain.from_iterable(self._matches.values())

    def registry_state(self, collection_names, using):
        wanted = set(collection_names)
        return RegistryState(
            registry=max((found.id for found in self._rows.values()), default=0),
            version=max((match.id for match in self._match_rows()), default=0),
            live=frozenset(m.collection for m in self._match_rows() if m.collection in wanted),
        )

    def match_rows(self, using, since):
        return {
            MatchRow(None if m.spec.template else m.key, m.collection, m.spec.template)
            for m in self._match_rows()
            if m.id > since
        }

    def representative(self, using, collection, template):
        for m in self._match_rows():
            if m.collection == collection and m.spec.template == template:
                return self._rows[m.key].row
        return None

    def group_keys(self, using, collection, template):
        return sorted(
            {
                m.key
                for m in self._match_rows()
                if (m.collection, m.spec.template) == (collection, template)
            }
        )

    def subscriptions(self, using, keys):
        return {key: self._rows[key].row for key in keys if key in self._rows}

    def source(self, using):
        rows = [
            {
                "key": m.key,
                "collection": m.collection,
                "template": m.spec.template,
                "t": m.spec.text_args,
                "i": m.spec.int_args,
            }
            for m in self._match_rows()
        ]
        return SOURCE, [dumps(rows)]

    def send(self, using, events):
        # Through the wire format and back, as a NOTIFY goes, so tests see what peers see.
        for event in events:
            event = payload.decode(payload.to_text(event))
            transaction.on_commit(_Delivery(self, event), using=using)
        self.flush()

    def revoke_token(self, using, token_hash):
        transaction.on_commit(_Revocation(self, token_hash), using=using)
        self.flush()

    def flush(self):
        """Deliver the changes whose transaction a production server would have committed."""
        connection = connections[self.using]
        if len(connection.atomic_blocks) > _test_depth(connection):
            return  # inside a block the test's code opened: not committed yet
        ours = [
            entry
            for entry in connection.run_on_commit
            if isinstance(entry[1], (_Delivery, _Revocation)) and entry[1].bus is self
        ]
        connection.run_on_commit[:] = [e for e in connection.run_on_commit if e not in ours]
        for _, delivery, _ in ours:
            delivery()
