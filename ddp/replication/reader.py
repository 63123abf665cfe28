"""The one reader of a database's changes, elected among its ``ddpserver`` processes.

With database capture (``DDP["CAPTURE"]`` is ``"database"``, or ``"auto"`` where the
database allows it) writers send nothing: every ``ddpserver`` runs a :class:`Reader`, and
the one that holds an advisory lock on the database reads the replication slot
(``pgoutput``, :mod:`ddp.replication.stream`). For each run of committed transactions it
announces the documents they changed (:func:`consumer.announce`: each read once with the ORM
and matched once, in one transaction whose NOTIFYs carry the events to every server, as a
writer's did), and only once that transaction has committed does it confirm the position to
the slot. So a reader that dies, at any point, loses nothing: the next one (another server
takes the lock) gets every transaction after the last confirmed position again. Events are
whole documents, so announcing one twice costs clients nothing. PostgreSQL may stream a
transaction a moment before new snapshots see it: the rows are read only once its
transaction ids are visible (:func:`consumer.wait_visible`), else a new row would go out as
removed.

Fences: a method's caller must see its own writes before ``updated``. Its server asks the
reader (a NOTIFY on ``ddp_reader`` with the method's commit position) and waits for
the answer on its own fence channel; the reader answers once it has announced everything
committed up to that position, after those events' NOTIFYs, so they arrive first.

Memory is bounded: changes are announced every :data:`BATCH` rows even inside one large
transaction (it has committed already; only the confirmation waits for its end).

Its thread, events, sleeps, clock and waits for sockets are the driver's
(:class:`ddp.runtime.driver.Driver`), which ``ddpserver`` passes in; psycopg2 is green
because ``ddpserver`` has patched it before this runs.
"""

import logging

import psycopg2
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from ddp import metrics
from ddp.api import API
from ddp.bus import signing
from ddp.bus.listen import ListenConnection
from ddp.bus.producer import READER_CHANNEL
from ddp.replication import pgoutput, setup
from ddp.replication.consumer import Change, Tables, announce
from ddp.replication.stream import ReplicationStream, StreamLost

logger = logging.getLogger("ddp.replication")

#: Row changes announced at once, at most (a long transaction goes in several batches).
BATCH = 1000
#: Seconds the reader waits for the stream when it has nothing else to do, and while a
#: fence waits for the server's position.
IDLE_WAIT = 1.0
FENCE_WAIT = 0.01
#: Seconds between two tries to become the reader, and the cap of the retry backoff.
ELECTION_INTERVAL = 2.0
MAX_BACKOFF = 10.0


def lock_key(slot_name):
    """The advisory lock whose holder reads ``slot_name``: a bigint of its name."""
    return setup.advisory_key(f"ddp.replication.reader:{slot_name}")


class _FenceRequested(Exception):
    """A fence request arrived while the reader waited for the stream."""


class Reader:
    """Runs in a green thread of ``driver`` from :meth:`start` to :meth:`stop`; ``run_db``
    runs a function on a database worker (:meth:`ddp.server.pool.DatabasePool.run`)."""

    def __init__(self, connect_params, run_db, driver, registry=API):
        self.connect_params = connect_params
        self.run_db = run_db
        self.driver = driver
        self.tables = Tables(registry)
        #: The slot and publication's name, ``ddp_<database>``, once connected.
        self.slot = None
        self.elected = driver.event()
        #: The last position announced and confirmed (metrics, tests).
        self.confirmed_lsn = 0
        self._running = False
        self._fences = []  # (channel, token, position) waiting for the reader
        self._stopping = driver.event()  # ends a pause between two elections
        self._stopped = driver.event()

    def start(self):
        self._running = True
        self.driver.spawn(self._run)

    def stop(self):
        """Stop reading; wait for the thread to close its connections, 5 s at most."""
        self._running = False
        self._stopping.set()
        self._stopped.wait(5)

    # Election --------------------------------------------------------------------

    def _run(self):
        try:
            self._elect()
        finally:
            self._stopped.set()

    def _elect(self):
        conn = None
        pause = ELECTION_INTERVAL
        while self._running:
            try:
                if conn is None or conn.closed:
                    # Autocommit, and fence requests taken in order.
                    conn = ListenConnection.connect(self.connect_params)
                if self._take_lock(conn):
                    self.elected.set()
                    logger.info("This server reads the database's changes (slot %s)", self.slot)
                    self._serve(conn)
                pause = ELECTION_INTERVAL
            except (psycopg2.Error, DatabaseError, StreamLost, setup.SetupError, OSError) as exc:
                # DatabaseError: Django's, from announcing on a database worker.
                logger.warning("Reading the database's changes stopped: %s; retrying", exc)
                pause = min(pause * 2, MAX_BACKOFF)
                conn = _closed(conn)
            except Exception:
                # Nothing the database sends may end this thread: log, back off, go on.
                logger.exception("The replication reader failed; retrying")
                pause = min(pause * 2, MAX_BACKOFF)
                conn = _closed(conn)
            finally:
                self.elected.clear()
            if self._running:
                # A server that is not the reader keeps its connection and asks again.
                self._stopping.wait(pause)
        _closed(conn)

    def _take_lock(self, conn):
        with conn.cursor() as cursor:
            if self.slot is None:  # the database never changes: asked once
                self.slot = setup.replication_name(setup.current_database(cursor))
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(self.slot)])
            return cursor.fetchone()[0]

    # Reading ---------------------------------------------------------------------

    def _serve(self, conn):
        with conn.cursor() as cursor:
            setup.prepare(cursor, self.tables, self.slot)
        # Fence requests: "<fence channel> <token> <position>".
        conn.listen(READER_CHANNEL)

        def wait(fileno, timeout=None):
            # A fence request ends the wait for the stream: it is answered at once.
            self.driver.wait_readable(fileno, conn.fileno(), timeout=timeout)
            if conn.poll():
                raise _FenceRequested

        stream = ReplicationStream(
            self.connect_params, self.slot, [self.slot], wait, clock=self.driver.clock
        )
        stream.connect()
        try:
            self._follow(conn, stream)
        finally:
            stream.close()

    def _follow(self, conn, stream):
        pending = []  # changes read and not yet announced
        xids = set()  # the transactions that made them
        finished = 0  # the end of the last transaction read whole
        in_transaction = False
        while self._running:
            if pending and not in_transaction:
                timeout = 0  # announce what has arrived as soon as nothing more has
            elif self._fences and not in_transaction:
                timeout = FENCE_WAIT  # the keepalive asked for is on its way
            else:
                timeout = IDLE_WAIT
            try:
                received = stream.read(timeout=timeout)
            except _FenceRequested:
                received = None
            if received is not None:
                message = received.message
                if isinstance(message, pgoutput.Begin):
                    in_transaction = True
                    xids.add(message.xid)
                elif isinstance(message, pgoutput.Commit):
                    in_transaction = False
                    finished = message.end_lsn
                else:
                    pending.extend(_changes(message))
                if len(pending) < BATCH:
                    continue  # read on while changes keep arriving
            if pending and (len(pending) >= BATCH or not in_transaction):
                # Committed already: a long transaction is announced a batch at a time;
                # any other is announced whole, once its end has arrived (the stream
                # sends a committed transaction at once, so that is a moment). Cut at a
                # transaction's end, the batch ends at ``finished``: its events say so,
                # and a server that had them drops a second announcement.
                position = None if in_transaction else finished
                self.run_db(
                    announce,
                    pending,
                    self.tables,
                    DEFAULT_DB_ALIAS,
                    frozenset(xids),
                    position,
                    self.driver.sleep,
                )
                metrics.inc("ddp_replication_changes_total", len(pending))
                pending = []
                if not in_transaction:
                    xids = set()
            if not in_transaction and finished > self.confirmed_lsn:
                # Its events have committed: the slot need not send it again.
                stream.confirm(finished)
                self.confirmed_lsn = finished
            self._take_fence_requests(conn)
            if self._fences and not in_transaction:
                # Whatever committed before ``finished`` is announced; and once everything
                # the server sent is, whatever committed before its position too. Ask for a
                # newer one while fences wait for it.
                caught_up = received is None
                self._answer_fences(
                    conn, max(finished, stream.server_position()) if caught_up else finished
                )
                if self._fences and caught_up:
                    stream.ask_position()

    # Fences ----------------------------------------------------------------------

    def _take_fence_requests(self, conn):
        for notify in conn.received():
            try:
                channel, token, position = signing.verify(notify.channel, notify.payload).split()
                self._fences.append((channel, token, int(position)))
            except ValueError:
                metrics.inc("ddp_listener_refused_payloads_total")

    def _answer_fences(self, conn, position):
        due = [fence for fence in self._fences if fence[2] <= position]
        if not due:
            return
        self._fences = [fence for fence in self._fences if fence[2] > position]
        with conn.cursor() as cursor:
            signing.notify_all(cursor, [(channel, token) for channel, token, _ in due])


def _closed(conn):
    """Close ``conn`` if open (its advisory lock goes with it); return None."""
    if conn is not None:
        conn.close()
    return None


def _changes(message):
    """The :class:`Change` rows of one decoded message (none for the others)."""
    if isinstance(message, pgoutput.Insert):
        return [Change(message.relation.name, "insert", new=message.relation.named(message.new))]
    if isinstance(message, pgoutput.Update):
        old = None if message.old is None else message.relation.named(message.old)
        return [Change(message.relation.name, "update", message.relation.named(message.new), old)]
    if isinstance(message, pgoutput.Delete):
        return [Change(message.relation.name, "delete", old=message.relation.named(message.old))]
    if isinstance(message, pgoutput.Truncate):
        return [Change(relation.name, "truncate") for relation in message.relations]
    return []
