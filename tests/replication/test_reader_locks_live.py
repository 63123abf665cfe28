"""The reader never holds a table's lock while it waits for another's.

A TRUNCATE or a migration takes its tables' locks one by one. A reader that has read one
table in its batch's transaction and waits for another, which the migration holds, would
keep the migration waiting for the first table (or deadlock with it, and PostgreSQL may
end the migration rather than the reader). Found by CI: a test's flush (a TRUNCATE of
every table) deadlocked with the live server's reader and failed.

Here: the reader is held at the registry's lock while a transaction writes an author and
a book and another connection takes the book table's lock; let go, the reader reads the
author, then waits for the book table. A third connection then asks for the author
table's lock, as the migration would.
"""

import psycopg2
import pytest
from django.db import connection

from ddp.bus.registry import LOCK
from ddp.testing import WebSocketDDPClient
from ddp.testing.database import database_url
from tests.live import ServerProcess, wait_until
from tests.replication.conftest import slot_active, titles, wait_until_reading

pytestmark = pytest.mark.django_db(transaction=True)

#: What the migration waits for the author table, at most, before the test fails.
MIGRATION_WAIT = "5s"


def connect():
    conn = psycopg2.connect(database_url(connection.settings_dict))
    return conn, conn.cursor()


def waiting_for(cursor, relation):
    """Whether some backend waits for a lock on ``relation``."""
    cursor.execute(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
        [relation],
    )
    return cursor.fetchone()[0] > 0


def test_a_reader_waiting_for_one_table_holds_no_other(cursor):
    server = ServerProcess(ddp={"CAPTURE": "database"}).start()
    registry, book_lock, migration, writer = connect(), connect(), connect(), connect()
    try:
        wait_until_reading(cursor, server)
        client = WebSocketDDPClient(server.ws_url, timeout=30)
        client.subscribe("AllBooks")
        # The reader's next batch waits at the registry's lock.
        registry[1].execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
        writer[1].execute(
            "WITH a AS (INSERT INTO bookstore_author (name, email) VALUES ('L', 'l@x')"
            " RETURNING id) INSERT INTO bookstore_book (title, author_id)"
            " SELECT 'locked', id FROM a"
        )
        writer[0].commit()
        book_lock[1].execute("LOCK TABLE bookstore_book IN ACCESS EXCLUSIVE MODE")
        registry[0].commit()  # the reader reads the author, then waits for the book table
        wait_until(lambda: waiting_for(cursor, "bookstore_book"), timeout=30)
        migration[1].execute(f"SET lock_timeout = '{MIGRATION_WAIT}'")
        migration[1].execute("LOCK TABLE bookstore_author IN ACCESS EXCLUSIVE MODE")
        migration[0].rollback()
        book_lock[0].rollback()
        # Nothing is lost: the reader announces the batch once the tables are free.
        wait_until(lambda: "locked" in titles_after(client), timeout=60)
        client.close()
    finally:
        for conn, _ in (registry, book_lock, migration, writer):
            conn.close()
        server.stop()
        wait_until(lambda: not slot_active(cursor), timeout=30)  # for ``cursor`` to drop it


def titles_after(client):
    client._pump(0.2)
    return titles(client).values()
