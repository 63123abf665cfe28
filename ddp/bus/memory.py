"""An in-memory bus with the contract of the PostgreSQL one, for tests in one process.

Django's ``TestCase`` runs each test in a transaction that never commits, so no NOTIFY
would ever be delivered. This bus stands in for both ends: the producer asks it which
subscriptions are live and hands it each change, and sessions subscribe to it. A change is
delivered when production would deliver its NOTIFY: at once outside ``atomic()`` blocks,
else when the outermost block the test itself opened exits, in the same order; a change
made in a savepoint that rolls back is never delivered. (It rides on Django's own
``on_commit`` bookkeeping, which already forgets callbacks of rolled-back savepoints.)

The sessions' side (who needs which collection, login tokens, handing events to the
sessions they concern) is production's own :class:`ddp.bus.sessions.Dispatch`; this bus
only keeps the registry rows in memory instead of in ``ddp_subscription``.
"""

import itertools
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from ddp.bus import payload
from ddp.bus.matching import Matcher, Spec
from ddp.bus.registry import MatchRow, RegistryState, SubscriptionRow
from ddp.bus.sessions import Dispatch
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


class InMemoryBus(Dispatch):
    def __init__(self, using=DEFAULT_DB_ALIAS):
        super().__init__()
        self.using = using
        self._row_ids = itertools.count(1)
        self._rows = {}  # key -> _Registered
        self._matches = {}  # key -> [_Match]
        self._match_ids = itertools.count(1)
        self.matcher = Matcher(self)

    # The session's side (Dispatch, as ddp.bus.hub.Bus) --------------------------------

    def _register(self, key, publication, params, user_id, collections, matches):
        row = SubscriptionRow(publication, to_ejson(list(params)), user_id)
        self._rows[key] = _Registered(next(self._row_ids), row)
        self._matches[key] = [
            _Match(next(self._match_ids), key, name, spec)
            for name, spec in sorted(matches.items())
            if spec is not None
        ]
        return self._rows[key].id

    def _unregister(self, key):
        self._rows.pop(key, None)
        self._matches.pop(key, None)

    def fence(self, target=True):
        """A method's writes are delivered once its block has exited: nothing to wait for."""
        self.flush()

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
