"""The shared subscription registry (tables ``ddp_server`` and ``ddp_subscription``).

Which distinct subscriptions (publication + parameters + user) are live, on which
servers, and how each is matched (``ddp_match``): a writing process reads it to decide,
once per change, which of them a row belongs to, whatever the number of clients, servers
and distinct subscriptions. A crashed server's rows stop
costing writers after ``DDP["SERVER_TIMEOUT"]`` and are deleted by the next live server's
heartbeat; recovering needs no ``migrate``.

Writers read it with :func:`registry_state` and the functions after it (see
:mod:`ddp.bus.matching`); each ``ddpserver`` maintains its rows
through :class:`ServerRegistration`. A server's heartbeat runs every
``DDP["SERVER_HEARTBEAT"]`` seconds; writers ignore servers silent for longer than
``DDP["SERVER_TIMEOUT"]``, and live servers delete them.

Ordering: a writer takes :data:`LOCK` shared (for its whole transaction) before reading
the registry, and a server takes it exclusive to insert a row. So a row is visible to
every writer that has not yet read the registry, rows commit in id order, and a writer
that could not see a row committed before that row did.

PostgreSQL queues a shared request behind a waiting exclusive one, so a server waiting
for the lock would hold up every writer behind the transaction that holds it (one left
idle in a transaction would stop them all). A server therefore waits in turns of
``DDP["REGISTRY_LOCK_TIMEOUT"]`` (its ``lock_timeout``), sleeping between them while
writers go on, and gives the subscription up after ``DDP["REGISTRY_LOCK_WAIT"]``.
"""

import hashlib
import logging
import os
import random
import secrets
import socket
from typing import NamedTuple

from django.db import OperationalError, connections, transaction

from ddp import metrics
from ddp.conf import ddp_settings
from ddp.protocol import MeteorError, dumps, to_ejson

logger = logging.getLogger("ddp.bus")

#: Advisory lock id shared by writers and servers ("DDP!" in ASCII).
LOCK = 0x44445021

#: SQLSTATE ``lock_not_available``: a lock was not granted within ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"

#: Seconds a server sleeps after its first turn in line for the lock; doubling after each
#: turn up to the second number. Writers queue behind it only during its turns.
FIRST_PAUSE, MAX_PAUSE = 0.01, 0.25


class RegistryBusy(MeteorError):
    """A subscription could not register: a transaction held the registry's lock for
    ``DDP["REGISTRY_LOCK_WAIT"]``. Its client gets this in a ``nosub``, and may retry."""

    def __init__(self):
        super().__init__(503, "The server is busy: subscribe again later")


class RegistryState(NamedTuple):
    """Where the registry stands, as a writer reads it first in its transaction."""

    #: The highest ``ddp_subscription`` id: events carry it, and a subscription registered
    #: after it was not matched (its server ignores the event for it).
    registry: int
    #: The highest ``ddp_match`` id: how far :class:`ddp.bus.matching.Matcher` must read.
    version: int
    #: The asked-for collections that some subscription of a live server publishes.
    live: frozenset


class MatchRow(NamedTuple):
    """A writer's reading of ``ddp_match``: one per template a collection's subscriptions
    use, and one per subscription matched one by one."""

    #: The subscription matched one by one; None for a template's row.
    key: str | None
    collection: str
    #: The template's hash; ``""`` for a subscription matched one by one.
    template: str


class SubscriptionRow(NamedTuple):
    """What a writer needs of a distinct subscription (``ddp_subscription``) to run its
    publication as its server did (:func:`ddp.bus.matching.resolve`)."""

    publication: str
    #: Its parameters as EJSON: the text a server stored (the in-memory bus: a list).
    params: str | list
    user_id: str | None


def lock_shared(cursor):
    """Take :data:`LOCK` shared until the end of the transaction, as every writer does
    before it reads the registry."""
    cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [LOCK])


def subscription_key(publication, params, user_id):
    """A short stable key for a distinct subscription: publication + parameters + user."""
    text = dumps([publication, to_ejson(list(params)), user_id])
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def registry_state(collection_names, using="default"):
    """What a writer needs to know of the registry, in its own transaction: a
    :class:`RegistryState` of ``collection_names``.

    Takes :data:`LOCK` shared first, in a statement of its own: a statement's snapshot is
    taken before it runs, so the reads must come after the lock."""
    with connections[using].cursor() as cursor:
        lock_shared(cursor)
        cursor.execute(
            "SELECT (SELECT max(id) FROM ddp_subscription), (SELECT max(id) FROM ddp_match),"
            # A live server's match row for each collection, found by index: LIMIT 1s,
            # for PostgreSQL would answer an EXISTS by joining every row of the table.
            " ARRAY(SELECT c FROM unnest(%s::text[]) AS c, LATERAL (SELECT FROM ddp_server v,"
            " LATERAL (SELECT FROM ddp_match m WHERE m.collection = c AND m.server_id = v.id"
            " LIMIT 1) AS row WHERE v.heartbeat > now() - make_interval(secs => %s) LIMIT 1)"
            " AS live)",
            [list(collection_names), ddp_settings.SERVER_TIMEOUT],
        )
        registry, version, live = cursor.fetchone()
        return RegistryState(registry or 0, version or 0, frozenset(live))


def match_rows(using, since):
    """The :class:`MatchRow` of the match rows added after id ``since``."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT CASE WHEN template = '' THEN key END, collection, template"
            " FROM ddp_match WHERE id > %s",
            [since],
        )
        return [MatchRow._make(row) for row in cursor.fetchall()]


def representative(using, collection, template):
    """The :class:`SubscriptionRow` of one subscription using ``template``, or None."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT s.publication, s.params, s.user_id FROM ddp_match m"
            " JOIN ddp_subscription s ON s.id = m.subscription_id"
            " WHERE m.collection = %s AND m.template = %s LIMIT 1",
            [collection, template],
        )
        row = cursor.fetchone()
        return None if row is None else SubscriptionRow._make(row)


def group_keys(using, collection, template):
    """The keys of the subscriptions that use ``template`` for ``collection``."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT key FROM ddp_match WHERE collection = %s AND template = %s",
            [collection, template],
        )
        return [row[0] for row in cursor.fetchall()]


def subscriptions(using, keys):
    """``{key: SubscriptionRow}`` of each of ``keys`` still registered."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT ON (key) key, publication, params, user_id"
            " FROM ddp_subscription WHERE key = ANY(%s)",
            [list(keys)],
        )
        return {key: SubscriptionRow(*rest) for key, *rest in cursor.fetchall()}


def tidy(cursor):
    """VACUUM or ANALYZE the registry's tables once they changed much since PostgreSQL
    last did: a writer's statements stay flat in the number of subscriptions only while
    PostgreSQL knows the tables' sizes and skips no pile of dead rows.

    Thousands of clients subscribing, or a server's rows deleted when it stopped, change
    them in seconds; autovacuum may take a minute or more to come. Run by each server's
    heartbeat, outside any transaction; a role that does not own the tables gets a
    warning from PostgreSQL and nothing else.
    """
    cursor.execute(
        "SELECT relname, n_dead_tup > 1000 + n_live_tup / 5,"
        " n_mod_since_analyze > 500 + n_live_tup / 5"
        " FROM pg_stat_user_tables WHERE relname IN ('ddp_match', 'ddp_subscription')"
    )
    for table, dead, changed in cursor.fetchall():
        if dead:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        elif changed:
            cursor.execute(f"ANALYZE {table}")


class ServerRegistration:
    """This ``ddpserver``'s row and its distinct subscriptions' rows.

    Every method runs SQL on the calling thread's connection: call them from the
    database pool's workers. ``driver`` (:class:`ddp.runtime.driver.Driver`) is what
    :meth:`add` measures and sleeps its turns for the lock on.
    """

    def __init__(self, driver):
        self.driver = driver
        self.server_id = secrets.token_hex(8)

    def start(self):
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "INSERT INTO ddp_server (id, host, pid, started, heartbeat)"
                " VALUES (%s, %s, %s, now(), now())",
                [self.server_id, socket.gethostname(), os.getpid()],
            )

    def beat(self):
        """Prove this server alive, and delete servers that stopped proving it.

        Returns True when this server had been taken for dead (a long stall) and deleted
        by a peer: its subscriptions must then be registered again, and re-run.
        """
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "UPDATE ddp_server SET heartbeat = now() WHERE id = %s", [self.server_id]
            )
            revived = cursor.rowcount == 0
            if revived:
                self.start()
            cursor.execute(
                "DELETE FROM ddp_server WHERE heartbeat < now() - make_interval(secs => %s)",
                [2 * ddp_settings.SERVER_TIMEOUT],
            )
            if not connections["default"].in_atomic_block:
                tidy(cursor)
        return revived

    def add(self, key, publication, params, user_id, collections, matches=None):
        """Insert (or find) the row of a distinct subscription; return its id.

        ``matches`` is ``{collection: Spec or None}``
        (:func:`ddp.bus.matching.compile_subscription`): a new row gets one match row per
        collection that can hold a document of it.

        Waits for :data:`LOCK` in turns (see the module's docstring); raises
        :class:`RegistryBusy` when it is still held after ``DDP["REGISTRY_LOCK_WAIT"]``.
        """
        deadline = self.driver.clock() + ddp_settings.REGISTRY_LOCK_WAIT
        pause = FIRST_PAUSE
        while True:
            try:
                return self._insert(key, publication, params, user_id, collections, matches)
            except OperationalError as exc:
                if getattr(exc.__cause__, "pgcode", None) != LOCK_NOT_AVAILABLE:
                    raise
            metrics.inc("ddp_registry_lock_retries_total")
            # Half fixed, half random: servers that met the same writer spread out.
            sleep = pause / 2 + random.uniform(0, pause / 2)
            if self.driver.clock() + sleep >= deadline:
                metrics.inc("ddp_registry_busy_total")
                logger.warning(
                    "Subscription %s to %r not started: the registry lock stayed held for"
                    " %s s (a writer's transaction left open?)",
                    key,
                    publication,
                    ddp_settings.REGISTRY_LOCK_WAIT,
                )
                raise RegistryBusy()
            self.driver.sleep(sleep)
            pause = min(2 * pause, MAX_PAUSE)

    def _insert(self, key, publication, params, user_id, collections, matches):
        """One turn of :meth:`add`: OperationalError (``lock_not_available``) when the lock
        was not granted within ``DDP["REGISTRY_LOCK_TIMEOUT"]``."""
        timeout = f"{max(1, round(ddp_settings.REGISTRY_LOCK_TIMEOUT * 1000))}ms"
        with transaction.atomic(using="default"), connections["default"].cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [timeout])
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
            cursor.execute(
                "INSERT INTO ddp_subscription"
                " (server_id, key, publication, params, user_id, collections)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (server_id, key) DO UPDATE SET key = EXCLUDED.key"
                " RETURNING id, xmax = 0",
                [
                    self.server_id,
                    key,
                    publication,
                    dumps(to_ejson(list(params))),
                    user_id,
                    dumps(sorted(collections)),
                ],
            )
            row_id, inserted = cursor.fetchone()
            specs = [(c, spec) for c, spec in sorted((matches or {}).items()) if spec is not None]
            if inserted and specs:
                cursor.executemany(
                    "INSERT INTO ddp_match"
                    " (subscription_id, server_id, key, collection, template, t, i)"
                    " VALUES (%s, %s, %s, %s, %s, %s::text[], %s::bigint[])",
                    [
                        (
                            row_id,
                            self.server_id,
                            key,
                            c,
                            spec.template,
                            spec.text_args,
                            spec.int_args,
                        )
                        for c, spec in specs
                    ],
                )
            return row_id

    def remove(self, key):
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "DELETE FROM ddp_subscription WHERE server_id = %s AND key = %s",
                [self.server_id, key],
            )

    def stop(self):
        with connections["default"].cursor() as cursor:
            cursor.execute("DELETE FROM ddp_server WHERE id = %s", [self.server_id])
