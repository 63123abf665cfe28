"""Reading a replication slot's ``pgoutput`` stream without blocking the server's green threads.

A logical replication slot keeps every WAL segment from the position its reader last
confirmed, so that no committed change is lost when the reader dies: a new reader starts
from that position and gets again every transaction committed after it. So the reader
confirms a position only once its consumer says the changes up to there are handled (their
events have committed): :meth:`ReplicationStream.confirm`. A position confirmed too early
loses changes on a crash; one never confirmed keeps WAL, and fills the disk.

:meth:`ReplicationStream.read` hands over one message at a time, as the server sends it,
with the ``Begin`` of the transaction it belongs to. PostgreSQL sends a transaction only
once it has committed, in commit order, and spills large ones to disk while decoding, so
the stream holds one message at a time however large the transaction: a million-row
transaction is never held whole here, and the consumer decides what to keep.

It never blocks: psycopg2's ``read_message()`` returns what has arrived, and the wait for
more goes through the ``wait_readable(fileno, timeout=...)`` function the caller passes (the
eventlet driver's, which lets other green threads run; a ``select`` in tests). While idle,
it still sends a status update every ``keepalive_interval`` seconds, so the server neither
times the connection out nor waits on it.

One thing this cannot prevent: psycopg2 (2.9) itself advances the confirmed position to a
server keepalive's WAL end when the last message it read lies at or before the last
confirmed position. The server gives ``Relation`` and ``Type`` messages position 0, and the
changes of a transaction that began before the last confirmed commit earlier positions, so a
keepalive that lands right after one of them confirms every transaction handed over before,
confirmed or not. The server sends such a keepalive only when it has waited
``wal_sender_timeout / 2`` for a reply with its socket full: a reader that keeps reading
(and so sends status updates) does not see one. The same rule is what moves the slot on
while only tables nobody publishes are written (PostgreSQL then sends no transaction to
confirm, only keepalives): without it the slot would keep that WAL.
"""

import contextlib
import time
from dataclasses import dataclass

import psycopg2
import psycopg2.extras

from ddp.replication.pgoutput import Begin, Decoder, format_lsn

#: Seconds between two status updates while nothing else is sent. PostgreSQL drops a reader
#: it has not heard from in ``wal_sender_timeout`` (60 s by default).
KEEPALIVE_INTERVAL = 10.0


@contextlib.contextmanager
def _callback_off():
    """Run a replication call with psycopg2's wait callback off.

    Under eventlet psycopg2 has a wait callback (its connections are "green"), and psycopg2
    refuses replication calls on green connections. None of them waits for the server but
    ``start_replication`` (one round trip): ``read_message`` takes what has arrived and
    ``send_feedback`` writes a few bytes. The callback is global, yet no other green thread
    can run during a call that does not yield, so turning it off for one call is safe.
    """
    callback = psycopg2.extensions.get_wait_callback()
    if callback is None:
        yield
        return
    psycopg2.extensions.set_wait_callback(None)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(callback)


class StreamLost(Exception):
    """The replication connection failed or could not be made.

    Connect again: the slot sends again everything after the last confirmed position.
    """


@dataclass(frozen=True, slots=True)
class Received:
    #: The WAL position the server gave the message: a change's own position, a ``Commit``'s
    #: ``end_lsn``; 0 for messages it gives none (``Relation``, ``Type``).
    lsn: int
    #: The decoded :mod:`~ddp.replication.pgoutput` message.
    message: object
    #: The ``Begin`` of the transaction the message belongs to (itself for a ``Begin``);
    #: ``None`` only for a non-transactional ``Message``.
    transaction: Begin | None


class ReplicationStream:
    """One reader of the ``pgoutput`` changes of ``slot_name`` for ``publication_names``.

    ``connect_params`` are psycopg2's connection keywords (``dsn=`` or ``dbname=``,
    ``host=``...), for a role with the REPLICATION attribute. ``start_lsn`` is the position to
    start from when it is past the slot's confirmed one (0: the slot's).

    :attr:`received_lsn` and :attr:`confirmed_lsn` are for metrics: the position of the
    last message handed over, and the last one the consumer confirmed.
    """

    def __init__(
        self,
        connect_params,
        slot_name,
        publication_names,
        wait_readable,
        *,
        start_lsn=0,
        keepalive_interval=KEEPALIVE_INTERVAL,
        clock=time.monotonic,
    ):
        self.connect_params = connect_params
        self.slot_name = slot_name
        self.publication_names = list(publication_names)
        self.wait_readable = wait_readable
        self.keepalive_interval = keepalive_interval
        self.clock = clock
        self.received_lsn = 0
        self.confirmed_lsn = start_lsn
        self._connection = self._cursor = self._decoder = None
        self._last_feedback = 0.0

    def connect(self):
        """Start streaming from the slot's confirmed position, or :attr:`confirmed_lsn` if
        later (after :class:`StreamLost`, the same object connects again this way).

        :raises StreamLost: the server cannot be reached, or another reader holds the slot.
        :raises psycopg2.Error: anything else the server refuses (no such slot, a role
            without REPLICATION...), as psycopg2 raised it.
        """
        if self._connection is not None:
            raise RuntimeError("The replication stream is already connected")
        try:
            params = {
                **self.connect_params,
                # pgoutput sends text in the client's encoding; the decoder reads UTF-8.
                "client_encoding": "UTF8",
            }
            # Django's parameters name its own cursor class; replication needs psycopg2's.
            params.pop("cursor_factory", None)
            connection = psycopg2.connect(
                **params, connection_factory=psycopg2.extras.LogicalReplicationConnection
            )
        except psycopg2.OperationalError as exc:
            raise StreamLost(f"Cannot connect to replicate slot {self.slot_name}: {exc}") from exc
        try:
            cursor = connection.cursor()
            with _callback_off():
                cursor.start_replication(
                    slot_name=self.slot_name,
                    decode=False,
                    start_lsn=self.confirmed_lsn,
                    # psycopg2's own status updates, which it refuses more often than each
                    # second; read() sends them every keepalive_interval anyway.
                    status_interval=max(self.keepalive_interval, 1),
                    options={
                        "proto_version": "1",
                        "publication_names": ",".join(self.publication_names),
                    },
                )
        except psycopg2.Error as exc:
            connection.close()
            if isinstance(exc, psycopg2.OperationalError):
                raise StreamLost(f"Cannot replicate slot {self.slot_name}: {exc}") from exc
            raise
        self._connection, self._cursor = connection, cursor
        self._decoder = Decoder()
        self._last_feedback = self.clock()
        if self.confirmed_lsn:
            # What was confirmed while disconnected, or whose status update was lost.
            self._send_feedback(flush_lsn=self.confirmed_lsn)

    def close(self):
        """Close the connection (the slot keeps the last confirmed position)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = self._cursor = None

    def read(self, timeout=None):
        """Return the next :class:`Received`, or ``None`` if none came within ``timeout``
        seconds (``None``: wait as long as it takes).

        :raises StreamLost: the connection failed; it is closed.
        :raises DecodeError: the server sent what the decoder does not understand, or
            messages out of their order (see :meth:`Decoder.decode`).
        """
        if self._connection is None:
            raise RuntimeError("The replication stream is not connected")
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            raw = self._guarded(self._cursor.read_message)
            if raw is not None:
                return self._received(raw)
            now = self.clock()
            keepalive_due = self._last_feedback + self.keepalive_interval
            if now >= keepalive_due:
                self._send_feedback()
                continue
            if deadline is not None and now >= deadline:
                return None
            wait = keepalive_due - now if deadline is None else min(keepalive_due, deadline) - now
            self.wait_readable(self._connection.fileno(), timeout=wait)

    def confirm(self, lsn):
        """Tell the slot that everything up to ``lsn`` is handled: a ``Commit``'s ``end_lsn``,
        once the transaction's events have committed. It will not be sent again. While the
        stream is disconnected, the position is kept and sent when it connects again.

        :raises ValueError: ``lsn`` is past what the stream has handed over.
        :raises StreamLost: the connection failed; it is closed.
        """
        if lsn > self.received_lsn:
            raise ValueError(
                f"Cannot confirm {format_lsn(lsn)}: only {format_lsn(self.received_lsn)} "
                "was received"
            )
        if lsn > self.confirmed_lsn:
            self.confirmed_lsn = lsn
            if self._connection is not None:
                self._send_feedback(flush_lsn=lsn)

    def server_position(self):
        """The server's WAL position as of its last message or keepalive (0: none yet).

        The server sends a transaction once it has decoded its commit, in order, so once
        :meth:`read` has handed over everything that arrived, every transaction that
        committed before this position has been handed over.
        """
        return self._cursor.wal_end if self._cursor is not None else 0

    def ask_position(self):
        """Ask the server for a keepalive now, which brings :meth:`server_position` up to
        where its decoding stands (else it comes only every ``wal_sender_timeout / 2``).

        :raises StreamLost: the connection failed; it is closed.
        """
        self._send_feedback(reply=True)

    def _send_feedback(self, **positions):
        self._guarded(lambda: self._cursor.send_feedback(**positions, force=True))
        self._last_feedback = self.clock()

    def _guarded(self, operation):
        try:
            with _callback_off():
                return operation()
        except psycopg2.Error as exc:
            self.close()
            raise StreamLost(f"Lost the replication of slot {self.slot_name}: {exc}") from exc

    def _received(self, raw):
        transaction = self._decoder.transaction
        message = self._decoder.decode(raw.payload)
        if isinstance(message, Begin):
            transaction = message
        self.received_lsn = max(self.received_lsn, raw.data_start)
        return Received(raw.data_start, message, transaction)
