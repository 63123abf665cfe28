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

import time
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from ddp.api import API
from ddp.bus import producer


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


#: Transaction ids are 32 bits in the stream, and compared modulo 2**32 as PostgreSQL does.
XID_SPAN = 1 << 32
#: Seconds between two looks at whether committed transactions are visible yet, at most.
VISIBLE_POLL = 0.05


def announce(changes, tables, xids=(), using=DEFAULT_DB_ALIAS):
    """Announce the documents ``changes`` (in commit order) change, in one transaction.

    Each document is announced once however many of the changes touch it, after the
    whole batch: what is read is the state the batch led to. ``xids``: the transactions
    the changes come from, waited for until they are visible (:func:`wait_visible`).
    """
    wait_visible(xids, using)
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
    with transaction.atomic(using=using):
        for model in dict.fromkeys(truncated):
            producer.truncated(model, using)
        for model, pks in keys.items():
            producer.announce_rows(model, list(pks), using)


def wait_visible(xids, using=DEFAULT_DB_ALIAS):
    """Return once a new snapshot sees the committed transactions ``xids`` (32-bit ids).

    PostgreSQL writes a commit record, and logical decoding may send its transaction,
    before the committing backend leaves the list of running transactions (it waits for a
    synchronous standby there, or is merely descheduled on a busy machine). A snapshot
    taken in between does not see its writes: the reader would announce an inserted row
    as removed and an updated one as it was, and confirm the position, losing the change.
    Call it outside a transaction, so that what is read next has a later snapshot.
    """
    pending = {xid % XID_SPAN for xid in xids}
    pause = 0.001
    with connections[using].cursor() as cursor:
        while pending:
            cursor.execute("SELECT pg_current_snapshot()::text")
            _, xmax, running = cursor.fetchone()[0].split(":")
            running = {int(xid) % XID_SPAN for xid in running.split(",") if xid}
            # Visible: before the snapshot's xmax (modulo 2**32) and not running in it.
            pending = {
                xid
                for xid in pending
                if (xid - int(xmax)) % XID_SPAN < XID_SPAN // 2 or xid in running
            }
            if pending:
                time.sleep(pause)
                pause = min(pause * 2, VISIBLE_POLL)
