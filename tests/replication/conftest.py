"""What the tests of database capture's set-up share: a cursor that cleans up, a reader."""

import contextlib
import time

import psycopg2
import psycopg2.extras
import pytest
from django.db import connection

from ddp.replication import setup
from ddp.testing.database import database_url

TABLES = ["bookstore_author", "bookstore_book"]


@pytest.fixture
def cursor():
    """An autocommit cursor on the test database; whatever capture set up there is dropped
    afterwards (a database with a slot cannot be dropped, and a slot keeps WAL)."""
    with connection.cursor() as cursor:
        yield cursor
        cursor.execute("RESET ROLE")
        setup.drop(cursor)


def wait_for(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


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
        wait_for(lambda: setup.slot_status(cursor).active)
        yield name
    finally:
        reader.close()
        # The server lets go of the slot once it sees the connection gone.
        wait_for(lambda: not setup.slot_status(cursor).active)
