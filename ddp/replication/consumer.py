"""What a committed write means to subscribers, whatever made it.

The replication stream names tables and keys, not models: a row of a published model's
table, of one of its parents' tables (multi-table inheritance), or of a many-to-many
through table, whose change changes the ``<name>_ids`` of the rows on both sides. This
module maps a batch of such row changes, in commit order, to the documents they change,
and announces those through the producer, as a ``save()`` would have: each document is
read once with the ORM (so what goes out is what the database holds now, and a key that
no longer exists goes out as removed) and matched once against every subscription.

A ``TRUNCATE`` empties a table without naming a row: every subscription of the
collections that table publishes re-runs (an event every subscription is unsure of), and
the differences, every document removed, reach the clients that held them.
"""

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from ddp.api import API
from ddp.bus import producer
from ddp.bus.announcements import event_ids
from ddp.bus.registry import lock_shared


@dataclass(frozen=True)
class Change:
    """One row change of a committed transaction: ``kind`` is ``"insert"``, ``"update"``,
    ``"delete"`` or ``"truncate"``. ``new`` and ``old`` map column names to text values:
    ``new``, the row written (insert, update); ``old``, what the stream tells of the row
    before (its key, or the whole row under ``REPLICA IDENTITY FULL``), when it does."""

    table: str
    kind: str
    new: dict | None = None
    old: dict | None = None


@dataclass(frozen=True)
class Source:
    """A table's rows are documents of ``model``: ``column`` holds the document's key."""

    model: type
    column: str


class Tables:
    """Which documents each table's rows stand for, for the models ``registry`` publishes."""

    def __init__(self, registry=API):
        self.sources = {}
        #: The many-to-many tables among them.
        self.through = set()
        for collection in registry.collections.values():
            model = collection.model._meta.concrete_model
            self._add(model._meta.db_table, model, model._meta.pk.column)
            for parent in model._meta.get_parent_list():
                # Multi-table inheritance keeps inherited fields in each ancestor's table,
                # whose key is the child's own.
                self._add(parent._meta.db_table, model, parent._meta.pk.column)
            for field in model._meta.many_to_many:
                # A document lists its own many-to-many ids (``tag_ids``): a through row
                # changes the document its column points to. A deleted through row names
                # it only under REPLICA IDENTITY FULL, which the set-up gives these tables.
                through = field.remote_field.through._meta.db_table
                self.through.add(through)
                self._add(through, model, field.m2m_column_name())

    def _add(self, table, model, column):
        sources = self.sources.setdefault(table, [])
        if Source(model, column) not in sources:
            sources.append(Source(model, column))

    def names(self):
        """Every table a publication of the stream must cover."""
        return sorted(self.sources)


#: Seconds between two looks at whether committed transactions have become visible.
VISIBILITY_POLL = 0.002


def wait_visible(xids, using, sleep):
    """Wait until the transactions ``xids`` (32-bit ids, committed) are visible to new
    snapshots, looking again every :data:`VISIBILITY_POLL` seconds of ``sleep`` (the
    driver's: other green threads run meanwhile).

    PostgreSQL writes (and flushes) a commit record, and so may stream the transaction,
    before it takes the transaction out of the running ones: for a moment a new snapshot
    still sees its rows as uncommitted. A document read then would go out as it was
    before, or as removed, and the change would never reach anyone.
    """
    if not xids:
        return
    with connections[using].cursor() as cursor:
        while True:
            # A 32-bit xid in the epoch of the snapshot's xmax (or the one before).
            cursor.execute(
                "SELECT bool_and(pg_visible_in_snapshot(CASE WHEN f <= m THEN f"
                " ELSE f - 4294967296 END::text::xid8, s))"
                " FROM (SELECT pg_current_snapshot() AS s) q,"
                " LATERAL (SELECT pg_snapshot_xmax(q.s)::text::bigint AS m) xm,"
                " LATERAL (SELECT (m >> 32 << 32) | x AS f FROM unnest(%s::bigint[]) x) ids",
                [sorted(xids)],
            )
            if cursor.fetchone()[0]:
                return
            sleep(VISIBILITY_POLL)


#: Milliseconds the reader waits for a table's lock while it announces a batch. A reader
#: that holds one table's lock and waits for another's, which a TRUNCATE or a migration
#: holds while it waits for the first, would hold them up (or deadlock, and PostgreSQL
#: may end the migration rather than the reader). Well under ``deadlock_timeout`` (1 s),
#: so the reader gives up first: it reads the batch again from the slot a moment later.
LOCK_TIMEOUT = 200


def announce(changes, tables, using=DEFAULT_DB_ALIAS, xids=(), position=None, sleep=None):
    """Announce the documents ``changes`` (in commit order) change, in one transaction.

    Each document is announced once however many of the changes touch it, after the
    whole batch: what is read is the state the batch led to, once the transactions
    ``xids`` that made the changes are visible (:func:`wait_visible`). ``position``: the
    WAL position the batch ends at, when it ends at a transaction's end; its events' ids
    then say so, for servers to drop a second announcement of it
    (:mod:`ddp.bus.announcements`). ``sleep``: the driver's, for the wait; needed with
    ``xids``.
    """
    wait_visible(xids, using, sleep)
    keys = {}  # model -> {pk text: None}, an ordered set
    truncated = []
    for change in changes:
        for source in tables.sources.get(change.table, ()):
            if change.kind == "truncate":
                truncated.append(source.model)
                continue
            wanted = keys.setdefault(source.model, {})
            for values in (change.old, change.new):
                if values is not None and values.get(source.column) is not None:
                    wanted[values[source.column]] = None
    ids = None if position is None else event_ids(position)
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            # The registry's lock, waited for as every writer waits for it; then any
            # other lock at most LOCK_TIMEOUT ms (see there).
            lock_shared(cursor)
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{LOCK_TIMEOUT}ms"])
        for model in dict.fromkeys(truncated):
            producer.truncated(model, using, ids)
        for model, pks in keys.items():
            producer.announce_rows(model, list(pks), using, ids)
