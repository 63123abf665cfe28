"""Database capture under faults: nothing committed is lost, whatever dies.

Real ``ddpserver`` processes with ``DDP["CAPTURE"] = "database"`` read the test database's
slot; this process writes as any program would (its own signals send nothing, in the same
mode). Each test ends with every client holding what the database holds.

What "in order, once each" can mean here: events are whole documents read after their
transaction committed, and each server's merge box sends a client one ``added`` per
document, then only the fields that differ from what the client holds. So a transaction
announced twice (the slot sends again what a killed reader had not confirmed) costs a
client nothing: the second event differs in nothing, or brings the database's newer value,
never an older one. What a test can observe of order is the ``added`` of inserts, one per
document, in the order the rows were written; the order of two updates of one document
is not observable, only that the last value wins.
"""

import os
import signal
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings

from bookstore.models import Author, Book
from ddp.replication import setup
from tests.live import ServerProcess, wait_until
from tests.replication.conftest import (
    BOOK,
    added_ids,
    books_client,
    converge,
    slot_active,
    titles,
    wait_until_reading,
)

pytestmark = pytest.mark.django_db(transaction=True)

DATABASE = {"CAPTURE": "database"}
#: The servers': the tests' clients answer no ping.
SERVER = {**DATABASE, "HEARTBEAT_INTERVAL": 600}


@pytest.fixture
def capture():
    """Database mode in this process, and the slot dropped at the end (once no reader
    holds it: a database with a slot cannot be dropped)."""
    with override_settings(DDP=DATABASE):
        yield
    connection.close()  # a test that restarted PostgreSQL may have left it broken
    with connection.cursor() as cursor:
        wait_until(lambda: not slot_active(cursor), timeout=30)
        setup.drop(cursor)


@pytest.fixture
def author(capture):
    return Author.objects.create(name="Ursula", email="ursula@example.com")


def database_books():
    return {str(book.pk): book.title for book in Book.objects.all()}


class Writer(threading.Thread):
    """Commits ``count`` transactions from its own connection, as another program would:
    each inserts a book; every tenth also renames the book written five before."""

    def __init__(self, author, count, pause=0.0):
        super().__init__(daemon=True)
        self.author, self.count, self.pause = author, count, pause
        self.written = 0
        self.errors = []

    def run(self):
        try:
            n = 0
            while n < self.count:
                try:
                    with transaction.atomic():
                        Book.objects.create(title=f"b{n}", author=self.author)
                        if n % 10 == 9:
                            Book.objects.filter(title=f"b{n - 5}").update(title=f"b{n - 5} renamed")
                except Exception as exc:  # noqa: BLE001 - PostgreSQL restarting: write again
                    self.errors.append(exc)
                    connection.close()
                    time.sleep(0.1)
                    continue
                n += 1
                self.written = n
                time.sleep(self.pause)
        finally:
            connections.close_all()


def test_killing_the_reader_mid_burst_loses_nothing_and_duplicates_nothing(author):
    servers = [ServerProcess(ddp=SERVER).start() for _ in range(2)]
    try:
        with connection.cursor() as cursor:
            reader = wait_until_reading(cursor, *servers)
        [survivor] = [s for s in servers if s is not reader]
        watcher = books_client(survivor, author.pk)  # subscribed from start to end
        doomed = books_client(reader, author.pk)
        writer = Writer(author, 1000, pause=0.005)
        writer.start()
        # Mid-burst, with some of it announced (the reader lags the writer).
        wait_until(lambda: writer.written >= 300 and watcher.collection(BOOK), timeout=30)
        os.kill(reader.process.pid, signal.SIGKILL)
        reader.process.wait()
        assert writer.written < 1000, "the burst ended before the reader died"
        with pytest.raises(AssertionError, match="closed the connection"):
            while True:
                doomed._pump(1)
        # Its clients reconnect to the survivor, as Meteor's would, and subscribe again.
        returned = books_client(survivor, author.pk)
        writer.join(120)
        assert writer.written == 1000 and not writer.errors
        with connection.cursor() as cursor:
            wait_until_reading(cursor, survivor, timeout=60)
        for client in (watcher, returned):
            converge(client, database_books)
            ids = added_ids(client)
            assert len(ids) == len(set(ids)) == 1000
        # The watcher saw each insert once, in the order they were written.
        assert added_ids(watcher) == sorted(added_ids(watcher))
        assert not [
            m
            for m in watcher.messages
            if m.get("msg") == "removed" or m.get("msg") == "changed" and "renamed" not in str(m)
        ]
        watcher.close()
        returned.close()
    finally:
        for server in servers:
            server.stop()


def test_a_schema_change_while_streaming_does_not_stop_the_reader(author):
    with ServerProcess(ddp=SERVER) as server:
        with connection.cursor() as cursor:
            wait_until_reading(cursor, server)
        client = books_client(server, author.pk)
        before = Book.objects.create(title="before", author=author)
        client.assert_added(BOOK, str(before.pk), title="before")
        with connection.cursor() as cursor:
            # Between two writes, on a published table: the stream sends a new Relation.
            cursor.execute("ALTER TABLE bookstore_book ADD COLUMN ddp_extra integer DEFAULT 7")
            try:
                after = Book.objects.create(title="after", author=author)
                cursor.execute(
                    "UPDATE bookstore_book SET title = 'before, renamed' WHERE id = %s", [before.pk]
                )
                client.assert_added(BOOK, str(after.pk), title="after")
                client.assert_changed(BOOK, str(before.pk), {"title": "before, renamed"})
            finally:
                cursor.execute("ALTER TABLE bookstore_book DROP COLUMN ddp_extra")
        last = Book.objects.create(title="last", author=author)
        client.assert_added(BOOK, str(last.pk), title="last")
        client.close()
    assert "Traceback" not in server.output()


def test_changes_made_while_no_server_runs_are_kept_by_the_slot(author):
    with connection.cursor() as cursor:
        with ServerProcess(ddp=SERVER) as server:
            wait_until_reading(cursor, server)
        wait_until(lambda: not slot_active(cursor), timeout=30)
        # Every server is gone; 200 commits go on, from a plain writer.
        writer = Writer(author, 200, pause=0.02)
        writer.start()
        writer.join(60)
        assert writer.written == 200
        assert setup.slot_status(cursor).lag_bytes > 0  # the slot kept what nobody read
        with ServerProcess(ddp=SERVER) as server:
            client = books_client(server, author.pk)
            assert len(titles(client)) == writer.written  # the initial query's job
            wait_until_reading(cursor, server)
            # The new reader reads what the slot kept, and confirms it: the lag falls back
            # to the WAL written since (none but what the reader's own NOTIFYs write).
            wait_until(lambda: setup.slot_status(cursor).lag_bytes < 64 * 1024, timeout=30)
            late = Book.objects.create(title="late", author=author)
            client.assert_added(BOOK, str(late.pk), title="late")
            converge(client, database_books)
            client.close()


def test_every_connection_to_postgresql_dropped_during_writes_loses_nothing(author):
    """Every other backend is terminated (the reader's election connection and walsender,
    the listeners, the database workers, the writer's), twice, while writes go on, as an
    administrator's ``pg_terminate_backend`` would; PostgreSQL itself stays up and
    accepts connections again at once. A restart of PostgreSQL is test_restart_live's."""
    servers = [ServerProcess(ddp=SERVER).start() for _ in range(2)]
    try:
        with connection.cursor() as cursor:
            wait_until_reading(cursor, *servers)
        clients = [books_client(server, author.pk) for server in servers]
        writer = Writer(author, 600, pause=0.005)
        writer.start()
        for mark in (150, 350):
            wait_until(lambda mark=mark: writer.written >= mark, timeout=60)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND (datname = current_database()"
                    " OR backend_type = 'walsender')"
                )
                assert cursor.fetchone()[0] >= 3  # at least the walsender, listeners
        writer.join(120)
        assert writer.written == 600
        with connection.cursor() as cursor:
            wait_until(lambda: slot_active(cursor), timeout=60)  # a reader again
        for client in clients:
            converge(client, database_books)
            client.close()
    finally:
        for server in servers:
            server.stop()
