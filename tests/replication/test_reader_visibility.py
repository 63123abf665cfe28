"""The reader announces a transaction only once other sessions can see what it wrote.

PostgreSQL flushes a commit record, and logical decoding may send the transaction, before
the committing backend leaves the list of running transactions. Found by
``bench/capture.py``: under load (32 writers and 1,000 clients on 2 CPUs) a few ``create()``
calls never reached any client; the reader had read the new row in that window, found
nothing, announced it as removed and confirmed the position.

The window is held open here on purpose: a throwaway PostgreSQL (``logical_server``, so
that its cluster-wide settings touch nothing else) names a synchronous standby that never
comes, so a writer that asks for a synchronous commit waits after flushing its commit
record and before it becomes visible, until it is cancelled. Every other session commits
locally and does not wait.
"""

import os
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from ddp.replication import setup
from ddp.testing import WebSocketDDPClient
from tests.live import ROOT, ServerProcess, wait_until
from tests.replication.conftest import Database

DATABASE = {"CAPTURE": "database"}
#: Seconds the reader is given to act on a transaction it has been sent.
READER_GRACE = 1.0


@pytest.fixture
def example_db(logical_db, logical_server):
    """The fresh database migrated for the test project, with commits that never wait for
    a standby unless a session asks; the cluster's settings are restored afterwards."""
    env = {**os.environ, "DATABASE_URL": logical_db["dsn"], "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    with Database({"dsn": logical_server.get_uri()}) as admin:
        admin.run(
            "ALTER SYSTEM SET synchronous_commit = 'local'",
            "ALTER SYSTEM SET synchronous_standby_names = 'ddp_test_nobody'",
            "SELECT pg_reload_conf()",
            # Commits wait for a standby once the checkpointer has read the new setting,
            # which a busy one does late: a CHECKPOINT returns after it has.
            "CHECKPOINT",
        )
        try:
            yield logical_db
        finally:
            admin.run(
                "ALTER SYSTEM RESET synchronous_standby_names",
                "ALTER SYSTEM RESET synchronous_commit",
                "SELECT pg_reload_conf()",
            )


def test_a_commit_not_yet_visible_is_announced_once_it_is(example_db):
    with Database(example_db) as db:
        author = db.value(
            "INSERT INTO bookstore_author (name, email) VALUES ('U', 'u@x') RETURNING id"
        )
        with ServerProcess(ddp=DATABASE, env={"DATABASE_URL": example_db["dsn"]}) as server:
            wait_until(
                lambda: db.value("SELECT count(*) FROM pg_replication_slots WHERE active") == 1,
                timeout=30,
            )
            client = WebSocketDDPClient(server.ws_url)
            client.subscribe("AllBooks")
            client.assert_added("bookstore.author", str(author))

            writer = psycopg2.connect(**example_db)
            try:
                with writer.cursor() as cursor:
                    cursor.execute("SET synchronous_commit = on")
                    cursor.execute(
                        "INSERT INTO bookstore_book (title, author_id) VALUES ('held', %s)"
                        " RETURNING id, pg_backend_pid()",
                        [author],
                    )
                    book, pid = cursor.fetchone()
                committing = threading.Thread(target=writer.commit)
                committing.start()
                # Its commit record is flushed; it waits for the standby, unseen by others.
                wait_until(
                    lambda: (
                        db.value("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", [pid])
                        == "SyncRep"
                    )
                )
                flushed = db.value("SELECT pg_current_wal_flush_lsn()::text")
                assert db.value("SELECT count(*) FROM bookstore_book WHERE id = %s", [book]) == 0
                # The reader has been sent the transaction, and given time to act on it.
                wait_until(
                    lambda: db.value(
                        "SELECT bool_and(sent_lsn >= %s::pg_lsn) FROM pg_stat_replication",
                        [flushed],
                    )
                )
                time.sleep(READER_GRACE)
                db.run(("SELECT pg_cancel_backend(%s)", [pid]))  # commits it locally
                committing.join(10)
                assert db.value("SELECT count(*) FROM bookstore_book WHERE id = %s", [book]) == 1
            finally:
                writer.close()
            client.assert_added("bookstore.book", str(book), title="held")
            client.close()
        # The reader's slot and publication: a cluster has only ten slots.
        wait_until(lambda: not db.value("SELECT count(*) FROM pg_replication_slots WHERE active"))
        with db.connection.cursor() as cursor:
            setup.drop(cursor)
