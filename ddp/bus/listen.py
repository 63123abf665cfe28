"""A connection that LISTENs: the part of a LISTEN loop every reader of notifications shares.

Three loops read notifications: each server's :class:`ddp.bus.listener.Listener` (the
change channels, fences and logout notices), ``manage.py ddp_capture`` (records them to a
file) and the replication reader (fence requests, on the connection that holds its
election lock). Each waits in its own way and does its own thing with what arrives, and
each reads through a :class:`ListenConnection`: autocommit, so every notification is
delivered as its sender commits and none waits for a transaction of ours; channel names
quoted, since a collection's name is the project's to choose; and notifications taken in
arrival order, from the left of a deque, so that a burst of thousands stays linear.

Nothing here looks inside a notification: it is the sender's to choose, and each loop
checks it as it needs (:mod:`ddp.bus.signing`).
"""

import collections

import psycopg2
import psycopg2.extensions


class ListenConnection:
    def __init__(self, conn):
        """Take ``conn`` (a psycopg2 connection, which it owns from now on) to LISTEN."""
        self.conn = conn
        try:
            conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        except psycopg2.Error:
            self.close()
            raise
        # Taken from the left: popping a list's head would make a burst quadratic.
        conn.notifies = collections.deque()

    @classmethod
    def connect(cls, connect_params):
        """A new connection with ``connect_params``; psycopg2.Error if it cannot be had."""
        return cls(psycopg2.connect(**connect_params))

    def fileno(self):
        """The socket to wait on: readable when a notification may have arrived."""
        return self.conn.fileno()

    @property
    def closed(self):
        return bool(self.conn.closed)

    def cursor(self):
        """A cursor for statements of the loop's own (autocommit: each commits at once)."""
        return self.conn.cursor()

    def backend_pid(self):
        with self.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    def listen(self, channel):
        self._execute("LISTEN", channel)

    def unlisten(self, channel):
        self._execute("UNLISTEN", channel)

    def _execute(self, command, channel):
        with self.cursor() as cursor:
            cursor.execute(f"{command} {psycopg2.extensions.quote_ident(channel, self.conn)}")

    def poll(self):
        """Read what has arrived; whether a notification is waiting to be taken."""
        self.conn.poll()
        return bool(self.conn.notifies)

    def received(self):
        """Yield each notification that has arrived, in order, as psycopg2 gives it
        (``.channel``, ``.payload``). Each is taken as it is yielded: those after a
        caller stops wait for the next call."""
        self.conn.poll()
        notifies = self.conn.notifies
        while notifies:
            yield notifies.popleft()

    def close(self):
        """Close the connection; quietly if it is already lost."""
        try:
            self.conn.close()
        except psycopg2.Error:
            pass
