"""ddpserver checks at start-up whether the database can carry DDP["CAPTURE"], and says
which mode is active and why."""

import os

import psycopg2
import pytest
from django.db import connection

from bookstore.models import Author
from ddp.replication import setup
from ddp.testing import WebSocketDDPClient
from ddp.testing.database import database_url
from tests.live import ServerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def changes_line(server):
    """The line that follows "listening on" (which start() waits for), once printed."""

    def lines():
        return [line for line in server.lines if line.startswith("  changes: ")]

    wait_until(lines)
    (line,) = lines()
    return line.strip()


def start_or_stop(server):
    """Start ``server``, expected to fail; one that starts after all is stopped, or it
    would hold the slot and keep the test database from being dropped."""
    try:
        server.start()
    finally:
        server.stop()


def slot():
    with connection.cursor() as cursor:
        return setup.slot_status(cursor)


def test_the_embedded_database_gives_database_capture_with_auto():
    with ServerProcess() as server:
        # Made before the server said it listens: writers go quiet from then on.
        assert slot() is not None
        line = changes_line(server)
    assert line.startswith(
        'changes: database capture (DDP["CAPTURE"] is "auto", wal_level is logical, and role '
    )
    assert line.endswith("; read by the server that holds the lock)")


def test_auto_reads_writes_that_no_signal_sees():
    author = Author.objects.create(name="Ursula", email="ursula@example.com")
    with ServerProcess() as server:
        client = WebSocketDDPClient(server.ws_url, timeout=30)
        client.subscribe("AllBooks")
        client.assert_added("bookstore.author", str(author.pk))
        plain = psycopg2.connect(database_url(connection.settings_dict))
        try:
            with plain, plain.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO bookstore_book (title, author_id) VALUES ('plain', %s)"
                    " RETURNING id",
                    [author.pk],
                )
                (book_id,) = cursor.fetchone()
        finally:
            plain.close()
        client.assert_added("bookstore.book", str(book_id), title="plain")
        client.close()


@pytest.fixture
def replicating_not():
    """A role that may log in and use what the tables' owner may, but not replicate: its
    DATABASE_URL, for a server that connects as it."""
    name = f"ddp_norepl_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} LOGIN IN ROLE {connection.settings_dict['USER']}")
    yield name, database_url({**connection.settings_dict, "USER": name})
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {name}")
        cursor.execute(f"DROP ROLE {name}")


def test_auto_falls_back_to_signals_for_a_role_that_may_not_replicate(replicating_not):
    role, url = replicating_not
    with ServerProcess(env={"DATABASE_URL": url}) as server:
        line = changes_line(server)
        output = server.output()
        assert slot() is None
    assert line == (
        f"changes: signals capture (database capture is not possible: role {role} may not "
        f'replicate; what to change: As a superuser: ALTER ROLE "{role}" REPLICATION; '
        f'(AWS RDS: GRANT rds_replication TO "{role}";))'
    )
    assert (
        f'(ddp.W002) Changes come from model signals (DDP["CAPTURE"] is "auto"): for '
        f"database capture, role {role} may not replicate." in output
    )


def test_database_capture_when_asked():
    with ServerProcess(ddp={"CAPTURE": "database"}) as server:
        line = changes_line(server)
    assert line.startswith('changes: database capture (DDP["CAPTURE"] is "database"')
    assert line.endswith("; read by the server that holds the lock)")


def test_signals_when_asked():
    with ServerProcess(ddp={"CAPTURE": "signals"}) as server:
        assert changes_line(server) == 'changes: signals capture (DDP["CAPTURE"] is "signals")'


def altered(change, undo):
    """Run the SQL ``change`` for a test's length, then ``undo`` (a fixture's body)."""
    with connection.cursor() as cursor:
        cursor.execute(change)
    yield
    with connection.cursor() as cursor:
        cursor.execute(undo)


@pytest.fixture
def author_without_identity():
    """bookstore_author's deletes without their key: database capture cannot carry it."""
    yield from altered(
        "ALTER TABLE bookstore_author REPLICA IDENTITY NOTHING",
        "ALTER TABLE bookstore_author REPLICA IDENTITY DEFAULT",
    )


def test_auto_falls_back_to_signals_and_says_what_to_change(author_without_identity):
    with ServerProcess() as server:
        line = changes_line(server)
        output = server.output()
    assert line == (
        "changes: signals capture (database capture is not possible: bookstore_author's "
        "REPLICA IDENTITY does not give a deleted row's primary key; what to change: "
        "ALTER TABLE bookstore_author REPLICA IDENTITY DEFAULT;)"
    )
    assert "(ddp.W002) Changes come from model signals" in output
    assert "ALTER TABLE bookstore_author REPLICA IDENTITY DEFAULT;" in output


def test_database_capture_that_cannot_work_stops_the_server(author_without_identity):
    with pytest.raises(RuntimeError, match="did not start") as failed:
        start_or_stop(ServerProcess(ddp={"CAPTURE": "database"}))
    assert '(ddp.E013) DDP["CAPTURE"] is "database", but bookstore_author\'s' in str(failed.value)
    assert "Traceback" not in str(failed.value)


@pytest.fixture
def books_away():
    """bookstore_book missing (under another name), as before migrate made it: the system
    checks leave missing tables out, but no publication can include it."""
    yield from altered(
        "ALTER TABLE bookstore_book RENAME TO bookstore_book_away",
        "ALTER TABLE bookstore_book_away RENAME TO bookstore_book",
    )


def test_auto_falls_back_to_signals_when_the_publication_cannot_be_made(books_away):
    with ServerProcess() as server:
        line = changes_line(server)
        assert slot() is None
    assert line == (
        "changes: signals capture (database capture is not possible: Published tables do "
        "not exist: bookstore_book (run migrate).)"
    )


def test_database_capture_whose_publication_cannot_be_made_stops_the_server(books_away):
    with pytest.raises(RuntimeError, match="did not start") as failed:
        start_or_stop(ServerProcess(ddp={"CAPTURE": "database"}))
    assert (
        "Database capture cannot start: Published tables do not exist: bookstore_book "
        "(run migrate)." in str(failed.value)
    )
    assert "Traceback" not in str(failed.value)
